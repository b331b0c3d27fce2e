package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
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
