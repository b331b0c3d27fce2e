package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConsistentHashRouting: a user (header or cookie) always reaches the
// same upstream through ring_hash and maglev clusters; users spread out.
func TestConsistentHashRouting(t *testing.T) {
	var ups []string
	for i := 0; i < 3; i++ {
		id := i
		ups = append(ups, startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "upstream-%d", id)
		})).addr)
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /ring, cluster: ring, hash_policy: [{header: x-user}]}
      - {prefix: /maglev, cluster: mag, hash_policy: [{cookie: session}, {source_ip: true}]}
clusters:
  - {name: ring, lb: ring_hash, hosts: [{address: %[2]q}, {address: %[3]q}, {address: %[4]q}]}
  - {name: mag, lb: maglev, hosts: [{address: %[2]q}, {address: %[3]q}, {address: %[4]q}]}
`, tr, ups[0], ups[1], ups[2])
		p := startProxy(t, cfg)
		get := func(path, hdr, val string) string {
			req, _ := http.NewRequest("GET", "http://"+p.addr("web")+path, nil)
			req.Header.Set(hdr, val)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b)
		}
		for _, tc := range []struct{ path, hdr, format string }{
			{"/ring", "X-User", "user-%d"},
			{"/maglev", "Cookie", "theme=dark; session=s%d"},
		} {
			used := map[string]bool{}
			for u := 0; u < 30; u++ {
				val := fmt.Sprintf(tc.format, u)
				first := get(tc.path, tc.hdr, val)
				for i := 0; i < 3; i++ {
					if got := get(tc.path, tc.hdr, val); got != first {
						t.Fatalf("%s %s: %q then %q", tc.path, val, first, got)
					}
				}
				used[first] = true
			}
			if len(used) < 3 {
				t.Errorf("%s: 30 users reached only %v", tc.path, used)
			}
		}
	})
}

// TestRouteMatching: methods, headers, query parameters and regex paths pick
// the cluster, first match wins.
func TestRouteMatching(t *testing.T) {
	var ups []string
	for _, name := range []string{"deletes", "canary", "beta", "css", "default"} {
		n := name
		ups = append(ups, startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, n) })).addr)
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /, methods: [DELETE], cluster: deletes}
      - {prefix: /, headers: [{name: x-canary, exact: "1"}], cluster: canary}
      - {prefix: /, query_parameters: [{name: beta, exact: "on"}], cluster: beta}
      - {regex: '^/static/[a-z]+\.css$', cluster: css}
      - {prefix: /, cluster: default}
clusters:
  - {name: deletes, hosts: [{address: %q}]}
  - {name: canary, hosts: [{address: %q}]}
  - {name: beta, hosts: [{address: %q}]}
  - {name: css, hosts: [{address: %q}]}
  - {name: default, hosts: [{address: %q}]}
`, tr, ups[0], ups[1], ups[2], ups[3], ups[4])
		p := startProxy(t, cfg)
		c := dialRaw(t, p.addr("web"))
		for _, tc := range []struct{ req, want string }{
			{"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n", "deletes"},
			{"GET /x HTTP/1.1\r\nHost: h\r\nX-Canary: 1\r\n\r\n", "canary"},
			{"GET /x?a=b&beta=on HTTP/1.1\r\nHost: h\r\n\r\n", "beta"},
			{"GET /static/site.css HTTP/1.1\r\nHost: h\r\n\r\n", "css"},
			{"GET /static/site.css.map HTTP/1.1\r\nHost: h\r\n\r\n", "default"},
			{"GET /x?beta=off HTTP/1.1\r\nHost: h\r\nX-Canary: 0\r\n\r\n", "default"},
		} {
			c.send(tc.req)
			if _, body := c.readResponse(tc.req[:strings.IndexByte(tc.req, ' ')]); body != tc.want {
				t.Errorf("%q → %q, want %q", tc.req, body, tc.want)
			}
		}
	})
}

// TestRouteActions: direct responses, redirects, weighted clusters, cluster
// from a header, host and regex rewrites, and header changes at listener,
// virtual host and route level.
func TestRouteActions(t *testing.T) {
	mk := func(name string) string {
		return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Internal", "secret")
			w.Header().Set("X-Upstream-Host", r.Host)
			fmt.Fprintf(w, "%s %s l=%s v=%s r=%s gone=%q", name, r.URL.RequestURI(), r.Header.Get("X-Listener"), r.Header.Get("X-Vhost"), r.Header.Get("X-Route"), r.Header.Get("X-Drop"))
		})).addr
	}
	a, b := mk("a"), mk("b")
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - name: web
    address: "127.0.0.1:0"
    http_proxy:
      request_headers_to_add: [{name: x-listener, value: "1"}]
      response_headers_to_remove: [x-internal]
routes:
  - name: all
    domains: ["*"]
    request_headers_to_add: [{name: x-vhost, value: "1"}]
    response_headers_to_add: [{name: x-served-by, value: proxylab}]
    routes:
      - {path: /ping, direct_response: {status: 200, body: "pong"}}
      - {prefix: /old/, redirect: {prefix_rewrite: /new/, response_code: 308}}
      - {prefix: /secure, redirect: {scheme_redirect: https, host_redirect: example.com, strip_query: true}}
      - {prefix: /split, weighted_clusters: [{name: a, weight: 3}, {name: b, weight: 1}]}
      - {prefix: /pick, cluster_header: x-cluster}
      - prefix: /api/
        cluster: a
        host_rewrite: internal.example
        regex_rewrite: {pattern: '^/api/v([0-9]+)/(.*)$', substitution: '/\2?version=\1'}
        request_headers_to_add: [{name: x-route, value: "1"}]
        request_headers_to_remove: [x-drop]
      - {prefix: /, cluster: a}
clusters:
  - {name: a, hosts: [{address: %q}]}
  - {name: b, hosts: [{address: %q}]}
`, tr, a, b)
		p := startProxy(t, cfg)
		c := dialRaw(t, p.addr("web"))
		do := func(req string) (*http.Response, string) {
			c.send(req)
			return c.readResponse(req[:strings.IndexByte(req, ' ')])
		}
		if resp, body := do("GET /ping HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != "pong" || resp.Header.Get("X-Served-By") != "proxylab" {
			t.Errorf("direct response: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if resp, _ := do("GET /old/x?q=1 HTTP/1.1\r\nHost: h:8080\r\n\r\n"); resp.StatusCode != 308 || resp.Header.Get("Location") != "http://h:8080/new/x?q=1" {
			t.Errorf("prefix redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp, _ := do("GET /secure/a?q=1 HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 301 || resp.Header.Get("Location") != "https://example.com/secure/a" {
			t.Errorf("scheme/host redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if _, body := do("GET /pick HTTP/1.1\r\nHost: h\r\nX-Cluster: b\r\n\r\n"); !strings.HasPrefix(body, "b ") {
			t.Errorf("cluster_header: %q", body)
		}
		if resp, _ := do("GET /pick HTTP/1.1\r\nHost: h\r\nX-Cluster: nope\r\n\r\n"); resp.StatusCode != 503 {
			t.Errorf("cluster_header naming no cluster: %d", resp.StatusCode)
		}
		resp, body := do("GET /api/v2/users?x=1 HTTP/1.1\r\nHost: h\r\nX-Drop: 1\r\n\r\n")
		if body != `a /users?version=2&x=1 l=1 v=1 r=1 gone=""` || resp.Header.Get("X-Upstream-Host") != "internal.example" {
			t.Errorf("rewrites and request headers: %q host %q", body, resp.Header.Get("X-Upstream-Host"))
		}
		if resp.Header.Get("X-Internal") != "" || resp.Header.Get("X-Served-By") != "proxylab" {
			t.Errorf("response header ops: %v", resp.Header)
		}
		counts := map[string]int{}
		for i := 0; i < 400; i++ {
			_, body := do("GET /split HTTP/1.1\r\nHost: h\r\n\r\n")
			counts[body[:1]]++
		}
		if counts["a"] < 250 || counts["a"] > 350 || counts["a"]+counts["b"] != 400 {
			t.Errorf("3:1 split over 400 requests: %v", counts)
		}
	})
}

// TestSubsetLoadBalancing: routes pick hosts by metadata; an unmatched
// request falls back as the cluster says.
func TestSubsetLoadBalancing(t *testing.T) {
	mk := func(name string) string {
		return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })).addr
	}
	v1a, v1b, v2 := mk("v1a"), mk("v1b"), mk("v2")
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /v2, cluster: svc, metadata_match: {version: v2}}
      - {prefix: /v3, cluster: svc, metadata_match: {version: v3}}
      - {prefix: /strict, cluster: strict, metadata_match: {version: v3}}
      - {prefix: /, cluster: svc}
clusters:
  - name: svc
    lb_subset_config: {subset_selectors: [[version]], fallback_policy: default_subset, default_subset: {version: v1}}
    hosts:
      - {address: %[2]q, metadata: {version: v1}}
      - {address: %[3]q, metadata: {version: v1}}
      - {address: %[4]q, metadata: {version: v2}}
  - name: strict
    lb_subset_config: {subset_selectors: [[version]]}
    hosts: [{address: %[4]q, metadata: {version: v2}}]
`, tr, v1a, v1b, v2)
		p := startProxy(t, cfg)
		get := func(path string) string {
			code, body := p.get(path)
			return fmt.Sprintf("%d %s", code, body)
		}
		seen := map[string]int{}
		for i := 0; i < 10; i++ {
			if got := get("/v2"); got != "200 v2" {
				t.Fatalf("/v2 reached %q", got)
			}
			seen[get("/v3")]++
		}
		if seen["200 v1a"] == 0 || seen["200 v1b"] == 0 || len(seen) != 2 {
			t.Fatalf("default_subset fallback reached %v, want both v1 hosts only", seen)
		}
		if got := get("/strict"); !strings.HasPrefix(got, "503") {
			t.Fatalf("no_fallback: %q", got)
		}
		all := map[string]bool{}
		for i := 0; i < 12; i++ {
			all[get("/")] = true
		}
		if len(all) != 3 {
			t.Fatalf("without metadata_match every host serves: %v", all)
		}
	})
}

// TestRequestMirroring: the shadow gets copies (Host marked -shadow, body
// intact); a slow shadow and a dead one never delay or fail the client.
func TestRequestMirroring(t *testing.T) {
	main := startUpstream(t, http.HandlerFunc(echoHandler))
	type seenReq struct{ host, body string }
	got := make(chan seenReq, 100)
	shadow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seenReq{r.Host, string(b)}
		w.WriteHeader(500) // discarded
	}))
	slowShadow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Second)
	}))
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /mirrored, cluster: main, request_mirror_policies: [{cluster: shadow}]}
      - {prefix: /slowmirror, cluster: main, request_mirror_policies: [{cluster: slow}, {cluster: dead}]}
clusters:
  - {name: main, hosts: [{address: %q}]}
  - {name: shadow, hosts: [{address: %q}]}
  - {name: slow, hosts: [{address: %q}]}
  - {name: dead, connect_timeout: 200ms, hosts: [{address: %q}]}
`, tr, main.addr, shadow.addr, slowShadow.addr, closedPort(t))
		p := startProxy(t, cfg)
		c := dialRaw(t, p.addr("web"))
		for i := 0; i < 5; i++ {
			body := fmt.Sprintf("payload-%d", i)
			c.send(fmt.Sprintf("POST /mirrored HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
			resp, rb := c.readResponse("POST")
			if resp.StatusCode != 200 || rb != "POST /mirrored "+fmt.Sprint(len(body))+" "+body {
				t.Fatalf("main response changed by the mirror: %d %q", resp.StatusCode, rb)
			}
			select {
			case s := <-got:
				if s.host != "app.test-shadow" || s.body != body {
					t.Fatalf("shadow saw host %q body %q", s.host, s.body)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("shadow never got the copy")
			}
		}
		start := time.Now()
		for i := 0; i < 5; i++ {
			c.send("GET /slowmirror HTTP/1.1\r\nHost: app.test\r\n\r\n")
			if resp, _ := c.readResponse("GET"); resp.StatusCode != 200 {
				t.Fatalf("slow/dead mirrors changed the status: %d", resp.StatusCode)
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("a slow mirror delayed the client: %v for 5 requests", d)
		}
	})
}
