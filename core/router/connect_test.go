package router

import (
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

func TestConnectAllowList(t *testing.T) {
	var c Connect
	for _, s := range []string{"127.0.0.1:*", "*.example.com:443", "db.internal:5432", "[::1]:22"} {
		p, ok := ParseAuthorityPattern(s)
		if !ok {
			t.Fatalf("pattern %q refused", s)
		}
		c.Allow = append(c.Allow, p)
	}
	for _, tc := range []struct {
		host, port string
		want       bool
	}{
		{"127.0.0.1", "1", true}, {"127.0.0.1", "65535", true}, {"127.0.0.2", "1", false},
		{"a.example.com", "443", true}, {"a.b.example.com", "443", true}, {"example.com", "443", false},
		{"a.example.com", "80", false}, {"evilexample.com", "443", false},
		{"db.internal", "5432", true}, {"db.internal", "5433", false},
		{"::1", "22", true}, {"::1", "23", false},
	} {
		if got := c.Allows(tc.host, tc.port); got != tc.want {
			t.Errorf("Allows(%s, %s) = %v", tc.host, tc.port, got)
		}
	}
	for _, bad := range []string{"", "host", "host:", ":80", "h:0", "h:65536", "h:x", "h:+1", "h:080a"} {
		if _, ok := ParseAuthorityPattern(bad); ok {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestConnectRoutesMatchOnlyConnect(t *testing.T) {
	r := New([]VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []Route{
		{Tunnel: Tunnel{ConnectMatcher: true}, Headers: []HeaderMatcher{{Name: "x-mode", Value: &StringMatcher{Exact: "a"}}}, Cluster: "a"},
		{Tunnel: Tunnel{ConnectMatcher: true}, Cluster: "connect"},
		{Prefix: "/", Cluster: "web"},
	}}})
	for _, tc := range []struct {
		method, target, mode, want string
	}{
		{"CONNECT", "h:443", "", "connect"},
		{"CONNECT", "h:443", "a", "a"},
		{"GET", "/", "", "web"},
		{"GET", "/", "a", "web"},
		{"CONNECT", "/", "", "connect"},
	} {
		req := &Request{Method: []byte(tc.method), Target: []byte(tc.target), Headers: nil}
		if tc.mode != "" {
			req.Headers = &protocol.Headers{}
			req.Headers.Add("x-mode", []byte(tc.mode))
		}
		got := ""
		if rt := r.Route([]byte("h"), req); rt != nil {
			got = rt.Cluster
		}
		if got != tc.want {
			t.Errorf("%s %s (x-mode %q) → %q, want %q", tc.method, tc.target, tc.mode, got, tc.want)
		}
	}
}
