package main

// HTTP/1 codec hardening (issue #17): header read timeout from a request's
// first byte, absolute-form request targets, framing fields in trailers, and
// the encoder's refusal of malformed heads.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/protocol/http2/h2test"
)

// recordingUpstream is a raw HTTP/1.1 upstream that parses each request with
// net/http (strictly, body included), keeps the exact bytes of every request
// it received, and answers each with a chunked 200 carrying respTrailer (raw
// trailer lines, may be empty).
type recordingUpstream struct {
	addr string
	mu   sync.Mutex
	reqs []*http.Request
	raw  bytes.Buffer
}

func startRecordingUpstream(t *testing.T, respTrailer string) *recordingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &recordingUpstream{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c, respTrailer)
		}
	}()
	return u
}

// teeReader records what the parser actually consumed.
type teeReader struct {
	u *recordingUpstream
	c net.Conn
}

func (r teeReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	r.u.mu.Lock()
	r.u.raw.Write(p[:n])
	r.u.mu.Unlock()
	return n, err
}

func (u *recordingUpstream) serve(c net.Conn, respTrailer string) {
	defer c.Close()
	br := bufio.NewReader(teeReader{u, c})
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
		u.mu.Lock()
		u.reqs = append(u.reqs, req)
		u.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"+respTrailer+"\r\n"); err != nil {
			return
		}
	}
}

func (u *recordingUpstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

func (u *recordingUpstream) rawString() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.raw.String()
}

// trickle writes s one byte per interval until done or a write fails.
func trickle(c net.Conn, s string, interval time.Duration, done <-chan struct{}) {
	for i := 0; i < len(s); i++ {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(interval):
		}
	}
}

// TestH1HeaderTimeoutFromFirstByte: header_read_timeout runs from a request's
// first byte, so a client trickling its request line (which once did not
// start the timer) gets 408 and a close after about the timeout; likewise for
// the second request on a keep-alive connection.
func TestH1HeaderTimeoutFromFirstByte(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startRecordingUpstream(t, "")
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "header_read_timeout: 1s", ""))
		slow := "GET /" + strings.Repeat("a", 60) + " HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("b", 40) + "\r\n\r\n"
		for _, second := range []bool{false, true} {
			name := "first request"
			if second {
				name = "keep-alive second request"
			}
			t.Run(name, func(t *testing.T) {
				c := dialRaw(t, p.addr("http"))
				if second {
					c.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
					if resp, body := c.readResponse("GET"); resp.StatusCode != 200 || body != "ok" {
						t.Fatalf("first request: %d %q", resp.StatusCode, body)
					}
					time.Sleep(300 * time.Millisecond) // idle time must not count
				}
				done := make(chan struct{})
				defer close(done)
				start := time.Now()
				go trickle(c.Conn, slow, 100*time.Millisecond, done)
				c.SetReadDeadline(time.Now().Add(8 * time.Second))
				resp, err := http.ReadResponse(c.r, &http.Request{Method: "GET"})
				took := time.Since(start)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != 408 {
						t.Fatalf("got %d, want 408", resp.StatusCode)
					}
				} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("no 408 or close after %v", took)
				}
				if took < 900*time.Millisecond || took > 2500*time.Millisecond {
					t.Fatalf("408/close after %v, want about 1s", took)
				}
			})
		}
	})
}

// TestH1AbsoluteFormTarget: RFC 9112 §3.2.2 absolute-form is accepted, its
// authority replaces Host (for routing and upstream), and the upstream gets
// origin-form; a malformed absolute-form is refused with 400 and reaches no
// upstream.
func TestH1AbsoluteFormTarget(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startRecordingUpstream(t, "")
		cfg := httpConfig(tr, []string{up.addr}, "", "")
		// Only the absolute-form authority routes: a request routed by its
		// (disagreeing) Host header would get 404.
		cfg = strings.Replace(cfg, `domains: ["*"]`, `domains: ["routed.example", "routed.example:8080"]`, 1)
		p := startProxy(t, cfg)
		for _, tc := range []struct {
			target, host    string
			wantURI, wantHo string
		}{
			{"http://routed.example/abs?x=1", "Host: other.example\r\n", "/abs?x=1", "routed.example"},
			{"HTTP://routed.example:8080", "Host: routed.example:8080\r\n", "/", "routed.example:8080"},
		} {
			c := dialRaw(t, p.addr("http"))
			c.send("GET " + tc.target + " HTTP/1.1\r\n" + tc.host + "\r\n")
			if resp, body := c.readResponse("GET"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%s: %d %q", tc.target, resp.StatusCode, body)
			}
			reqs := up.requests()
			last := reqs[len(reqs)-1]
			if last.RequestURI != tc.wantURI || last.Host != tc.wantHo || len(last.Header["Host"]) != 0 {
				t.Fatalf("%s: upstream got %q Host %q", tc.target, last.RequestURI, last.Host)
			}
		}
		before := len(up.requests())
		for _, target := range []string{"http://user@routed.example/", "http:///p", "ftp://routed.example/", "http://routed.example:x/", "nothing"} {
			c := dialRaw(t, p.addr("http"))
			c.send("GET " + target + " HTTP/1.1\r\nHost: routed.example\r\n\r\n")
			if resp, _ := c.readResponse("GET"); resp.StatusCode != 400 {
				t.Fatalf("%s: %d, want 400", target, resp.StatusCode)
			}
		}
		if n := len(up.requests()); n != before {
			t.Fatalf("%d malformed requests reached the upstream", n-before)
		}
	})
}

// TestH1TrailerFramingFieldsDropped: framing, routing and auth fields sent as
// chunked trailers are not forwarded, in requests nor in responses; other
// trailer fields are.
func TestH1TrailerFramingFieldsDropped(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startRecordingUpstream(t, "Content-Length: 9\r\nX-Up: 1\r\nTransfer-Encoding: chunked\r\n")
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "", ""))
		c := dialRaw(t, p.addr("http"))
		c.send("POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
			"3\r\nabc\r\n0\r\nContent-Length: 50\r\nX-Sum: 7\r\nHost: evil.example\r\nAuthorization: Basic eA==\r\n\r\n")
		raw, err := io.ReadAll(c.r)
		if err != nil {
			t.Fatal(err)
		}
		resp := string(raw)
		if !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(resp, "\r\nX-Up: 1\r\n") ||
			strings.Contains(resp, "Content-Length: 9") || strings.Count(resp, "Transfer-Encoding") != 1 {
			t.Fatalf("response to the client: %q", resp)
		}
		got := up.rawString()
		if !strings.Contains(got, "\r\nX-Sum: 7\r\n") || strings.Contains(got, "Content-Length: 50") ||
			strings.Contains(got, "evil.example") || strings.Contains(got, "Authorization") {
			t.Fatalf("upstream got %q", got)
		}
	})
}

// h2RawRequest sends one HTTP/2 request with exactly the given header fields
// (no validation: hpack carries any bytes) on a fresh connection and returns
// the response :status, or 0 with a description when the stream or
// connection was reset instead.
func h2RawRequest(t *testing.T, c net.Conn, fields [][2]string) (int, string) {
	return h2RawExchange(t, c, fields, nil, nil)
}

// h2RawExchange is h2RawRequest with a body (DATA) and trailers (a second
// HEADERS) when given.
func h2RawExchange(t *testing.T, c net.Conn, fields [][2]string, body []byte, trailers [][2]string) (int, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fr := h2test.New(c)
	if err := fr.Preface(); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	list := func(kv [][2]string) []http2.HeaderField {
		var fs []http2.HeaderField
		for _, f := range kv {
			fs = append(fs, http2.HeaderField{Name: f[0], Value: f[1]})
		}
		return fs
	}
	noBody := body == nil && trailers == nil
	if err := fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: fr.Block(list(fields)), EndStream: noBody, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if body != nil {
		fr.WriteData(1, trailers == nil, body)
	}
	if trailers != nil {
		fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: fr.Block(list(trailers)), EndStream: true, EndHeaders: true})
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, "connection: " + err.Error()
		}
		switch f.Type {
		case http2.FrameSettings:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case http2.FrameHeaders:
			if f.StreamID == 1 {
				var status int
				fmt.Sscan(f.Get(":status"), &status)
				return status, ""
			}
		case http2.FrameRSTStream:
			return 0, "RST_STREAM " + f.ErrCode.String()
		case http2.FrameGoAway:
			return 0, "GOAWAY " + f.ErrCode.String()
		}
	}
}

// TestH1EncoderRefusesMalformedH2Head: an HTTP/2 request whose method, path
// or authority cannot be written on an HTTP/1.1 request line or header line
// never reaches the HTTP/1.1 upstream: the HTTP/1 encoder refuses it (400)
// even if the HTTP/2 codec let it through (defence in depth); a refusal by
// the HTTP/2 codec itself (RST_STREAM, 400) is as good. Over h2c and TLS.
func TestH1EncoderRefusesMalformedH2Head(t *testing.T) {
	cases := []struct {
		name   string
		fields [][2]string
	}{
		{"path with CRLF", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/x HTTP/1.1\r\nHost: a\r\n\r\nGET /smuggled"}}},
		{"path with space", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/x /smuggled"}}},
		{"method with CRLF", [][2]string{{":method", "GET /smuggled HTTP/1.1\r\nX:"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/x"}}},
		{"authority with CRLF", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a\r\nX-Smuggled: 1"}, {":path", "/x"}}},
		{"authority with space", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a /smuggled"}, {":path", "/x"}}},
	}
	run := func(t *testing.T, dial func() net.Conn, up *recordingUpstream) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := dial()
				defer c.Close()
				status, reset := h2RawRequest(t, c, tc.fields)
				if status != 400 && (status != 0 || !strings.HasPrefix(reset, "RST_STREAM")) {
					t.Fatalf("status %d %s, want 400 or RST_STREAM", status, reset)
				}
			})
		}
		if raw := up.rawString(); raw != "" {
			t.Fatalf("the upstream received %q", raw)
		}
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		t.Run("h2c", func(t *testing.T) {
			up := startRecordingUpstream(t, "")
			p := startProxy(t, h2Config(tr, up.addr, false, ""))
			run(t, func() net.Conn {
				c, err := net.DialTimeout("tcp", p.addr("http"), 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}, up)
		})
		t.Run("tls", func(t *testing.T) {
			pk := newPKI(t)
			up := startRecordingUpstream(t, "")
			p := startProxy(t, tlsListenerConfig(tr, pk, up.addr, ""))
			run(t, func() net.Conn {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", p.addr("web"),
					&tls.Config{RootCAs: pk.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
				if err != nil {
					t.Fatal(err)
				}
				if c.ConnectionState().NegotiatedProtocol != "h2" {
					t.Fatalf("ALPN %q", c.ConnectionState().NegotiatedProtocol)
				}
				return c
			}, up)
		})
	})
}

// TestH1TrailerFramingFieldsDroppedFromH2: HTTP/2 request trailers carrying
// framing or routing fields are not written into the HTTP/1.1 upstream's
// chunked trailer section (whichever codec drops them), over h2c and TLS.
func TestH1TrailerFramingFieldsDroppedFromH2(t *testing.T) {
	fields := [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/t"}}
	trailers := [][2]string{{"x-sum", "7"}, {"content-length", "50"}, {"host", "evil.example"}, {"authorization", "Basic eA=="}}
	check := func(t *testing.T, c net.Conn, up *recordingUpstream) {
		defer c.Close()
		if status, reset := h2RawExchange(t, c, fields, []byte("abc"), trailers); status != 200 {
			t.Fatalf("status %d %s", status, reset)
		}
		got := up.rawString()
		if !strings.Contains(got, "\r\nx-sum: 7\r\n") || strings.Contains(got, "Content-Length: 50") || strings.Contains(got, "content-length: 50") ||
			strings.Contains(got, "evil.example") || strings.Contains(got, "Basic") {
			t.Fatalf("upstream got %q", got)
		}
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		t.Run("h2c", func(t *testing.T) {
			up := startRecordingUpstream(t, "")
			p := startProxy(t, h2Config(tr, up.addr, false, ""))
			c, err := net.DialTimeout("tcp", p.addr("http"), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			check(t, c, up)
		})
		t.Run("tls", func(t *testing.T) {
			pk := newPKI(t)
			up := startRecordingUpstream(t, "")
			p := startProxy(t, tlsListenerConfig(tr, pk, up.addr, ""))
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", p.addr("web"),
				&tls.Config{RootCAs: pk.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			check(t, c, up)
		})
	})
}
