package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/stream"
)

// rawUpstream accepts connections, records every byte it receives, and
// answers each request net/http parses with resp.
type rawUpstream struct {
	addr  string
	mu    sync.Mutex
	raw   bytes.Buffer
	conns int
	reqs  []*http.Request
}

func startRawUpstream(t *testing.T, resp string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &rawUpstream{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns++
			u.mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(io.TeeReader(c, lockedWriter{u}))
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					u.mu.Lock()
					u.reqs = append(u.reqs, req)
					u.mu.Unlock()
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return u
}

type lockedWriter struct{ u *rawUpstream }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.u.mu.Lock()
	defer w.u.mu.Unlock()
	return w.u.raw.Write(p)
}

func (u *rawUpstream) snapshot() (string, int, []*http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.raw.String(), u.conns, append([]*http.Request(nil), u.reqs...)
}

// testSession is a session like network.Conn's: flushes run at Unlock.
type testSession struct{ network.SessionLock }

// exchange is one upstream request: it sends head (and body, trailers) when
// the pool is ready and records the response.
type exchange struct {
	sess    *testSession
	head    *stream.Head
	body    []byte
	trailer *protocol.Headers
	reused  bool

	status int
	rbody  bytes.Buffer
	rtrl   []string
	done   chan error
}

func (x *exchange) OnPoolReady(enc stream.RequestEncoder, reused bool) {
	x.reused = reused
	end := x.body == nil && x.trailer == nil
	enc.EncodeHead(x.head, end)
	if x.body != nil {
		enc.EncodeData(x.body, x.trailer == nil)
	}
	if x.trailer != nil {
		enc.EncodeTrailers(x.trailer)
	}
}
func (x *exchange) OnPoolFailure(_ stream.PoolFailure, err error) { x.done <- err }
func (x *exchange) DecodeInterim(*stream.Head)                    {}
func (x *exchange) DecodeHead(h *stream.Head, end bool) {
	x.status = h.Status
	if end {
		x.done <- nil
	}
}
func (x *exchange) DecodeData(p []byte, end bool) {
	x.rbody.Write(p)
	if end {
		x.done <- nil
	}
}
func (x *exchange) DecodeTrailers(t *protocol.Headers) {
	for _, f := range t.Fields {
		x.rtrl = append(x.rtrl, string(f.Name)+"="+string(f.Value))
	}
	x.done <- nil
}
func (x *exchange) OnAboveWriteHighWatermark() {}
func (x *exchange) OnBelowWriteLowWatermark()  {}
func (x *exchange) OnReset(err error)          { x.done <- err }

func (x *exchange) run(t *testing.T, p *Pool) error {
	t.Helper()
	x.sess, x.done = &testSession{}, make(chan error, 4)
	x.sess.Lock()
	p.NewStream(x, x.sess, x)
	x.sess.Unlock()
	select {
	case err := <-x.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no response")
		return nil
	}
}

func newPool(t *testing.T, addr string) *Pool {
	t.Helper()
	p := NewPool(newTransport(t), addr, &ClientSettings{Limits: h1.DefaultLimits, ConnectTimeout: time.Second, HighWatermark: 1 << 20})
	t.Cleanup(p.Drain)
	return p
}

func reqHead(method, target string, fields ...string) *stream.Head {
	h := &stream.Head{Method: []byte(method), Target: []byte(target), ContentLength: -1}
	for i := 0; i+1 < len(fields); i += 2 {
		h.Headers.Add(fields[i], []byte(fields[i+1]))
	}
	return h
}

// TestClientRoundTrips: requests encoded by the client parse as the same
// request upstream (net/http), bodies framed by length or chunks with
// trailers (framing fields dropped), responses decoded, connections reused.
func TestClientRoundTrips(t *testing.T) {
	u := startRawUpstream(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Up: 1\r\nContent-Length: 7\r\nHost: evil\r\n\r\n")
	p := newPool(t, u.addr)
	clHead := reqHead("POST", "/len?x=1", "Host", "up.example", "X-A", "b")
	clHead.ContentLength = 5
	var trl protocol.Headers
	trl.Add("X-Sum", []byte("9"))
	trl.Add("Content-Length", []byte("50"))
	trl.Add("Transfer-Encoding", []byte("chunked"))
	for i, tc := range []struct {
		x      *exchange
		line   string // request line upstream
		body   string
		trl    string
		reused bool
	}{
		{&exchange{head: reqHead("GET", "/a", "Host", "up.example")}, "GET /a", "", "", false},
		{&exchange{head: clHead, body: []byte("hello")}, "POST /len?x=1", "hello", "", true},
		{&exchange{head: reqHead("POST", "/chunked", "Host", "up.example"), body: []byte("abc"), trailer: &trl}, "POST /chunked", "abc", "X-Sum=9", true},
		{&exchange{head: reqHead("OPTIONS", "*", "Host", "up.example")}, "OPTIONS *", "", "", true},
	} {
		if err := tc.x.run(t, p); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		// The decoder hears the end of the response before the connection
		// is released (same event): wait for it, or the next request may
		// dial a second connection.
		for deadline := time.Now().Add(5 * time.Second); p.Idle() != 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d: %d idle connections, want 1", i, p.Idle())
			}
		}
		if tc.x.status != 200 || tc.x.rbody.String() != "ok" || strings.Join(tc.x.rtrl, ",") != "X-Up=1" || tc.x.reused != tc.reused {
			t.Fatalf("%d: response %d %q trailers %q reused %v", i, tc.x.status, tc.x.rbody.String(), tc.x.rtrl, tc.x.reused)
		}
		_, _, reqs := u.snapshot()
		r := reqs[len(reqs)-1]
		if r.Method+" "+r.RequestURI != tc.line || r.Host != "up.example" {
			t.Fatalf("%d: upstream got %s %s Host %s", i, r.Method, r.RequestURI, r.Host)
		}
		if tc.trl != "" && (r.Trailer.Get("X-Sum") != "9" || r.Trailer.Get("Content-Length") != "" || r.Trailer.Get("Transfer-Encoding") != "") {
			t.Fatalf("%d: upstream trailers %v", i, r.Trailer)
		}
	}
	if raw, conns, _ := u.snapshot(); conns != 1 || strings.Contains(raw, "Content-Length: 50") {
		t.Fatalf("%d upstream connections; raw %q", conns, raw)
	}
}

// TestClientRefusesMalformedHead: a head the HTTP/1.1 grammar cannot carry
// fails the stream with stream.ErrUnencodable (reported from the deferred
// flush, not inside EncodeHead) and not one byte reaches the upstream.
func TestClientRefusesMalformedHead(t *testing.T) {
	u := startRawUpstream(t, "HTTP/1.1 204 No Content\r\n\r\n")
	p := newPool(t, u.addr)
	for _, tc := range []struct {
		name string
		head *stream.Head
	}{
		{"CRLF in target", reqHead("GET", "/a HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled", "Host", "h")},
		{"space in target", reqHead("GET", "/a /b", "Host", "h")},
		{"relative target", reqHead("GET", "a", "Host", "h")},
		{"asterisk for GET", reqHead("GET", "*", "Host", "h")},
		{"method not a token", reqHead("GET /smuggled HTTP/1.1\r\nX:", "/", "Host", "h")},
		{"empty method", reqHead("", "/", "Host", "h")},
		{"CRLF in value", reqHead("GET", "/", "Host", "h", "X", "a\r\nContent-Length: 5")},
		{"NUL in value", reqHead("GET", "/", "Host", "h", "X", "a\x00")},
		{"name with space", reqHead("GET", "/", "Host", "h", "X Y", "a")},
		{"name with colon", reqHead("GET", "/", "Host", "h", "X:Y", "a")},
		{"Host not an authority", reqHead("GET", "/", "Host", "h /smuggled")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := &exchange{head: tc.head}
			err := x.run(t, p)
			if !errors.Is(err, stream.ErrUnencodable) {
				t.Fatalf("err %v, want ErrUnencodable", err)
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Status != 400 {
				t.Fatalf("err %v, want a 400 protocol.Error inside", err)
			}
		})
	}
	// A good request still works, and it is all the upstream ever saw.
	x := &exchange{head: reqHead("GET", "/ok", "Host", "h")}
	if err := x.run(t, p); err != nil || x.status != 204 {
		t.Fatalf("good request: %d %v", x.status, err)
	}
	if raw, _, _ := u.snapshot(); raw != "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n" {
		t.Fatalf("upstream saw %q", raw)
	}
}
