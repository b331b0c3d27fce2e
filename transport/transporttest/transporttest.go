// Package transporttest is the conformance suite every transport runs: the
// contract in package transport, checked against real loopback sockets.
package transporttest

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// recorder is a Handler that records every event.
type recorder struct {
	mu       sync.Mutex
	data     bytes.Buffer
	eof      bool
	closes   int
	closeErr error
	drained  int
	onData   func(c transport.Conn, n int)
	changed  chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1024)} }

func (r *recorder) note() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) OnData(c transport.Conn, b *buffer.Buf) {
	r.mu.Lock()
	r.data.Write(b.Bytes())
	n := r.data.Len()
	f := r.onData
	r.mu.Unlock()
	b.Release()
	if f != nil {
		f(c, n)
	}
	r.note()
}
func (r *recorder) OnReadEOF(transport.Conn) { r.mu.Lock(); r.eof = true; r.mu.Unlock(); r.note() }
func (r *recorder) OnDrained(transport.Conn) { r.mu.Lock(); r.drained++; r.mu.Unlock(); r.note() }
func (r *recorder) OnClose(_ transport.Conn, err error) {
	r.mu.Lock()
	r.closes++
	r.closeErr = err
	r.mu.Unlock()
	r.note()
}

// waitFor polls cond (under the recorder's lock) until true or timeout.
func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// pair returns a started transport connection (server side, accepted by the
// transport) and the plain client net.Conn at the other end.
func pair(t *testing.T, tr transport.Transport, h transport.Handler) (transport.Conn, *net.TCPConn) {
	t.Helper()
	l, err := tr.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan transport.Conn, 1)
	l.Start(func(c transport.Conn) {
		c.Start(h)
		accepted <- c
	})
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	select {
	case c := <-accepted:
		t.Cleanup(func() { c.Close() })
		return c, cc.(*net.TCPConn)
	case <-time.After(5 * time.Second):
		t.Fatal("accept callback not called")
	}
	return nil, nil
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// write sends p in pooled buffers of at most 16 KiB, vectored.
func write(t *testing.T, c transport.Conn, p []byte) int {
	t.Helper()
	var bufs []*buffer.Buf
	for len(p) > 0 {
		n := min(len(p), 16<<10)
		bufs = append(bufs, buffer.From(p[:n]))
		p = p[n:]
	}
	q, err := c.Write(bufs...)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	return q
}

// Options adjust the contract to a transport's documented differences.
type Options struct {
	// NoReceiverBackpressure: a peer that does not read does not make
	// writes queue (sockmap's same-host redirect puts messages straight
	// into the peer's receive queue, past its buffer limit).
	NoReceiverBackpressure bool
}

// Run checks transport tr against the contract.
func Run(t *testing.T, newTransport func() transport.Transport) {
	RunWith(t, newTransport, Options{})
}

// RunWith is Run with options.
func RunWith(t *testing.T, newTransport func() transport.Transport, opts Options) {
	t.Run("ReadAndWriteBothWays", func(t *testing.T) {
		tr := newTransport()
		r := newRecorder()
		c, peer := pair(t, tr, r)
		in := pattern(3 << 20)
		go peer.Write(in)
		r.waitFor(t, "3 MiB read", func() bool { return r.data.Len() == len(in) })
		if !bytes.Equal(r.data.Bytes(), in) {
			t.Fatal("read bytes differ")
		}
		out := pattern(1 << 20)
		write(t, c, out)
		got := make([]byte, len(out))
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, out) {
			t.Fatalf("written bytes differ: %v", err)
		}
	})

	t.Run("BackpressureQueuesThenDrains", func(t *testing.T) {
		if opts.NoReceiverBackpressure {
			t.Skip("the transport documents no receiver backpressure")
		}
		tr := newTransport()
		r := newRecorder()
		c, peer := pair(t, tr, r)
		peer.SetReadBuffer(64 << 10)
		out := pattern(32 << 20) // far more than socket buffers hold
		q := write(t, c, out)
		if q == 0 {
			t.Fatal("32 MiB to a peer that does not read: nothing queued")
		}
		// Later writes queue behind, in order. The queue may have drained a
		// little between the two writes (a writer goroutine or the kernel
		// taking more), but the tail cannot overtake what is still queued.
		tail := []byte("tail")
		if q2, _ := c.Write(buffer.From(tail)); q2 < len(tail) {
			t.Fatalf("queued went from %d to %d after another write: the tail went out ahead of the queue", q, q2)
		}
		got := make([]byte, len(out)+len(tail))
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(peer, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:len(out)], out) || !bytes.Equal(got[len(out):], tail) {
			t.Fatal("queued bytes reordered or corrupted")
		}
		r.waitFor(t, "OnDrained", func() bool { return r.drained >= 1 })
	})

	t.Run("HalfClose", func(t *testing.T) {
		tr := newTransport()
		r := newRecorder()
		c, peer := pair(t, tr, r)
		peer.Write([]byte("request"))
		peer.CloseWrite()
		r.waitFor(t, "OnReadEOF", func() bool { return r.eof })
		if r.data.String() != "request" {
			t.Fatalf("data before EOF: %q", r.data.String())
		}
		// Writing after the peer's FIN still works; our FIN follows the data.
		write(t, c, pattern(1<<20))
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(peer)
		if err != nil || !bytes.Equal(got, pattern(1<<20)) {
			t.Fatalf("after half-close: %d bytes, %v", len(got), err)
		}
		c.Close()
		r.waitFor(t, "OnClose", func() bool { return r.closes == 1 })
	})

	t.Run("CloseReportsOnceAndRefusesWrites", func(t *testing.T) {
		tr := newTransport()
		r := newRecorder()
		c, _ := pair(t, tr, r)
		c.Close()
		c.Close()
		r.waitFor(t, "OnClose", func() bool { return r.closes >= 1 })
		time.Sleep(50 * time.Millisecond)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closes != 1 || r.closeErr != nil {
			t.Fatalf("OnClose %d times, err %v; want once with nil", r.closes, r.closeErr)
		}
		if _, err := c.Write(buffer.From([]byte("x"))); err == nil {
			t.Fatal("write after close succeeded")
		}
	})

	t.Run("PeerResetIsAnError", func(t *testing.T) {
		tr := newTransport()
		r := newRecorder()
		_, peer := pair(t, tr, r)
		peer.SetLinger(0)
		peer.Write([]byte("x"))
		time.Sleep(20 * time.Millisecond)
		peer.Close() // RST
		r.waitFor(t, "OnClose", func() bool { return r.closes == 1 })
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closeErr == nil {
			t.Fatal("a reset by the peer was reported as a clean close")
		}
	})

	t.Run("ReadDisablePausesDelivery", func(t *testing.T) {
		tr := newTransport()
		r := newRecorder()
		var once sync.Once
		r.onData = func(c transport.Conn, n int) {
			once.Do(func() { c.ReadDisable(true); c.ReadDisable(true) }) // nested
		}
		conn, peer := pair(t, tr, r)
		peer.Write([]byte("first"))
		r.waitFor(t, "first bytes", func() bool { return r.data.Len() > 0 })
		time.Sleep(20 * time.Millisecond)
		peer.Write([]byte("second"))
		time.Sleep(150 * time.Millisecond)
		r.mu.Lock()
		got := r.data.String()
		r.mu.Unlock()
		if got != "first" {
			t.Fatalf("delivered while read-disabled: %q", got)
		}
		conn.ReadDisable(false)
		time.Sleep(100 * time.Millisecond)
		r.mu.Lock()
		got = r.data.String()
		r.mu.Unlock()
		if got != "first" {
			t.Fatalf("one ReadDisable(false) undid two ReadDisable(true): %q", got)
		}
		conn.ReadDisable(false)
		r.waitFor(t, "delivery after re-enable", func() bool { return r.data.String() == "firstsecond" })
	})

	t.Run("DialedPeerSendsAndClosesAtOnce", func(t *testing.T) {
		// The server writes and half-closes right after accepting, so data
		// and FIN may arrive before the dial completes or the handler
		// starts; both must still be delivered.
		for i := 0; i < 20; i++ {
			tr := newTransport()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				c, err := ln.Accept()
				if err == nil {
					c.Write([]byte("greeting"))
					c.(*net.TCPConn).CloseWrite()
					io.Copy(io.Discard, c)
					c.Close()
				}
			}()
			ch := make(chan transport.Conn, 1)
			tr.Dial("tcp", ln.Addr().String(), time.Second, func(c transport.Conn, err error) {
				if err != nil {
					t.Error(err)
				}
				ch <- c
			})
			c := <-ch
			if c == nil {
				ln.Close()
				return
			}
			time.Sleep(time.Duration(i%3) * 5 * time.Millisecond) // start late sometimes
			r := newRecorder()
			c.Start(r)
			r.waitFor(t, "greeting and EOF", func() bool { return r.data.String() == "greeting" && r.eof })
			c.Close()
			ln.Close()
		}
	})

	t.Run("DialConnectsAndFails", func(t *testing.T) {
		tr := newTransport()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				copyLoop(c, c) // read and write calls, not splice(2), which sockmap's redirected bytes bypass
				c.Close()
			}
		}()
		type res struct {
			c   transport.Conn
			err error
		}
		ch := make(chan res, 1)
		tr.Dial("tcp", ln.Addr().String(), time.Second, func(c transport.Conn, err error) { ch <- res{c, err} })
		rs := <-ch
		if rs.err != nil {
			t.Fatal(rs.err)
		}
		r := newRecorder()
		rs.c.Start(r)
		write(t, rs.c, []byte("echo me"))
		r.waitFor(t, "echo", func() bool { return r.data.String() == "echo me" })
		rs.c.Close()

		addr := ln.Addr().String()
		ln.Close()
		tr.Dial("tcp", addr, time.Second, func(c transport.Conn, err error) { ch <- res{c, err} })
		if rs := <-ch; rs.err == nil {
			t.Fatal("dial to a closed port succeeded")
		}
	})
}

// copyLoop echoes with read and write calls.
func copyLoop(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
