package router

import "testing"

func TestRouteSelection(t *testing.T) {
	r := New([]VirtualHost{
		{Name: "api", Domains: []string{"api.example.com"}, Routes: []Route{{Path: "/health", Cluster: "health"}, {Prefix: "/v1/", Cluster: "v1"}, {Prefix: "/", Cluster: "api"}}},
		{Name: "wild", Domains: []string{"*.example.com"}, Routes: []Route{{Prefix: "/", Cluster: "wild"}}},
		{Name: "deeper", Domains: []string{"*.b.example.com"}, Routes: []Route{{Prefix: "/", Cluster: "deeper"}}},
		{Name: "pre", Domains: []string{"internal.*"}, Routes: []Route{{Prefix: "/", Cluster: "internal"}}},
		{Name: "any", Domains: []string{"*"}, Routes: []Route{{Prefix: "/static/", Cluster: "static"}}},
	})
	for _, tc := range []struct{ host, target, want string }{
		{"api.example.com", "/health", "health"},
		{"API.Example.com:8080", "/health?x=1", "health"},
		{"api.example.com", "/healthz", "api"},
		{"api.example.com", "/v1/users", "v1"},
		{"x.example.com", "/", "wild"},
		{"a.b.example.com", "/", "deeper"},
		{"example.com", "/static/a.css", "static"},
		{"internal.corp", "/", "internal"},
		{"other", "/static/x", "static"},
		{"other", "/nope", ""},
	} {
		got := ""
		if rt := r.Route([]byte(tc.host), []byte(tc.target)); rt != nil {
			got = rt.Cluster
		}
		if got != tc.want {
			t.Errorf("%s%s → %q, want %q", tc.host, tc.target, got, tc.want)
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	r := New([]VirtualHost{{Domains: []string{"*"}, Routes: []Route{{Prefix: "/a"}, {Prefix: "/b"}, {Prefix: "/"}}}})
	host, target := []byte("example.com"), []byte("/index.html")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if r.Route(host, target) == nil {
			b.Fatal("no route")
		}
	}
}
