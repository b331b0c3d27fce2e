package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
)

// halfClose sends the client's FIN (after close_notify over TLS).
func (h *h2Client) halfClose() {
	h.t.Helper()
	c := h.c
	if tc, ok := c.(*tls.Conn); ok {
		tc.CloseWrite()
		c = tc.NetConn()
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		h.t.Fatal(err)
	}
}

// expectClosedWithin reads (discarding frames) until the proxy closes the
// connection; a read timeout fails.
func (h *h2Client) expectClosedWithin(d time.Duration) {
	h.t.Helper()
	h.c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, h.c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		h.t.Fatalf("connection still open %v after the client's FIN", d)
	}
}

func activeStreams(t *testing.T, p *proc, listener string) float64 {
	fams := adminClient{t: t, base: "http://" + p.adminAddr()}.scrape()
	return value(t, fams, "proxylab_http2_streams_active", map[string]string{"side": "listener", "name": listener})
}

func h2Event(t *testing.T, p *proc, listener, event string) float64 {
	fams := adminClient{t: t, base: "http://" + p.adminAddr()}.scrape()
	return counterOr0(fams, "proxylab_http2_events_total", map[string]string{"side": "listener", "name": listener, "event": event})
}

// TestH2StreamsEndingOnHeaders: responses that end on their HEADERS frame
// (204, 304, HEAD, a direct response without body, a redirect, a gRPC
// trailers-only response) release their stream: 300 of them in sequence on
// one connection with max_concurrent_streams 128 all succeed, no stream
// stays active, and the client's FIN closes the connection promptly.
func TestH2StreamsEndingOnHeaders(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startRecUpstream(t)
		_, grpcAddr := startGRPCServer(t)
		p := startProxy(t, h2secConfig(tr, pk, up.addr, grpcAddr))
		kinds := []struct {
			name, status string
			fields       []http2.HeaderField
			body         []byte
		}{
			{"204", "204", get("/204"), nil},
			{"HEAD", "200", pseudo(":method", "HEAD", ":scheme", "$s", ":authority", "example.com", ":path", "/t"), nil},
			{"304", "304", get("/304", "if-none-match", `"x"`), nil},
			{"direct 204", "204", get("/empty"), nil},
			{"redirect", "302", get("/redirect"), nil},
			{"gRPC trailers-only", "200", hf(":method", "POST", ":scheme", "$s", ":authority", "example.com",
				":path", "/grpc.testing.TestService/NoSuchMethod", "content-type", "application/grpc", "te", "trailers"), make([]byte, 5)},
		}
		for _, l := range h2Listeners {
			t.Run(l, func(t *testing.T) {
				h := dialH2(t, p, l, pk)
				for i := range 300 {
					k := kinds[i%len(kinds)]
					id := uint32(2*i + 1)
					h.send(id, k.fields, k.body)
					if r := h.await(id); r.status != k.status {
						t.Fatalf("request %d (%s): %v, want %s", i, k.name, r, k.status)
					}
				}
				waitFor(t, 10*time.Second, "active streams back to 0", func() bool { return activeStreams(t, p, l) == 0 })
				h.halfClose()
				h.expectClosedWithin(5 * time.Second) // the idle timeout is 30s
			})
		}
		// SIGTERM with a connection open whose responses all ended on
		// HEADERS: nothing is in flight, so the drain ends at once
		// rather than at drain_timeout (5s).
		h := dialH2(t, p, "h2c", pk)
		for i := range 10 {
			h.send(uint32(2*i+1), get("/204"), nil)
			if r := h.await(uint32(2*i + 1)); r.status != "204" {
				t.Fatalf("%v", r)
			}
		}
		start := time.Now()
		p.cmd.Process.Signal(syscall.SIGTERM)
		h.expectClosedWithin(10 * time.Second) // GOAWAY, then the proxy's FIN
		h.c.Close()
		select {
		case <-p.done:
			if d := time.Since(start); d > 3500*time.Millisecond {
				t.Fatalf("drain took %v", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("proxylab did not exit after SIGTERM")
		}
	})
}

// TestH2LocalReplyResetOnlyOpenRequests: a local reply to a POST whose
// body arrived with its HEADERS is not followed by RST_STREAM (curl failed
// with exit 92 on it); one whose request is still open is (RFC 9113 §8.1).
func TestH2LocalReplyResetOnlyOpenRequests(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startRecUpstream(t)
		p := startProxy(t, h2secConfig(tr, pk, up.addr, closedPort(t)))
		post := hf(":method", "POST", ":scheme", "$s", ":authority", "example.com", ":path", "/local", "content-length", "5")
		for _, l := range h2Listeners {
			t.Run(l, func(t *testing.T) {
				h := dialH2(t, p, l, pk)
				id := uint32(1)
				for range 50 {
					h.send(id, post, []byte("hello"))
					if r := h.await(id); r.status != "200" || string(r.body) != "local reply" {
						t.Fatalf("%v", r)
					}
					h.sync("after a complete request's local reply")
					id += 2
				}
				// A body the window lets through is awaited, not reset.
				h.fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: h.block(post), EndHeaders: true})
				if r := h.await(id); r.status != "200" {
					t.Fatalf("%v", r)
				}
				h.sync("after a reply to a request whose body fits the window")
				h.fr.WriteData(id, true, []byte("hello"))
				h.sync("after the body of an answered request")
				// Requests still open (unknown length, or more than the
				// window): the reply asks them to stop.
				for _, cl := range []string{"", "10000000"} {
					id += 2
					fields := hf(":method", "POST", ":scheme", "$s", ":authority", "example.com", ":path", "/local")
					if cl != "" {
						fields = append(fields, hf("content-length", cl)...)
					}
					h.fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: h.block(fields), EndHeaders: true})
					if r := h.await(id); r.status != "200" {
						t.Fatalf("%v", r)
					}
					if r := h.await(id); !r.rst || r.code != http2.ErrCodeNo {
						t.Fatalf("open request (content-length %q) after the reply: %v, want RST_STREAM NO_ERROR", cl, r)
					}
				}
			})
		}
		if _, err := exec.LookPath("curl"); err != nil {
			return
		}
		body := filepath.Join(t.TempDir(), "body")
		os.WriteFile(body, bytes.Repeat([]byte("x"), 1000), 0o644)
		for i := range 30 {
			out, err := exec.Command("curl", "-sS", "--http2-prior-knowledge", "--data-binary", "@"+body, "http://"+p.addr("h2c")+"/local").CombinedOutput()
			if err != nil || string(out) != "local reply" {
				t.Fatalf("curl POST %d: %v %q", i, err, out)
			}
		}
	})
}

// TestH2PrioritySelfDependency: a HEADERS or PRIORITY frame making a
// stream depend on itself is a stream error PROTOCOL_ERROR (RFC 9113
// §5.3.1); nothing is forwarded and the connection lives on.
func TestH2PrioritySelfDependency(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startRecUpstream(t)
		p := startProxy(t, h2secConfig(tr, pk, up.addr, closedPort(t)))
		for _, l := range h2Listeners {
			t.Run(l, func(t *testing.T) {
				h := dialH2(t, p, l, pk)
				mark := up.mark()
				h.fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: h.block(get("/t")), EndStream: true, EndHeaders: true,
					Priority: http2.PriorityParam{StreamDep: 1, Weight: 15}})
				if r := h.await(1); !r.rst || r.code != http2.ErrCodeProtocol {
					t.Fatalf("HEADERS depending on itself: %v", r)
				}
				h.fr.WritePriority(3, http2.PriorityParam{StreamDep: 3})
				if r := h.await(3); !r.rst || r.code != http2.ErrCodeProtocol {
					t.Fatalf("PRIORITY depending on itself: %v", r)
				}
				h.send(5, get("/after"), nil)
				if r := h.await(5); r.status != "200" {
					t.Fatalf("next request: %v", r)
				}
				if seen := up.since(mark); !bytes.HasPrefix(seen, []byte("GET /after ")) {
					t.Fatalf("upstream saw %q", seen)
				}
			})
		}
	})
}

// TestH2FloodsBounded: a client that sends control frames provoking
// replies (PING, SETTINGS, PRIORITY self-dependencies provoking
// RST_STREAM) and never reads is cut off once its unread replies pass the
// bound, with the proxy's memory bounded; a run of empty DATA frames is
// answered with GOAWAY ENHANCE_YOUR_CALM.
func TestH2FloodsBounded(t *testing.T) {
	floods := []struct {
		name  string
		frame func(fr *http2.Writer, i int)
	}{
		{"PING", func(fr *http2.Writer, i int) { fr.WritePing(false, [8]byte{byte(i)}) }},
		{"SETTINGS", func(fr *http2.Writer, i int) { fr.WriteSettings() }},
		{"RST_STREAM", func(fr *http2.Writer, i int) {
			fr.WritePriority(uint32(2*i+1), http2.PriorityParam{StreamDep: uint32(2*i + 1)})
		}},
	}
	const limit = 64 << 20
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startRecUpstream(t)
		p := startProxy(t, h2secConfig(tr, pk, up.addr, closedPort(t)))
		rss0, _ := p.rssKiB()
		for _, l := range h2Listeners {
			for _, fl := range floods {
				if testing.Short() {
					break // -short (the race pass): 64 MiB floods and RSS bounds do not suit a race build
				}
				t.Run(l+"/"+fl.name, func(t *testing.T) {
					before := h2Event(t, p, l, "control_flood")
					h := dialH2(t, p, l, pk)
					written, err := 0, error(nil)
					for chunk := 0; written < limit && err == nil; chunk++ {
						var buf bytes.Buffer
						fr := &http2.Writer{W: &buf}
						for i := range 4096 {
							fl.frame(fr, chunk*4096+i)
						}
						var n int
						n, err = h.c.Write(buf.Bytes())
						written += n
					}
					if err == nil {
						t.Fatalf("wrote %d MiB of %s frames without reading: the connection is still open", written>>20, fl.name)
					}
					if got := h2Event(t, p, l, "control_flood"); got <= before {
						t.Fatalf("control_flood %v → %v (write error %v after %d KiB)", before, got, err, written>>10)
					}
				})
			}
		}
		_, peak := p.rssKiB()
		t.Logf("peak RSS %d MiB over %d MiB at start", (peak-rss0)>>10, rss0>>10)
		if !testing.Short() && peak-rss0 > 48<<10 {
			t.Fatalf("proxy peak RSS grew by %d MiB under floods", (peak-rss0)>>10)
		}
		// Floods answered with GOAWAY ENHANCE_YOUR_CALM while the client
		// reads: empty frames (CVE-2019-9518), CONTINUATION without end
		// (CVE-2024-27316), streams opened and cancelled (CVE-2023-44487).
		post := hf(":method", "POST", ":scheme", "$s", ":authority", "example.com", ":path", "/t")
		calm := []struct {
			name  string
			write func(h *h2Client, fr *http2.Writer)
		}{
			{"empty DATA", func(h *h2Client, fr *http2.Writer) {
				fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: h.block(post), EndHeaders: true})
				for range 200 {
					fr.WriteData(1, false, nil)
				}
			}},
			{"CONTINUATION", func(h *h2Client, fr *http2.Writer) {
				fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: h.block(post)})
				for range 64 {
					fr.WriteContinuation(1, false, bytes.Repeat([]byte{0x40}, 16<<10-1))
				}
			}},
			{"rapid reset", func(h *h2Client, fr *http2.Writer) {
				for i := range 1000 {
					id := uint32(2*i + 1)
					fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: h.block(post), EndHeaders: true})
					fr.WriteRSTStream(id, http2.ErrCodeCancel)
				}
			}},
		}
		for _, l := range h2Listeners {
			for _, c := range calm {
				t.Run(l+"/"+c.name, func(t *testing.T) {
					h := dialH2(t, p, l, pk)
					var buf bytes.Buffer
					c.write(h, &http2.Writer{W: &buf})
					go h.c.Write(buf.Bytes()) // the proxy may close before reading it all
					for {
						if ga := h.read(); ga.Type == http2.FrameGoAway {
							if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
								t.Fatalf("GOAWAY %v %s", ga.ErrCode, ga.Data)
							}
							return
						}
					}
				})
			}
		}
	})
}

// TestH2RequestTrailers: pseudo-fields in trailers make the request
// malformed (RST_STREAM, nothing forwarded); fields a trailer may not carry
// (RFC 9110 §6.5.1: content-length, host, te...) are dropped and counted,
// the rest forwarded in the HTTP/1.1 chunked trailer.
func TestH2RequestTrailers(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startRecUpstream(t)
		p := startProxy(t, h2secConfig(tr, pk, up.addr, closedPort(t)))
		post := hf(":method", "POST", ":scheme", "$s", ":authority", "example.com", ":path", "/t", "te", "trailers")
		for _, l := range h2Listeners {
			t.Run(l, func(t *testing.T) {
				h := dialH2(t, p, l, pk)
				sendWithTrailers := func(id uint32, trailers []http2.HeaderField) {
					var buf bytes.Buffer
					fr := &http2.Writer{W: &buf}
					fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: h.block(post), EndHeaders: true})
					fr.WriteData(id, false, []byte("hello"))
					fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: h.block(trailers), EndStream: true, EndHeaders: true})
					h.c.Write(buf.Bytes())
				}
				before := h2Event(t, p, l, "trailer_field_dropped")
				mark := up.mark()
				sendWithTrailers(1, hf(":path", "/evil"))
				if r := h.await(1); !r.rst || r.code != http2.ErrCodeProtocol {
					t.Fatalf("pseudo-header in trailers: %v", r)
				}
				sendWithTrailers(3, hf("x-sum", "42", "content-length", "99", "host", "evil.example", "te", "trailers", "trailer", "x-sum"))
				if r := h.await(3); r.status != "200" {
					t.Fatalf("%v", r)
				}
				seen := up.since(mark)
				r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(seen)))
				if err != nil {
					t.Fatalf("%v\n%q", err, seen)
				}
				body, _ := io.ReadAll(r.Body)
				if r.URL.Path != "/t" || string(body) != "hello" || r.Trailer.Get("X-Sum") != "42" {
					t.Fatalf("%s %q trailer %v\n%q", r.URL.Path, body, r.Trailer, seen)
				}
				for _, k := range []string{"Content-Length", "Host", "Te", "Trailer"} {
					if _, ok := r.Trailer[k]; ok {
						t.Errorf("trailer %s forwarded: %q", k, seen)
					}
				}
				if bytes.Contains(seen, []byte("evil")) {
					t.Fatalf("dropped trailer reached the upstream: %q", seen)
				}
				if got := h2Event(t, p, l, "trailer_field_dropped"); got-before != 4 {
					t.Fatalf("trailer_field_dropped %v → %v, want +4", before, got)
				}
			})
		}
	})
}
