package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
)

// TestUpstreamTLSHandshakeFailureIsConnectFailure: a TLS handshake to a
// host that fails (certificate not verified, or a plaintext server) is a
// connect failure: retried by retry_on connect-failure, 503 UF without a
// host to retry on, counted as a connect failure (cluster and outlier
// detection) and still under the TLS metrics. Over HTTP/1 and HTTP/2
// clusters (the two pool kinds).
func TestUpstreamTLSHandshakeFailureIsConnectFailure(t *testing.T) {
	p := newPKI(t)
	good, goodKey := p.issue("up-good", []string{"localhost", "127.0.0.1"}, nil, false, time.Now().Add(time.Hour))
	expired, expiredKey := p.issue("up-expired", []string{"localhost", "127.0.0.1"}, nil, false, time.Now().Add(-time.Hour))
	tlsUp := func(certFile, keyFile string) string {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls ok") }))
		s.EnableHTTP2 = true
		s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
		s.StartTLS()
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "https://")
	}
	goodUp, expiredUp := tlsUp(good, goodKey), tlsUp(expired, expiredKey)
	plainUp := startUpstream(t, http.HandlerFunc(echoHandler)).addr
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			forEachTransport(t, func(t *testing.T, tr string) {
				logPath := filepath.Join(t.TempDir(), "access.log")
				cfg := fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: web
    address: "127.0.0.1:0"
    http_proxy:
      access_log: {path: %q, format: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%%\n"}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /retry, cluster: retry, retry_policy: {retry_on: [connect-failure], num_retries: 2}}
      - {prefix: /expired, cluster: expired}
      - {prefix: /plain, cluster: plain}
clusters:
  - {name: retry, protocol: %s, tls: {ca_file: %q}, hosts: [{address: %q}, {address: %q}, {address: %q}]}
  - name: expired
    protocol: %s
    tls: {ca_file: %q}
    outlier_detection: {consecutive_connect_failure: 2, consecutive_5xx: 0, interval: 50ms, base_ejection_time: 30s, max_ejection_percent: 100}
    hosts: [{address: %q}]
  - {name: plain, protocol: %s, tls: {ca_file: %q}, hosts: [{address: %q}]}
`, tr, logPath, proto, p.file("cas.pem"), expiredUp, plainUp, goodUp, proto, p.file("cas.pem"), expiredUp, proto, p.file("cas.pem"), plainUp)
				px := startProxy(t, cfg)
				a := adminClient{t: t, base: "http://" + px.adminAddr()}
				// Round robin over expired, plaintext, good: every request
				// lands on the good host within its two retries.
				for i := range 6 {
					if code, body := px.get("/retry"); code != 200 || body != "tls ok" {
						t.Fatalf("/retry #%d: %d %q", i, code, body)
					}
				}
				for _, path := range []string{"/expired", "/expired", "/plain"} {
					if code, body := px.get(path); code != 503 {
						t.Fatalf("%s: %d %q, want 503", path, code, body)
					}
				}
				fams := a.scrape()
				for _, c := range []struct {
					name, cluster string
					min           float64
				}{
					{"proxylab_cluster_upstream_cx_connect_fail_total", "retry", 2},
					{"proxylab_cluster_upstream_rq_retry_total", "retry", 2},
					{"proxylab_cluster_upstream_cx_connect_fail_total", "expired", 2},
					{"proxylab_cluster_upstream_cx_connect_fail_total", "plain", 1},
					{"proxylab_cluster_outlier_detection_ejections_total", "expired", 1},
				} {
					if v := counterOr0(fams, c.name, map[string]string{"cluster": c.cluster}); v < c.min {
						t.Errorf("%s{cluster=%s} = %v, want >= %v", c.name, c.cluster, v, c.min)
					}
				}
				if v := counterOr0(fams, "proxylab_tls_handshake_failures_total", map[string]string{"side": "cluster", "reason": "certificate_verify_failed"}); v < 1 {
					t.Errorf("tls handshake failures (certificate_verify_failed) = %v", v)
				}
				waitFor(t, 5*time.Second, "access log lines", func() bool {
					b, _ := os.ReadFile(logPath)
					return strings.Count(string(b), "\n") >= 9
				})
				b, _ := os.ReadFile(logPath)
				for _, want := range []string{"/expired 503 UF", "/plain 503 UF", "/retry 200 -"} {
					if !strings.Contains(string(b), want) {
						t.Errorf("access log lacks %q:\n%s", want, b)
					}
				}
			})
		})
	}
}

// TestRPCToWrongProtocolCluster: `validate` refuses a route that sends a
// listener's RPC requests to a cluster of another protocol, with its path;
// with codec auto (decided per connection) the proxy refuses such a request
// with 503 instead of writing it upstream in the wrong protocol: a dubbo
// call falling through to an HTTP cluster, a bolt call to a dubbo cluster,
// an HTTP request carrying the `service` header an RPC route matches.
func TestRPCToWrongProtocolCluster(t *testing.T) {
	bad := writeTemp(t, `listeners:
  - {name: rpc, address: "127.0.0.1:1", http_proxy: {codec: dubbo}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /svc.A/, cluster: dub}
      - {prefix: /, cluster: web}
clusters:
  - {name: dub, protocol: dubbo, hosts: [{address: "127.0.0.1:2"}]}
  - {name: web, hosts: [{address: "127.0.0.1:3"}]}
`)
	out, err := exec.Command(binPath, "validate", "-c", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("validate: exit %v, want 1\n%s", err, out)
	}
	if want := `routes[0].routes[1].cluster: cluster "web" speaks http1, listener "rpc" codec dubbo`; !strings.Contains(string(out), want) {
		t.Fatalf("validate output lacks %q:\n%s", want, out)
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		boltUp := startRPCServer(t, "bolt", bolt.Codec{})
		dubboUp := startRPCServer(t, "dubbo", dubbo.Codec{})
		httpUp := startUpstream(t, httpHello())
		p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /, headers: [{name: service, exact: "svc.bolt"}], cluster: bolt}
      - {prefix: /, headers: [{name: service, exact: "svc.both"}], cluster: dubbo}
      - {prefix: /, cluster: web}
clusters:
  - {name: bolt, protocol: bolt, hosts: [{address: %q}]}
  - {name: dubbo, protocol: dubbo, hosts: [{address: %q}]}
  - {name: web, hosts: [{address: %q}]}
`, tr, boltUp.addr, dubboUp.addr, httpUp.addr))
		addr := p.addr("web")
		for _, tc := range []struct {
			codec   xprotocol.Codec
			service string
		}{{dubbo.Codec{}, "svc.other"}, {bolt.Codec{}, "svc.both"}, {bolt.Codec{}, "svc.other"}} {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			peer := newPeer(tc.codec, c)
			peer.write(rpcRequest(tc.codec, 9, tc.service, "m", nil))
			f, err := peer.read()
			if err != nil || f.Kind != xprotocol.Response || f.ID != 9 || tc.codec.HTTPStatus(&f) != 503 {
				t.Fatalf("%s %s: %v kind=%v id=%d status=%d", tc.codec.Name(), tc.service, err, f.Kind, f.ID, tc.codec.HTTPStatus(&f))
			}
			c.Close()
		}
		req, _ := http.NewRequest("GET", "http://"+addr+"/x", nil)
		req.Header.Set("service", "svc.bolt")
		resp, err := h1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("HTTP request routed to the bolt cluster: %d, want 503", resp.StatusCode)
		}
		if n, m, h := boltUp.conns.Load(), dubboUp.conns.Load(), httpUp.conns.get(); n+m+int64(h) != 0 {
			t.Fatalf("upstreams saw connections: bolt %d dubbo %d http %d", n, m, h)
		}
	})
}
