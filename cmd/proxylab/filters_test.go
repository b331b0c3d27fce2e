package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/coder/websocket"
	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
)

// Stream filters through the real binary: fault, local_ratelimit and cors
// in one chain, with per-route and per-virtual-host overrides, over
// HTTP/1.1, h2c and HTTP/2 over TLS, on every transport; gRPC (fault
// aborts as grpc-status) and bolt (a rate limit) too.

const filtersChain = `http_filters:
  - name: cors
  - name: fault
    typed_config:
      abort: {header_abort: {}}
      delay: {header_delay: {}}
      max_active_faults: 100
  - name: local_ratelimit
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
      stat_prefix: http_local_rate_limiter
      token_bucket: {max_tokens: 1000000, tokens_per_fill: 1000000, fill_interval: 1s}
      filter_enabled: {default_value: {numerator: 100, denominator: HUNDRED}}
      filter_enforced: {default_value: {numerator: 100, denominator: HUNDRED}}
`

func filtersConfig(tr, up, tlsBlock string) string {
	return fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: http
    address: 127.0.0.1:0
%s
    http_proxy:
%s
routes:
  - name: all
    domains: ["*"]
    typed_per_filter_config:
      cors:
        allow_origin_string_match: [{exact: "https://app.example.com"}, {suffix: ".trusted.org"}, {safe_regex: {regex: "https://[a-z]+\\.regex\\.test"}}]
        allow_methods: "GET, POST"
        allow_headers: "x-token"
        expose_headers: "x-upstream"
        max_age: "600"
        allow_credentials: true
    routes:
      - name: limited
        prefix: /limited
        cluster: up
        typed_per_filter_config:
          local_ratelimit: {token_bucket: {max_tokens: 3, tokens_per_fill: 3, fill_interval: 1h}, enable_x_ratelimit_headers: DRAFT_VERSION_03}
      - name: perkey
        prefix: /perkey
        cluster: up
        typed_per_filter_config:
          local_ratelimit:
            token_bucket: {max_tokens: 1000, tokens_per_fill: 1000, fill_interval: 1h}
            descriptors: [{request_headers: {header_name: x-user}, token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 1h}}]
      - {name: nocors, prefix: /nocors, cluster: up, typed_per_filter_config: {cors: {disabled: true}}}
      - {prefix: /, cluster: up}
clusters:
  - {name: up, connect_timeout: 1s, hosts: [{address: %q}]}
`, tr, tlsBlock, indent(filtersChain, 6), up)
}

// countingUpstream answers 200 "ok <path>" with X-Upstream and counts requests.
func countingUpstream(t *testing.T) (*goUpstream, *atomic.Int64) {
	var n atomic.Int64
	u := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Upstream", "1")
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	return u, &n
}

func TestFilters(t *testing.T) {
	pk := newPKI(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		for _, proto := range []string{"http1", "h2c", "h2-tls"} {
			t.Run(proto, func(t *testing.T) {
				up, hits := countingUpstream(t)
				tlsBlock, scheme, client := "", "http", h1Client()
				switch proto {
				case "h2c":
					client = h2cClient()
				case "h2-tls":
					tlsBlock = indent(fmt.Sprintf("tls:\n  certificates: [{cert_file: %q, key_file: %q}]", pk.file("server.pem"), pk.file("server-key.pem")), 4)
					scheme = "https"
					client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
						TLSClientConfig: &tls.Config{RootCAs: pk.pool, ServerName: "localhost"}}}
				}
				p := startProxy(t, filtersConfig(tr, up.addr, tlsBlock))
				base := scheme + "://" + p.addr("http")
				do := func(method, path string, hdr ...string) (*http.Response, string) {
					t.Helper()
					req, _ := http.NewRequest(method, base+path, nil)
					for i := 0; i+1 < len(hdr); i += 2 {
						req.Header.Set(hdr[i], hdr[i+1])
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := map[string]int{"http1": 1, "h2c": 2, "h2-tls": 2}[proto]; resp.ProtoMajor != want {
						t.Fatalf("spoke %s", resp.Proto)
					}
					return resp, string(b)
				}
				testFault(t, do, hits)
				testLocalRateLimit(t, do, hits)
				testCORS(t, do, hits)
				_, m := adminClient{t: t, base: "http://" + p.adminAddr()}.do("GET", "/stats/prometheus")
				for _, want := range []string{
					`proxylab_fault_aborts_injected{name="http",side="listener"} 2`,
					`proxylab_fault_delays_injected{name="http",side="listener"} 2`,
					`proxylab_fault_active_faults{name="http",side="listener"} 0`,
					`proxylab_local_ratelimit_enforced{name="http",side="listener"} 2`,
					`proxylab_local_ratelimit_rate_limited{name="http",side="listener"} 2`,
				} {
					if !strings.Contains(m, want) {
						t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "fault_")+grepLines(m, "local_ratelimit"))
					}
				}
			})
		}
	})
}

type doFunc func(method, path string, hdr ...string) (*http.Response, string)

func testFault(t *testing.T, do doFunc, hits *atomic.Int64) {
	t.Run("fault abort by header", func(t *testing.T) {
		before := hits.Load()
		resp, body := do("GET", "/a", "x-envoy-fault-abort-request", "503")
		if resp.StatusCode != 503 || body != "fault filter abort" || hits.Load() != before {
			t.Fatalf("%d %q, upstream hits +%d; want 503 from the proxy", resp.StatusCode, body, hits.Load()-before)
		}
	})
	t.Run("fault abort percentage 0 by header", func(t *testing.T) {
		resp, _ := do("GET", "/a", "x-envoy-fault-abort-request", "503", "x-envoy-fault-abort-request-percentage", "0")
		if resp.StatusCode != 200 {
			t.Fatalf("%d, want 200 (0%%)", resp.StatusCode)
		}
	})
	t.Run("fault delay by header", func(t *testing.T) {
		start := time.Now()
		resp, body := do("GET", "/a", "x-envoy-fault-delay-request", "300")
		if d := time.Since(start); resp.StatusCode != 200 || body != "ok /a" || d < 300*time.Millisecond {
			t.Fatalf("%d %q after %v, want 200 after >= 300ms", resp.StatusCode, body, d)
		}
	})
	t.Run("fault delay then abort", func(t *testing.T) {
		start := time.Now()
		resp, _ := do("GET", "/a", "x-envoy-fault-abort-request", "418", "x-envoy-fault-delay-request", "1")
		if resp.StatusCode != 418 || time.Since(start) > 5*time.Second {
			t.Fatalf("%d, want 418", resp.StatusCode)
		}
	})
}

func testLocalRateLimit(t *testing.T, do doFunc, hits *atomic.Int64) {
	t.Run("route bucket then 429 with x-ratelimit headers", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			resp, _ := do("GET", "/limited")
			if resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-limit") != "3" || resp.Header.Get("x-ratelimit-remaining") != fmt.Sprint(2-i) {
				t.Fatalf("request %d: %d limit=%q remaining=%q", i, resp.StatusCode, resp.Header.Get("x-ratelimit-limit"), resp.Header.Get("x-ratelimit-remaining"))
			}
		}
		before := hits.Load()
		resp, body := do("GET", "/limited")
		if resp.StatusCode != 429 || body != "local_rate_limited" || resp.Header.Get("x-ratelimit-remaining") != "0" ||
			resp.Header.Get("x-ratelimit-reset") == "" || hits.Load() != before {
			t.Fatalf("over the limit: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if resp, _ := do("GET", "/other"); resp.StatusCode != 200 {
			t.Fatalf("another route shares the bucket: %d", resp.StatusCode)
		}
	})
	t.Run("a bucket per header value", func(t *testing.T) {
		for i, want := range []int{200, 200, 429} {
			if resp, _ := do("GET", "/perkey", "x-user", "alice"); resp.StatusCode != want {
				t.Fatalf("alice %d: %d, want %d", i, resp.StatusCode, want)
			}
		}
		if resp, _ := do("GET", "/perkey", "x-user", "bob"); resp.StatusCode != 200 {
			t.Fatalf("bob: %d, want 200 (his own bucket)", resp.StatusCode)
		}
	})
}

func testCORS(t *testing.T, do doFunc, hits *atomic.Int64) {
	t.Run("cors preflight answered locally", func(t *testing.T) {
		before := hits.Load()
		resp, _ := do("OPTIONS", "/api", "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST")
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
			h.Get("Access-Control-Allow-Methods") != "GET, POST" || h.Get("Access-Control-Allow-Headers") != "x-token" ||
			h.Get("Access-Control-Max-Age") != "600" || h.Get("Access-Control-Allow-Credentials") != "true" || hits.Load() != before {
			t.Fatalf("%d %v, upstream hits +%d", resp.StatusCode, h, hits.Load()-before)
		}
	})
	for _, origin := range []string{"https://app.example.com", "https://x.trusted.org", "https://abc.regex.test"} {
		t.Run("cors actual request from "+origin, func(t *testing.T) {
			resp, body := do("GET", "/api", "Origin", origin)
			h := resp.Header
			if resp.StatusCode != 200 || body != "ok /api" || h.Get("Access-Control-Allow-Origin") != origin ||
				h.Get("Access-Control-Expose-Headers") != "x-upstream" || h.Get("Access-Control-Allow-Credentials") != "true" {
				t.Fatalf("%d %q %v", resp.StatusCode, body, h)
			}
		})
	}
	for _, tc := range []struct{ name, path, origin string }{
		{"origin not allowed", "/api", "https://evil.test"},
		{"suffix is not a substring", "/api", "https://trusted.org.evil.test"},
		{"route disables cors", "/nocors", "https://app.example.com"},
	} {
		t.Run("cors: "+tc.name, func(t *testing.T) {
			resp, _ := do("OPTIONS", tc.path, "Origin", tc.origin, "Access-Control-Request-Method", "POST")
			for k := range resp.Header {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Fatalf("%s set on %s from %s", k, tc.path, tc.origin)
				}
			}
			if resp.Header.Get("X-Upstream") != "1" {
				t.Fatalf("the preflight was not passed upstream: %d", resp.StatusCode)
			}
		})
	}
}

// TestFilterFaultGRPC: a fault abort of a gRPC call is a trailers-only
// reply with the grpc-status asked for (or derived from the HTTP status).
func TestFilterFaultGRPC(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		_, addr := startGRPCServer(t)
		p := startProxy(t, h2Config(tr, addr, true, filtersChain))
		c := grpcClient(t, p.addr("http"))
		for _, tc := range []struct {
			hdr, val string
			want     codes.Code
		}{
			{"x-envoy-fault-abort-grpc-request", "14", codes.Unavailable},
			{"x-envoy-fault-abort-grpc-request", "7", codes.PermissionDenied},
			{"x-envoy-fault-abort-request", "503", codes.Unavailable},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.UnaryCall(metadata.AppendToOutgoingContext(ctx, tc.hdr, tc.val), &testpb.SimpleRequest{})
			cancel()
			if st, _ := status.FromError(err); st.Code() != tc.want || st.Message() != "fault filter abort" {
				t.Fatalf("%s: %s: %v, want %v", tc.hdr, tc.val, err, tc.want)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 10}); err != nil {
			t.Fatalf("a call without fault headers: %v", err)
		}
	})
}

// TestFilterLocalRateLimitRPC: the local rate limit runs for bolt and
// dubbo requests (the filter supports RPC; cors, HTTP only, is skipped);
// those over the limit get the codec's error responses with their request
// IDs and never reach the upstream.
func TestFilterLocalRateLimitRPC(t *testing.T) {
	for _, codec := range []xprotocol.Codec{bolt.Codec{}, dubbo.Codec{}} {
		t.Run(codec.Name(), func(t *testing.T) { testRateLimitRPC(t, codec) })
	}
}

func testRateLimitRPC(t *testing.T, codec xprotocol.Codec) {
	forEachTransport(t, func(t *testing.T, tr string) {
		srv := startRPCServer(t, "A", codec)
		p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - name: rpc
    address: 127.0.0.1:0
    http_proxy:
      codec: %s
      http_filters:
        - name: cors   # HTTP only: skipped for bolt
        - name: local_ratelimit
          typed_config: {token_bucket: {max_tokens: 3, tokens_per_fill: 3, fill_interval: 1h}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: a}]}
clusters:
  - {name: a, protocol: %s, connect_timeout: 1s, hosts: [{address: %q}]}
`, tr, codec.Name(), codec.Name(), srv.addr))
		c, err := net.DialTimeout("tcp", p.addr("rpc"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		peer := newPeer(codec, c)
		var statuses []int
		for i := 0; i < 5; i++ {
			peer.write(rpcRequest(codec, uint64(100+i), "svc.A", "m", map[string]string{"content": fmt.Sprint(i), "delay-ms": "0"}))
			f, err := peer.read()
			if err != nil || f.Kind != xprotocol.Response || f.ID != uint64(100+i) {
				t.Fatalf("request %d: %v %v id=%d", i, err, f.Kind, f.ID)
			}
			statuses = append(statuses, codec.HTTPStatus(&f))
		}
		if fmt.Sprint(statuses[:3]) != "[200 200 200]" || statuses[3] == 200 || statuses[4] == 200 || srv.requests.Load() != 3 {
			t.Fatalf("statuses %v, upstream requests %d; want 3 answered, 2 refused", statuses, srv.requests.Load())
		}
	})
}

// TestFilterRateLimitFloodIsolation: a client flooding a rate-limited
// route gets 429s (answered locally, none reaching the upstream) while
// another route's latency stays that of an idle proxy.
func TestFilterRateLimitFloodIsolation(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up, hits := countingUpstream(t)
		p := startProxy(t, filtersConfig(tr, up.addr, ""))
		base := "http://" + p.addr("http")
		client := h1Client()
		latency := func(n int) time.Duration {
			var ds []time.Duration
			for i := 0; i < n; i++ {
				start := time.Now()
				resp, err := client.Get(base + "/calm")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("calm route: %d", resp.StatusCode)
				}
				ds = append(ds, time.Since(start))
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			return ds[len(ds)/2]
		}
		idle := latency(50)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var limited, other atomic.Int64
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fc := h1Client()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := fc.Get(base + "/limited")
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 429 {
						limited.Add(1)
					} else {
						other.Add(1)
					}
				}
			}()
		}
		waitFor(t, 10*time.Second, "the flood to be limited", func() bool { return limited.Load() > 100 })
		beforeCalm := hits.Load()
		busy := latency(50)
		close(stop)
		wg.Wait()
		t.Logf("calm route median latency: idle %v, during the flood %v; flood: %d limited, %d passed", idle, busy, limited.Load(), other.Load())
		if other.Load() > 3 {
			t.Fatalf("%d flood requests passed the 3-token bucket", other.Load())
		}
		if hits.Load()-beforeCalm != 50 {
			t.Fatalf("upstream saw %d requests during the calm run, want its 50 only", hits.Load()-beforeCalm)
		}
		if busy > idle*10+20*time.Millisecond {
			t.Fatalf("the calm route slowed from %v to %v under the flood", idle, busy)
		}
	})
}

// TestFiltersValidate: `proxylab validate` refuses unknown filters (listing
// the known ones) and filter configs that do not validate, with the path.
func TestFiltersValidate(t *testing.T) {
	cfg := `listeners:
  - name: web
    address: "127.0.0.1:0"
    http_proxy:
      http_filters:
        - name: fualt
        - {name: fault, typed_config: {abort: {http_status: 700}}}
        - {name: local_ratelimit, typed_config: {token_bucket: {max_tokens: 0, fill_interval: 1s}}}
        - name: cors
        - name: cors
routes:
  - name: all
    domains: ["*"]
    typed_per_filter_config:
      cors: {allow_origin_string_match: [{exact: a, suffix: b}]}
      nosuch: {}
    routes:
      - prefix: /
        cluster: a
        typed_per_filter_config: {fault: {disabled: true, abort: {http_status: 503}}}
clusters:
  - {name: a, hosts: [{address: "127.0.0.1:1"}]}
`
	out, err := exec.Command(binPath, "validate", "-c", writeTemp(t, cfg)).CombinedOutput()
	if err == nil {
		t.Fatalf("validate accepted bad http_filters:\n%s", out)
	}
	for _, want := range []string{
		`listeners[0].http_proxy.http_filters[0].name: unknown http filter "fualt" (known: compressor, cors, ext_authz, fault, local_ratelimit, ratelimit, rbac)`,
		"listeners[0].http_proxy.http_filters[1].typed_config.abort.http_status: must be 200-599",
		"listeners[0].http_proxy.http_filters[2].typed_config.token_bucket.max_tokens: must be > 0",
		`listeners[0].http_proxy.http_filters[4].name: filter "cors" listed twice`,
		"routes[0].typed_per_filter_config.cors.allow_origin_string_match[0]: needs exactly one",
		`routes[0].typed_per_filter_config.nosuch: unknown http filter "nosuch"`,
		"routes[0].routes[0].typed_per_filter_config.fault.disabled: disabled stands alone",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
}

// testExampleAddHeader: the example filter of docs/extending.md marks
// responses (a local reply too), takes a route's value, is switched off by
// a route, and counts what it marked; over HTTP/1.1 and h2c.
func testExampleAddHeader(t *testing.T, bin string) {
	up, _ := countingUpstream(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		p := startProxyBin(t, bin, fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: web
    address: 127.0.0.1:0
    http_proxy:
      http_filters:
        - {name: addheader, typed_config: {name: x-served-by, value: edge-1}}
routes:
  - name: site
    domains: ["*"]
    routes:
      - {prefix: /special, cluster: up, typed_per_filter_config: {addheader: {value: special}}}
      - {prefix: /quiet, cluster: up, typed_per_filter_config: {addheader: {disabled: true}}}
      - {path: /direct, direct_response: {status: 204}}
      - {prefix: /, cluster: up}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, up.addr))
		for _, c := range []*http.Client{h1Client(), h2cClient()} {
			for _, tc := range []struct{ path, want string }{
				{"/a", "edge-1"}, {"/special/x", "special"}, {"/quiet", ""}, {"/direct", "edge-1"},
			} {
				resp, err := c.Get("http://" + p.addr("web") + tc.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.Header.Get("x-served-by"); got != tc.want {
					t.Fatalf("%s %s: x-served-by %q, want %q", resp.Proto, tc.path, got, tc.want)
				}
			}
		}
		_, m := adminClient{t: t, base: "http://" + p.adminAddr()}.do("GET", "/stats/prometheus")
		if !strings.Contains(m, `proxylab_addheader_responses{name="web",side="listener"} 6`) {
			t.Fatalf("metric:\n%s", grepLines(m, "addheader"))
		}
	})
}

// TestFilterTunnel: an upgrade passes the decoder filters' headers phase:
// a fault delay holds it (the client's early bytes wait in the chain and
// reach the upstream after the 101), an abort refuses it before any
// upstream sees it, and the tunnel's bytes then bypass the filters.
func TestFilterTunnel(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startWSUpstream(t)
		p := startProxy(t, wsConfig(tr, up.addr, filtersChain))
		upgrade := "GET /ws/%s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n%sSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

		c := dialRaw(t, p.addr("http"))
		start := time.Now()
		c.send(fmt.Sprintf(upgrade, "delayed", "x-envoy-fault-delay-request: 300\r\n") + string(maskedFrame(0x2, []byte("early"))))
		head, err := c.r.ReadString('\n')
		if err != nil || !strings.HasPrefix(head, "HTTP/1.1 101 ") || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("status line %q %v after %v", head, err, time.Since(start))
		}
		readHeaderBlock(t, c)
		if op, payload := readFrame(t, c.r); op != 0x2 || string(payload) != "early" {
			t.Fatalf("echo of early data held during the delay: op %d %q", op, payload)
		}

		c2 := dialRaw(t, p.addr("http"))
		c2.send(fmt.Sprintf(upgrade, "aborted", "x-envoy-fault-abort-request: 503\r\n"))
		if resp, _ := c2.readResponse("GET"); resp.StatusCode != 503 {
			t.Fatalf("aborted upgrade: %d", resp.StatusCode)
		}
		for _, r := range up.requests() {
			if strings.HasPrefix(r, "/ws/aborted") {
				t.Fatalf("upstream saw the aborted upgrade: %s", r)
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, "ws://"+p.addr("http")+"/ws/echo", nil)
		if err != nil {
			t.Fatalf("dial: %v %v", err, resp)
		}
		echoSizes(t, ws, up)
	})
}
