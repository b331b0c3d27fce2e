package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func tcpConfig(tr string, upstreams ...string) string {
	hosts := ""
	for _, u := range upstreams {
		hosts += fmt.Sprintf("      - address: %q\n", u)
	}
	return fmt.Sprintf(`transport: %s
drain_timeout: 5s
listeners:
  - name: tcp
    address: 127.0.0.1:0
    tcp_proxy: {cluster: up}
clusters:
  - name: up
    connect_timeout: 1s
    hosts:
%s`, tr, hosts)
}

// TestTCPHalfCloseBothWays: each side half-closes while the other still
// sends, and every byte arrives.
func TestTCPHalfCloseBothWays(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		// Client half-closes first: the upstream reads to EOF, then answers
		// with the count and closes.
		counter := rawUpstream(t, func(c net.Conn) {
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "got %d bytes", n)
		})
		p := startProxy(t, tcpConfig(tr, counter))
		c := dialRaw(t, p.addr("tcp"))
		payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		c.Conn.(*net.TCPConn).CloseWrite()
		reply, err := io.ReadAll(c.r)
		if err != nil || string(reply) != fmt.Sprintf("got %d bytes", len(payload)) {
			t.Fatalf("reply %q err %v", reply, err)
		}

		// Upstream half-closes first: it sends a greeting and FIN, then still
		// reads what the client sends afterwards.
		var gotMu sync.Mutex
		var got []byte
		done := make(chan struct{})
		greeter := rawUpstream(t, func(c net.Conn) {
			io.WriteString(c, "hello, then FIN")
			c.(*net.TCPConn).CloseWrite()
			b, _ := io.ReadAll(c)
			gotMu.Lock()
			got = b
			gotMu.Unlock()
			close(done)
		})
		p2 := startProxy(t, tcpConfig(tr, greeter))
		c2 := dialRaw(t, p2.addr("tcp"))
		greet, err := io.ReadAll(c2.r) // ends at the upstream's FIN
		if err != nil || string(greet) != "hello, then FIN" {
			t.Fatalf("greeting %q %v", greet, err)
		}
		io.WriteString(c2.Conn, "late data after upstream FIN")
		c2.Conn.(*net.TCPConn).CloseWrite()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("upstream never saw the client's FIN")
		}
		gotMu.Lock()
		defer gotMu.Unlock()
		if string(got) != "late data after upstream FIN" {
			t.Fatalf("upstream got %q", got)
		}
	})
}

// TestTCPBulkBothDirections streams 64 MiB each way at once on many
// connections and checks every byte.
func TestTCPBulkBothDirections(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		echo := rawUpstream(t, func(c net.Conn) { io.Copy(c, c) })
		p := startProxy(t, tcpConfig(tr, echo))
		const conns, size = 8, 8 << 20
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i := 0; i < conns; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c, err := net.Dial("tcp", p.addr("tcp"))
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				want := sha256.New()
				src := io.TeeReader(io.LimitReader(&patternReader{off: int64(i) * 7, size: 1 << 62}, size), want)
				go func() {
					io.Copy(c, src)
					c.(*net.TCPConn).CloseWrite()
				}()
				got := sha256.New()
				n, err := io.Copy(got, c)
				if err != nil || n != size {
					errs <- fmt.Errorf("conn %d: echoed %d of %d bytes: %v", i, n, size, err)
					return
				}
				if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
					errs <- fmt.Errorf("conn %d: echo differs", i)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestTCPUpstreamDownClosesClient(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		p := startProxy(t, tcpConfig(tr, closedPort(t)))
		c := dialRaw(t, p.addr("tcp"))
		c.expectClosed()
	})
}
