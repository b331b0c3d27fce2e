package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(ln, cfg)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// exchange writes raw bytes and reads n responses with net/http's reader.
func exchange(t *testing.T, addr, raw string, n int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for range n {
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", len(out), err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		r.ContentLength = int64(len(body))
		out = append(out, r)
	}
	return out
}

func body(r *http.Response) string { b, _ := io.ReadAll(r.Body); return string(b) }

func TestResponses(t *testing.T) {
	addr := start(t, Config{Size: 20, MaxEcho: 1000})
	for _, tc := range []struct {
		name, req  string
		status     int
		bodyLen    int
		bodyPrefix string
		closes     bool
	}{
		{"fixed size", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, 20, "xxxx", false},
		{"size from query", "GET /any?size=1000 HTTP/1.1\r\nHost: a\r\n\r\n", 200, 1000, "x", false},
		{"empty body", "GET /?size=0 HTTP/1.1\r\nHost: a\r\n\r\n", 200, 0, "", false},
		{"echo", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 200, 5, "hello", false},
		{"chunked echo", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 200, 5, "abcde", false},
		{"echo over limit", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n" + strings.Repeat("y", 1001), 413, -1, "upstream: echo body over 1000", true},
		{"bad size", "GET /?size=-1 HTTP/1.1\r\nHost: a\r\n\r\n", 400, -1, "upstream: bad size", true},
		{"size over 1 GiB", "GET /?size=2000000000 HTTP/1.1\r\nHost: a\r\n\r\n", 400, -1, "upstream: bad size", true},
		{"empty size is the default", "GET /?size= HTTP/1.1\r\nHost: a\r\n\r\n", 200, 20, "x", false},
		{"other parameters ignored", "GET /?a=b&size=7&c HTTP/1.1\r\nHost: a\r\n\r\n", 200, 7, "xxxxxxx", false},
		{"bad delay", "GET /?delay=forever HTTP/1.1\r\nHost: a\r\n\r\n", 400, -1, "upstream: bad delay", true},
		{"malformed", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, -1, "upstream: ", true},
		{"client asks close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200, 20, "x", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(t, addr, tc.req, 1)[0]
			b := body(r)
			if r.StatusCode != tc.status || (tc.bodyLen >= 0 && len(b) != tc.bodyLen) || !strings.HasPrefix(b, tc.bodyPrefix) || r.Close != tc.closes {
				t.Fatalf("status %d close %v body %q", r.StatusCode, r.Close, b)
			}
		})
	}
}

func TestPipelinedAndKeepAlive(t *testing.T) {
	addr := start(t, Config{Size: 3})
	req := "GET /?size=1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\nHost: a\r\n\r\n"
	rs := exchange(t, addr, req, 3)
	want := []string{"x", "ok", "xxx"}
	for i, r := range rs {
		if b := body(r); r.StatusCode != 200 || b != want[i] || r.Close {
			t.Fatalf("response %d: %d %q close=%v", i, r.StatusCode, b, r.Close)
		}
	}
}

func TestHTTP10ClosesUnlessKeepAlive(t *testing.T) {
	addr := start(t, Config{Size: 1})
	if r := exchange(t, addr, "GET / HTTP/1.0\r\n\r\n", 1)[0]; !r.Close {
		t.Fatal("HTTP/1.0 without keep-alive must be closed")
	}
	if r := exchange(t, addr, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1)[0]; r.Close || r.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("HTTP/1.0 keep-alive: close=%v %v", r.Close, r.Header)
	}
}

func TestDelay(t *testing.T) {
	addr := start(t, Config{Size: 1, Delay: 50 * time.Millisecond})
	t0 := time.Now()
	exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Fatalf("answered after %v, want ≥ 50ms", d)
	}
	t0 = time.Now()
	exchange(t, addr, "GET /?delay=120ms HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	if d := time.Since(t0); d < 120*time.Millisecond {
		t.Fatalf("per-request delay: answered after %v", d)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s := Serve(ln, Config{Size: 1})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(20 * time.Millisecond) // accepted
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waits on an idle keep-alive connection")
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
}

func BenchmarkKeepAlive(b *testing.B) {
	for _, bc := range []struct {
		name, target string
		respLen      int
	}{
		// "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" is 39 bytes.
		{"default-20B", "/", 39 + 20},
		{"query-4096B", "/?size=4096", 41 + 4096},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			s := Serve(ln, Config{Size: 20})
			defer s.Close()
			c, _ := net.Dial("tcp", ln.Addr().String())
			defer c.Close()
			req := []byte("GET " + bc.target + " HTTP/1.1\r\nHost: a\r\n\r\n")
			buf := make([]byte, 8192)
			b.ReportAllocs()
			for b.Loop() {
				c.Write(req)
				for n := 0; n < bc.respLen; {
					m, err := c.Read(buf[n:])
					if err != nil {
						b.Fatal(err)
					}
					n += m
				}
			}
		})
	}
}

// TestServeEcho: bytes come back exact, and a half-close is answered with
// one after the echo.
func TestServeEcho(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go ServeEcho(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := bytes.Repeat([]byte("echo!"), 100000)
	go func() {
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("%d of %d bytes, %v", len(got), len(in), err)
	}
}
