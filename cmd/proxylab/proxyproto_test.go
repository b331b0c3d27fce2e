package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// xffUpstream answers with the X-Forwarded-For it got.
func xffUpstream(t *testing.T) *goUpstream {
	return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s", r.Header.Get("X-Forwarded-For"))
	}))
}

func ppListenerConfig(tr, upstream, logPath, trusted, timeout string) string {
	return fmt.Sprintf(`transport: %s
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
    proxy_protocol: {trusted_sources: [%s], timeout: %s}
    http_proxy:
      access_log: {path: %s, format: '%%DOWNSTREAM_REMOTE_ADDRESS%% %%RESPONSE_CODE%%'}
routes:
  - name: all
    domains: ["*"]
    routes: [{prefix: /, cluster: up}]
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, trusted, timeout, logPath, upstream)
}

// waitFile waits until path contains want.
func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never had %q:\n%s", path, want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProxyProtocolListener: a PROXY v1 or v2 header's client address is
// what X-Forwarded-For and the access log show, over HTTP/1.1 and h2c, the
// request's bytes sent with the header in one segment; malformed, too long,
// untrusted and late headers are refused and counted.
func TestProxyProtocolListener(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := xffUpstream(t)
		logPath := filepath.Join(t.TempDir(), "access.log")
		p := startProxy(t, ppListenerConfig(tr, up.addr, logPath, "127.0.0.0/8", "300ms"))
		addr := p.addr("web")

		headers := map[string]string{
			"v1": "PROXY TCP4 203.0.113.9 192.0.2.80 40000 80\r\n",
			"v2": string([]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n', 0x21, 0x21, 0, 36,
				0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, // 2001:db8::77
				0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
				0x9c, 0x40, 0, 80}),
		}
		want := map[string]string{"v1": "203.0.113.9", "v2": "2001:db8::77"}
		for _, v := range []string{"v1", "v2"} {
			// HTTP/1.1: header and request in one write.
			c := dialRaw(t, addr)
			c.send(headers[v] + "GET /h1 HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := c.readResponse("GET")
			if resp.StatusCode != 200 || body != "xff="+want[v] {
				t.Fatalf("%s h1: %d %q", v, resp.StatusCode, body)
			}
			c.Close()
			waitFile(t, logPath, want[v]+"")
			// h2c prior knowledge after the header.
			h2 := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
				nc, err := net.Dial("tcp", addr)
				if err == nil {
					_, err = io.WriteString(nc, headers[v])
				}
				return nc, err
			}}
			r, err := h2.RoundTrip(mustReq(t, "http://x/h2"))
			if err != nil {
				t.Fatalf("%s h2c: %v", v, err)
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			h2.CloseIdleConnections()
			if r.StatusCode != 200 || string(b) != "xff="+want[v] || r.ProtoMajor != 2 {
				t.Fatalf("%s h2c: %d %q proto %d", v, r.StatusCode, b, r.ProtoMajor)
			}
		}
		waitFile(t, logPath, "[2001:db8::77]:40000 200")
		waitFile(t, logPath, "203.0.113.9:40000 200")

		// Refused: malformed, too long (v1 without CRLF within 107 bytes),
		// late (nothing within the timeout), a bare request without header.
		for _, bad := range []string{"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nGET / HTTP/1.1\r\n\r\n",
			"PROXY TCP4 " + strings.Repeat("1", 200), "", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"} {
			c := dialRaw(t, addr)
			if bad != "" {
				c.send(bad)
			}
			c.expectClosed()
		}
		fams := adminClient{t: t, base: "http://" + p.adminAddr()}.scrape()
		for result, n := range map[string]float64{"found": 4, "malformed": 2, "too_long": 1, "timeout": 1} {
			if got := value(t, fams, "proxylab_proxy_protocol_total", map[string]string{"name": "web", "result": result}); got != n {
				t.Errorf("proxy_protocol_total{result=%s} = %v, want %v", result, got, n)
			}
		}
	})
}

// TestProxyProtocolUntrusted: a peer outside trusted_sources is refused
// before anything is read, even with a well-formed header.
func TestProxyProtocolUntrusted(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := xffUpstream(t)
		p := startProxy(t, ppListenerConfig(tr, up.addr, filepath.Join(t.TempDir(), "a.log"), "10.0.0.0/8", "5s"))
		c := dialRaw(t, p.addr("web"))
		c.send("PROXY TCP4 203.0.113.9 192.0.2.80 40000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.expectClosed()
		fams := adminClient{t: t, base: "http://" + p.adminAddr()}.scrape()
		if got := value(t, fams, "proxylab_proxy_protocol_total", map[string]string{"name": "web", "result": "untrusted"}); got != 1 {
			t.Fatalf("untrusted = %v", got)
		}
	})
}

func mustReq(t *testing.T, url string) *http.Request {
	r, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// startHAProxy runs haproxy in the foreground with cfg until the test ends,
// and waits until bind accepts.
func startHAProxy(t *testing.T, cfg, bind string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed")
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", bind)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("haproxy exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening on %s: %s", bind, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getFrom sends GET / to addr from the local address src and returns the
// body of a 200.
func getFrom(t *testing.T, src, addr string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	return string(b)
}

const haproxyGlobal = `global
  log stderr format raw local0 warning
defaults
  mode tcp
  timeout connect 5s
  timeout client 10s
  timeout server 10s
`

// TestProxyProtocolFromHAProxy: haproxy send-proxy / send-proxy-v2 in front
// of a proxylab listener reading PROXY: the upstream sees the client's
// address (127.0.0.2), not haproxy's (127.0.0.1).
func TestProxyProtocolFromHAProxy(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := xffUpstream(t)
		logPath := filepath.Join(t.TempDir(), "access.log")
		p := startProxy(t, ppListenerConfig(tr, up.addr, logPath, "127.0.0.1/32", "5s"))
		for _, send := range []string{"send-proxy", "send-proxy-v2"} {
			front := freePort(t)
			startHAProxy(t, haproxyGlobal+fmt.Sprintf(`listen front
  bind %s
  server px %s source 127.0.0.1 %s
`, front, p.addr("web"), send), front)
			if got := getFrom(t, "127.0.0.2", front); got != "xff=127.0.0.2" {
				t.Fatalf("%s: %q", send, got)
			}
		}
		waitFile(t, logPath, "127.0.0.2:")
	})
}

// TestProxyProtocolToHAProxy: a tcp_proxy cluster with proxy_protocol v1 or
// v2 in front of haproxy accept-proxy (mode http, option forwardfor): the
// upstream behind haproxy sees proxylab's client (127.0.0.3).
func TestProxyProtocolToHAProxy(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := xffUpstream(t)
		for _, v := range []int{1, 2} {
			back := freePort(t)
			startHAProxy(t, haproxyGlobal+fmt.Sprintf(`listen back
  mode http
  option forwardfor
  bind %s accept-proxy
  server up %s
`, back, up.addr), back)
			p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - name: tcp
    address: 127.0.0.1:0
    tcp_proxy: {cluster: hap}
clusters:
  - name: hap
    proxy_protocol: {version: %d}
    hosts: [{address: %q}]
`, tr, v, back))
			if got := getFrom(t, "127.0.0.3", p.addr("tcp")); got != "xff=127.0.0.3" {
				t.Fatalf("v%d: %q", v, got)
			}
		}
	})
}

// TestProxyProtocolTLS: the PROXY header comes before the TLS handshake;
// over HTTP/2 (ALPN h2) and HTTP/1.1 the upstream sees the header's client.
func TestProxyProtocolTLS(t *testing.T) {
	pk := newPKI(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := xffUpstream(t)
		cfg := strings.Replace(tlsListenerConfig(tr, pk, up.addr, ""), "    tls:\n", "    proxy_protocol: {trusted_sources: [127.0.0.0/8]}\n    tls:\n", 1)
		p := startProxy(t, cfg)
		for _, alpn := range []string{"h2", "http/1.1"} {
			hdr := "PROXY TCP4 198.51.100.20 192.0.2.1 5555 443\r\n"
			tcfg := &tls.Config{RootCAs: pk.pool, ServerName: "localhost", NextProtos: []string{alpn}}
			rt := &http.Transport{ForceAttemptHTTP2: alpn == "h2", TLSClientConfig: tcfg,
				DialTLSContext: func(ctx context.Context, network, a string) (net.Conn, error) {
					nc, err := net.Dial("tcp", p.addr("web"))
					if err != nil {
						return nil, err
					}
					if _, err := io.WriteString(nc, hdr); err != nil {
						return nil, err
					}
					tc := tls.Client(nc, tcfg)
					return tc, tc.HandshakeContext(ctx)
				}}
			if alpn == "h2" {
				if err := http2.ConfigureTransport(rt); err != nil {
					t.Fatal(err)
				}
			}
			c := &http.Client{Timeout: 10 * time.Second, Transport: rt}
			resp, err := c.Get("https://localhost/tls")
			if err != nil {
				t.Fatalf("%s: %v", alpn, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			rt.CloseIdleConnections()
			wantMajor := map[string]int{"h2": 2, "http/1.1": 1}[alpn]
			if resp.StatusCode != 200 || string(b) != "xff=198.51.100.20" || resp.ProtoMajor != wantMajor {
				t.Fatalf("%s: %d %q proto %d", alpn, resp.StatusCode, b, resp.ProtoMajor)
			}
		}
	})
}

// TestProxyProtocolRBAC: listener filters after proxy_protocol (rbac) decide
// on the client the header names, not on the peer that sent it.
func TestProxyProtocolRBAC(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := xffUpstream(t)
		p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - name: web
    address: 127.0.0.1:0
    proxy_protocol: {trusted_sources: [127.0.0.0/8]}
    listener_filters:
      - name: rbac
        typed_config:
          rules: {action: ALLOW, policies: {doc: {permissions: [{any: true}], principals: [{source_ip: {address_prefix: 203.0.113.0, prefix_len: 24}}]}}}
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, up.addr))
		c := dialRaw(t, p.addr("web"))
		c.send("PROXY TCP4 203.0.113.9 192.0.2.80 40000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.readResponse("GET"); resp.StatusCode != 200 || body != "xff=203.0.113.9" {
			t.Fatalf("allowed client: %d %q", resp.StatusCode, body)
		}
		c.Close()
		d := dialRaw(t, p.addr("web"))
		d.send("PROXY TCP4 198.51.100.9 192.0.2.80 40000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
		d.expectClosed()
	})
}
