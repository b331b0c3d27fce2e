package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h2cClient speaks HTTP/2 with prior knowledge over cleartext.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

// h1Client speaks only HTTP/1.1.
func h1Client() *http.Client {
	var p http.Protocols
	p.SetHTTP1(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

// startH2CUpstream runs a Go server speaking HTTP/1.1 and h2c (prior
// knowledge) that counts connections and records the protocol it saw.
func startH2CUpstream(t *testing.T, h http.Handler) *goUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	u := &goUpstream{addr: ln.Addr().String()}
	u.srv = &http.Server{Handler: h, Protocols: &p, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.inc()
		}
	}}
	go u.srv.Serve(ln)
	t.Cleanup(func() { u.srv.Close() })
	return u
}

// protoEcho answers with what it saw: protocol, method, path, body length,
// the Host, selected headers and request trailers; it sends a trailer.
func protoEcho(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(body)
	w.Header().Set("Trailer", "X-Body-Sum")
	w.Header().Set("X-Proto", r.Proto)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-TE", r.Header.Get("Te"))
	w.Header().Set("X-Cookie", r.Header.Get("Cookie"))
	w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Sum"))
	w.Header().Set("X-Connection-Headers", r.Header.Get("Connection")+r.Header.Get("Keep-Alive"))
	w.(http.Flusher).Flush() // stream the body, so the trailer goes as a trailer
	fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.RequestURI(), len(body))
	w.Header().Set("X-Body-Sum", hex.EncodeToString(sum[:8]))
}

func cluster2(upstream string) string {
	return fmt.Sprintf(`clusters:
  - name: up
    connect_timeout: 1s
    protocol: http2
    http2_protocol_options: {max_concurrent_streams: 50}
    hosts:
      - address: %q
`, upstream)
}

func h2Config(tr, upstream string, upstreamH2 bool, httpExtra string) string {
	cfg := httpConfig(tr, []string{upstream}, httpExtra, "")
	if upstreamH2 {
		cfg = cfg[:strings.Index(cfg, "clusters:")] + cluster2(upstream)
	}
	return cfg
}

func TestHTTP2Downstream(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(protoEcho))
		p := startProxy(t, h2Config(tr, up.addr, false, ""))
		base := "http://" + p.addr("http")
		c := h2cClient()

		t.Run("GET and header mapping", func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/a?b=1", nil)
			req.Host = "svc.example"
			req.Header.Add("Cookie", "a=1")
			req.Header.Add("Cookie", "b=2")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "GET /a?b=1 0" {
				t.Fatalf("%s %d %q", resp.Proto, resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Proto"); got != "HTTP/1.1" {
				t.Errorf("upstream saw %s", got)
			}
			if got := resp.Header.Get("X-Host"); got != "svc.example" {
				t.Errorf(":authority became Host %q", got)
			}
			if got := resp.Header.Get("X-Cookie"); got != "a=1; b=2" {
				t.Errorf("cookie crumbs joined as %q", got)
			}
			if got := resp.Trailer.Get("X-Body-Sum"); got == "" {
				t.Errorf("response trailer lost (trailers %v)", resp.Trailer)
			}
		})

		t.Run("POST bodies and request trailers", func(t *testing.T) {
			body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: beyond every window
			req, _ := http.NewRequest("POST", base+"/up", io.MultiReader(bytes.NewReader(body)))
			req.Trailer = http.Header{"X-Sum": nil}
			req.ContentLength = -1
			req.Trailer.Set("X-Sum", "42")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != fmt.Sprintf("POST /up %d", len(body)) {
				t.Fatalf("%q", got)
			}
			if resp.Header.Get("X-Req-Trailer") != "42" {
				t.Errorf("request trailer reached upstream as %q", resp.Header.Get("X-Req-Trailer"))
			}
		})

		t.Run("concurrent streams on one connection", func(t *testing.T) {
			var wg sync.WaitGroup
			var bad atomic.Int32
			for i := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := c.Get(fmt.Sprintf("%s/c/%d", base, i))
					if err != nil {
						bad.Add(1)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(b) != fmt.Sprintf("GET /c/%d 0", i) {
						bad.Add(1)
					}
				}()
			}
			wg.Wait()
			if bad.Load() != 0 {
				t.Fatalf("%d of 64 concurrent streams failed", bad.Load())
			}
		})

		t.Run("HTTP/1.1 on the same listener", func(t *testing.T) {
			resp, err := h1Client().Get(base + "/one")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 1 || string(b) != "GET /one 0" {
				t.Fatalf("%s %q", resp.Proto, b)
			}
		})

		t.Run("HEAD", func(t *testing.T) {
			resp, err := c.Head(base + "/x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("HEAD: %d", resp.StatusCode)
			}
		})
	})
}

func TestHTTP2Upstream(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startH2CUpstream(t, http.HandlerFunc(protoEcho))
		p := startProxy(t, h2Config(tr, up.addr, true, ""))
		base := "http://" + p.addr("http")

		t.Run("HTTP/1.1 client to HTTP/2 upstream", func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+"/p?q=1", strings.NewReader("hello"))
			req.Host = "svc.example"
			req.Header.Set("Te", "trailers")
			resp, err := h1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "POST /p?q=1 5" || resp.Header.Get("X-Proto") != "HTTP/2.0" {
				t.Fatalf("%q via %s", b, resp.Header.Get("X-Proto"))
			}
			if got := resp.Header.Get("X-Host"); got != "svc.example" {
				t.Errorf("Host became :authority %q", got)
			}
			if got := resp.Header.Get("X-TE"); got != "trailers" {
				t.Errorf("TE: trailers lost (%q)", got)
			}
			if got := resp.Trailer.Get("X-Body-Sum"); got == "" {
				t.Errorf("upstream trailer not relayed in the chunked response")
			}
		})

		t.Run("requests multiplex on few upstream connections", func(t *testing.T) {
			before := up.conns.get()
			var wg sync.WaitGroup
			var bad atomic.Int32
			for i := range 40 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := h1Client().Get(fmt.Sprintf("%s/m/%d", base, i))
					if err != nil {
						bad.Add(1)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(b) != fmt.Sprintf("GET /m/%d 0", i) {
						bad.Add(1)
					}
				}()
			}
			wg.Wait()
			if bad.Load() != 0 {
				t.Fatalf("%d of 40 failed", bad.Load())
			}
			if n := up.conns.get() - before; n > 1 {
				t.Errorf("40 concurrent requests opened %d upstream connections (50 streams each allowed)", n)
			}
		})

		t.Run("HTTP/2 end to end with a large response", func(t *testing.T) {
			resp, err := h2cClient().Get(base + "/big")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(b) != "GET /big 0" || resp.Header.Get("X-Proto") != "HTTP/2.0" {
				t.Fatalf("%s %q %s", resp.Proto, b, resp.Header.Get("X-Proto"))
			}
		})
	})
}

// TestHTTP2BackpressurePerStream: a downstream stream that does not read
// stalls only its own upstream stream; another stream on the same
// connections completes.
func TestHTTP2BackpressurePerStream(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		big := bytes.Repeat([]byte("x"), 32<<20)
		up := startH2CUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/big" {
				w.Write(big)
				return
			}
			io.WriteString(w, "small")
		}))
		p := startProxy(t, h2Config(tr, up.addr, true, ""))
		base := "http://" + p.addr("http")
		c := h2cClient()
		c.Timeout = 0
		resp, err := c.Get(base + "/big")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Do not read /big; a second stream must still flow.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/small", nil)
		r2, err := c.Do(req)
		if err != nil {
			t.Fatalf("second stream blocked behind an unread one: %v", err)
		}
		b, _ := io.ReadAll(r2.Body)
		r2.Body.Close()
		if string(b) != "small" {
			t.Fatalf("%q", b)
		}
		_, rss := p.rssKiB()
		// Now read /big fully: nothing lost.
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != int64(len(big)) {
			t.Fatalf("read %d of %d: %v", n, len(big), err)
		}
		if rss > 200<<10 {
			t.Errorf("peak RSS %d KiB while a 32 MiB response waited for its reader", rss)
		}
	})
}

func TestHTTP2OverTLSWithALPN(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startUpstream(t, http.HandlerFunc(protoEcho))
		p := startProxy(t, tlsListenerConfig(tr, pk, up.addr, ""))
		cfg := &tls.Config{RootCAs: pk.pool, ServerName: "localhost"}
		var protos http.Protocols
		protos.SetHTTP2(true)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, Protocols: &protos}}
		resp, err := c.Get("https://" + p.addr("web") + "/tls")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2" || string(b) != "GET /tls 0" {
			t.Fatalf("%s alpn=%q %q", resp.Proto, resp.TLS.NegotiatedProtocol, b)
		}
		// An HTTP/1.1-only client still works on the same port.
		var p1 http.Protocols
		p1.SetHTTP1(true)
		cfg1 := &tls.Config{RootCAs: pk.pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
		c1 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg1, Protocols: &p1}}
		resp, err = c1.Get("https://" + p.addr("web") + "/tls1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 1 || resp.TLS.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("HTTP/1.1 client got %s (ALPN %q)", resp.Proto, resp.TLS.NegotiatedProtocol)
		}
	})
}

func TestHTTP2WithH2load(t *testing.T) {
	if _, err := exec.LookPath("h2load"); err != nil {
		t.Skip("h2load not installed (make test installs nghttp2-client)")
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startH2CUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
		for _, h2up := range []bool{false, true} {
			p := startProxy(t, h2Config(tr, up.addr, h2up, ""))
			out, err := exec.Command("h2load", "-n", "4000", "-c", "8", "-m", "16", "http://"+p.addr("http")+"/").CombinedOutput()
			if err != nil {
				t.Fatalf("h2load: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "4000 succeeded, 0 failed, 0 errored") || !strings.Contains(string(out), "4000 2xx") {
				t.Fatalf("upstream h2=%v:\n%s", h2up, out)
			}
		}
	})
}

// TestHTTP2UpstreamOverTLS: a cluster with protocol http2 and TLS offers
// ALPN h2 and multiplexes over it; mTLS and verification work as for
// HTTP/1.1 clusters.
func TestHTTP2UpstreamOverTLS(t *testing.T) {
	pk := newPKI(t)
	cert, key := pk.issue("up-h2", []string{"localhost", "127.0.0.1"}, nil, false, time.Now().Add(time.Hour))
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.TLS.NegotiatedProtocol)
	}))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	var conns atomic.Int32
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	up := strings.TrimPrefix(s.URL, "https://")
	forEachTransport(t, func(t *testing.T, tr string) {
		before := conns.Load()
		p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, protocol: http2, tls: {ca_file: %q}, hosts: [{address: %q}]}
`, tr, pk.file("cas.pem"), up))
		var wg sync.WaitGroup
		var bad atomic.Int32
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := h1Client().Get(fmt.Sprintf("http://%s/t/%d", p.addr("web"), i))
				if err != nil {
					bad.Add(1)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "HTTP/2.0 h2" {
					t.Errorf("upstream saw %q", b)
					bad.Add(1)
				}
			}()
		}
		wg.Wait()
		if bad.Load() != 0 {
			t.Fatalf("%d of 30 failed", bad.Load())
		}
		if n := conns.Load() - before; n > 2 {
			t.Errorf("30 concurrent requests opened %d TLS connections", n)
		}
	})
}
