package main

// Security and conformance tests of the downstream HTTP/2 codec through
// the real binary: raw frames from a client that can send anything, a raw
// upstream that records every byte the proxy writes to it, and h2spec.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/protocol/http2/h2test"
)

// recUpstream is a raw HTTP/1.1 upstream: it records every byte it
// receives (all connections, in arrival order) and answers each request it
// parses: /204 → 204, /304 → 304, HEAD → 200 without body, else 200 with
// upstreamBody.
type recUpstream struct {
	addr string
	mu   sync.Mutex
	rec  bytes.Buffer
	reqs int
}

const upstreamBody = "hello world from upstream"

func startRecUpstream(t *testing.T) *recUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &recUpstream{addr: ln.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go u.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return u
}

// recorder tees what the upstream reads into u.rec.
type recorder struct {
	u *recUpstream
	c net.Conn
}

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	r.u.mu.Lock()
	r.u.rec.Write(p[:n])
	r.u.mu.Unlock()
	return n, err
}

func (u *recUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(recorder{u, c})
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		u.mu.Lock()
		u.reqs++
		u.mu.Unlock()
		var resp string
		switch {
		case req.URL.Path == "/204":
			resp = "HTTP/1.1 204 No Content\r\n\r\n"
		case req.URL.Path == "/304":
			resp = "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
		case req.Method == "HEAD":
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(upstreamBody))
		default:
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(upstreamBody), upstreamBody)
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

// mark is the position of the next byte the upstream records.
func (u *recUpstream) mark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rec.Len()
}

// since returns the bytes recorded from mark on.
func (u *recUpstream) since(m int) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return bytes.Clone(u.rec.Bytes()[m:])
}

// h2secConfig: an h2c listener (codec http2: no HTTP/1.1 fallback, so an
// invalid preface is an HTTP/2 error, as h2spec expects) and a TLS one
// (codec auto, ALPN h2), routes to the recording upstream, a gRPC cluster
// and local replies.
func h2secConfig(tr string, pk *pki, up, grpcUp string) string {
	listener := func(name, addr, tlsBlock, codec string) string {
		return fmt.Sprintf(`  - name: %s
    address: %s:0
%s    http_proxy:
      codec: %s
      idle_timeout: 30s
      http2_protocol_options: {max_concurrent_streams: 128}
`, name, addr, tlsBlock, codec)
	}
	tlsBlock := fmt.Sprintf("    tls:\n      certificates:\n        - {cert_file: %q, key_file: %q}\n", pk.file("server.pem"), pk.file("server-key.pem"))
	return fmt.Sprintf(`transport: %s
drain_timeout: 5s
admin: {address: "127.0.0.1:0"}
listeners:
%s%sroutes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /local, direct_response: {status: 200, body: "local reply"}}
      - {prefix: /empty, direct_response: {status: 204}}
      - {prefix: /redirect, redirect: {host_redirect: "elsewhere.example", response_code: 302}}
      - {prefix: /grpc.testing., cluster: grpc}
      - {regex: "[*]", cluster: up}
      - {prefix: /, cluster: up}
clusters:
  - {name: up, connect_timeout: 1s, hosts: [{address: %q}]}
  - {name: grpc, connect_timeout: 1s, protocol: http2, hosts: [{address: %q}]}
`, tr, listener("h2c", "127.0.0.1", "", "http2"), listener("tls", "127.0.0.2", tlsBlock, "auto"), up, grpcUp)
}

// h2Listeners are the two ways a client reaches the HTTP/2 codec.
var h2Listeners = []string{"h2c", "tls"}

// h2Client is a raw HTTP/2 client over h2test: it writes any frame and
// any header field (the HPACK encoder takes invalid names and values), and
// reads frames with a timeout.
type h2Client struct {
	t      *testing.T
	c      net.Conn
	fr     *h2test.Conn
	scheme string
}

func dialH2(t *testing.T, p *proc, listener string, pk *pki) *h2Client {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.addr(listener), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if listener == "tls" {
		tc := tls.Client(c, &tls.Config{RootCAs: pk.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if np := tc.ConnectionState().NegotiatedProtocol; np != "h2" {
			t.Fatalf("ALPN %q", np)
		}
		c, scheme = tc, "https"
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	h := &h2Client{t: t, c: c, scheme: scheme, fr: h2test.New(c)}
	h.fr.Timeout = 30 * time.Second
	if _, err := h.fr.Handshake(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *h2Client) read() *h2test.Frame {
	h.t.Helper()
	f, err := h.fr.ReadFrame()
	if err != nil {
		h.t.Fatalf("reading frame: %v", err)
	}
	return f
}

// block hpack-encodes fields as given ("$s" as a value stands for the
// connection's scheme).
func (h *h2Client) block(fields []http2.HeaderField) []byte {
	fs := make([]http2.HeaderField, len(fields))
	for i, f := range fields {
		if f.Value == "$s" {
			f.Value = h.scheme
		}
		fs[i] = f
	}
	return h.fr.Block(fs)
}

// send writes HEADERS (END_STREAM when body is nil) and, with a body, one
// DATA frame ending the stream; all in one write, so the proxy reads them
// together.
func (h *h2Client) send(id uint32, fields []http2.HeaderField, body []byte) {
	h.t.Helper()
	err := h.fr.Batch(func() {
		h.fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: h.block(fields), EndStream: body == nil, EndHeaders: true})
		if body != nil {
			h.fr.WriteData(id, true, body)
		}
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// h2Result is how a stream ended.
type h2Result struct {
	status   string
	body     []byte
	rst      bool
	code     http2.ErrCode
	goAway   bool
	headEnd  bool // the response ended on its HEADERS frame
	trailers []http2.HeaderField
}

func (r h2Result) String() string {
	switch {
	case r.goAway:
		return fmt.Sprintf("GOAWAY %v", r.code)
	case r.rst:
		return fmt.Sprintf("RST_STREAM %v", r.code)
	}
	return fmt.Sprintf("%s %q", r.status, r.body)
}

// await reads frames until stream id ends (END_STREAM, RST_STREAM) or
// the connection is refused (GOAWAY).
func (h *h2Client) await(id uint32) h2Result {
	h.t.Helper()
	var r h2Result
	for {
		f := h.read()
		switch f.Type {
		case http2.FrameHeaders:
			if f.StreamID != id {
				continue
			}
			if st := f.Get(":status"); st != "" && st[0] == '1' {
				continue
			} else if r.status == "" {
				r.status, r.headEnd = st, f.StreamEnded()
			} else {
				r.trailers = f.Regular()
			}
			if f.StreamEnded() {
				return r
			}
		case http2.FrameData:
			if f.StreamID == id {
				r.body = append(r.body, f.Data...)
				if f.StreamEnded() {
					return r
				}
			}
		case http2.FrameRSTStream:
			if f.StreamID == id {
				r.rst, r.code = true, f.ErrCode
				return r
			}
		case http2.FrameGoAway:
			r.goAway, r.code = true, f.ErrCode
			return r
		}
	}
}

// sync sends a PING and reads until its ack, failing on any RST_STREAM
// or GOAWAY in between.
func (h *h2Client) sync(what string) {
	h.t.Helper()
	data := [8]byte{'s', 'y', 'n', 'c'}
	h.fr.WritePing(false, data)
	for {
		f := h.read()
		switch f.Type {
		case http2.FramePing:
			if f.IsAck() && f.PingData == data {
				return
			}
		case http2.FrameRSTStream:
			h.t.Fatalf("%s: RST_STREAM %v on stream %d", what, f.ErrCode, f.StreamID)
		case http2.FrameGoAway:
			h.t.Fatalf("%s: GOAWAY %v", what, f.ErrCode)
		}
	}
}

// hf builds a field list from name, value pairs.
func hf(kv ...string) []http2.HeaderField {
	var fs []http2.HeaderField
	for i := 0; i+1 < len(kv); i += 2 {
		fs = append(fs, http2.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return fs
}

// get is a valid GET of path with extra fields after the pseudo ones.
func get(path string, extra ...string) []http2.HeaderField {
	return hf(append([]string{":method", "GET", ":scheme", "$s", ":authority", "example.com", ":path", path}, extra...)...)
}

// h2specBin finds h2spec on PATH or in $(go env GOPATH)/bin.
func h2specBin() string {
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "h2spec")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

var h2specSummary = regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`)

// TestH2Spec runs h2spec's strict suite against the h2c listener (codec
// http2) and the TLS one (ALPN h2) with a real upstream; every test must
// pass, none skipped (the upstream body is long enough for 6.9.2/2).
func TestH2Spec(t *testing.T) {
	bin := h2specBin()
	if bin == "" {
		t.Skip("h2spec not found on PATH or in $(go env GOPATH)/bin; scripts/install-deps.sh installs it")
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startRecUpstream(t)
		p := startProxy(t, h2secConfig(tr, pk, up.addr, closedPort(t)))
		for _, l := range h2Listeners {
			t.Run(l, func(t *testing.T) {
				host, port, _ := net.SplitHostPort(p.addr(l))
				args := []string{"-S", "-h", host, "-p", port, "-o", "5", "-j", filepath.Join(t.TempDir(), "junit.xml")}
				if l == "tls" {
					args = append(args, "-t", "-k")
				}
				out, err := exec.Command(bin, args...).CombinedOutput()
				m := h2specSummary.FindStringSubmatch(string(out))
				if m == nil {
					t.Fatalf("h2spec: %v\n%s", err, out)
				}
				total, _ := strconv.Atoi(m[1])
				passed, _ := strconv.Atoi(m[2])
				if err != nil || passed != total || total < 146 {
					failed := string(out)
					if i := strings.Index(failed, "Failures:"); i >= 0 {
						failed = failed[i:]
					}
					t.Fatalf("h2spec %s: %s (%v)\n%s", l, m[0], err, failed)
				}
			})
		}
	})
}
