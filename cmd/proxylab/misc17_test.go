package main

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/config"
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
	// rawUp accepts and hands each connection to serve (which owns it).
	rawUp := func(serve func(net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go serve(c)
			}
		}()
		return ln.Addr().String()
	}
	// A silent peer: the handshake times out (connect_timeout bounds it).
	silentUp := rawUp(func(c net.Conn) { time.Sleep(5 * time.Second); c.Close() })
	// A peer that hangs up on the ClientHello.
	hangupUp := rawUp(func(c net.Conn) { c.Read(make([]byte, 512)); c.Close() })
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
      - {prefix: /silent, cluster: silent}
      - {prefix: /hangup, cluster: hangup}
clusters:
  - {name: retry, protocol: %s, tls: {ca_file: %q}, hosts: [{address: %q}, {address: %q}, {address: %q}]}
  - name: expired
    protocol: %s
    tls: {ca_file: %q}
    outlier_detection: {consecutive_connect_failure: 2, consecutive_5xx: 0, interval: 50ms, base_ejection_time: 30s, max_ejection_percent: 100}
    hosts: [{address: %q}]
  - {name: plain, protocol: %s, tls: {ca_file: %q}, hosts: [{address: %q}]}
  - {name: silent, protocol: %[3]s, connect_timeout: 300ms, tls: {ca_file: %[4]q}, hosts: [{address: %[14]q}]}
  - {name: hangup, protocol: %[3]s, tls: {ca_file: %[4]q}, hosts: [{address: %[15]q}]}
`, tr, logPath, proto, p.file("cas.pem"), expiredUp, plainUp, goodUp, proto, p.file("cas.pem"), expiredUp, proto, p.file("cas.pem"), plainUp, silentUp, hangupUp)
				px := startProxy(t, cfg)
				a := adminClient{t: t, base: "http://" + px.adminAddr()}
				// Round robin over expired, plaintext, good: every request
				// lands on the good host within its two retries.
				for i := range 6 {
					if code, body := px.get("/retry"); code != 200 || body != "tls ok" {
						t.Fatalf("/retry #%d: %d %q", i, code, body)
					}
				}
				for _, path := range []string{"/expired", "/expired", "/plain", "/hangup"} {
					if code, body := px.get(path); code != 503 || !strings.Contains(body, "upstream connect error") {
						t.Fatalf("%s: %d %q, want 503 upstream connect error", path, code, body)
					}
				}
				start := time.Now()
				if code, body := px.get("/silent"); code != 503 || !strings.Contains(body, "upstream connect timeout") {
					t.Fatalf("/silent: %d %q, want 503 upstream connect timeout", code, body)
				}
				within(t, "handshake timeout", time.Since(start), 250*time.Millisecond, 3*time.Second)
				fams := a.scrape()
				for _, c := range []struct {
					name, cluster string
					min           float64
				}{
					{"proxylab_cluster_upstream_cx_connect_fail_total", "retry", 2},
					{"proxylab_cluster_upstream_rq_retry_total", "retry", 2},
					{"proxylab_cluster_upstream_cx_connect_fail_total", "expired", 2},
					{"proxylab_cluster_upstream_cx_connect_fail_total", "plain", 1},
					{"proxylab_cluster_upstream_cx_connect_fail_total", "silent", 1},
					{"proxylab_cluster_upstream_cx_connect_fail_total", "hangup", 1},
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
					return strings.Count(string(b), "\n") >= 11
				})
				b, _ := os.ReadFile(logPath)
				for _, want := range []string{"/expired 503 UF", "/plain 503 UF", "/hangup 503 UF", "/silent 503 UF", "/retry 200 -"} {
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

// startupLine runs proxylab through cmdPrefix (e.g. taskset) with cfg and
// returns its "proxylab started" log line; the process is stopped and
// reaped before returning.
func startupLine(t *testing.T, cfg string, cmdPrefix ...string) string {
	t.Helper()
	args := append(cmdPrefix, binPath, "run", "-c", writeTemp(t, cfg))
	cmd := exec.Command(args[0], args[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `msg="proxylab started"`) {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("proxylab exited before starting")
		}
		go func() {
			for range lines {
			}
		}()
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("proxylab did not start")
	}
	return ""
}

// TestStartupLineReportsInheritedAffinity: a process pinned from outside
// (taskset) reports the CPUs it may use, not "all"; unpinned, it reports
// what it inherited, as /proc shows it.
func TestStartupLineReportsInheritedAffinity(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("no taskset")
	}
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	cfg := httpConfig("netpoll", []string{up.addr}, "", "")
	if l := startupLine(t, cfg, "taskset", "-c", "0"); !strings.Contains(l, " cpus=0 gomaxprocs=1 ") {
		t.Fatalf("under taskset -c 0: %s", l)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	allowed := ""
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			allowed = strings.TrimSpace(v)
		}
	}
	if l := startupLine(t, cfg); !strings.Contains(l, " cpus="+allowed+" ") {
		t.Fatalf("unpinned (allowed %s): %s", allowed, l)
	}
}

// TestConfigDumpShowsDefaults: /config_dump of the embedded default config
// (its ports made free) shows every value in force, no null: sockmap.splice
// included.
func TestConfigDumpShowsDefaults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	demo := ln.Addr().String()
	ln.Close()
	cfg := strings.NewReplacer("127.0.0.1:18080", demo, "127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:9901", "127.0.0.1:0").Replace(string(config.DefaultYAML()))
	p := startProxy(t, cfg)
	a := adminClient{t: t, base: "http://" + p.adminAddr()}
	code, dump := a.do("GET", "/config_dump")
	if code != 200 {
		t.Fatalf("%d %s", code, dump)
	}
	if strings.Contains(dump, "null") || strings.Contains(dump, ": ~") {
		t.Errorf("unset values dumped as null:\n%s", dump)
	}
	if !strings.Contains(dump, "sockmap:\n    cgroup: \"\"\n    splice: true\n") {
		t.Errorf("sockmap.splice default not shown:\n%s", dump)
	}
}

// stopGroup stops a process started as the leader of its own process group
// (Setpgid) and everything in the group — nginx's workers outlive a killed
// master — and fails the test if any of them remains. sig asks for a
// graceful stop first (nginx: SIGQUIT waits for the workers).
func stopGroup(t *testing.T, cmd *exec.Cmd, sig syscall.Signal) {
	t.Helper()
	pgid := cmd.Process.Pid
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("%s did not stop on %v within 5s", cmd.Path, sig)
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, _ := exec.Command("pgrep", "-g", fmt.Sprint(pgid)).Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			return
		}
		if time.Now().After(end) {
			syscall.Kill(-pgid, syscall.SIGKILL)
			t.Errorf("processes of %s left after it stopped: %s", cmd.Path, out)
			return
		}
	}
}
