package http1

import (
	"bufio"
	"bytes"
	"fmt"
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
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// Package tests drive ServerConn and Pool/ClientConn over real loopback
// sockets and the netpoll transport; the application side is a small
// recorder that answers requests itself.

func newTransport(t *testing.T) transport.Transport {
	t.Helper()
	tr, err := netpoll.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// app records each request (under its connection's session) and answers it
// once complete: 200 with body "<method> <target> <body length>", chunked
// with an X-Done trailer, or a custom response.
type app struct {
	mu     sync.Mutex
	reqs   []string
	answer func(enc stream.ResponseEncoder, req string)
}

type appStream struct {
	a    *app
	enc  stream.ResponseEncoder
	desc strings.Builder
	body int
}

func (a *app) NewStream(enc stream.ResponseEncoder) stream.RequestDecoder {
	return &appStream{a: a, enc: enc}
}

func (a *app) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.reqs...)
}

func (s *appStream) DecodeHead(h *stream.Head, end bool) {
	fmt.Fprintf(&s.desc, "%s %s host=%s", h.Method, h.Target, h.Headers.Get("host"))
	if end {
		s.done()
	}
}
func (s *appStream) DecodeData(p []byte, end bool) {
	s.body += len(p)
	if end {
		s.done()
	}
}
func (s *appStream) DecodeTrailers(t *protocol.Headers) {
	for _, f := range t.Fields {
		fmt.Fprintf(&s.desc, " trailer:%s=%s", f.Name, f.Value)
	}
	s.done()
}
func (s *appStream) OnAboveWriteHighWatermark() {}
func (s *appStream) OnBelowWriteLowWatermark()  {}
func (s *appStream) OnReset(error)              {}

func (s *appStream) done() {
	req := fmt.Sprintf("%s body=%d", s.desc.String(), s.body)
	s.a.mu.Lock()
	s.a.reqs = append(s.a.reqs, req)
	answer := s.a.answer
	s.a.mu.Unlock()
	if answer != nil {
		answer(s.enc, req)
		return
	}
	h := &stream.Head{Status: 200, ContentLength: -1}
	s.enc.EncodeHead(h, false)
	s.enc.EncodeData([]byte(req), false)
	var t protocol.Headers
	t.Add("X-Done", []byte("1"))
	t.Add("Content-Length", []byte("999")) // never sent as a trailer
	s.enc.EncodeTrailers(&t)
}

// startServer serves HTTP/1 with ServerConn on a loopback port.
func startServer(t *testing.T, a *app, set ServerSettings) string {
	t.Helper()
	tr := newTransport(t)
	ln, err := tr.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if set.Limits == (h1.Limits{}) {
		set.Limits = h1.DefaultLimits
	}
	if set.Timers == nil {
		set.Timers = timer.New(10 * time.Millisecond)
	}
	if set.IdleTimeout == 0 {
		set.IdleTimeout = 30 * time.Second
	}
	if set.HighWatermark == 0 {
		set.HighWatermark = 1 << 20
	}
	if set.Linger == 0 {
		set.Linger = time.Second
	}
	ln.Start(func(c transport.Conn) {
		network.NewConn(c, []network.ReadFilter{NewServerConn(&set, a)}, nil).Start()
	})
	return ln.Addr().String()
}

type wantResp struct {
	status int
	body   string // substring of the body
}

func TestServerConnExchanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		resps  []wantResp
		reqs   []string
		closed bool // the server closes after the last response
	}{
		{"simple GET", "GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
			[]wantResp{{200, "GET /a host=h body=0"}}, []string{"GET /a host=h body=0"}, false},
		{"pipelined three", "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
			[]wantResp{{200, "GET /1"}, {200, "POST /2 host=h body=3"}, {200, "GET /3"}},
			[]string{"GET /1 host=h body=0", "POST /2 host=h body=3", "GET /3 host=h body=0"}, false},
		{"chunked with trailers", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\nContent-Length: 9\r\nHost: evil\r\n\r\n",
			[]wantResp{{200, "trailer:X-Sum=5 body=5"}}, []string{"POST /c host=h trailer:X-Sum=5 body=5"}, false},
		{"absolute-form", "GET http://abs.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
			[]wantResp{{200, "GET /p?q host=abs.example:81"}}, []string{"GET /p?q host=abs.example:81 body=0"}, false},
		{"absolute-form with userinfo", "GET http://u@abs.example/ HTTP/1.1\r\nHost: other\r\n\r\n",
			[]wantResp{{400, "userinfo"}}, nil, true},
		{"HTTP/1.0 closes", "GET /old HTTP/1.0\r\n\r\n",
			[]wantResp{{200, "GET /old host= body=0"}}, []string{"GET /old host= body=0"}, true},
		{"Connection: close", "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n",
			[]wantResp{{200, "GET /x"}}, []string{"GET /x host=h body=0"}, true},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			[]wantResp{{400, "Content-Length"}}, nil, true},
		{"good then bad", "GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
			[]wantResp{{200, "GET /ok"}, {400, "bare CR"}}, []string{"GET /ok host=h body=0"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{}
			addr := startServer(t, a, ServerSettings{})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, tc.in); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			for i, w := range tc.resps {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("response %d body: %v", i, err)
				}
				if resp.StatusCode != w.status || !strings.Contains(string(body), w.body) {
					t.Fatalf("response %d: %d %q, want %d with %q", i, resp.StatusCode, body, w.status, w.body)
				}
				if len(resp.TransferEncoding) > 0 && resp.Trailer.Get("X-Done") != "1" || resp.Trailer.Get("Content-Length") != "" {
					t.Fatalf("response %d trailers %v", i, resp.Trailer)
				}
			}
			if tc.closed {
				if n, err := br.Read(make([]byte, 1)); err == nil {
					t.Fatalf("connection still open (read %d bytes)", n)
				}
			}
			if got := a.requests(); strings.Join(got, "\n") != strings.Join(tc.reqs, "\n") {
				t.Fatalf("requests %q, want %q", got, tc.reqs)
			}
		})
	}
}

// TestServerConnHeaderTimeoutFromFirstByte: a request line trickled a byte at
// a time is cut off with 408 about HeaderTimeout after its first byte, on a
// fresh connection and on a keep-alive one after a first request.
func TestServerConnHeaderTimeoutFromFirstByte(t *testing.T) {
	for _, second := range []bool{false, true} {
		t.Run(fmt.Sprintf("second=%v", second), func(t *testing.T) {
			addr := startServer(t, &app{}, ServerSettings{HeaderTimeout: 500 * time.Millisecond})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			if second {
				io.WriteString(c, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
			}
			stop := make(chan struct{})
			defer close(stop)
			start := time.Now()
			go func() {
				line := "GET /" + strings.Repeat("x", 100) + " HTTP/1.1\r\n"
				for i := 0; i < len(line); i++ {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := c.Write([]byte{line[i]}); err != nil {
						return
					}
				}
			}()
			resp, err := http.ReadResponse(br, nil)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("after %v: %v", took, err)
			}
			if resp.StatusCode != 408 || took > 2*time.Second {
				t.Fatalf("%d after %v, want 408 after about 550ms", resp.StatusCode, took)
			}
		})
	}
}

// TestServerConnRefusesMalformedResponseHead: a response head HTTP/1.1
// cannot carry (from another codec or a filter) is never written; the client
// gets a whole 502 instead and the connection stays in sync.
func TestServerConnRefusesMalformedResponseHead(t *testing.T) {
	for _, tc := range []struct {
		name string
		head stream.Head
	}{
		{"CRLF in value", stream.Head{Status: 200, Headers: protocol.Headers{Fields: []protocol.Field{{Name: []byte("X"), Value: []byte("a\r\nSet-Cookie: evil")}}}}},
		{"bad name", stream.Head{Status: 200, Headers: protocol.Headers{Fields: []protocol.Field{{Name: []byte("X Y"), Value: []byte("a")}}}}},
		{"CRLF in reason", stream.Head{Status: 200, Reason: []byte("OK\r\nX: y")}},
		{"status 1000", stream.Head{Status: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{answer: func(enc stream.ResponseEncoder, req string) {
				if strings.Contains(req, "/bad") {
					h := tc.head
					h.ContentLength = 4
					enc.EncodeHead(&h, false)
					enc.EncodeData([]byte("evil"), true)
					return
				}
				enc.EncodeHead(&stream.Head{Status: 204, ContentLength: -1}, true)
			}}
			addr := startServer(t, a, ServerSettings{})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET /bad HTTP/1.1\r\nHost: h\r\n\r\nGET /good HTTP/1.1\r\nHost: h\r\n\r\n")
			br := bufio.NewReader(c)
			for _, want := range []int{502, 204} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != want || bytes.Contains(body, []byte("evil")) || resp.Header.Get("Set-Cookie") != "" {
					t.Fatalf("got %d %q %v, want %d", resp.StatusCode, body, resp.Header, want)
				}
			}
		})
	}
}
