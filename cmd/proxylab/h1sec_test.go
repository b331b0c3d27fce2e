package main

// HTTP/1 codec hardening (issue #17): header read timeout from a request's
// first byte, absolute-form request targets, framing fields in trailers, and
// the encoder's refusal of malformed heads.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
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
