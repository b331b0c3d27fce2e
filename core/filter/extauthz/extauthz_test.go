package extauthz

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/filter/filtertest"
	"github.com/proxylab/proxylab/core/protocol"
)

// authServer is a real Authorization service: the x-verdict header of the
// checked request decides.
type authServer struct {
	authv3.UnimplementedAuthorizationServer
	delay time.Duration
	got   chan *authv3.CheckRequest
}

func hv(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
}

func (a *authServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if a.got != nil {
		a.got <- req
	}
	if a.delay > 0 {
		time.Sleep(a.delay)
	}
	h := req.GetAttributes().GetRequest().GetHttp()
	switch h.GetHeaders()["x-verdict"] {
	case "allow":
		return &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{hv("x-user", "alice")},
			HeadersToRemove:      []string{"authorization"},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{hv("x-authz", "ok")},
		}}}, nil
	case "smuggle":
		return &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{hv("x-a", "1\r\nx-b: 2")},
		}}}, nil
	case "teapot":
		return &authv3.CheckResponse{Status: &status.Status{Code: 7}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: 418}, Headers: []*corev3.HeaderValueOption{hv("x-why", "tea")}, Body: "no coffee",
		}}}, nil
	}
	return &authv3.CheckResponse{Status: &status.Status{Code: 7}}, nil
}

func startGRPC(t *testing.T, a *authServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, a)
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

// drive runs one request through the filter: DecodeHeaders (and body),
// then the posted answer, as the session would.
func drive(t *testing.T, f *Factory, hdrs []string, body string) (*filtertest.Stream, *protocol.Head) {
	t.Helper()
	s := filtertest.NewStream()
	s.I.Remote, s.I.Local = &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1234}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}
	h := &protocol.Head{Method: []byte("POST"), Target: []byte("/p?q=1"), Minor: 1, Major: 1}
	h.Headers.Add("Host", []byte("example.com"))
	for i := 0; i+1 < len(hdrs); i += 2 {
		h.Headers.Add(hdrs[i], []byte(hdrs[i+1]))
	}
	s.Held = h
	fl := f.NewFilter(s).(*stream)
	st := fl.DecodeHeaders(h, body == "")
	if body != "" {
		if st != filter.StopAndBuffer {
			t.Fatalf("headers with a body to send: %v", st)
		}
		st = fl.DecodeData(&filter.Body{Bytes: []byte(body)}, true)
	}
	if s.Reply != nil {
		return s, h
	}
	if st != filter.Stop {
		t.Fatalf("status %v, want Stop", st)
	}
	select {
	case fn := <-s.Posted:
		fn()
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer posted (req %+v)", fl.req)
	}
	resp := &protocol.Head{Status: 200}
	fl.EncodeHeaders(resp, true)
	fl.OnDestroy()
	return s, resp
}

func TestGRPCCheck(t *testing.T) {
	a := &authServer{got: make(chan *authv3.CheckRequest, 8)}
	addr := startGRPC(t, a)
	f := factory(t, "grpc_service: {google_grpc: {target_uri: "+addr+"}, timeout: 5s}")
	cases := []struct {
		verdict  string
		status   int // 0: continued
		upstream string
		client   string
		errCount uint64
	}{
		{"allow", 0, "alice", "ok", 0},
		{"teapot", 418, "", "", 0},
		{"nope", 403, "", "", 0},
		{"smuggle", 403, "", "", 1},
	}
	for _, tc := range cases {
		s, resp := drive(t, f, []string{"x-verdict", tc.verdict, "Authorization", "secret"}, "")
		req := <-a.got
		hm := req.GetAttributes().GetRequest().GetHttp()
		if hm.GetHost() != "example.com" || hm.GetMethod() != "POST" || hm.GetPath() != "/p?q=1" || hm.GetHeaders()["authorization"] != "secret" ||
			req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress() != "10.0.0.1" {
			t.Fatalf("%s: check request %v", tc.verdict, hm)
		}
		if tc.status == 0 {
			if s.ContinuedDec != 1 || s.Reply != nil {
				t.Fatalf("%s: not continued: %+v", tc.verdict, s.Reply)
			}
			if string(s.Held.Headers.Get("x-user")) != tc.upstream || s.Held.Headers.Has("authorization") {
				t.Fatalf("%s: upstream head %+v", tc.verdict, s.Held.Headers)
			}
			if string(resp.Headers.Get("x-authz")) != tc.client {
				t.Fatalf("%s: response headers %+v", tc.verdict, resp.Headers)
			}
			continue
		}
		if s.Reply == nil || s.Reply.Status != tc.status || s.ContinuedDec != 0 {
			t.Fatalf("%s: reply %+v", tc.verdict, s.Reply)
		}
		if tc.verdict == "teapot" && (s.Reply.Body != "no coffee" || string(s.Reply.Headers.Get("x-why")) != "tea") {
			t.Fatalf("denied response not relayed: %+v", s.Reply)
		}
	}
	if f.Stats.OK.Value() != 1 || f.Stats.Denied.Value() != 2 || f.Stats.Error.Value() != 1 {
		t.Fatalf("counters ok %d denied %d error %d", f.Stats.OK.Value(), f.Stats.Denied.Value(), f.Stats.Error.Value())
	}
}

func TestFailureModes(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	slow := startGRPC(t, &authServer{delay: 2 * time.Second})
	cases := []struct {
		name, cfg string
		status    int
	}{
		{"grpc down closed", "grpc_service: {google_grpc: {target_uri: " + dead + "}, timeout: 1s}", 403},
		{"grpc down status_on_error", "grpc_service: {google_grpc: {target_uri: " + dead + "}, timeout: 1s}\nstatus_on_error: {code: 503}", 503},
		{"grpc down open", "grpc_service: {google_grpc: {target_uri: " + dead + "}, timeout: 1s}\nfailure_mode_allow: true", 0},
		{"grpc timeout", "grpc_service: {google_grpc: {target_uri: " + slow + "}, timeout: 50ms}", 403},
		{"http down", "http_service: {server_uri: {uri: http://" + dead + ", timeout: 1s}}", 403},
		{"http down open", "http_service: {server_uri: {uri: http://" + dead + ", timeout: 1s}}\nfailure_mode_allow: true", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := factory(t, tc.cfg)
			s, _ := drive(t, f, []string{"x-verdict", "allow"}, "")
			if f.Stats.Error.Value() != 1 {
				t.Fatal("error not counted")
			}
			if tc.status == 0 {
				if s.ContinuedDec != 1 || f.Stats.FailureModeAllowed.Value() != 1 {
					t.Fatal("not allowed by failure mode")
				}
				return
			}
			if s.Reply == nil || s.Reply.Status != tc.status {
				t.Fatalf("reply %+v", s.Reply)
			}
		})
	}
}

func TestHTTPCheck(t *testing.T) {
	got := make(chan *http.Request, 4)
	bodies := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- string(b)
		if r.Header.Get("x-verdict") == "allow" {
			w.Header().Set("x-user", "bob")
			w.Header().Set("x-not-allowed", "1")
			w.Header().Set("x-envoy-auth-headers-to-remove", "authorization")
			return
		}
		w.Header().Set("WWW-Authenticate", "Basic")
		w.WriteHeader(401)
		io.WriteString(w, "who are you")
	}))
	defer srv.Close()
	f := factory(t, `
http_service:
  server_uri: {uri: `+srv.URL+`, timeout: 5s}
  path_prefix: /auth
  authorization_request: {allowed_headers: {patterns: [{exact: x-verdict}]}}
  authorization_response: {allowed_upstream_headers: {patterns: [{prefix: x-user}]}}
with_request_body: {max_request_bytes: 4, allow_partial_message: true}
`)
	s, _ := drive(t, f, []string{"x-verdict", "allow", "authorization", "t", "x-other", "no"}, "abcdefgh")
	r := <-got
	if r.URL.Path != "/auth/p" || r.URL.RawQuery != "q=1" || r.Host != "example.com" || r.Header.Get("authorization") != "t" || r.Header.Get("x-other") != "" || r.Method != "POST" {
		t.Fatalf("check request %s %s %v", r.Method, r.URL, r.Header)
	}
	if b := <-bodies; b != "abcd" {
		t.Fatalf("partial body %q", b)
	}
	if s.ContinuedDec != 1 || string(s.Held.Headers.Get("x-user")) != "bob" || s.Held.Headers.Has("x-not-allowed") || s.Held.Headers.Has("authorization") {
		t.Fatalf("upstream %+v", s.Held.Headers)
	}
	s, _ = drive(t, f, []string{"x-verdict", "deny"}, "ab")
	<-got
	<-bodies
	if s.Reply == nil || s.Reply.Status != 401 || s.Reply.Body != "who are you" || string(s.Reply.Headers.Get("www-authenticate")) != "Basic" {
		t.Fatalf("denied %+v", s.Reply)
	}
	// Without allow_partial_message a long body is refused before any check.
	f = factory(t, "http_service: {server_uri: {uri: "+srv.URL+"}}\nwith_request_body: {max_request_bytes: 4}")
	s, _ = drive(t, f, []string{"x-verdict", "allow"}, "abcdefgh")
	if s.Reply == nil || s.Reply.Status != 413 {
		t.Fatalf("long body: %+v", s.Reply)
	}
}

func TestPerRouteDisabled(t *testing.T) {
	f := factory(t, "grpc_service: {google_grpc: {target_uri: 127.0.0.1:1}}")
	pr, errs := decodePerRoute(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "disabled"}, {Kind: yaml.ScalarNode, Value: "true"}}}, "r")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s := filtertest.NewStream()
	s.I.PerRoute = pr
	if f.NewFilter(s).(*stream).DecodeHeaders(&protocol.Head{Method: []byte("GET")}, true) != filter.Continue {
		t.Fatal("disabled route must pass")
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{`{}`, "f: exactly one of grpc_service, http_service"},
		{`grpc_service: {envoy_grpc: {cluster_name: authz}}`, "f.grpc_service.envoy_grpc: not supported"},
		{`grpc_service: {}`, "f.grpc_service.google_grpc.target_uri: required"},
		{`http_service: {server_uri: {uri: "ftp://x"}}`, "f.http_service.server_uri.uri: must be an http"},
		{`http_service: {server_uri: {uri: "http://x"}, authorization_request: {allowed_headers: {patterns: [{}]}}}`, "allowed_headers.patterns[0]: exactly one"},
		{`grpc_service: {google_grpc: {target_uri: a:1}}` + "\nwith_request_body: {}", "f.with_request_body.max_request_bytes: required"},
		{`grpc_service: {google_grpc: {target_uri: a:1}, timeout: soon}`, "f.grpc_service.timeout"},
	}
	for _, tc := range cases {
		var n yaml.Node
		_ = yaml.Unmarshal([]byte(tc.yaml), &n)
		_, errs := decode(&n, "f")
		var all []string
		for _, e := range errs {
			all = append(all, e.Error())
		}
		if !strings.Contains(strings.Join(all, "\n"), tc.want) {
			t.Errorf("%s: %q, want %q", tc.yaml, all, tc.want)
		}
	}
}
