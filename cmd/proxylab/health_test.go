package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// killable is an upstream that can be stopped and restarted on its port.
type killable struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
}

func (k *killable) start(t *testing.T, id string) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a kill
		if ln, err = net.Listen("tcp", k.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	k.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, id) })}
	k.mu.Lock()
	k.srv = srv
	k.mu.Unlock()
	go srv.Serve(ln)
}

func (k *killable) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.srv.Close() // listener and every connection
}

func TestUpstreamKilledUnderLoad(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		ups := []*killable{{addr: "127.0.0.1:0"}, {addr: "127.0.0.1:0"}, {addr: "127.0.0.1:0"}}
		for i, u := range ups {
			u.start(t, fmt.Sprintf("up%d", i))
			t.Cleanup(u.kill)
		}
		cfg := fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /, cluster: up, retry_policy: {retry_on: [connect-failure, reset], num_retries: 2}}
clusters:
  - name: up
    connect_timeout: 500ms
    health_check: {type: http, path: /health, interval: 100ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2}
    circuit_breakers: {max_retries: 50}
    hosts: [{address: %q}, {address: %q}, {address: %q}]
`, tr, ups[0].addr, ups[1].addr, ups[2].addr)
		p := startProxy(t, cfg)
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		var ok, failed atomic.Int64
		var seenMu sync.Mutex
		seen := map[string]int{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		client := &http.Client{Timeout: 5 * time.Second}
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := client.Get("http://" + p.addr("web") + "/load")
					if err != nil {
						failed.Add(1)
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
						t.Logf("%d %s", resp.StatusCode, b)
						continue
					}
					ok.Add(1)
					seenMu.Lock()
					seen[string(b)]++
					seenMu.Unlock()
				}
			}()
		}
		time.Sleep(300 * time.Millisecond)
		ups[1].kill()
		// Ejected by the health checks.
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(mustClusters(a), ups[1].addr+"::health_flags::/failed_active_hc") {
			if time.Now().After(deadline) {
				t.Fatalf("killed host not ejected:\n%s", mustClusters(a))
			}
			time.Sleep(50 * time.Millisecond)
		}
		seenMu.Lock()
		before := seen["up1"]
		seenMu.Unlock()
		time.Sleep(300 * time.Millisecond)
		seenMu.Lock()
		if seen["up1"] != before {
			t.Errorf("ejected host still served %d requests", seen["up1"]-before)
		}
		seenMu.Unlock()
		// Restarted on the same port: healthy again and back in rotation.
		ups[1].start(t, "up1")
		deadline = time.Now().Add(3 * time.Second)
		for !strings.Contains(mustClusters(a), ups[1].addr+"::health_flags::healthy") {
			if time.Now().After(deadline) {
				t.Fatalf("restarted host not healthy again:\n%s", mustClusters(a))
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		seenMu.Lock()
		defer seenMu.Unlock()
		if failed.Load() != 0 || seen["up1"] == before {
			t.Fatalf("%d ok, %d failed; up1 served %d before the kill and %d in all", ok.Load(), failed.Load(), before, seen["up1"])
		}
		fams := a.scrape()
		retries := value(t, fams, "proxylab_cluster_upstream_rq_retry_total", map[string]string{"cluster": "up"})
		t.Logf("%s: %d requests, 0 failed, %v retries; per upstream %v", tr, ok.Load(), retries, seen)
	})
}

func mustClusters(a adminClient) string {
	_, body := a.do("GET", "/clusters")
	return body
}

// TestCircuitBreakers: max_requests overflow is an immediate, counted 503;
// a retry budget keeps retries from multiplying load when every host fails.
func TestCircuitBreakers(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		release := make(chan struct{})
		slow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release
			io.WriteString(w, "ok")
		}))
		cfg := fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /slow, cluster: slow}
      - {prefix: /dead, cluster: dead, retry_policy: {retry_on: [connect-failure], num_retries: 5}}
clusters:
  - {name: slow, circuit_breakers: {max_requests: 2}, hosts: [{address: %q}]}
  - name: dead
    circuit_breakers: {max_retries: 100, retry_budget: {budget_percent: 20, min_retry_concurrency: 1}}
    hosts: [{address: %q}, {address: %q}, {address: %q}]
`, tr, slow.addr, closedPort(t), closedPort(t), closedPort(t))
		p := startProxy(t, cfg)
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		codes := make(chan int, 3)
		for i := 0; i < 3; i++ {
			go func() {
				resp, err := http.Get("http://" + p.addr("web") + "/slow")
				if err != nil {
					codes <- 0
					return
				}
				io.ReadAll(resp.Body)
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		select {
		case c := <-codes:
			if c != 503 {
				t.Fatalf("third concurrent request got %d, want 503 from the breaker", c)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("breaker overflow hangs")
		}
		close(release)
		for i := 0; i < 2; i++ {
			if c := <-codes; c != 200 {
				t.Fatalf("admitted request got %d", c)
			}
		}

		// Every host refuses: without a budget 30 requests × 6 attempts.
		var wg sync.WaitGroup
		for i := 0; i < 30; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get("http://" + p.addr("web") + "/dead")
				if err == nil {
					io.ReadAll(resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		fams := a.scrape()
		slowL, deadL := map[string]string{"cluster": "slow"}, map[string]string{"cluster": "dead"}
		if n := value(t, fams, "proxylab_cluster_upstream_rq_overflow_total", slowL); n != 1 {
			t.Errorf("max_requests overflow counted %v, want 1", n)
		}
		attempts := value(t, fams, "proxylab_cluster_upstream_cx_connect_fail_total", deadL)
		retries := value(t, fams, "proxylab_cluster_upstream_rq_retry_total", deadL)
		denied := value(t, fams, "proxylab_cluster_upstream_rq_retry_overflow_total", deadL)
		t.Logf("%s: 30 requests to a dead cluster: %v connect attempts, %v retries, %v retries denied by the budget", tr, attempts, retries, denied)
		if denied == 0 || attempts >= 180 || attempts != 30+retries {
			t.Errorf("retry budget did not cap amplification: %v attempts, %v retries, %v denied", attempts, retries, denied)
		}
	})
}

// TestOutlierDetection: a host answering 503 is ejected after 3 in a row,
// gets no traffic while ejected, and returns when its time is up.
func TestOutlierDetection(t *testing.T) {
	good1 := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") }))
	good2 := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") }))
	var badHits atomic.Int64
	bad := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		w.WriteHeader(503)
	}))
	forEachTransport(t, func(t *testing.T, tr string) {
		badHits.Store(0)
		cfg := fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - name: up
    outlier_detection: {consecutive_5xx: 3, interval: 50ms, base_ejection_time: 600ms, max_ejection_percent: 50}
    hosts: [{address: %q}, {address: %q}, {address: %q}]
`, tr, good1.addr, good2.addr, bad.addr)
		p := startProxy(t, cfg)
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		get := func() int {
			code, _ := p.get("/")
			return code
		}
		for i := 0; i < 30; i++ {
			get()
		}
		if n := badHits.Load(); n != 3 {
			t.Fatalf("the failing host got %d requests, want exactly 3 before its ejection", n)
		}
		if !strings.Contains(mustClusters(a), bad.addr+"::outlier_ejected::true") {
			t.Fatalf("not shown as ejected:\n%s", mustClusters(a))
		}
		for i := 0; i < 30; i++ {
			if code := get(); code != 200 {
				t.Fatalf("request while the bad host is ejected got %d", code)
			}
		}
		time.Sleep(800 * time.Millisecond) // past the 600 ms ejection
		for i := 0; i < 30 && badHits.Load() == 3; i++ {
			get()
		}
		if badHits.Load() == 3 {
			t.Fatal("ejected host never came back")
		}
		if n := value(t, a.scrape(), "proxylab_cluster_outlier_detection_ejections_total", map[string]string{"cluster": "up"}); n < 1 {
			t.Errorf("ejections metric %v", n)
		}
	})
}

// TestRetryOnStatusAndPerTryTimeout: a 503 from one host is retried on the
// other (after a backoff) and the client sees the 200; a hanging host is
// cut by the per-try timeout and retried; without retries left the client
// gets the upstream's answer or a 504.
func TestRetryOnStatusAndPerTryTimeout(t *testing.T) {
	var failing, hanging atomic.Int64
	ok := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	bad := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failing.Add(1)
		w.WriteHeader(503)
		io.WriteString(w, "overloaded")
	}))
	slow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hanging.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}))
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /status, cluster: mixed, retry_policy: {retry_on: [gateway-error], num_retries: 2, base_interval: 10ms, max_interval: 50ms}}
      - {prefix: /codes, cluster: mixed, retry_policy: {retry_on: [retriable-status-codes], retriable_status_codes: [503], num_retries: 2}}
      - {prefix: /onlybad, cluster: bad, retry_policy: {retry_on: [5xx], num_retries: 2}}
      - {prefix: /slow, cluster: slowmix, timeout: 5s, retry_policy: {retry_on: [5xx], num_retries: 1, per_try_timeout: 200ms}}
      - {prefix: /onlyslow, cluster: slow, timeout: 5s, retry_policy: {retry_on: [5xx], num_retries: 0, per_try_timeout: 200ms}}
clusters:
  - {name: mixed, circuit_breakers: {max_retries: 100}, hosts: [{address: %[2]q}, {address: %[3]q}]}
  - {name: bad, hosts: [{address: %[3]q}]}
  - {name: slowmix, lb: round_robin, hosts: [{address: %[4]q}, {address: %[2]q}]}
  - {name: slow, hosts: [{address: %[4]q}]}
`, tr, ok.addr, bad.addr, slow.addr)
		p := startProxy(t, cfg)
		get := p.get
		failing.Store(0)
		for i := 0; i < 20; i++ {
			for _, path := range []string{"/status", "/codes"} {
				if code, body := get(path); code != 200 || body != "ok" {
					t.Fatalf("%s: %d %q despite retries", path, code, body)
				}
			}
		}
		if failing.Load() == 0 {
			t.Fatal("the failing host was never tried: the test proves nothing")
		}
		// Nothing else to try: after 3 attempts the client gets the 503.
		failing.Store(0)
		if code, body := get("/onlybad"); code != 503 || body != "overloaded" || failing.Load() != 3 {
			t.Fatalf("/onlybad: %d %q after %d attempts, want the upstream's 503 after 3", code, body, failing.Load())
		}
		start := time.Now()
		for i := 0; i < 4; i++ {
			if code, body := get("/slow"); code != 200 || body != "ok" {
				t.Fatalf("/slow: %d %q", code, body)
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("per-try timeouts did not cut the hanging host: %v for 4 requests", d)
		}
		if code, _ := get("/onlyslow"); code != 504 {
			t.Fatalf("/onlyslow: %d, want 504", code)
		}
	})
}
