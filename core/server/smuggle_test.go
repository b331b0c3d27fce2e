package server

// Request-smuggling fuzzers: arbitrary downstream input (HTTP/1 bytes, or
// HTTP/2 frames) goes through the real in-process proxy to a real loopback
// HTTP/1.1 upstream that checks, strictly, that every upstream connection
// carries exactly one well-formed request, consumed whole by its own framing,
// with nothing after it. The upstream answers "Connection: close", so a
// second request hidden inside the first (smuggled) shows up as leftover
// bytes on that connection.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/protocol/http2/h2test"

	"github.com/proxylab/proxylab/core/protocol"
)

// strictUpstream is the checking upstream. Its connection handlers report
// violations; active counts handlers that received a byte and are still
// running, so a fuzz iteration can wait until every byte the proxy wrote for
// its input has been judged. (A connection the pool dialled but never used
// stays open without bytes and is not waited for.)
type strictUpstream struct {
	addr       string
	mu         sync.Mutex
	cond       *sync.Cond
	active     int
	violations []string
}

func startStrictUpstream(tb testing.TB) *strictUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	u := &strictUpstream{addr: ln.Addr().String()}
	u.cond = sync.NewCond(&u.mu)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u
}

// errAborted: the proxy closed the connection mid-request (its client went
// away): legitimate, nothing to judge.
var errAborted = errors.New("aborted mid-request")

// firstByte counts its connection as active from the first byte read.
type firstByte struct {
	u    *strictUpstream
	c    net.Conn
	seen bool
}

func (r *firstByte) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	if n > 0 && !r.seen {
		r.seen = true
		r.u.mu.Lock()
		r.u.active++
		r.u.mu.Unlock()
	}
	return n, err
}

func (u *strictUpstream) serve(c net.Conn) {
	fb := &firstByte{u: u, c: c}
	defer func() {
		c.Close()
		if fb.seen {
			u.mu.Lock()
			u.active--
			u.cond.Broadcast()
			u.mu.Unlock()
		}
	}()
	var rec bytes.Buffer
	br := bufio.NewReader(io.TeeReader(fb, &rec))
	err := readStrictRequest(br)
	if err == nil {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		// Nothing may follow the one request: the proxy closes after the
		// response ("Connection: close").
		var extra [512]byte
		if n, _ := io.ReadFull(br, extra[:1]); n > 0 {
			k, _ := br.Read(extra[1:])
			err = fmt.Errorf("bytes after a complete request: %q", extra[:1+k])
		}
	}
	if err != nil && !errors.Is(err, errAborted) && !(errors.Is(err, io.EOF) && rec.Len() == 0) {
		u.mu.Lock()
		u.violations = append(u.violations, fmt.Sprintf("%v\nupstream connection bytes: %q", err, rec.Bytes()))
		u.mu.Unlock()
	}
}

// settle waits until every upstream connection has been judged and returns
// (and clears) the violations.
func (u *strictUpstream) settle(tb testing.TB) []string {
	deadline := time.Now().Add(15 * time.Second)
	t := time.AfterFunc(15*time.Second, func() { u.mu.Lock(); u.cond.Broadcast(); u.mu.Unlock() })
	defer t.Stop()
	u.mu.Lock()
	defer u.mu.Unlock()
	for u.active > 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("%d upstream connections still open 15s after the client finished", u.active)
		}
		u.cond.Wait()
	}
	v := u.violations
	u.violations = nil
	return v
}

// readLine reads one line, which must end in CRLF; EOF inside it is an
// abort.
func readLine(br *bufio.Reader) ([]byte, error) {
	l, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(l) == 0 {
			return nil, io.EOF
		}
		if errors.Is(err, io.EOF) {
			return nil, errAborted
		}
		return nil, fmt.Errorf("line: %w", err)
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("line without CRLF: %q", l)
	}
	l = l[:len(l)-2]
	if bytes.IndexByte(l, '\r') >= 0 {
		return nil, fmt.Errorf("bare CR: %q", l)
	}
	return append([]byte(nil), l...), nil
}

// checkField checks one header or trailer line strictly.
func checkField(l []byte) (name, value []byte, err error) {
	i := bytes.IndexByte(l, ':')
	if i <= 0 || !protocol.ValidFieldName(l[:i]) {
		return nil, nil, fmt.Errorf("bad field line %q", l)
	}
	v := bytes.Trim(l[i+1:], " \t")
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, fmt.Errorf("control byte in %q", l)
		}
	}
	return l[:i], v, nil
}

// readStrictRequest reads one request head and its body, checking both
// against a strict reading of RFC 9112 and, for the head, net/http.
func readStrictRequest(br *bufio.Reader) error {
	first, err := readLine(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return err
	}
	head := append(append([]byte(nil), first...), "\r\n"...)
	parts := bytes.Split(first, []byte(" "))
	if len(parts) != 3 || !protocol.ValidMethod(parts[0]) || !protocol.ValidRequestTarget(parts[1]) ||
		string(parts[2]) != "HTTP/1.1" || (parts[1][0] != '/' && !(string(parts[1]) == "*" && string(parts[0]) == "OPTIONS")) {
		return fmt.Errorf("bad request line %q", first)
	}
	var cl int64 = -1
	chunked, hosts := false, 0
	for {
		l, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errAborted
			}
			return err
		}
		head = append(append(head, l...), "\r\n"...)
		if len(l) == 0 {
			break
		}
		name, v, err := checkField(l)
		if err != nil {
			return err
		}
		switch {
		case protocol.EqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if cl >= 0 || err != nil || n < 0 || v[0] == '+' {
				return fmt.Errorf("bad or repeated Content-Length %q", v)
			}
			cl = n
		case protocol.EqualFold(name, "transfer-encoding"):
			if chunked || string(v) != "chunked" {
				return fmt.Errorf("bad Transfer-Encoding %q", v)
			}
			chunked = true
		case protocol.EqualFold(name, "host"):
			hosts++
			if len(v) > 0 && !protocol.ValidAuthority(v) {
				return fmt.Errorf("bad Host %q", v)
			}
		}
	}
	if hosts != 1 {
		return fmt.Errorf("%d Host fields", hosts)
	}
	if cl >= 0 && chunked {
		return errors.New("both Content-Length and Transfer-Encoding")
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return fmt.Errorf("net/http refuses the head: %w", err)
	}
	if want := max(cl, 0); req.ContentLength != want && !(chunked && req.ContentLength == -1) {
		return fmt.Errorf("net/http reads length %d, strict reading %d", req.ContentLength, cl)
	}
	switch {
	case chunked:
		return readStrictChunked(br)
	case cl > 0:
		if _, err := io.CopyN(io.Discard, br, cl); err != nil {
			return errAborted
		}
	}
	return nil
}

func readStrictChunked(br *bufio.Reader) error {
	for {
		l, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errAborted
			}
			return err
		}
		size, err := strconv.ParseUint(string(l), 16, 63)
		if err != nil || len(l) == 0 {
			return fmt.Errorf("bad chunk size line %q", l)
		}
		if size == 0 {
			break
		}
		if _, err := io.CopyN(io.Discard, br, int64(size)); err != nil {
			return errAborted
		}
		if l, err := readLine(br); err != nil || len(l) != 0 {
			if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, errAborted)) {
				return errAborted
			}
			return fmt.Errorf("chunk data not followed by CRLF: %q %v", l, err)
		}
	}
	for {
		l, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errAborted
			}
			return err
		}
		if len(l) == 0 {
			return nil
		}
		name, _, err := checkField(l)
		if err != nil {
			return fmt.Errorf("trailer: %w", err)
		}
		if protocol.ForbiddenTrailer(name) {
			return fmt.Errorf("forbidden trailer field %q", l)
		}
	}
}

// exchange sends in on a fresh proxy connection, then a last request asking
// to close, and reads until the proxy closes or goes quiet (an input that
// leaves a request incomplete); closing then aborts what is in flight.
func exchange(tb testing.TB, addr string, in []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(in)
		io.WriteString(c, "GET /end HTTP/1.1\r\nHost: end\r\nConnection: close\r\n\r\n")
	}()
	readUntilQuiet(c)
}

// quiet is how long a connection may stay silent before the exchange ends.
const quiet = 300 * time.Millisecond

func readUntilQuiet(c net.Conn) {
	var buf [4096]byte
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
	}
}

// exchangeH2 sends an HTTP/2 client connection's bytes and reads frames
// until stream 1 ends, is reset, the connection goes away or goes quiet.
func exchangeH2(tb testing.TB, addr string, in []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	go c.Write(in)
	fr := h2test.New(c)
	fr.Timeout = quiet
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f.Type {
		case http2.FrameGoAway:
			return
		case http2.FrameRSTStream:
			if f.StreamID == 1 {
				return
			}
		case http2.FrameData, http2.FrameHeaders:
			if f.StreamID == 1 && f.StreamEnded() {
				return
			}
		}
	}
}

var h1Seeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /d HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\nContent-Length: 3\r\n\r\n",
	"POST /cl-te HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /te-te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
	"POST /te-obs HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
	"POST /cl-dup HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 6\r\n\r\nGET / HTTP/1.1\r\n",
	"GET /lf HTTP/1.1\nHost: a\n\nGET /lf2 HTTP/1.1\nHost: a\n\n",
	"GET /cr HTTP/1.1\rHost: a\r\n\r\n",
	"GET http://b.example/abs HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /x HTTP/1.0\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /chunk-ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
}

// FuzzH1ToH1 sends arbitrary bytes as an HTTP/1 client (pipelining, chunked,
// CL/TE conflicts, obs-fold, bare LF...) through the proxy to an HTTP/1.1
// upstream: every request the proxy writes must be exactly one well-formed
// request.
func FuzzH1ToH1(f *testing.F) {
	up := startStrictUpstream(f)
	_, addr := startBenchProxy(f, up.addr)
	for _, s := range h1Seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		exchange(t, addr, in)
		if v := up.settle(t); len(v) > 0 {
			t.Fatalf("input %q: the proxy wrote a request that does not parse as exactly one:\n%s", in, v[0])
		}
	})
}

// h2Input builds the bytes of an HTTP/2 client connection: preface,
// SETTINGS, one request (HEADERS with the given fields, DATA, optional
// trailers) and raw extra bytes the fuzzer may use as further frames.
func h2Input(method, scheme, authority, path, name, value string, body []byte, tname, tvalue string, extra []byte) []byte {
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := &http2.Writer{W: &out}
	fr.WriteSettings()
	enc := http2.NewEncoder()
	var fields []http2.HeaderField
	for _, f := range [][2]string{{":method", method}, {":scheme", scheme}, {":authority", authority}, {":path", path}, {name, value}} {
		if f[0] != "" {
			fields = append(fields, http2.HeaderField{Name: f[0], Value: f[1]})
		}
	}
	noBody := len(body) == 0 && tname == ""
	fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: enc.Encode(fields), EndHeaders: true, EndStream: noBody})
	if !noBody {
		fr.WriteData(1, tname == "", body)
	}
	if tname != "" {
		fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: enc.Encode([]http2.HeaderField{{Name: tname, Value: tvalue}}), EndHeaders: true, EndStream: true})
	}
	out.Write(extra)
	return out.Bytes()
}

// FuzzH2ToH1 drives the real HTTP/2 server codec with fuzzed requests (the
// fuzzer mutates pseudo-fields, a field, the body, a trailer and raw trailing
// frames) and checks every HTTP/1.1 request the proxy writes upstream.
func FuzzH2ToH1(f *testing.F) {
	up := startStrictUpstream(f)
	_, addr := startBenchProxy(f, up.addr)
	type seed struct {
		m, s, a, p, n, v string
		body             []byte
		tn, tv           string
		extra            []byte
	}
	for _, s := range []seed{
		{"GET", "http", "a", "/", "user-agent", "fuzz", nil, "", "", nil},
		{"POST", "http", "a", "/b", "content-length", "5", []byte("hello"), "", "", nil},
		{"POST", "http", "a", "/t", "te", "trailers", []byte("x"), "x-sum", "1", nil},
		{"POST", "http", "a", "/t", "x", "y", []byte("x"), "content-length", "100", nil},
		{"GET", "http", "a", "/x HTTP/1.1\r\nHost: a\r\n\r\nGET /smuggled", "x", "y", nil, "", "", nil},
		{"GET /smuggled HTTP/1.1\r\nX:", "http", "a", "/x", "x", "y", nil, "", "", nil},
		{"GET", "http", "a\r\nX-Smuggled: 1", "/x", "x", "y", nil, "", "", nil},
		{"GET", "http", "a", "/", "x", "a\r\nContent-Length: 7", nil, "", "", nil},
		{"GET", "http", "a", "/", "x y", "z", nil, "", "", nil},
		{"POST", "http", "a", "/", "transfer-encoding", "chunked", []byte("0\r\n\r\nGET /s HTTP/1.1\r\n\r\n"), "", "", nil},
		{"GET", "http", "a", "*", "x", "y", nil, "", "", nil},
		{"OPTIONS", "http", "a", "*", "", "", nil, "", "", nil},
		{"GET", "http", "", "/", "host", "b\r\nX: y", nil, "", "", nil},
		{"GET", "https", "a:443", "/", "cookie", "a=b", nil, "", "", []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}},
	} {
		f.Add(s.m, s.s, s.a, s.p, s.n, s.v, s.body, s.tn, s.tv, s.extra)
	}
	f.Fuzz(func(t *testing.T, method, scheme, authority, path, name, value string, body []byte, tname, tvalue string, extra []byte) {
		in := h2Input(method, scheme, authority, path, name, value, body, tname, tvalue, extra)
		exchangeH2(t, addr, in)
		if v := up.settle(t); len(v) > 0 {
			t.Fatalf("request %q %q %q %q %q=%q body %q trailer %q=%q: the proxy wrote a request that does not parse as exactly one:\n%s",
				method, scheme, authority, path, name, value, body, tname, tvalue, v[0])
		}
	})
}
