package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CONNECT through the proxy (issue #17): terminated and forwarded, and the
// tunnel idle timeout.

// tcpEcho is a TCP server echoing bytes; at the client's FIN it sends
// "bye" and closes (so half-close is visible both ways).
func tcpEcho(t *testing.T) string {
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
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.Write([]byte("bye"))
			}()
		}
	}()
	return ln.Addr().String()
}

// connectUpstream answers CONNECT itself (a forward proxy behind ours):
// 200, then echoes; anything else gets 405.
func connectUpstream(t *testing.T) string {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "CONNECT" {
			w.WriteHeader(405)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 200 OK\r\nX-Forwarded-To: " + r.Host + "\r\n\r\n")
		rw.Flush()
		io.Copy(c, rw)
	}))
	return up.addr
}

func connectConfig(tr, fwd string, httpExtra string) string {
	return fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
stats: {enabled: true}
listeners:
  - name: http
    address: 127.0.0.1:0
    http_proxy:
      access_log: {path: /dev/stderr, format: "ACCESS %%REQ(:METHOD)%% %%RESPONSE_CODE%% %%BYTES_RECEIVED%% %%BYTES_SENT%% %%RESPONSE_FLAGS%%\n"}
%s
routes:
  - name: all
    domains: ["*"]
    routes:
      - connect_matcher: {}
        headers: [{name: x-mode, exact: forward}]
        upgrade_configs: [{upgrade_type: CONNECT}]
        cluster: fwd
      - connect_matcher: {}
        headers: [{name: x-mode, exact: refuse}]
        cluster: fwd
      - connect_matcher: {}
        connect: {allow: ["127.0.0.1:*", "localhost:*", "example.invalid:1"]}
      - {prefix: /, cluster: fwd}
clusters:
  - name: fwd
    connect_timeout: 1s
    hosts: [{address: %q}]
`, tr, indent(httpExtra, 6), fwd)
}

func TestConnectHTTP1(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		echo := tcpEcho(t)
		p := startProxy(t, connectConfig(tr, connectUpstream(t), ""))
		px := p.addr("http")

		// Terminated CONNECT: bytes both ways, half-close both ways.
		c := dialRaw(t, px)
		c.send("CONNECT " + echo + " HTTP/1.1\r\nHost: " + echo + "\r\n\r\nearly")
		resp, err := http.ReadResponse(c.r, &http.Request{Method: "CONNECT"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v\n%s", resp, err, p.logs())
		}
		big := make([]byte, 1<<20)
		rand.Read(big)
		go c.Write(big)
		got := make([]byte, len("early")+len(big))
		if _, err := io.ReadFull(c.r, got); err != nil || string(got[:5]) != "early" || !bytes.Equal(got[5:], big) {
			t.Fatalf("tunnel echo differs: %v", err)
		}
		c.Conn.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(c.r); err != nil || string(rest) != "bye" {
			t.Fatalf("after half-close: %q %v", rest, err)
		}

		// A client that half-closes right behind its early data: the
		// tunnel opens half-closed, the destination still answers.
		for _, early := range []string{"first", ""} {
			c = dialRaw(t, px)
			c.send("CONNECT " + echo + " HTTP/1.1\r\nHost: " + echo + "\r\n\r\n" + early)
			c.Conn.(*net.TCPConn).CloseWrite()
			if resp, err := http.ReadResponse(c.r, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT then FIN: %v %v", resp, err)
			}
			if rest, err := io.ReadAll(c.r); err != nil || string(rest) != early+"bye" {
				t.Fatalf("half-closed tunnel: %q %v", rest, err)
			}
		}

		cases := []struct {
			name, target, extra string
			status              int
		}{
			{"disallowed host", "127.0.0.2:" + strings.Split(echo, ":")[1], "", 403},
			{"disallowed port", "example.invalid:2", "", 403},
			{"unresolvable", "example.invalid:1", "", 503},
			{"unreachable", closedPort(t), "", 503},
			{"no port", "127.0.0.1", "", 400},
			{"bad port", "127.0.0.1:99999", "", 400},
			{"not an authority", "/path", "", 400},
			{"userinfo", "u@127.0.0.1:80", "", 400},
			{"CONNECT not enabled on the route", echo, "x-mode: refuse\r\n", 403},
			{"malformed, to be forwarded", "u@example.test:443", "x-mode: forward\r\n", 400},
		}
		for _, tc := range cases {
			c := dialRaw(t, px)
			c.send("CONNECT " + tc.target + " HTTP/1.1\r\nHost: " + tc.target + "\r\n" + tc.extra + "\r\n")
			resp, body := c.readResponse("CONNECT")
			if resp.StatusCode != tc.status {
				t.Errorf("%s: %d %q, want %d", tc.name, resp.StatusCode, body, tc.status)
			}
		}

		// A name is resolved (off the event loop) and dialled.
		c = dialRaw(t, px)
		byName := "localhost:" + strings.Split(echo, ":")[1]
		c.send("CONNECT " + byName + " HTTP/1.1\r\nHost: " + byName + "\r\n\r\nnamed")
		if resp, err := http.ReadResponse(c.r, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT by name: %v %v", resp, err)
		}
		named := make([]byte, 5)
		if _, err := io.ReadFull(c.r, named); err != nil || string(named) != "named" {
			t.Fatalf("CONNECT by name: echo %q %v", named, err)
		}

		// Forwarded CONNECT: the upstream proxy answers and tunnels.
		c = dialRaw(t, px)
		c.send("CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\nX-Mode: forward\r\n\r\n")
		resp, err = http.ReadResponse(c.r, &http.Request{Method: "CONNECT"})
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Forwarded-To") != "example.test:443" {
			t.Fatalf("forwarded CONNECT: %v %v", resp, err)
		}
		c.send("ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c.r, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("forwarded tunnel: %q %v", buf, err)
		}

		// curl -p: CONNECT through the proxy, then HTTP over the tunnel.
		body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
		web := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
		out, err := exec.Command("curl", "-s", "-p", "-x", "http://"+px, "--max-time", "10", "http://"+web.addr+"/big").Output()
		if err != nil || !bytes.Equal(out, body) {
			t.Fatalf("curl through CONNECT: %v, %d bytes\n%s", err, len(out), p.logs())
		}
		if !strings.Contains(p.logs(), fmt.Sprintf("ACCESS CONNECT 200 %d %d -", len("early")+len(big), len("early")+len(big)+3)) {
			t.Errorf("access log lacks the tunnel's byte counts:\n%s", p.logs())
		}
	})
}

// A tunnel with no byte either way for tunnel_idle_timeout is closed on
// both sides and counted; one with traffic is not.
func TestTunnelIdleTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		echo := tcpEcho(t)
		p := startProxy(t, connectConfig(tr, connectUpstream(t), "tunnel_idle_timeout: 1s"))
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		open := func() *rawConn {
			c := dialRaw(t, p.addr("http"))
			c.SetDeadline(time.Now().Add(20 * time.Second))
			c.send("CONNECT " + echo + " HTTP/1.1\r\nHost: " + echo + "\r\n\r\n")
			if resp, err := http.ReadResponse(c.r, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			return c
		}
		busy := open()
		start := time.Now() // before the idle tunnel exists: it cannot be closed sooner than 1s after
		idle := open()
		if v := value(t, a.scrape(), "proxylab_http_tunnels_active", nil); v != 2 {
			t.Fatalf("tunnels_active = %v, want 2", v)
		}
		closed := make(chan time.Duration, 1)
		go func() {
			buf := make([]byte, 1)
			_, err := idle.r.Read(buf) // the proxy closes it: EOF, not data
			if err == nil {
				t.Errorf("idle tunnel delivered %q", buf)
			}
			closed <- time.Since(start)
		}()
		buf := make([]byte, 4)
		for time.Since(start) < 2500*time.Millisecond {
			busy.send("ping")
			if _, err := io.ReadFull(busy.r, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("busy tunnel broke after %v: %v", time.Since(start), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		select {
		case d := <-closed:
			if d < time.Second {
				t.Fatalf("idle tunnel closed after %v, before its timeout", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("idle tunnel not closed")
		}
		fams := a.scrape()
		if v := value(t, fams, "proxylab_http_tunnel_idle_timeouts_total", nil); v != 1 {
			t.Fatalf("tunnel_idle_timeouts_total = %v, want 1", v)
		}
		if v := value(t, fams, "proxylab_http_tunnels_active", nil); v != 1 {
			t.Fatalf("tunnels_active = %v, want 1 (the busy one)", v)
		}
		if !strings.Contains(p.logs(), "ACCESS CONNECT 200 0 0 SI") {
			t.Errorf("idle tunnel's access log entry lacks SI:\n%s", p.logs())
		}
	})
}
