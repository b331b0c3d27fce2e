package main

import (
	"fmt"
	"io"
	"net/http"
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
