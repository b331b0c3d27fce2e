package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// authzServer is a real envoy.service.auth.v3 Authorization server: the
// checked request's x-verdict header decides; each check waits delay.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	gate     testGate     // holds checks while a test wants them pending
	delay    atomic.Int64 // ns
	checks   atomic.Int64
	inFlight atomic.Int64
}

func (a *authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.checks.Add(1)
	a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	a.gate.Wait()
	if d := time.Duration(a.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	hv := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	}
	verdict := req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-verdict"]
	if verdict == "body" && req.GetAttributes().GetRequest().GetHttp().GetBody() == "let me in" {
		verdict = "allow"
	}
	switch verdict {
	case "allow":
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{hv("x-authz", "checked")},
			Headers:              []*corev3.HeaderValueOption{hv("x-authz-user", "alice")}, // to the upstream
		}}}, nil
	case "teapot":
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: 418}, Headers: []*corev3.HeaderValueOption{hv("x-why", "tea")}, Body: "no coffee"}}}, nil
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
}

func startAuthz(t *testing.T) (*authzServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	a := &authzServer{}
	authv3.RegisterAuthorizationServer(s, a)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return a, ln.Addr().String()
}

const authzRoutes = "- {prefix: /noauth/, cluster: up, typed_per_filter_config: {ext_authz: {disabled: true}}}\n- {prefix: /, cluster: up}"

func authzFilter(service, extra string) string {
	return "- name: ext_authz\n  typed_config:\n" + indent(service+"\n"+extra, 4)
}

// doGet sends GET path with headers over c; status, a header, body.
func doGet(t *testing.T, c *http.Client, url string, hdrs ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Header.Set(hdrs[i], hdrs[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestExtAuthzFilterGRPC: checks with a real gRPC Authorization server over
// HTTP/1.1 and HTTP/2 on every transport: allowed (its response headers
// added), denied with its status, headers and body relayed, default 403,
// a route with the filter disabled, the counters.
func TestExtAuthzFilterGRPC(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		a, addr := startAuthz(t)
		up := startH2CUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Seen-User", r.Header.Get("X-Authz-User")) // what the authorization server added
			protoEcho(w, r)
		}))
		p := startProxy(t, filterConfig(tr, authzFilter("grpc_service: {google_grpc: {target_uri: "+addr+"}, timeout: 5s}", ""), authzRoutes, "http1", up.addr))
		base := "http://" + p.addr("http")
		for _, c := range []*http.Client{h1Client(), h2cClient()} {
			resp, body := doGet(t, c, base+"/a", "x-verdict", "allow")
			if resp.StatusCode != 200 || resp.Header.Get("x-authz") != "checked" || resp.Header.Get("X-Seen-User") != "alice" || !strings.HasPrefix(body, "GET /a") {
				t.Fatalf("allowed: %d %v %q", resp.StatusCode, resp.Header, body)
			}
			resp, body = doGet(t, c, base+"/a", "x-verdict", "teapot")
			if resp.StatusCode != 418 || resp.Header.Get("x-why") != "tea" || body != "no coffee" {
				t.Fatalf("denied: %d %v %q", resp.StatusCode, resp.Header, body)
			}
			if resp, _ = doGet(t, c, base+"/a"); resp.StatusCode != 403 {
				t.Fatalf("default denial: %d", resp.StatusCode)
			}
			if resp, _ = doGet(t, c, base+"/noauth/x"); resp.StatusCode != 200 {
				t.Fatalf("disabled route: %d", resp.StatusCode)
			}
		}
		if n := a.checks.Load(); n != 6 {
			t.Fatalf("%d checks, want 6", n)
		}
		// with_request_body: the body goes with the check (the chain buffers it).
		pb := startProxy(t, filterConfig(tr, authzFilter("grpc_service: {google_grpc: {target_uri: "+addr+"}, timeout: 5s}", "with_request_body: {max_request_bytes: 64}"), authzRoutes, "http1", up.addr))
		for _, c := range []*http.Client{h1Client(), h2cClient()} {
			for body, want := range map[string]int{"let me in": 200, "let me in!": 403} {
				req, _ := http.NewRequest("POST", "http://"+pb.addr("http")+"/b", strings.NewReader(body))
				req.Header.Set("x-verdict", "body")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want || (want == 200 && string(got) != fmt.Sprintf("POST /b %d", len(body))) {
					t.Fatalf("body %q: %d %q, want %d", body, resp.StatusCode, got, want)
				}
			}
		}
		lbl := map[string]string{"side": "listener", "name": "http"}
		if ok, den := adminMetric(t, p, "proxylab_ext_authz_ok_total", lbl), adminMetric(t, p, "proxylab_ext_authz_denied_total", lbl); ok != 2 || den != 4 {
			t.Fatalf("counters ok %v denied %v", ok, den)
		}
	})
}

// TestExtAuthzFilterGRPCRequests: a gRPC call denied by the server ends
// with PERMISSION_DENIED.
func TestExtAuthzFilterGRPCRequests(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		_, addr := startAuthz(t)
		_, svc := startGRPCServer(t)
		p := startProxy(t, filterConfig(tr, authzFilter("grpc_service: {google_grpc: {target_uri: "+addr+"}, timeout: 5s}", ""), "- {prefix: /, cluster: up}", "http2", svc))
		c := grpcClient(t, p.addr("http"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.EmptyCall(metadata.AppendToOutgoingContext(ctx, "x-verdict", "allow"), &testpb.Empty{}); err != nil {
			t.Fatalf("allowed call: %v", err)
		}
		_, err := c.EmptyCall(ctx, &testpb.Empty{})
		if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied {
			t.Fatalf("denied call: %v", err)
		}
	})
}

// TestExtAuthzFilterHTTP: the HTTP variant against a real HTTP server.
func TestExtAuthzFilterHTTP(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		authz := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("x-verdict") == "allow" && r.URL.Path == "/check/a" {
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="x"`)
			w.WriteHeader(401)
			io.WriteString(w, "token please")
		}))
		up := startH2CUpstream(t, http.HandlerFunc(protoEcho))
		cfg := fmt.Sprintf("http_service:\n  server_uri: {uri: http://%s, timeout: 5s}\n  path_prefix: /check\n  authorization_request: {allowed_headers: {patterns: [{exact: x-verdict}]}}", authz.addr)
		p := startProxy(t, filterConfig(tr, authzFilter(cfg, ""), authzRoutes, "http1", up.addr))
		base := "http://" + p.addr("http")
		for _, c := range []*http.Client{h1Client(), h2cClient()} {
			if resp, body := doGet(t, c, base+"/a", "x-verdict", "allow"); resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /a") {
				t.Fatalf("allowed: %d %q", resp.StatusCode, body)
			}
			resp, body := doGet(t, c, base+"/a")
			if resp.StatusCode != 401 || body != "token please" || resp.Header.Get("WWW-Authenticate") != `Bearer realm="x"` {
				t.Fatalf("denied: %d %v %q", resp.StatusCode, resp.Header, body)
			}
		}
	})
}

// TestExtAuthzFilterFailureModes: the server unreachable gives 403, the
// configured status_on_error, or passes with failure_mode_allow.
func TestExtAuthzFilterFailureModes(t *testing.T) {
	dead := closedPort(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(protoEcho))
		svc := "grpc_service: {google_grpc: {target_uri: " + dead + "}, timeout: 2s}"
		for _, tc := range []struct {
			extra string
			want  int
		}{{"", 403}, {"status_on_error: {code: 503}", 503}, {"failure_mode_allow: true", 200}} {
			p := startProxy(t, filterConfig(tr, authzFilter(svc, tc.extra), authzRoutes, "http1", up.addr))
			if resp, body := doGet(t, h1Client(), "http://"+p.addr("http")+"/a"); resp.StatusCode != tc.want {
				t.Fatalf("%q: %d %q, want %d", tc.extra, resp.StatusCode, body, tc.want)
			}
			if v := adminMetric(t, p, "proxylab_ext_authz_error_total", map[string]string{"name": "http"}); v != 1 {
				t.Fatalf("%q: errors %v", tc.extra, v)
			}
		}
	})
}

// TestExtAuthzFilterDoesNotBlockTheLoop: 200 requests wait on checks the
// server holds; meanwhile another connection's requests on a route without
// the filter keep their latency.
func TestExtAuthzFilterDoesNotBlockTheLoop(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		a, addr := startAuthz(t)
		a.gate.Hold()
		up := startH2CUpstream(t, http.HandlerFunc(protoEcho))
		p := startProxy(t, filterConfig(tr, authzFilter("grpc_service: {google_grpc: {target_uri: "+addr+"}, timeout: 20s}", ""), authzRoutes, "http1", up.addr))
		base := "http://" + p.addr("http")
		probeLatencies(t, base, func(c *http.Client) (*http.Response, string) { return doGet(t, c, base+"/slow", "x-verdict", "allow") }, a.inFlight.Load, a.gate.Release)
	})
}

// testGate holds the calls of a test server until released; the zero
// value lets them through.
type testGate struct {
	mu sync.Mutex
	ch chan struct{}
}

func (g *testGate) Hold() { g.mu.Lock(); g.ch = make(chan struct{}); g.mu.Unlock() }

func (g *testGate) Release() {
	g.mu.Lock()
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
	g.mu.Unlock()
}

func (g *testGate) Wait() {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// probeLatencies runs 200 concurrent slow requests (slow) whose calls the
// server holds and, once at least half of them wait there (pending), times
// 50 requests on an unfiltered route over its own connection: p95 under
// 100ms. Then it releases the held calls (release) and checks the slow
// requests all succeed.
func probeLatencies(t *testing.T, base string, slow func(*http.Client) (*http.Response, string), pending func() int64, release func()) {
	t.Helper()
	defer release() // a failing probe must not leave the server's calls held
	const n = 200
	slowClient := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, _ := slow(slowClient); resp.StatusCode != 200 {
				bad.Add(1)
			}
		}()
	}
	probe := h1Client()
	doGet(t, probe, base+"/noauth/warm")
	deadline := time.Now().Add(30 * time.Second)
	for pending() < n/2 {
		if time.Now().After(deadline) {
			release()
			t.Fatalf("only %d calls reached the server", pending())
		}
		time.Sleep(time.Millisecond)
	}
	lat := make([]time.Duration, 0, 50)
	for range 50 {
		start := time.Now()
		if resp, _ := doGet(t, probe, base+"/noauth/probe"); resp.StatusCode != 200 {
			t.Fatalf("probe: %d", resp.StatusCode)
		}
		lat = append(lat, time.Since(start))
	}
	if pending() < n/2 {
		t.Fatalf("the held calls were answered during the probes (%d pending)", pending())
	}
	release()
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d slow requests failed", bad.Load())
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	// p95 of 50: two probes may meet a stall of the shared machine; a
	// blocked loop would hold every probe until the release.
	p95 := lat[len(lat)*95/100]
	t.Logf("%d probes while %d+ calls were held: p50 %v p95 %v max %v", len(lat), n/2, lat[len(lat)/2], p95, lat[len(lat)-1])
	if p95 > 100*time.Millisecond {
		t.Fatalf("p95 %v while checks were pending: the loop was blocked", p95)
	}
}
