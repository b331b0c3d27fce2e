package router

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

func req(method, target string, hdrs ...string) *Request {
	h := &protocol.Headers{}
	for i := 0; i+1 < len(hdrs); i += 2 {
		h.Add(hdrs[i], []byte(hdrs[i+1]))
	}
	return &Request{Method: []byte(method), Target: []byte(target), Headers: h}
}

func TestVirtualHostsAndPaths(t *testing.T) {
	r := New([]VirtualHost{
		{Name: "api", Domains: []string{"api.example.com"}, Routes: []Route{{Path: "/health", Cluster: "health"}, {Prefix: "/v1/", Cluster: "v1"}, {Prefix: "/", Cluster: "api"}}},
		{Name: "wild", Domains: []string{"*.example.com"}, Routes: []Route{{Prefix: "/", Cluster: "wild"}}},
		{Name: "deeper", Domains: []string{"*.b.example.com"}, Routes: []Route{{Prefix: "/", Cluster: "deeper"}}},
		{Name: "pre", Domains: []string{"internal.*"}, Routes: []Route{{Prefix: "/", Cluster: "internal"}}},
		{Name: "any", Domains: []string{"*"}, Routes: []Route{{Regex: regexp.MustCompile(`^/static/[a-z]+\.css$`), Cluster: "css"}, {Prefix: "/static/", Cluster: "static"}}},
	})
	for _, tc := range []struct{ host, target, want string }{
		{"api.example.com", "/health", "health"},
		{"API.Example.com:8080", "/health?x=1", "health"},
		{"api.example.com", "/healthz", "api"},
		{"api.example.com", "/v1/users", "v1"},
		{"x.example.com", "/", "wild"},
		{"a.b.example.com", "/", "deeper"},
		{"example.com", "/static/a.css", "css"},
		{"example.com", "/static/a.css.map", "static"},
		{"internal.corp", "/", "internal"},
		{"other", "/static/x", "static"},
		{"other", "/nope", ""},
	} {
		got := ""
		if rt := r.Route([]byte(tc.host), req("GET", tc.target)); rt != nil {
			got = rt.Cluster
		}
		if got != tc.want {
			t.Errorf("%s%s → %q, want %q", tc.host, tc.target, got, tc.want)
		}
	}
}

func TestMatchers(t *testing.T) {
	yes, no := true, false
	r := New([]VirtualHost{{Domains: []string{"*"}, Routes: []Route{
		{Prefix: "/", Methods: []string{"DELETE"}, Cluster: "deletes"},
		{Prefix: "/", Headers: []HeaderMatcher{{Name: "x-canary", Value: &StringMatcher{Exact: "1"}}}, Cluster: "canary"},
		{Prefix: "/", Headers: []HeaderMatcher{{Name: "x-version", Value: &StringMatcher{Regex: regexp.MustCompile(`^v[23]$`)}}}, Cluster: "v2v3"},
		{Prefix: "/", Headers: []HeaderMatcher{{Name: "x-debug", Present: &yes}}, Cluster: "debug"},
		{Prefix: "/", Query: []QueryMatcher{{Name: "beta", Value: &StringMatcher{Exact: "on"}}}, Cluster: "beta"},
		{Prefix: "/", Query: []QueryMatcher{{Name: "trace", Present: &yes}}, Cluster: "trace"},
		// RPC-style: service and method headers through the same matchers.
		{Prefix: "/", Headers: []HeaderMatcher{{Name: "service", Value: &StringMatcher{Exact: "com.example.Users"}}, {Name: "method", Value: &StringMatcher{Exact: "Get"}}}, Cluster: "users-get"},
		{Prefix: "/", Headers: []HeaderMatcher{{Name: "x-tenant", Value: &StringMatcher{Exact: "internal"}, Invert: true}, {Name: "x-tenant", Present: &yes}}, Cluster: "external-tenant"},
		{Prefix: "/", Headers: []HeaderMatcher{{Name: "authorization", Present: &no}}, Cluster: "anonymous"},
		{Prefix: "/", Cluster: "default"},
	}}})
	for _, tc := range []struct {
		r    *Request
		want string
	}{
		{req("DELETE", "/x"), "deletes"},
		{req("GET", "/x", "X-Canary", "1"), "canary"},
		{req("GET", "/x", "X-Canary", "2", "Authorization", "b"), "default"},
		{req("GET", "/x", "X-Version", "v3"), "v2v3"},
		{req("GET", "/x", "X-Version", "v33", "Authorization", "b"), "default"},
		{req("GET", "/x", "X-Debug", ""), "debug"},
		{req("GET", "/x?a=1&beta=on", "Authorization", "b"), "beta"},
		{req("GET", "/x?beta=off", "Authorization", "b"), "default"},
		{req("GET", "/x?trace", "Authorization", "b"), "trace"},
		{req("POST", "/rpc", "Service", "com.example.Users", "Method", "Get", "Authorization", "b"), "users-get"},
		{req("POST", "/rpc", "Service", "com.example.Users", "Method", "Put", "Authorization", "b"), "default"},
		{req("GET", "/x", "X-Tenant", "acme", "Authorization", "b"), "external-tenant"},
		{req("GET", "/x", "X-Tenant", "internal", "Authorization", "b"), "default"},
		{req("GET", "/x"), "anonymous"},
	} {
		got := ""
		if rt := r.Route([]byte("h"), tc.r); rt != nil {
			got = rt.Cluster
		}
		if got != tc.want {
			t.Errorf("%s %s %v → %q, want %q", tc.r.Method, tc.r.Target, tc.r.Headers.Fields, got, tc.want)
		}
	}
}

// BenchmarkRoute1000 matches against 1,000 routes (prefix routes, the last
// of which matches; and a header-matched route at the end).
func BenchmarkRoute1000(b *testing.B) {
	var routes []Route
	for i := 0; i < 999; i++ {
		routes = append(routes, Route{Prefix: fmt.Sprintf("/service-%03d/", i), Cluster: fmt.Sprint(i)})
	}
	routes = append(routes, Route{Prefix: "/", Headers: []HeaderMatcher{{Name: "x-user", Value: &StringMatcher{Exact: "u"}}}, Cluster: "last"})
	r := New([]VirtualHost{{Domains: []string{"*"}, Routes: routes}})
	for _, tc := range []struct {
		name string
		r    *Request
	}{
		{"first", req("GET", "/service-000/x")},
		{"middle", req("GET", "/service-500/x")},
		{"last-by-header", req("GET", "/other", "X-User", "u")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if r.Route([]byte("example.com"), tc.r) == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}

// TestFirstMatchWinsAcrossIndex: the prefix index must not let a later
// plain route beat an earlier conditional one, nor the reverse.
func TestFirstMatchWinsAcrossIndex(t *testing.T) {
	yes := true
	r := New([]VirtualHost{{Domains: []string{"*"}, Routes: []Route{
		{Prefix: "/a", Headers: []HeaderMatcher{{Name: "x-first", Present: &yes}}, Cluster: "conditional-first"},
		{Prefix: "/a", Cluster: "plain-a"},
		{Prefix: "/", Headers: []HeaderMatcher{{Name: "x-late", Present: &yes}}, Cluster: "shadowed"},
		{Path: "/exact", Cluster: "exact"},
		{Prefix: "/", Cluster: "catch-all"},
	}}})
	for _, tc := range []struct {
		r    *Request
		want string
	}{
		{req("GET", "/a/b", "X-First", "1"), "conditional-first"},
		{req("GET", "/a/b"), "plain-a"},
		{req("GET", "/a/b", "X-Late", "1"), "plain-a"}, // plain /a comes before the x-late route
		{req("GET", "/z", "X-Late", "1"), "shadowed"},
		{req("GET", "/exact"), "exact"}, // the exact route (index 3) precedes the catch-all (4)
		{req("GET", "/exactly"), "catch-all"},
	} {
		got := r.Route([]byte("h"), tc.r).Cluster
		if got != tc.want {
			t.Errorf("%s %v → %q, want %q", tc.r.Target, tc.r.Headers.Fields, got, tc.want)
		}
	}
}
