package admin_test

// Package tests serve the admin API over a real loopback listener in front
// of a real server.Server (netpoll) proxying to a real upstream.

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/admin"
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/server"
	"github.com/proxylab/proxylab/core/stream"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

func TestMain(m *testing.M) {
	// What the proxylab binary registers in cmd/proxylab/builtins.go.
	transport.Register(netpoll.Name, netpoll.New)
	upstream.RegisterLB(upstream.DefaultLB, upstream.NewWeightedRoundRobin)
	stream.Register(h1s.Codec{})
	os.Exit(m.Run())
}

const token = "t0ken-for-tests"

// startAdmin runs a proxy with one http_proxy listener and cluster, and its
// admin API with a token; it returns the admin and listener addresses and
// the log level the API changes.
func startAdmin(t *testing.T) (adminAddr, webAddr, upAddr string, level *slog.LevelVar) {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") }))
	t.Cleanup(up.Close)
	upAddr = up.Listener.Addr().String()
	yml := fmt.Sprintf(`admin: {address: "127.0.0.1:0", token: %s}
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, token, upAddr)
	cfg, err := config.Parse([]byte(yml), config.Known{Transports: transport.Names(), DefaultTransport: netpoll.Name,
		LBs: upstream.LBNames(), DefaultLB: upstream.DefaultLB, Codecs: server.KnownCodecs(), DefaultProtocol: "http1"})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transport.New(netpoll.Name, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, tr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	level = new(slog.LevelVar)
	a, err := admin.New(cfg.Admin, srv, level)
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(func() { a.Close() })
	return a.Addr().String(), srv.Listeners()[0].Addr().String(), upAddr, level
}

var client = &http.Client{Timeout: 10 * time.Second}

func do(t *testing.T, method, url, tok string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestHandlers walks the endpoints in order (some change state the next
// steps observe): each step's status and what its body must (and must not)
// contain.
func TestHandlers(t *testing.T) {
	adminAddr, webAddr, upAddr, level := startAdmin(t)
	// One proxied request, so the counters have something to show.
	if code, _, body := do(t, "GET", "http://"+webAddr+"/x", ""); code != 200 || body != "up" {
		t.Fatalf("proxied request: %d %q", code, body)
	}
	base := "http://" + adminAddr
	for _, tc := range []struct {
		name, method, path, tok string
		code                    int
		want, wantNot           []string
		json                    bool // the body must be JSON
	}{
		{"index", "GET", "/", token, 200, []string{"proxylab admin", "/stats/prometheus"}, nil, false},
		{"no token", "GET", "/stats", "", 401, []string{"bearer token is required"}, nil, false},
		{"wrong token", "GET", "/config_dump", "nope", 401, nil, []string{"clusters:"}, false},
		{"ready without token", "GET", "/ready", "", 200, []string{"LIVE"}, nil, false},
		{"prometheus", "GET", "/stats/prometheus", token, 200,
			[]string{`proxylab_http_downstream_rq_total{listener="web"} 1`, `proxylab_cluster_upstream_rq_total{cluster="up"} 1`}, nil, false},
		{"stats text", "GET", "/stats", token, 200, []string{"proxylab_listener_downstream_cx_total"}, nil, false},
		{"stats json", "GET", "/stats?format=json", token, 200, []string{`"name"`, `"value"`}, nil, true},
		{"config dump redacts the token", "GET", "/config_dump", token, 200,
			[]string{"clusters:", "lb: round_robin", "[redacted]"}, []string{token}, false},
		{"clusters", "GET", "/clusters", token, 200,
			[]string{"up::lb::round_robin\n", "up::" + upAddr + "::health_flags::healthy\n", "up::" + upAddr + "::rq_total::1\n"}, nil, false},
		{"clusters json", "GET", "/clusters?format=json", token, 200, []string{`"lb":"round_robin"`, `"address":"` + upAddr + `"`}, nil, true},
		{"listeners", "GET", "/listeners", token, 200, []string{"web::" + webAddr + "::"}, nil, false},
		{"listeners json", "GET", "/listeners?format=json", token, 200, []string{`"name":"web"`}, nil, true},
		{"healthcheck fail needs POST", "GET", "/healthcheck/fail", token, 405, nil, nil, false},
		{"healthcheck fail", "POST", "/healthcheck/fail", token, 200, []string{"/ready now answers 503"}, nil, false},
		{"ready while failing", "GET", "/ready", "", 503, []string{"NOT READY: /healthcheck/fail"}, nil, false},
		{"healthcheck ok", "POST", "/healthcheck/ok", token, 200, nil, nil, false},
		{"ready again", "GET", "/ready", "", 200, []string{"LIVE"}, nil, false},
		{"logging bad level", "POST", "/logging?level=loud", token, 400, []string{"level must be"}, nil, false},
		{"logging", "POST", "/logging?level=debug", token, 200, []string{"level: DEBUG"}, nil, false},
		{"unknown path", "GET", "/nope", token, 404, nil, nil, false},
		{"pprof", "GET", "/debug/pprof/", token, 200, []string{"goroutine"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := do(t, tc.method, base+tc.path, tc.tok)
			if code != tc.code {
				t.Fatalf("%s %s: %d, want %d\n%s", tc.method, tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s %s: body lacks %q:\n%s", tc.method, tc.path, w, body)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(body, w) {
					t.Errorf("%s %s: body shows %q", tc.method, tc.path, w)
				}
			}
			if tc.json && !json.Valid([]byte(body)) {
				t.Errorf("%s %s: not JSON: %s", tc.method, tc.path, body)
			}
			if code == 401 && hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
	if level.Level() != slog.LevelDebug {
		t.Fatalf("log level %v after /logging?level=debug", level.Level())
	}
}

// TestNewRefusesABusyAddress: the admin address is bound by New, so a port
// in use fails there with the package's prefix.
func TestNewRefusesABusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = admin.New(&config.Admin{Address: ln.Addr().String()}, nil, new(slog.LevelVar))
	if err == nil || !strings.HasPrefix(err.Error(), "admin: ") {
		t.Fatalf("New on a busy address: %v", err)
	}
}
