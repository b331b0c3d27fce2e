package ratelimit

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/filter/filtertest"
	"github.com/proxylab/proxylab/core/protocol"
)

// rls is a real rate limit service: a fixed budget per descriptor string.
type rls struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu     sync.Mutex
	budget int
	used   map[string]int
	got    chan *rlsv3.RateLimitRequest
	delay  time.Duration
}

func (r *rls) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if r.got != nil {
		r.got <- req
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	code := rlsv3.RateLimitResponse_OK
	for _, d := range req.GetDescriptors() {
		var k []string
		for _, e := range d.GetEntries() {
			k = append(k, e.GetKey()+"="+e.GetValue())
		}
		key := req.GetDomain() + "|" + strings.Join(k, ",")
		r.used[key]++
		if r.used[key] > r.budget {
			code = rlsv3.RateLimitResponse_OVER_LIMIT
		}
	}
	return &rlsv3.RateLimitResponse{OverallCode: code,
		ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "X-RateLimit-Limit", Value: "2"}, {Key: "bad\r\nname", Value: "x"}},
		RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-rl-checked", Value: "1"}}}, nil
}

func startRLS(t *testing.T, r *rls) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(s, r)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

func factory(t *testing.T, cfg string) *Factory {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(cfg), &n); err != nil {
		t.Fatal(err)
	}
	f, errs := decode(&n, "f")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	t.Cleanup(func() { f.(*Factory).Close() })
	return f.(*Factory)
}

// drive runs one request; continued reports whether it went on.
func drive(t *testing.T, f *Factory, pr any, hdrs ...string) (s *filtertest.Stream, resp *protocol.Head, checked bool) {
	t.Helper()
	s = filtertest.NewStream()
	s.I.Remote, s.I.PerRoute = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 999}, pr
	h := &protocol.Head{Method: []byte("GET"), Target: []byte("/api/x")}
	for i := 0; i+1 < len(hdrs); i += 2 {
		h.Headers.Add(hdrs[i], []byte(hdrs[i+1]))
	}
	s.Held = h
	fl := f.NewFilter(s).(*stream)
	if st := fl.DecodeHeaders(h, true); st == filter.Stop && s.Reply == nil {
		checked = true
		select {
		case fn := <-s.Posted:
			fn()
		case <-time.After(10 * time.Second):
			t.Fatal("no answer posted")
		}
	}
	resp = &protocol.Head{Status: 200}
	fl.EncodeHeaders(resp, true)
	fl.OnDestroy()
	return s, resp, checked
}

func TestDescriptorsAndLimits(t *testing.T) {
	r := &rls{budget: 2, used: map[string]int{}, got: make(chan *rlsv3.RateLimitRequest, 64)}
	addr := startRLS(t, r)
	f := factory(t, `
domain: edge
rate_limit_service: {grpc_service: {google_grpc: {target_uri: `+addr+`}}}
timeout: 5s
rate_limits:
  - actions: [{generic_key: {descriptor_value: api}}, {request_headers: {header_name: x-user, descriptor_key: user}}]
  - actions: [{remote_address: {}}, {request_headers: {header_name: ":path", descriptor_key: path}}]
  - actions: [{header_value_match: {descriptor_value: beta, headers: [{name: x-beta, present_match: true}]}}]
  - actions: [{request_headers: {header_name: x-tier, descriptor_key: tier, skip_if_absent: true}}, {generic_key: {descriptor_value: all, descriptor_key: k}}]
`)
	for i := 1; i <= 3; i++ {
		s, resp, checked := drive(t, f, nil, "x-user", "alice")
		if !checked {
			t.Fatal("not checked")
		}
		req := <-r.got
		var got []string
		for _, d := range req.GetDescriptors() {
			var es []string
			for _, e := range d.GetEntries() {
				es = append(es, e.GetKey()+"="+e.GetValue())
			}
			got = append(got, strings.Join(es, ","))
		}
		want := "generic_key=api,user=alice|remote_address=192.0.2.7,path=/api/x|k=all"
		if strings.Join(got, "|") != want || req.GetDomain() != "edge" {
			t.Fatalf("descriptors %q, want %q", strings.Join(got, "|"), want)
		}
		if i <= 2 {
			if s.ContinuedDec != 1 || string(s.Held.Headers.Get("x-rl-checked")) != "1" || string(resp.Headers.Get("x-ratelimit-limit")) != "2" || resp.Headers.Has("bad\r\nname") {
				t.Fatalf("request %d: not passed as expected: %+v %+v", i, s.Held.Headers, resp.Headers)
			}
			continue
		}
		if s.Reply == nil || s.Reply.Status != 429 || string(s.Reply.Headers.Get("x-envoy-ratelimited")) != "true" || s.Reply.Flags != "RL" {
			t.Fatalf("request 3: %+v", s.Reply)
		}
	}
	if f.Stats.OK.Value() != 2 || f.Stats.OverLimit.Value() != 1 {
		t.Fatalf("counters ok %d over %d", f.Stats.OK.Value(), f.Stats.OverLimit.Value())
	}
	// x-beta present: the header_value_match descriptor joins.
	drive(t, f, nil, "x-beta", "1", "x-tier", "gold")
	req := <-r.got
	if n := len(req.GetDescriptors()); n != 3 {
		t.Fatalf("with x-beta, no x-user: %d descriptors: %v", n, req.GetDescriptors())
	}
	// A route replacing the rules with one that cannot be built: no call.
	pr, errs := decodePerRoute(node(t, `rate_limits: [{actions: [{request_headers: {header_name: x-none, descriptor_key: n}}]}]`), "r")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if s, _, checked := drive(t, f, pr); checked || s.Reply != nil {
		t.Fatal("no descriptor must mean no call")
	}
}

func node(t *testing.T, s string) *yaml.Node {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestFailureModes(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	slow := startRLS(t, &rls{budget: 100, used: map[string]int{}, delay: 2 * time.Second})
	base := "domain: d\nrate_limits: [{actions: [{generic_key: {descriptor_value: v}}]}]\n"
	cases := []struct {
		name, cfg string
		status    int
	}{
		{"down open", base + "rate_limit_service: {grpc_service: {google_grpc: {target_uri: " + dead + "}}}\ntimeout: 1s", 0},
		{"down closed", base + "rate_limit_service: {grpc_service: {google_grpc: {target_uri: " + dead + "}}}\ntimeout: 1s\nfailure_mode_deny: true", 500},
		{"timeout open", base + "rate_limit_service: {grpc_service: {google_grpc: {target_uri: " + slow + "}}}\ntimeout: 50ms", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := factory(t, tc.cfg)
			s, _, _ := drive(t, f, nil)
			if f.Stats.Error.Value() != 1 {
				t.Fatal("error not counted")
			}
			if tc.status == 0 {
				if s.ContinuedDec != 1 || f.Stats.FailureModeAllowed.Value() != 1 {
					t.Fatalf("not allowed: %+v", s.Reply)
				}
				return
			}
			if s.Reply == nil || s.Reply.Status != tc.status {
				t.Fatalf("reply %+v", s.Reply)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	svc := "rate_limit_service: {grpc_service: {google_grpc: {target_uri: a:1}}}\n"
	cases := []struct{ yaml, want string }{
		{svc, "f.domain: required"},
		{"domain: d", "f.rate_limit_service: required"},
		{"domain: d\nrate_limit_service: {grpc_service: {envoy_grpc: {cluster_name: rl}}}", "envoy_grpc: not supported"},
		{"domain: d\n" + svc + "rate_limits: [{actions: []}]", "f.rate_limits[0].actions: at least one"},
		{"domain: d\n" + svc + "rate_limits: [{actions: [{}]}]", "f.rate_limits[0].actions[0]: exactly one"},
		{"domain: d\n" + svc + "rate_limits: [{actions: [{request_headers: {header_name: x}}]}]", "header_name and descriptor_key are required"},
		{"domain: d\n" + svc + "rate_limits: [{actions: [{header_value_match: {descriptor_value: v, headers: [{name: x}]}}]}]", "headers[0]: exactly one"},
		{"domain: d\n" + svc + "rate_limited_status: {code: 200}", "rate_limited_status.code: must be 400-599"},
	}
	for _, tc := range cases {
		_, errs := decode(node(t, tc.yaml), "f")
		var all []string
		for _, e := range errs {
			all = append(all, e.Error())
		}
		if !strings.Contains(strings.Join(all, "\n"), tc.want) {
			t.Errorf("%s: %q, want %q", tc.yaml, all, tc.want)
		}
	}
}
