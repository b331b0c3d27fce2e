package main

import (
	"bufio"

	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoHandler reports what the upstream received.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Upstream-Path", r.URL.RequestURI())
	w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
	w.Header().Set("X-Seen-XFP", r.Header.Get("X-Forwarded-Proto"))
	var names []string
	for k := range r.Header {
		names = append(names, strings.ToLower(k))
	}
	w.Header().Set("X-Seen-Headers", strings.Join(names, ","))
	w.Header().Set("X-Seen-Trailer", r.Trailer.Get("X-Sum"))
	fmt.Fprintf(w, "%s %s %d %s", r.Method, r.URL.RequestURI(), len(body), body)
}

func TestHTTPForwarding(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "", ""))
		c := dialRaw(t, p.addr("http"))

		t.Run("hop-by-hop removed, forwarded headers added", func(t *testing.T) {
			c.send("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Proto: https\r\nX-End: kept\r\n\r\n")
			resp, body := c.readResponse("GET")
			if resp.StatusCode != 200 || body != "GET /a?b=1 0 " {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			seen := resp.Header.Get("X-Seen-Headers")
			for _, h := range []string{"x-private", "keep-alive", "proxy-connection", "connection"} {
				if strings.Contains(","+seen+",", ","+h+",") {
					t.Errorf("upstream saw hop-by-hop %s (all: %s)", h, seen)
				}
			}
			if !strings.Contains(seen, "x-end") {
				t.Errorf("end-to-end header lost: %s", seen)
			}
			if got := resp.Header.Get("X-Seen-XFF"); got != "10.1.1.1, 127.0.0.1" {
				t.Errorf("X-Forwarded-For %q", got)
			}
			if got := resp.Header.Get("X-Seen-XFP"); got != "http" {
				t.Errorf("X-Forwarded-Proto %q", got)
			}
		})

		t.Run("keep-alive reuses both sides", func(t *testing.T) {
			before := up.conns.get()
			for i := 0; i < 20; i++ {
				c.send(fmt.Sprintf("POST /k%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", i))
				resp, body := c.readResponse("POST")
				if want := fmt.Sprintf("POST /k%d 2 hi", i); body != want || resp.Close {
					t.Fatalf("request %d: %q close=%v", i, body, resp.Close)
				}
			}
			if n := up.conns.get() - before; n > 1 {
				t.Fatalf("20 sequential requests opened %d new upstream connections", n)
			}
		})

		t.Run("pipelined requests answered in order", func(t *testing.T) {
			var b strings.Builder
			for i := 0; i < 5; i++ {
				fmt.Fprintf(&b, "GET /pipe/%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			}
			b.WriteString("POST /pipe/5 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
			c.send(b.String())
			for i := 0; i < 6; i++ {
				method := "GET"
				if i == 5 {
					method = "POST"
				}
				_, body := c.readResponse(method)
				if !strings.HasPrefix(body, fmt.Sprintf("%s /pipe/%d ", method, i)) {
					t.Fatalf("response %d out of order: %q", i, body)
				}
			}
		})

		t.Run("chunked request with trailers", func(t *testing.T) {
			c.send("POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n")
			resp, body := c.readResponse("POST")
			if body != "POST /chunked 11 hello world" {
				t.Fatalf("body %q", body)
			}
			if got := resp.Header.Get("X-Seen-Trailer"); got != "42" {
				t.Fatalf("upstream trailer %q", got)
			}
		})

		t.Run("HEAD keeps length, sends no body", func(t *testing.T) {
			c.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := c.readResponse("HEAD")
			if resp.StatusCode != 200 || body != "" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			// The connection is still in sync: the next request works.
			c.send("GET /after-head HTTP/1.1\r\nHost: x\r\n\r\n")
			if _, body := c.readResponse("GET"); body != "GET /after-head 0 " {
				t.Fatalf("after HEAD: %q", body)
			}
		})

		t.Run("Connection: close", func(t *testing.T) {
			c2 := dialRaw(t, p.addr("http"))
			c2.send("GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			resp, body := c2.readResponse("GET")
			if !resp.Close || body != "GET /close 0 " {
				t.Fatalf("close=%v body %q", resp.Close, body)
			}
			c2.expectClosed()
		})

		t.Run("HTTP/1.0", func(t *testing.T) {
			c2 := dialRaw(t, p.addr("http"))
			c2.send("GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, body := c2.readResponse("GET")
			if resp.Close || resp.ContentLength != int64(len(body)) || body != "GET /ten 0 " {
				t.Fatalf("1.0 keep-alive: close=%v len=%d %q", resp.Close, resp.ContentLength, body)
			}
			c2.send("GET /ten2 HTTP/1.0\r\n\r\n")
			resp, body = c2.readResponse("GET")
			if !resp.Close || body != "GET /ten2 0 " {
				t.Fatalf("1.0 default close: close=%v %q", resp.Close, body)
			}
			c2.expectClosed()
		})
	})
}

func TestHTTPChunkedResponseTrailersAndHTTP10Client(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Checksum")
			w.WriteHeader(200)
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Checksum", "abc123")
		}))
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "", ""))
		resp, err := http.Get("http://" + p.addr("http") + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "part0;part1;part2;" || resp.Trailer.Get("X-Checksum") != "abc123" {
			t.Fatalf("body %q trailer %v", body, resp.Trailer)
		}
		// An HTTP/1.0 client cannot take chunks: the body is delimited by close.
		c := dialRaw(t, p.addr("http"))
		c.send("GET /stream HTTP/1.0\r\n\r\n")
		all, err := io.ReadAll(c.r)
		if err != nil {
			t.Fatal(err)
		}
		if s := string(all); !strings.HasSuffix(s, "\r\n\r\npart0;part1;part2;") || strings.Contains(strings.ToLower(s), "transfer-encoding") {
			t.Fatalf("1.0 response: %q", s)
		}
	})
}

func TestHTTPExpectContinue(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/reject" {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				io.WriteString(w, "too big")
				return
			}
			echoHandler(w, r)
		}))
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "", ""))

		c := dialRaw(t, p.addr("http"))
		c.send("PUT /accept HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		line, err := c.r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("want 100 Continue before the body, got %q %v", line, err)
		}
		if blank, _ := c.r.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("100 response not terminated: %q", blank)
		}
		c.send("hello")
		if _, body := c.readResponse("PUT"); body != "PUT /accept 5 hello" {
			t.Fatalf("body %q", body)
		}

		// The upstream refuses without reading: the client gets the final
		// status without having sent its body, and no 100.
		c2 := dialRaw(t, p.addr("http"))
		c2.send("PUT /reject HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
		resp, body := c2.readResponse("PUT")
		if resp.StatusCode != 413 || body != "too big" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
}

// sha256Reader hashes what passes through it.
type hashingReader struct {
	r io.Reader
	h hashState
	n int64
}

type hashState interface {
	io.Writer
	Sum([]byte) []byte
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// patternReader yields size bytes of a cheap, position-dependent pattern.
type patternReader struct{ off, size int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.size-p.off))
	for i := 0; i < n; i++ {
		x := p.off + int64(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	p.off += int64(n)
	return n, nil
}

func patternSum(size int64) string {
	h := sha256.New()
	io.Copy(h, &patternReader{size: size})
	return hex.EncodeToString(h.Sum(nil))
}

// TestHTTPBigBodiesStreamWithBoundedMemory moves 1 GiB up and 1 GiB down
// through the proxy and asserts its peak RSS stays far below that.
func TestHTTPBigBodiesStreamWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GiB")
	}
	const size = 1 << 30
	want := patternSum(size)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" {
				hr := &hashingReader{r: r.Body, h: sha256.New()}
				io.Copy(io.Discard, hr)
				fmt.Fprintf(w, "%d %s", hr.n, hex.EncodeToString(hr.h.Sum(nil)))
				return
			}
			if r.URL.Query().Get("chunked") == "" {
				w.Header().Set("Content-Length", fmt.Sprint(size))
			}
			io.Copy(w, &patternReader{size: size})
		}))
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "", "timeout: 120s"))
		base := "http://" + p.addr("http")
		client := &http.Client{Timeout: 120 * time.Second}

		t.Run("upload", func(t *testing.T) {
			resp, err := client.Post(base+"/up", "application/octet-stream", io.LimitReader(&patternReader{size: size}, size))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != fmt.Sprintf("%d %s", size, want) {
				t.Fatalf("upstream got %q", body)
			}
		})
		for _, q := range []string{"", "?chunked=1"} {
			t.Run("download"+q, func(t *testing.T) {
				resp, err := client.Get(base + "/down" + q)
				if err != nil {
					t.Fatal(err)
				}
				hr := &hashingReader{r: resp.Body, h: sha256.New()}
				if _, err := io.Copy(io.Discard, hr); err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if hr.n != size || hex.EncodeToString(hr.h.Sum(nil)) != want {
					t.Fatalf("got %d bytes, hash mismatch=%v", hr.n, hex.EncodeToString(hr.h.Sum(nil)) != want)
				}
			})
		}
		_, peak := p.rssKiB()
		t.Logf("proxy peak RSS after 3 GiB streamed: %d KiB", peak)
		if peak > 64<<10 {
			t.Fatalf("proxy peak RSS %d KiB: bodies are not streamed with bounded memory", peak)
		}
	})
}

func TestHTTPHostileInput(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "max_request_line: 256\nmax_header_bytes: 1024\nmax_headers: 10", ""))
		for _, tc := range []struct {
			name, req string
			status    int
		}{
			{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
			{"duplicate CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400},
			{"invalid CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\na", 400},
			{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n", 400},
			{"invalid header name", "GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400},
			{"invalid header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400},
			{"bare CR", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
			{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
			{"unsupported TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
			{"bad chunk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400},
			{"header section too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2000) + "\r\n\r\n", 431},
			{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 11) + "\r\n", 431},
			{"request line too long", "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
			{"HTTP/2 on an HTTP/1 port", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := dialRaw(t, p.addr("http"))
				c.send(tc.req)
				resp, body := c.readResponse("GET")
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
				}
				if !resp.Close || body == "" {
					t.Fatalf("want Connection: close and a reason, got close=%v %q", resp.Close, body)
				}
				c.expectClosed()
			})
		}
		// After all that the proxy still serves.
		c := dialRaw(t, p.addr("http"))
		c.send("GET /still-alive HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := c.readResponse("GET"); resp.StatusCode != 200 {
			t.Fatalf("proxy unhealthy after hostile input: %d", resp.StatusCode)
		}
	})
}

func TestHTTPTimeoutsAndUpstreamFailures(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		slow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(2 * time.Second)
		}))
		// An upstream that closes without answering, and one that answers garbage.
		closer := rawUpstream(t, func(c net.Conn) {
			bufio.NewReader(c).ReadString('\n')
			c.Close()
		})
		garbage := rawUpstream(t, func(c net.Conn) {
			bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "HTTP/1.1 abc nonsense\r\n\r\n")
			c.Close()
		})
		refused := closedPort(t)
		blackhole := fullBacklog(t)

		cfg := fmt.Sprintf(`transport: %s
listeners:
  - name: http
    address: 127.0.0.1:0
    http_proxy:
      header_read_timeout: 500ms
      idle_timeout: 1s
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /slow, cluster: slow, timeout: 300ms}
      - {prefix: /closer, cluster: closer}
      - {prefix: /garbage, cluster: garbage}
      - {prefix: /refused, cluster: refused}
      - {prefix: /blackhole, cluster: blackhole}
clusters:
  - {name: slow, hosts: [{address: %q}]}
  - {name: closer, hosts: [{address: %q}]}
  - {name: garbage, hosts: [{address: %q}]}
  - {name: refused, connect_timeout: 1s, hosts: [{address: %q}]}
  - {name: blackhole, connect_timeout: 300ms, hosts: [{address: %q}]}
`, tr, slow.addr, closer, garbage, refused, blackhole)
		p := startProxy(t, cfg)
		for _, tc := range []struct {
			path   string
			status int
			reason string
		}{
			{"/slow", 504, "upstream response timeout"},
			{"/closer", 502, "upstream connection reset"},
			{"/garbage", 502, "upstream protocol error"},
			{"/refused", 503, "upstream connect error"},
			{"/blackhole", 503, "upstream connect timeout"},
			{"/nowhere-but-routed-nowhere", 404, "no route"},
		} {
			t.Run(tc.path, func(t *testing.T) {
				if tc.status == 404 {
					return // covered below with a route-less host
				}
				c := dialRaw(t, p.addr("http"))
				start := time.Now()
				c.send("GET " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, body := c.readResponse("GET")
				if resp.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
					t.Fatalf("got %d %q, want %d with %q", resp.StatusCode, body, tc.status, tc.reason)
				}
				if time.Since(start) > 1500*time.Millisecond {
					t.Fatalf("took %v", time.Since(start))
				}
				// The client connection stays usable after an upstream failure.
				c.send("GET /refused HTTP/1.1\r\nHost: x\r\n\r\n")
				if resp, _ := c.readResponse("GET"); resp.StatusCode != 503 {
					t.Fatalf("connection not reusable after failure: %d", resp.StatusCode)
				}
			})
		}
		t.Run("no route", func(t *testing.T) {
			c := dialRaw(t, p.addr("http"))
			c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := c.readResponse("GET")
			if resp.StatusCode != 404 || !strings.Contains(body, "no route") {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
		})
		t.Run("header read timeout", func(t *testing.T) {
			c := dialRaw(t, p.addr("http"))
			c.send("GET / HTTP/1.1\r\nHost: x\r\n") // never finished
			start := time.Now()
			resp, body := c.readResponse("GET")
			if resp.StatusCode != 408 || !strings.Contains(body, "timeout") {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
				t.Fatalf("408 after %v, want about 500ms", d)
			}
			c.expectClosed()
		})
		t.Run("slow head cannot extend its deadline", func(t *testing.T) {
			c := dialRaw(t, p.addr("http"))
			start := time.Now()
			c.send("GET / HTTP/1.1\r\n")
			for i := 0; i < 4; i++ {
				time.Sleep(200 * time.Millisecond)
				io.WriteString(c.Conn, "X: y\r\n")
			}
			resp, _ := c.readResponse("GET")
			if resp.StatusCode != 408 || time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("%d after %v", resp.StatusCode, time.Since(start))
			}
		})
		t.Run("idle timeout", func(t *testing.T) {
			c := dialRaw(t, p.addr("http"))
			start := time.Now()
			c.expectClosed()
			if d := time.Since(start); d < 700*time.Millisecond {
				t.Fatalf("idle connection closed after %v, want about 1s", d)
			}
		})
	})
}

// rawUpstream serves each accepted connection with f.
func rawUpstream(t *testing.T, f func(net.Conn)) string {
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
			go func() { defer c.Close(); f(c) }()
		}
	}()
	return ln.Addr().String()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// fullBacklog returns a loopback address whose listen queue is full and never
// accepted from, so new connects hang until they time out (loopback-only
// stand-in for an unreachable host).
func fullBacklog(t *testing.T) string {
	t.Helper()
	lc := net.ListenConfig{}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	// Fill the accept queue (somaxconn-sized backlog is too big to fill, so
	// shrink it by re-listening on the raw fd with backlog 0).
	if err := relistenBacklog0(ln); err != nil {
		t.Skipf("cannot shrink backlog: %v", err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // queue full: further SYNs are dropped
		}
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
	}
	t.Skip("could not fill the listen backlog")
	return ""
}
