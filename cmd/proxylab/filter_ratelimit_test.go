package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
)

// rlsServer is a real rate limit service: each distinct descriptor set
// (domain included) may pass budget times.
type rlsServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	budget   int
	gate     testGate     // holds calls while a test wants them pending
	delay    atomic.Int64 // ns
	calls    atomic.Int64
	inFlight atomic.Int64
	mu       sync.Mutex
	used     map[string]int
}

func (r *rlsServer) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	r.calls.Add(1)
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	r.gate.Wait()
	if d := time.Duration(r.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	var parts []string
	for _, d := range req.GetDescriptors() {
		for _, e := range d.GetEntries() {
			parts = append(parts, e.GetKey()+"="+e.GetValue())
		}
		parts = append(parts, ";")
	}
	key := req.GetDomain() + "|" + strings.Join(parts, ",")
	r.mu.Lock()
	r.used[key]++
	over := r.used[key] > r.budget
	r.mu.Unlock()
	if over {
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, nil
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

func startRLSServer(t *testing.T, budget int) (*rlsServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	r := &rlsServer{budget: budget, used: map[string]int{}}
	rlsv3.RegisterRateLimitServiceServer(s, r)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return r, ln.Addr().String()
}

func rlFilter(addr, extra string) string {
	return fmt.Sprintf(`- name: ratelimit
  typed_config:
    domain: edge
    rate_limit_service: {grpc_service: {google_grpc: {target_uri: %q}}}
    timeout: 10s
    rate_limits:
      - actions: [{generic_key: {descriptor_value: api}}, {request_headers: {header_name: x-user, descriptor_key: user}}]
%s`, addr, indent(extra, 4))
}

const rlRoutes = "- {prefix: /free/, cluster: up, typed_per_filter_config: {ratelimit: {disabled: true}}}\n- {prefix: /, cluster: up}"

// TestGlobalRateLimitFilter: with a real RLS, each user gets its budget
// then 429 with x-envoy-ratelimited, over HTTP/1.1 and HTTP/2 on every
// transport; requests without the descriptor's header are not checked;
// the counters.
func TestGlobalRateLimitFilter(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		r, addr := startRLSServer(t, 2)
		up := startH2CUpstream(t, http.HandlerFunc(protoEcho))
		p := startProxy(t, filterConfig(tr, rlFilter(addr, ""), rlRoutes, "http1", up.addr))
		base := "http://" + p.addr("http")
		for i, c := range []*http.Client{h1Client(), h2cClient()} {
			user := fmt.Sprint("u", i)
			for j := 1; j <= 3; j++ {
				resp, body := doGet(t, c, base+"/api", "x-user", user)
				if j <= 2 && resp.StatusCode != 200 {
					t.Fatalf("%s request %d: %d %q", user, j, resp.StatusCode, body)
				}
				if j == 3 && (resp.StatusCode != 429 || resp.Header.Get("x-envoy-ratelimited") != "true") {
					t.Fatalf("%s request 3: %d %v", user, resp.StatusCode, resp.Header)
				}
			}
			if resp, _ := doGet(t, c, base+"/api"); resp.StatusCode != 200 {
				t.Fatalf("without x-user: %d", resp.StatusCode)
			}
			if resp, _ := doGet(t, c, base+"/free/x", "x-user", user); resp.StatusCode != 200 {
				t.Fatalf("disabled route: %d", resp.StatusCode)
			}
		}
		if n := r.calls.Load(); n != 6 {
			t.Fatalf("%d RLS calls, want 6", n)
		}
		lbl := map[string]string{"name": "http"}
		if ok, over := adminMetric(t, p, "proxylab_ratelimit_ok_total", lbl), adminMetric(t, p, "proxylab_ratelimit_over_limit_total", lbl); ok != 4 || over != 2 {
			t.Fatalf("counters ok %v over %v", ok, over)
		}
	})
}

// TestGlobalRateLimitFilterFailureModes: the RLS unreachable lets requests
// through (counted), or answers 500 with failure_mode_deny.
func TestGlobalRateLimitFilterFailureModes(t *testing.T) {
	dead := closedPort(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(protoEcho))
		for _, tc := range []struct {
			extra, metric string
			want          int
		}{{"", "proxylab_ratelimit_failure_mode_allowed_total", 200}, {"failure_mode_deny: true", "proxylab_ratelimit_error_total", 500}} {
			p := startProxy(t, filterConfig(tr, rlFilter(dead, tc.extra), rlRoutes, "http1", up.addr))
			if resp, body := doGet(t, h1Client(), "http://"+p.addr("http")+"/api", "x-user", "u"); resp.StatusCode != tc.want {
				t.Fatalf("%q: %d %q, want %d", tc.extra, resp.StatusCode, body, tc.want)
			}
			if v := adminMetric(t, p, tc.metric, map[string]string{"name": "http"}); v != 1 {
				t.Fatalf("%q: %s = %v", tc.extra, tc.metric, v)
			}
		}
	})
}

// TestGlobalRateLimitFilterDoesNotBlockTheLoop: 200 requests wait on calls
// the RLS holds; another connection's requests keep their latency.
func TestGlobalRateLimitFilterDoesNotBlockTheLoop(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		r, addr := startRLSServer(t, 1<<30)
		r.gate.Hold()
		up := startH2CUpstream(t, http.HandlerFunc(protoEcho))
		p := startProxy(t, filterConfig(tr, rlFilter(addr, ""), strings.Replace(rlRoutes, "/free/", "/noauth/", 1), "http1", up.addr))
		base := "http://" + p.addr("http")
		probeLatencies(t, base, func(c *http.Client) (*http.Response, string) { return doGet(t, c, base+"/slow", "x-user", "u") }, r.inFlight.Load, r.gate.Release)
	})
}

// TestGlobalRateLimitFilterBolt: bolt requests limited per service (the
// request_headers action reads the frame's fields).
func TestGlobalRateLimitFilterBolt(t *testing.T) {
	codec := bolt.Codec{}
	forEachTransport(t, func(t *testing.T, tr string) {
		_, addr := startRLSServer(t, 2)
		a, b := startRPCServer(t, "A", codec), startRPCServer(t, "B", codec)
		cfg := strings.Replace(rpcConfig(tr, codec.Name(), a.addr, b.addr), "    http_proxy: {}\n", fmt.Sprintf(`    http_proxy:
      http_filters:
        - name: ratelimit
          typed_config:
            domain: rpc
            rate_limit_service: {grpc_service: {google_grpc: {target_uri: %q}}}
            timeout: 10s
            rate_limits: [{actions: [{request_headers: {header_name: ":path", descriptor_key: path}}]}]
`, addr), 1)
		p := startProxy(t, cfg)
		c, err := net.DialTimeout("tcp", p.addr("rpc"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		peer := newPeer(codec, c)
		for i := range 3 {
			if err := peer.write(rpcRequest(codec, uint64(20+i), "svc.A", "echo", map[string]string{"content": "hi"})); err != nil {
				t.Fatal(err)
			}
			f, err := peer.read()
			if err != nil || f.Kind != xprotocol.Response || f.ID != uint64(20+i) {
				t.Fatalf("request %d: %v %v id %d", i, err, f.Kind, f.ID)
			}
			if ok := f.Status == bolt.StatusSuccess; ok != (i < 2) {
				t.Fatalf("request %d: status %d (http %d)", i, f.Status, codec.HTTPStatus(&f))
			}
		}
		if n := a.requests.Load(); n != 2 {
			t.Fatalf("svc.A saw %d requests, want 2", n)
		}
	})
}

// TestGlobalRateLimitFilterGRPC: a limited gRPC call ends with UNAVAILABLE.
func TestGlobalRateLimitFilterGRPC(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		_, addr := startRLSServer(t, 1)
		_, svc := startGRPCServer(t)
		p := startProxy(t, filterConfig(tr, rlFilter(addr, ""), "- {prefix: /, cluster: up}", "http2", svc))
		c := grpcClient(t, p.addr("http"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "x-user", "g")
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			t.Fatalf("first call: %v", err)
		}
		_, err := c.EmptyCall(ctx, &testpb.Empty{})
		if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
			t.Fatalf("limited call: %v", err)
		}
	})
}
