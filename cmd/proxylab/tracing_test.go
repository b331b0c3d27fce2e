package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// traceEcho is an upstream that returns the identity and trace headers it
// received as X-Seen-* response headers.
func traceEcho(w http.ResponseWriter, r *http.Request) {
	for _, h := range []string{"X-Request-Id", "Traceparent", "Tracestate", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled"} {
		w.Header()["X-Seen-"+h] = r.Header.Values(h)
	}
	io.WriteString(w, "ok")
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// traceparent splits a W3C traceparent the way a receiver checks it.
var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$`)

// chainProxies starts upstream <- internal <- edge: the edge replaces a
// client's x-request-id and returns it, the internal listener keeps it;
// both continue the trace. It returns the edge and its access log path.
func chainProxies(t *testing.T, tr string, edgeTracing string) (*proc, string) {
	up := startH2CUpstream(t, http.HandlerFunc(traceEcho))
	internal := startProxy(t, httpConfig(tr, []string{up.addr}, "request_id: {preserve_external: true}\ntracing: {}", ""))
	logPath := filepath.Join(t.TempDir(), "access.log")
	edge := startProxy(t, "admin: {address: 127.0.0.1:0}\n"+httpConfig(tr, []string{internal.addr("http")},
		fmt.Sprintf("request_id: {always_set_response: true}\ntracing: %s\naccess_log: {path: %s, format: \"%%REQ(X-REQUEST-ID)%% %%RESPONSE_CODE%% %%TRACE_ID%%\\n\"}", edgeTracing, logPath), ""))
	return edge, logPath
}

func TestRequestIDAndTraceContext(t *testing.T) {
	const trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	forEachTransport(t, func(t *testing.T, tr string) {
		edge, logPath := chainProxies(t, tr, "{random_sampling: 100}")
		base := "http://" + edge.addr("http") + "/"
		var ids []string
		for _, cl := range []struct {
			name string
			c    *http.Client
		}{{"http1", h1Client()}, {"h2c", h2cClient()}} {
			do := func(t *testing.T, hdr ...string) http.Header {
				t.Helper()
				req, _ := http.NewRequest("GET", base, nil)
				for i := 0; i < len(hdr); i += 2 {
					req.Header.Set(hdr[i], hdr[i+1])
				}
				resp, err := cl.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				id := resp.Header.Get("X-Request-Id")
				if !uuidV4.MatchString(id) || resp.Header.Get("X-Seen-X-Request-Id") != id {
					t.Fatalf("request id: returned %q, upstream saw %q", id, resp.Header.Get("X-Seen-X-Request-Id"))
				}
				ids = append(ids, id)
				return resp.Header
			}
			t.Run(cl.name, func(t *testing.T) {
				t.Run("new trace", func(t *testing.T) {
					h := do(t)
					if m := traceparentRE.FindStringSubmatch(h.Get("X-Seen-Traceparent")); m == nil || m[3] != "01" {
						t.Fatalf("traceparent %q", h.Get("X-Seen-Traceparent"))
					}
				})
				t.Run("client id replaced at the edge", func(t *testing.T) {
					if h := do(t, "X-Request-Id", "client-chosen"); h.Get("X-Request-Id") == "client-chosen" {
						t.Fatal("edge kept the client's id")
					}
				})
				t.Run("w3c continued", func(t *testing.T) {
					for _, flags := range []string{"01", "00"} {
						h := do(t, "Traceparent", "00-"+trace+"-"+span+"-"+flags, "Tracestate", "vendor=x")
						m := traceparentRE.FindStringSubmatch(h.Get("X-Seen-Traceparent"))
						if m == nil || m[1] != trace || m[2] == span || m[3] != flags || h.Get("X-Seen-Tracestate") != "vendor=x" {
							t.Fatalf("flags %s: traceparent %q tracestate %q", flags, h.Get("X-Seen-Traceparent"), h.Get("X-Seen-Tracestate"))
						}
						if h.Get("X-Seen-B3") != "" {
							t.Fatal("b3 written for a w3c trace")
						}
					}
				})
				t.Run("malformed traceparent replaced", func(t *testing.T) {
					h := do(t, "Traceparent", "00-"+trace+"-"+span+"-0x", "Tracestate", "vendor=x")
					m := traceparentRE.FindStringSubmatch(h.Get("X-Seen-Traceparent"))
					if m == nil || m[1] == trace || h.Get("X-Seen-Tracestate") != "" {
						t.Fatalf("traceparent %q tracestate %q", h.Get("X-Seen-Traceparent"), h.Get("X-Seen-Tracestate"))
					}
				})
				t.Run("b3 single continued", func(t *testing.T) {
					h := do(t, "B3", trace+"-"+span+"-1")
					parts := strings.Split(h.Get("X-Seen-B3"), "-")
					if len(parts) != 4 || parts[0] != trace || parts[1] == span || parts[2] != "1" || parts[3] == span || len(parts[3]) != 16 {
						t.Fatalf("b3 %q", h.Get("X-Seen-B3"))
					}
					if h.Get("X-Seen-Traceparent") != "" {
						t.Fatal("traceparent written for a b3 trace")
					}
				})
				t.Run("b3 multi continued", func(t *testing.T) {
					h := do(t, "X-B3-Traceid", trace[16:], "X-B3-Spanid", span, "X-B3-Sampled", "0")
					if h.Get("X-Seen-X-B3-Traceid") != trace[16:] || h.Get("X-Seen-X-B3-Spanid") == span ||
						len(h.Get("X-Seen-X-B3-Parentspanid")) != 16 || h.Get("X-Seen-X-B3-Sampled") != "0" {
						t.Fatalf("x-b3: %v", h)
					}
				})
				t.Run("malformed b3 replaced", func(t *testing.T) {
					h := do(t, "B3", trace+"-"+span+"-7")
					if h.Get("X-Seen-B3") != "" || !traceparentRE.MatchString(h.Get("X-Seen-Traceparent")) {
						t.Fatalf("b3 %q traceparent %q", h.Get("X-Seen-B3"), h.Get("X-Seen-Traceparent"))
					}
				})
			})
		}
		a := adminClient{t: t, base: "http://" + edge.adminAddr()}
		if n := value(t, a.scrape(), "proxylab_http_trace_context_malformed_total", map[string]string{"listener": "http"}); n != 4 {
			t.Errorf("malformed counted %v, want 4", n)
		}
		waitFor(t, 10*time.Second, "access log lines", func() bool {
			b, _ := os.ReadFile(logPath)
			return strings.Count(string(b), "\n") >= len(ids)
		})
		b, _ := os.ReadFile(logPath)
		for _, id := range ids {
			if !regexp.MustCompile(regexp.QuoteMeta(id) + ` 200 [0-9a-f]{32}\n`).Match(b) {
				t.Fatalf("access log lacks %s:\n%s", id, b)
			}
		}
	})
}

// TestTraceSamplingRatio: new traces are sampled at the configured ratio
// (25% of 10,000, within 5 standard deviations).
func TestTraceSamplingRatio(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(traceEcho))
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "tracing: {random_sampling: 25}", ""))
		const n, workers = 10000, 8
		var sampled, done atomic.Int64
		var wg sync.WaitGroup
		c := h1Client()
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for done.Add(1) <= n {
					resp, err := c.Get("http://" + p.addr("http") + "/")
					if err != nil {
						errs <- err
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if strings.HasSuffix(resp.Header.Get("X-Seen-Traceparent"), "-01") {
						sampled.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// mean 2500, sd sqrt(10000*.25*.75) = 43.3
		if s := sampled.Load(); s < 2500-217 || s > 2500+217 {
			t.Fatalf("sampled %d of %d at 25%%", s, n)
		}
	})
}

// TestRequestIDHashPolicy: hash_policy on x-request-id sees the id the
// edge generated (it is set before the hash is taken): the same id sent
// again through a listener that keeps it reaches the same upstream.
func TestRequestIDHashPolicy(t *testing.T) {
	var ups []string
	for i := 0; i < 3; i++ {
		id := i
		ups = append(ups, startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "upstream-%d", id)
		})).addr)
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - {name: edge, address: "127.0.0.1:0", http_proxy: {request_id: {always_set_response: true}}}
  - {name: internal, address: "127.0.0.2:0", http_proxy: {request_id: {preserve_external: true}}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /, cluster: ring, hash_policy: [{header: x-request-id}]}
clusters:
  - {name: ring, lb: ring_hash, hosts: [{address: %q}, {address: %q}, {address: %q}]}
`, tr, ups[0], ups[1], ups[2]))
		get := func(listener, id string) (string, string) {
			req, _ := http.NewRequest("GET", "http://"+p.addr(listener)+"/", nil)
			if id != "" {
				req.Header.Set("X-Request-Id", id)
			}
			resp, err := h1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b), resp.Header.Get("X-Request-Id")
		}
		used := map[string]bool{}
		for i := 0; i < 30; i++ {
			host, id := get("edge", "")
			if !uuidV4.MatchString(id) {
				t.Fatalf("edge id %q", id)
			}
			if again, _ := get("internal", id); again != host {
				t.Fatalf("id %s: edge reached %s, the same id through internal %s", id, host, again)
			}
			used[host] = true
		}
		if len(used) < 2 {
			t.Errorf("30 generated ids reached only %v", used)
		}
	})
}

// TestTraceContextOverTLS: the same identity and trace continuation for
// HTTP/2 over TLS (ALPN h2).
func TestTraceContextOverTLS(t *testing.T) {
	const trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startUpstream(t, http.HandlerFunc(traceEcho))
		p := startProxy(t, strings.Replace(tlsListenerConfig(tr, pk, up.addr, ""), "http_proxy: {}",
			"http_proxy: {request_id: {always_set_response: true}, tracing: {}}", 1))
		var protos http.Protocols
		protos.SetHTTP2(true)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pk.pool, ServerName: "localhost"}, Protocols: &protos}}
		req, _ := http.NewRequest("GET", "https://"+p.addr("web")+"/", nil)
		req.Header.Set("Traceparent", "00-"+trace+"-"+span+"-01")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		m := traceparentRE.FindStringSubmatch(resp.Header.Get("X-Seen-Traceparent"))
		if resp.ProtoMajor != 2 || m == nil || m[1] != trace || m[2] == span || m[3] != "01" {
			t.Fatalf("%s: upstream saw traceparent %q", resp.Proto, resp.Header.Get("X-Seen-Traceparent"))
		}
		if id := resp.Header.Get("X-Request-Id"); !uuidV4.MatchString(id) || resp.Header.Get("X-Seen-X-Request-Id") != id {
			t.Fatalf("request id %q, upstream saw %q", id, resp.Header.Get("X-Seen-X-Request-Id"))
		}
	})
}
