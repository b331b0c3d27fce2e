package main

import (
	"bufio"
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

// TestStaleUpstreamConnectionRetried: the upstream answers the first request
// on each connection and closes the connection when the second one arrives
// (what a server closing an idle keep-alive connection looks like from the
// proxy's side). A body-less request is retried on a fresh connection and
// the client never sees the failure; a request with a body is not replayed.
func TestStaleUpstreamConnectionRetried(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		var conns atomic.Int32
		up := rawUpstream(t, func(c net.Conn) {
			n := conns.Add(1)
			r := bufio.NewReader(c)
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			body := fmt.Sprintf("conn %d", n)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			http.ReadRequest(r) // the second request: dropped, connection closed
		})
		p := startProxy(t, httpConfig(tr, []string{up}, "", ""))
		c := dialRaw(t, p.addr("http"))
		c.send("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.readResponse("GET"); resp.StatusCode != 200 || body != "conn 1" {
			t.Fatalf("first: %d %q", resp.StatusCode, body)
		}
		c.send("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.readResponse("GET"); resp.StatusCode != 200 || body != "conn 2" {
			t.Fatalf("retried request: %d %q (want it answered on a fresh connection)", resp.StatusCode, body)
		}
		if conns.Load() != 2 {
			t.Fatalf("upstream connections %d, want 2", conns.Load())
		}
		// With a body the request is not replayed: 502.
		c.send("POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
		if resp, body := c.readResponse("POST"); resp.StatusCode != 502 {
			t.Fatalf("non-idempotent replay: %d %q", resp.StatusCode, body)
		}
	})
}

// TestPoolOverflowIs503: with one connection and one pending slot, a third
// concurrent request is refused at once, never left hanging.
func TestPoolOverflowIs503(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		release := make(chan struct{})
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release
			io.WriteString(w, "ok")
		}))
		cfg := strings.Replace(httpConfig(tr, []string{up.addr}, "", ""), "    connect_timeout: 1s\n", "    connect_timeout: 1s\n    max_connections: 1\n    max_pending: 1\n", 1)
		p := startProxy(t, cfg)
		var wg sync.WaitGroup
		codes := make(chan int, 3)
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get("http://" + p.addr("http") + "/")
				if err != nil {
					codes <- 0
					return
				}
				io.ReadAll(resp.Body)
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
			time.Sleep(100 * time.Millisecond) // in order: first takes the connection, second waits
		}
		// The third got its answer while the first two are still held.
		select {
		case code := <-codes:
			if code != 503 {
				t.Fatalf("overflowing request got %d, want 503", code)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("overflowing request hangs")
		}
		close(release)
		wg.Wait()
		close(codes)
		for code := range codes {
			if code != 200 {
				t.Fatalf("queued request got %d", code)
			}
		}
	})
}

// TestUpstreamIdleTimeout: a pooled connection unused past the cluster's
// idle_timeout is closed by the proxy; the next request opens a new one.
func TestUpstreamIdleTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		var closed atomic.Int32
		up := rawUpstream(t, func(c net.Conn) {
			r := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(r)
				if err != nil {
					closed.Add(1) // the proxy closed it
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		cfg := strings.Replace(httpConfig(tr, []string{up}, "", ""), "    connect_timeout: 1s\n", "    connect_timeout: 1s\n    idle_timeout: 200ms\n", 1)
		p := startProxy(t, cfg)
		c := dialRaw(t, p.addr("http"))
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.readResponse("GET")
		deadline := time.Now().Add(2 * time.Second)
		for closed.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("idle upstream connection never closed")
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := c.readResponse("GET"); resp.StatusCode != 200 {
			t.Fatalf("after the idle close: %d", resp.StatusCode)
		}
	})
}
