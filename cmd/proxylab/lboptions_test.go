package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestLBOptionsTakeEffect: each policy's lb_options reach the running
// balancer — /clusters reports the ring size, table size and choice count
// configured, and a 2-slot Maglev table sends every user to one of only two
// of the three hosts.
func TestLBOptionsTakeEffect(t *testing.T) {
	var ups []string
	for i := 0; i < 3; i++ {
		id := i
		ups = append(ups, startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "upstream-%d", id)
		})).addr)
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		hosts := fmt.Sprintf("[{address: %q}, {address: %q}, {address: %q}]", ups[0], ups[1], ups[2])
		cfg := fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /tiny, cluster: tiny, hash_policy: [{header: x-user}]}
      - {prefix: /, cluster: rr}
clusters:
  - {name: rr, hosts: %[2]s}
  - {name: ring, lb: ring_hash, lb_options: {minimum_ring_size: 3000}, hosts: %[2]s}
  - {name: murmur, lb: ring_hash, lb_options: {maximum_ring_size: 30, hash_function: murmur_hash_2}, hosts: %[2]s}
  - {name: mag, lb: maglev, lb_options: {table_size: 251}, hosts: %[2]s}
  - {name: tiny, lb: maglev, lb_options: {table_size: 2}, hosts: %[2]s}
  - {name: lr, lb: least_request, lb_options: {choice_count: 3}, hosts: %[2]s}
  - {name: lrdefault, lb: least_request, hosts: %[2]s}
`, tr, hosts)
		p := startProxy(t, cfg)
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		_, body := a.do("GET", "/clusters")
		for _, want := range []string{
			"rr::lb::round_robin\n", "ring::lb::ring_hash ring_size=3000\n", "murmur::lb::ring_hash ring_size=30\n",
			"mag::lb::maglev table_size=251\n", "tiny::lb::maglev table_size=2\n",
			"lr::lb::least_request choice_count=3\n", "lrdefault::lb::least_request choice_count=2\n",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/clusters lacks %q:\n%s", want, body)
			}
		}
		used := map[string]bool{}
		for u := 0; u < 40; u++ {
			req, _ := http.NewRequest("GET", "http://"+p.addr("web")+"/tiny", nil)
			req.Header.Set("X-User", fmt.Sprintf("user-%d", u))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			used[string(b)] = true
		}
		if len(used) != 2 {
			t.Errorf("a 2-slot maglev table: 40 users reached %v, want exactly 2 hosts", used)
		}
	})
}

// TestLBOptionsValidate: `proxylab validate` reports a policy's option
// errors with the field's path in the file.
func TestLBOptionsValidate(t *testing.T) {
	cfg := `listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: a}]}
clusters:
  - {name: a, hosts: [{address: "127.0.0.1:1"}]}
  - {name: b, lb: round_robin, lb_options: {choice_count: 2}, hosts: [{address: "127.0.0.1:1"}]}
  - name: c
    lb: least_request
    lb_options:
      choice_count: 1
    hosts: [{address: "127.0.0.1:1"}]
  - {name: d, lb: maglev, lb_options: {table_size: 1000}, hosts: [{address: "127.0.0.1:1"}]}
  - {name: e, lb: ring_hash, lb_options: {minimum_ring_size: 10, maximum_ring_size: 5, colour: red}, hosts: [{address: "127.0.0.1:1"}]}
`
	path := writeTemp(t, cfg)
	out, err := exec.Command(binPath, "validate", "-c", path).CombinedOutput()
	if err == nil {
		t.Fatalf("validate accepted bad lb_options:\n%s", out)
	}
	for _, want := range []string{
		"clusters[1].lb_options.choice_count: unknown field (known: none) (line 7)",
		"clusters[2].lb_options.choice_count: must be >= 2, got 1\n",
		"clusters[3].lb_options.table_size: must be a prime between 2 and 5000011, got 1000\n",
		"clusters[4].lb_options.colour: unknown field (known: minimum_ring_size, maximum_ring_size, hash_function) (line 14)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
}
