package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Timeouts of issue #17: stream_idle_timeout (listener and route),
// request_timeout, tcp_proxy idle_timeout.

// stallingUpstream answers /stall with a head and a few body bytes, then
// stalls until the request goes away; anything else is echoed.
func stallingUpstream(t *testing.T) *goUpstream {
	return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stall" {
			echoHandler(w, r)
			return
		}
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	}))
}

// within fails unless d is in [lo, hi].
func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Errorf("%s after %v, want %v–%v", what, d, lo, hi)
	}
}

// TestStreamIdleAndRequestTimeouts: stream_idle_timeout answers 408 (SI)
// to a client that stalls its body and resets a response whose upstream
// stalls; request_timeout answers 408 (DT) to a body trickled too slowly
// to be idle; each counted. HTTP/1.1 and h2c.
func TestStreamIdleAndRequestTimeouts(t *testing.T) {
	const idle, reqTO = 600 * time.Millisecond, 1500 * time.Millisecond
	up := stallingUpstream(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		logPath := filepath.Join(t.TempDir(), "access.log")
		cfg := "admin: {address: \"127.0.0.1:0\"}\n" + httpConfig(tr, []string{up.addr}, fmt.Sprintf(`stream_idle_timeout: %v
request_timeout: %v
access_log: {path: %q, format: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%%\n"}`, idle, reqTO, logPath), "")
		p := startProxy(t, cfg)
		addr := p.addr("http")
		t.Run("http1", func(t *testing.T) {
			t.Run("stalled body", func(t *testing.T) {
				c := dialRaw(t, addr)
				start := time.Now()
				c.send("POST /idle HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
				resp, body := c.readResponse("POST")
				within(t, "408", time.Since(start), idle-50*time.Millisecond, idle+3*time.Second)
				if resp.StatusCode != 408 || !strings.Contains(body, "stream timeout") {
					t.Fatalf("%d %q, want 408 stream timeout", resp.StatusCode, body)
				}
				c.expectClosed()
			})
			t.Run("trickled body", func(t *testing.T) {
				c := dialRaw(t, addr)
				start := time.Now()
				c.send("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(100 * time.Millisecond):
							c.Write([]byte("x"))
						}
					}
				}()
				resp, body := c.readResponse("POST")
				within(t, "408", time.Since(start), reqTO-50*time.Millisecond, reqTO+3*time.Second)
				if resp.StatusCode != 408 || !strings.Contains(body, "request timeout") {
					t.Fatalf("%d %q, want 408 request timeout", resp.StatusCode, body)
				}
			})
			t.Run("stalled response", func(t *testing.T) {
				c := dialRaw(t, addr)
				c.send("GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(c.r, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("%v %v", resp, err)
				}
				start := time.Now()
				b, err := io.ReadAll(resp.Body)
				within(t, "reset", time.Since(start), idle-50*time.Millisecond, idle+3*time.Second)
				if err == nil || string(b) != "partial" {
					t.Fatalf("read %q, %v: want the partial body then an error", b, err)
				}
			})
		})
		t.Run("h2c", func(t *testing.T) {
			client := h2cClient()
			post := func(path string, trickle time.Duration) (*http.Response, time.Duration) {
				pr, pw := io.Pipe()
				stop := make(chan struct{})
				t.Cleanup(func() { close(stop); pw.Close() })
				go func() {
					pw.Write([]byte("0123456789"))
					for trickle > 0 {
						select {
						case <-stop:
							return
						case <-time.After(trickle):
							if _, err := pw.Write([]byte("x")); err != nil {
								return
							}
						}
					}
				}()
				req, _ := http.NewRequest("POST", "http://"+addr+path, pr)
				req.ContentLength = 1000
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, time.Since(start)
			}
			resp, d := post("/idle", 0)
			within(t, "408 (stalled body)", d, idle-50*time.Millisecond, idle+3*time.Second)
			if resp.StatusCode != 408 {
				t.Errorf("stalled body: %d, want 408", resp.StatusCode)
			}
			resp, d = post("/slow", 100*time.Millisecond)
			within(t, "408 (trickled body)", d, reqTO-50*time.Millisecond, reqTO+3*time.Second)
			if resp.StatusCode != 408 {
				t.Errorf("trickled body: %d, want 408", resp.StatusCode)
			}
			resp, err := client.Get("http://" + addr + "/stall")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%v %v", resp, err)
			}
			start := time.Now()
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			within(t, "RST_STREAM", time.Since(start), idle-50*time.Millisecond, idle+3*time.Second)
			if err == nil || string(b) != "partial" {
				t.Fatalf("read %q, %v: want the partial body then a stream error", b, err)
			}
		})
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		l := map[string]string{"listener": "http"}
		waitFor(t, 5*time.Second, "timeout counters", func() bool {
			fams := a.scrape()
			return counterOr0(fams, "proxylab_http_downstream_rq_idle_timeout_total", l) == 4 &&
				counterOr0(fams, "proxylab_http_downstream_rq_timeout_total", l) == 2
		})
		waitFor(t, 5*time.Second, "access log", func() bool {
			b, _ := os.ReadFile(logPath)
			s := string(b)
			return strings.Count(s, "/idle 408 SI") == 2 && strings.Count(s, "/slow 408 DT") == 2 && strings.Count(s, "/stall 200 SI") == 2
		})
	})
}

// startEchoTCP runs a TCP server that echoes what it reads.
func startEchoTCP(t *testing.T) string {
	t.Helper()
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
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestTCPProxyIdleTimeout: a pair with no bytes for idle_timeout is closed
// on both sides and counted; one that moves a byte every 100 ms for three
// times the timeout stays open (and closes once it goes quiet).
func TestTCPProxyIdleTimeout(t *testing.T) {
	const idle = 500 * time.Millisecond
	echo := startEchoTCP(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := "admin: {address: \"127.0.0.1:0\"}\n" + strings.Replace(tcpConfig(tr, echo), "tcp_proxy: {cluster: up}", fmt.Sprintf("tcp_proxy: {cluster: up, idle_timeout: %v}", idle), 1)
		p := startProxy(t, cfg)
		// roundTrip sends one byte and reads its echo.
		roundTrip := func(c net.Conn) {
			t.Helper()
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
		}
		// closedAfter waits for the proxy to close c and says how long it
		// took (an hour if it did not: the bounds check fails).
		closedAfter := func(c net.Conn) time.Duration {
			start := time.Now()
			c.SetReadDeadline(start.Add(10 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
				return time.Hour // bytes, not a close
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return time.Hour
			}
			return time.Since(start)
		}
		quiet, err := net.DialTimeout("tcp", p.addr("tcp"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer quiet.Close()
		active, err := net.DialTimeout("tcp", p.addr("tcp"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer active.Close()
		roundTrip(quiet)
		done := make(chan time.Duration)
		go func() { done <- closedAfter(quiet) }()
		for end := time.Now().Add(3 * idle); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			roundTrip(active)
		}
		within(t, "quiet pair closed", <-done, idle-50*time.Millisecond, idle+3*time.Second)
		within(t, "active pair closed once quiet", closedAfter(active), idle-150*time.Millisecond, idle+3*time.Second)
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		waitFor(t, 5*time.Second, "idle timeout counter", func() bool {
			return counterOr0(a.scrape(), "proxylab_tcp_idle_timeout_total", map[string]string{"listener": "tcp"}) == 2
		})
	})
}

// TestRouteIdleTimeoutOverride: a route's idle_timeout replaces the
// listener's stream_idle_timeout (0 turns it off for the route).
func TestRouteIdleTimeoutOverride(t *testing.T) {
	up := stallingUpstream(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {stream_idle_timeout: 200ms}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {path: /stall, cluster: up, idle_timeout: 1s}
      - {prefix: /, regex_rewrite: {pattern: ".*", substitution: /stall}, cluster: up, idle_timeout: 0s}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, up.addr))
		// stalled reads the head and partial body of a stalled response and
		// says how long until the proxy cut it (wait: how long to wait).
		stalled := func(path string, wait time.Duration) (time.Duration, error) {
			c := dialRaw(t, p.addr("web"))
			c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(c.r, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.SetReadDeadline(start.Add(wait))
			_, err = io.ReadAll(resp.Body)
			return time.Since(start), err
		}
		d, err := stalled("/stall", 5*time.Second)
		if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
			t.Fatalf("route idle_timeout 1s: not cut within 5s (%v)", err)
		}
		within(t, "route idle_timeout 1s", d, 950*time.Millisecond, 4*time.Second)
		_, err = stalled("/off", 1500*time.Millisecond)
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("route idle_timeout 0s: cut (%v), want the stream left open", err)
		}
	})
}

// TestStreamIdleTimeoutH2OverTLS: the stream idle timeout over HTTP/2 on
// TLS (ALPN h2): a stalled request body gets 408, a stalled response
// RST_STREAM, and the connection's other streams go on.
func TestStreamIdleTimeoutH2OverTLS(t *testing.T) {
	const idle = 500 * time.Millisecond
	pk := newPKI(t)
	up := stallingUpstream(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := strings.Replace(tlsListenerConfig(tr, pk, up.addr, ""), "http_proxy: {}", fmt.Sprintf("http_proxy: {stream_idle_timeout: %v}", idle), 1)
		p := startProxy(t, cfg)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pk.pool}, ForceAttemptHTTP2: true}}
		base := "https://" + p.addr("web")
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write([]byte("0123456789"))
		req, _ := http.NewRequest("POST", base+"/idle", pr)
		req.ContentLength = 100
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		within(t, "408", time.Since(start), idle-50*time.Millisecond, idle+3*time.Second)
		if resp.StatusCode != 408 || resp.ProtoMajor != 2 {
			t.Fatalf("stalled body: %s %d, want HTTP/2 408", resp.Proto, resp.StatusCode)
		}
		resp, err = client.Get(base + "/stall")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		start = time.Now()
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		within(t, "RST_STREAM", time.Since(start), idle-50*time.Millisecond, idle+3*time.Second)
		if err == nil || string(b) != "partial" {
			t.Fatalf("read %q, %v: want the partial body then a stream error", b, err)
		}
		// The connection itself is fine: another request on it succeeds.
		resp, err = client.Get(base + "/ok")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the reset: %v %v", resp, err)
		}
		resp.Body.Close()
	})
}
