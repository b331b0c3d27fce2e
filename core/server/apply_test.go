package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/transport"
)

func init() { upstream.RegisterLB("random", upstream.NewRandom) }

// namedUpstream answers every request with its name.
func namedUpstream(tb testing.TB, name string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// freeAddr is a loopback address nothing listens on (now).
func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// reloadCfg is the shape the tests vary.
type reloadCfg struct {
	Addr       string   // the "web" listener
	Extra      string   // its http_proxy block (flow YAML)
	Second     string   // address of a second listener "other"; empty: none
	HostsA     []string // cluster a
	LB         string
	Timeout    string // cluster a's connect_timeout
	NewRoute   bool   // /new goes to cluster b
	HostB      string // cluster b's host (default: the first of a)
	Workers    int
	DrainAfter string
}

var reloadTmpl = template.Must(template.New("").Parse(`transport: netpoll
workers: {{.Workers}}
drain_timeout: {{or .DrainAfter "2s"}}
listeners:
  - {name: web, address: "{{.Addr}}", http_proxy: {{or .Extra "{}"}}}
{{- if .Second}}
  - {name: other, address: "{{.Second}}", http_proxy: {}}
{{- end}}
routes:
  - name: all
    domains: ["*"]
    routes:
{{- if .NewRoute}}
      - {prefix: /new, cluster: b}
{{- end}}
      - {prefix: /, cluster: a}
clusters:
  - name: a
    lb: {{or .LB "round_robin"}}
    connect_timeout: {{or .Timeout "1s"}}
    hosts:
{{- range .HostsA}}
      - {address: "{{.}}"}
{{- end}}
  - {name: b, hosts: [{address: "{{or .HostB (index .HostsA 0)}}"}]}
`))

func (rc reloadCfg) parse(tb testing.TB) *config.Config {
	tb.Helper()
	var b bytes.Buffer
	if err := reloadTmpl.Execute(&b, rc); err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Parse(b.Bytes(), known())
	if err != nil {
		tb.Fatalf("%v\n%s", err, b.String())
	}
	return cfg
}

func startServer(tb testing.TB, cfg *config.Config) *Server {
	tb.Helper()
	tr, err := transport.New(cfg.Transport, transport.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(cfg, tr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(); tr.Close() })
	return s
}

// client is one keep-alive HTTP/1.1 connection.
type client struct {
	tb testing.TB
	c  net.Conn
	r  *bufio.Reader
}

func dial(tb testing.TB, addr string) *client {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tb.Cleanup(func() { c.Close() })
	return &client{tb: tb, c: c, r: bufio.NewReader(c)}
}

// get sends one request and returns the body and whether the proxy said
// Connection: close.
func (cl *client) get(path string) (string, bool) {
	cl.tb.Helper()
	fmt.Fprintf(cl.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(cl.r, nil)
	if err != nil {
		cl.tb.Fatalf("GET %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b), resp.Close
}

// begin sends half a request head (and waits for the proxy to read it);
// finish sends the rest and reads the response.
func (cl *client) begin() {
	io.WriteString(cl.c, "GET / HTTP/1.1\r\n")
	time.Sleep(50 * time.Millisecond)
}

func (cl *client) finish() (string, bool) {
	cl.tb.Helper()
	io.WriteString(cl.c, "Host: x\r\n\r\n")
	resp, err := http.ReadResponse(cl.r, nil)
	if err != nil {
		cl.tb.Fatalf("finishing a request: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b), resp.Close
}

// closed reports whether the proxy closed the connection within 5s.
func (cl *client) closed() bool {
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := cl.r.ReadByte()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func getOnce(tb testing.TB, addr, path string) string {
	tb.Helper()
	body, _ := dial(tb, addr).get(path)
	return body
}

func hostPtrs(c *upstream.Cluster) map[string]*upstream.Host {
	out := map[string]*upstream.Host{}
	for _, h := range c.Hosts() {
		out[h.Address] = h
	}
	return out
}

// TestApply checks Apply's diff rules, one reload each from the same start:
// listener web on a fixed address, cluster a with hosts A1 and A2.
func TestApply(t *testing.T) {
	a1, a2 := namedUpstream(t, "A1"), namedUpstream(t, "A2")
	c1, c2 := namedUpstream(t, "C1"), namedUpstream(t, "C2")
	type env struct {
		s         *Server
		base      reloadCfg
		web       *network.Listener
		webAddr   string
		cluster   *upstream.Cluster
		hosts     map[string]*upstream.Host
		keepalive *client // one request served before the reload
		begun     *client // a request head half sent before the reload
		fresh     *client // connected before the reload, nothing sent
	}
	cases := []struct {
		name    string
		change  func(rc *reloadCfg)
		wantErr string
		check   func(t *testing.T, e *env)
	}{
		{"unchanged", func(*reloadCfg) {}, "", func(t *testing.T, e *env) {
			if e.s.Listeners()[0] != e.web || e.s.Clusters().Get("a") != e.cluster {
				t.Fatal("listener or cluster replaced")
			}
			if body, closing := e.keepalive.get("/"); !strings.HasPrefix(body, "A") || closing {
				t.Fatalf("kept connection: %q close=%v", body, closing)
			}
		}},
		{"route change", func(rc *reloadCfg) { rc.NewRoute = true; rc.HostsA = []string{a1} }, "", func(t *testing.T, e *env) {
			// cluster b's host is A1: /new now answers from cluster b on the
			// same connection, which is not drained.
			if e.s.Listeners()[0] != e.web {
				t.Fatal("listener replaced for a route change")
			}
			if body, closing := e.keepalive.get("/new"); body != "A1" || closing {
				t.Fatalf("next request on the kept connection: %q close=%v", body, closing)
			}
			if e.s.Clusters().Get("b").Hosts()[0].Address != a1 {
				t.Fatal("route to b")
			}
		}},
		{"host added", func(rc *reloadCfg) { rc.HostsA = []string{a1, a2, c1} }, "", func(t *testing.T, e *env) {
			got := hostPtrs(e.cluster)
			if e.s.Clusters().Get("a") != e.cluster || got[a1] != e.hosts[a1] || got[a2] != e.hosts[a2] || got[c1] == nil {
				t.Fatalf("hosts %v", got)
			}
		}},
		{"host removed", func(rc *reloadCfg) { rc.HostsA = []string{a2} }, "", func(t *testing.T, e *env) {
			got := hostPtrs(e.cluster)
			if len(got) != 1 || got[a2] != e.hosts[a2] {
				t.Fatalf("hosts %v", got)
			}
			for range 4 {
				if body, _ := e.keepalive.get("/"); body != "A2" {
					t.Fatalf("got %q from a removed host", body)
				}
			}
		}},
		{"all hosts changed", func(rc *reloadCfg) { rc.HostsA = []string{c1, c2} }, "", func(t *testing.T, e *env) {
			for range 4 {
				if body, _ := e.keepalive.get("/"); !strings.HasPrefix(body, "C") {
					t.Fatalf("got %q after all hosts changed", body)
				}
			}
			if e.s.Clusters().Get("a") != e.cluster {
				t.Fatal("cluster replaced for a host change")
			}
		}},
		{"lb change", func(rc *reloadCfg) { rc.LB = "random" }, "", func(t *testing.T, e *env) {
			if e.s.Clusters().Get("a") != e.cluster || !strings.HasPrefix(e.cluster.LBInfo(), "random") {
				t.Fatalf("lb %q", e.cluster.LBInfo())
			}
			if got := hostPtrs(e.cluster); got[a1] != e.hosts[a1] {
				t.Fatal("hosts replaced for an lb change")
			}
		}},
		{"cluster rebuilt", func(rc *reloadCfg) { rc.Timeout = "2s" }, "", func(t *testing.T, e *env) {
			if e.s.Clusters().Get("a") == e.cluster {
				t.Fatal("cluster kept though connect_timeout changed")
			}
			if body, _ := e.keepalive.get("/"); !strings.HasPrefix(body, "A") {
				t.Fatalf("got %q", body)
			}
		}},
		{"listener changed, same address", func(rc *reloadCfg) { rc.Extra = "{response_headers_to_add: [{name: x-gen, value: two}]}" }, "", func(t *testing.T, e *env) {
			if e.s.Listeners()[0] != e.web {
				t.Fatal("socket not kept")
			}
			// The earlier connections drain: an idle one is closed, one with
			// a request begun finishes it on the old chain, told to close.
			if !e.keepalive.closed() {
				t.Fatal("idle old connection not closed")
			}
			if body, closing := e.begun.finish(); !strings.HasPrefix(body, "A") || !closing {
				t.Fatalf("old connection with a request begun: %q close=%v", body, closing)
			}
			// One that had sent nothing yet is served its first request.
			if body, closing := e.fresh.get("/"); !strings.HasPrefix(body, "A") || !closing {
				t.Fatalf("old connection, first request after the reload: %q close=%v", body, closing)
			}
			c := dial(t, e.webAddr)
			fmt.Fprintf(c.c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(c.r, nil)
			if err != nil || resp.Header.Get("x-gen") != "two" {
				t.Fatalf("new connection: %v %v", err, resp)
			}
		}},
		{"listener and routes changed", func(rc *reloadCfg) {
			rc.Extra, rc.NewRoute, rc.HostB = "{response_headers_to_add: [{name: x-gen, value: two}]}", true, c1
		}, "", func(t *testing.T, e *env) {
			// The old connections' last requests route with the new table.
			if body, closing := e.fresh.get("/new"); body != "C1" || !closing {
				t.Fatalf("old connection: %q close=%v", body, closing)
			}
		}},
		{"listener address changed", func(rc *reloadCfg) { rc.Addr = "127.0.0.1:0" }, "", func(t *testing.T, e *env) {
			nl := e.s.Listeners()[0]
			if nl == e.web || nl.Addr().String() == e.webAddr {
				t.Fatal("not rebound")
			}
			if body := getOnce(t, nl.Addr().String(), "/"); !strings.HasPrefix(body, "A") {
				t.Fatalf("new address: %q", body)
			}
			if body, closing := e.begun.finish(); !strings.HasPrefix(body, "A") || !closing {
				t.Fatalf("old connection with a request begun: %q close=%v", body, closing)
			}
			if _, err := net.DialTimeout("tcp", e.webAddr, time.Second); err == nil {
				t.Fatal("old address still accepts")
			}
		}},
		{"listener added and removed", func(rc *reloadCfg) { rc.Second = "127.0.0.1:0" }, "", func(t *testing.T, e *env) {
			ls := e.s.Listeners()
			if len(ls) != 2 || ls[0] != e.web {
				t.Fatalf("listeners %v", ls)
			}
			other := ls[1].Addr().String()
			if body := getOnce(t, other, "/"); !strings.HasPrefix(body, "A") {
				t.Fatalf("added listener: %q", body)
			}
			if err := e.s.Apply(e.base.parse(t)); err != nil { // and away again
				t.Fatal(err)
			}
			if _, err := net.DialTimeout("tcp", other, time.Second); err == nil {
				t.Fatal("removed listener still accepts")
			}
		}},
		{"bad bind changes nothing", func(rc *reloadCfg) { rc.Second = "192.0.2.1:1"; rc.HostsA = []string{c1}; rc.NewRoute = true },
			"server: listener \"other\"", nil},
		{"needs a restart", func(rc *reloadCfg) { rc.HostsA = []string{c1}; rc.DrainAfter = "3s"; rc.Workers = 3 }, "workers changed: needs a restart", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := reloadCfg{Addr: freeAddr(t), HostsA: []string{a1, a2}}
			s := startServer(t, base.parse(t))
			e := &env{s: s, base: base, web: s.Listeners()[0], webAddr: s.Listeners()[0].Addr().String(), cluster: s.Clusters().Get("a")}
			e.hosts = hostPtrs(e.cluster)
			e.keepalive = dial(t, e.webAddr)
			if body, _ := e.keepalive.get("/"); !strings.HasPrefix(body, "A") {
				t.Fatalf("before: %q", body)
			}
			e.fresh = dial(t, e.webAddr)
			e.begun = dial(t, e.webAddr)
			e.begun.begin() // (and lets the proxy accept both)
			next := base
			tc.change(&next)
			cfg := next.parse(t)
			before := s.Config()
			err := s.Apply(cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "server:") {
					t.Fatalf("Apply: %v, want %q", err, tc.wantErr)
				}
				if s.Config() != before || s.Listeners()[0] != e.web || len(s.Listeners()) != 1 || s.Clusters().Get("a") != e.cluster {
					t.Fatal("a refused config changed the server")
				}
				if got := hostPtrs(e.cluster); len(got) != 2 || got[a1] != e.hosts[a1] {
					t.Fatalf("hosts changed: %v", got)
				}
				if body, closing := e.keepalive.get("/new"); !strings.HasPrefix(body, "A") || closing {
					t.Fatalf("after refusal: %q close=%v", body, closing)
				}
				if st := s.ReloadStats(); st.Failures.Load() != 1 || st.Successes.Load() != 0 {
					t.Fatalf("counters %d %d", st.Failures.Load(), st.Successes.Load())
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if s.Config() != cfg || s.ReloadStats().Successes.Load() != 1 {
				t.Fatal("config in force or counters not updated")
			}
			tc.check(t, e)
		})
	}
}

// TestApplyDrainTimeout: a connection of a changed listener that never
// finishes is closed after drain_timeout.
func TestApplyDrainTimeout(t *testing.T) {
	a1 := namedUpstream(t, "A1")
	base := reloadCfg{Addr: freeAddr(t), HostsA: []string{a1}, DrainAfter: "300ms"}
	s := startServer(t, base.parse(t))
	// An idle HTTP/1 connection is closed by the drain at once; one with a
	// request half sent waits for it, until the drain timeout.
	c := dial(t, s.Listeners()[0].Addr().String())
	c.begin()
	next := base
	next.Extra = "{idle_timeout: 61s}"
	start := time.Now()
	if err := s.Apply(next.parse(t)); err != nil {
		t.Fatal(err)
	}
	if !c.closed() {
		t.Fatal("not closed after drain_timeout")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the drain timeout", d)
	}
}
