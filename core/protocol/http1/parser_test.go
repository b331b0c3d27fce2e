package http1

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

// recorder is a Callbacks that copies everything it is given.
type recorder struct {
	heads    []string
	body     bytes.Buffer
	trailers []string
	complete int
	last     Head
}

func (r *recorder) OnHead(h *Head) error {
	var b strings.Builder
	if len(h.Method) > 0 {
		fmt.Fprintf(&b, "%s %s 1.%d", h.Method, h.Target, h.Minor)
	} else {
		fmt.Fprintf(&b, "%d %s 1.%d", h.Status, h.Reason, h.Minor)
	}
	for _, f := range h.Headers.Fields {
		fmt.Fprintf(&b, "|%s=%s", f.Name, f.Value)
	}
	r.heads = append(r.heads, b.String())
	r.last = *h
	r.last.Headers = protocol.Headers{}
	return nil
}
func (r *recorder) OnBody(p []byte) error { r.body.Write(p); return nil }
func (r *recorder) OnTrailers(t *protocol.Headers) error {
	for _, f := range t.Fields {
		r.trailers = append(r.trailers, string(f.Name)+"="+string(f.Value))
	}
	return nil
}
func (r *recorder) OnComplete() error { r.complete++; return nil }

// feed parses in with the given chunking the way a connection does: unparsed
// bytes are kept and passed again with the next piece.
func feed(p *Parser, in string, step int) error {
	var pending []byte
	for i := 0; i < len(in); i += step {
		pending = append(pending, in[i:min(i+step, len(in))]...)
		for {
			n, err := p.Parse(pending)
			pending = pending[n:]
			if err != nil {
				return err
			}
			if p.Done() {
				p.Reset()
				if len(pending) > 0 {
					continue
				}
			}
			if n == 0 {
				break
			}
		}
	}
	if len(pending) > 0 {
		return errors.New("leftover bytes")
	}
	return nil
}

func TestRequestParsing(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		head     string
		body     string
		trailers []string
		close    bool
		expect   bool
		messages int
	}{
		{name: "get", in: "GET /a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n", head: "GET /a?b=c 1.1|Host=x|User-Agent=t", messages: 1},
		{name: "lf only", in: "GET / HTTP/1.1\nHost: x\n\n", head: "GET / 1.1|Host=x", messages: 1},
		{name: "leading crlf", in: "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", head: "GET / 1.1|Host=x", messages: 1},
		{name: "ows trimmed", in: "GET / HTTP/1.1\r\nHost:   x \t\r\n\r\n", head: "GET / 1.1|Host=x", messages: 1},
		{name: "content-length", in: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", head: "POST / 1.1|Host=x|Content-Length=5", body: "hello", messages: 1},
		{name: "chunked with trailers", in: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 9\r\n\r\n", head: "POST / 1.1|Host=x|Transfer-Encoding=chunked", body: "hello world", trailers: []string{"X-Sum=9"}, messages: 1},
		{name: "chunked no trailers", in: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", head: "POST / 1.1|Host=x|Transfer-Encoding=Chunked", body: "0123456789", messages: 1},
		{name: "http10 closes", in: "GET / HTTP/1.0\r\n\r\n", head: "GET / 1.0", close: true, messages: 1},
		{name: "http10 keep-alive", in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", head: "GET / 1.0|Connection=keep-alive", messages: 1},
		{name: "connection close", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n", head: "GET / 1.1|Host=x|Connection=foo, close", close: true, messages: 1},
		{name: "expect", in: "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz", head: "PUT / 1.1|Host=x|Expect=100-continue|Content-Length=1", body: "z", expect: true, messages: 1},
		{name: "pipelined", in: "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", head: "GET /2 1.1|Host=x", messages: 2},
	} {
		for _, step := range []int{1, 3, 7, 1 << 20} {
			t.Run(fmt.Sprintf("%s/step%d", tc.name, step), func(t *testing.T) {
				r := &recorder{}
				p := NewRequestParser(DefaultLimits, r)
				if err := feed(p, tc.in, step); err != nil {
					t.Fatalf("parse: %v", err)
				}
				if r.complete != tc.messages || len(r.heads) != tc.messages {
					t.Fatalf("messages: %d complete, %d heads; want %d", r.complete, len(r.heads), tc.messages)
				}
				if got := r.heads[len(r.heads)-1]; got != tc.head {
					t.Errorf("head %q, want %q", got, tc.head)
				}
				if r.body.String() != tc.body {
					t.Errorf("body %q, want %q", r.body.String(), tc.body)
				}
				if fmt.Sprint(r.trailers) != fmt.Sprint(tc.trailers) && len(tc.trailers)+len(r.trailers) > 0 {
					t.Errorf("trailers %v, want %v", r.trailers, tc.trailers)
				}
				if r.last.Close != tc.close || r.last.ExpectContinue != tc.expect {
					t.Errorf("close=%v expect=%v, want %v %v", r.last.Close, r.last.ExpectContinue, tc.close, tc.expect)
				}
			})
		}
	}
}

func TestRequestRejects(t *testing.T) {
	lim := Limits{MaxRequestLine: 64, MaxHeaderBytes: 256, MaxHeaders: 4}
	long := strings.Repeat("a", 100)
	for _, tc := range []struct {
		name, in string
		status   int
	}{
		{"cl and te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"duplicate cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400},
		{"cl list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", 400},
		{"cl sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", 400},
		{"cl empty", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400},
		{"cl huge", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"bad name", "GET / HTTP/1.1\r\nHost: x\r\nX(A): b\r\n\r\n", 400},
		{"nul in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n", 400},
		{"bare cr in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", 400},
		{"bare cr line end", "GET / HTTP/1.1\rHost: x\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"te 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"te gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"te twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"bad version", "GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"ctl in target", "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"long line incomplete", "GET /" + long, 414},
		{"long line complete", "GET /" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("b", 300) + "\r\n\r\n", 431},
		{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n", 431},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
		{"chunk lf only", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n", 400},
		{"chunk data no crlf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400},
		{"chunk ext ctl", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;a\x01\r\n", 400},
	} {
		for _, step := range []int{1, 1 << 20} {
			t.Run(fmt.Sprintf("%s/step%d", tc.name, step), func(t *testing.T) {
				p := NewRequestParser(lim, &recorder{})
				err := feed(p, tc.in, step)
				var pe *protocol.Error
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v, want protocol error %d", err, tc.status)
				}
				if pe.Status != tc.status {
					t.Fatalf("status %d (%s), want %d", pe.Status, pe.Reason, tc.status)
				}
			})
		}
	}
}

func TestResponseParsing(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		noBody   bool
		body     string
		eof      bool // body delimited by close
		status   int
	}{
		{name: "cl", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", body: "hi", status: 200},
		{name: "no reason", in: "HTTP/1.1 204\r\n\r\n", status: 204},
		{name: "304 ignores cl", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", status: 304},
		{name: "head ignores cl", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", noBody: true, status: 200},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", body: "abc", status: 200},
		{name: "until close", in: "HTTP/1.1 200 OK\r\n\r\nstream until close", body: "stream until close", eof: true, status: 200},
		{name: "100", in: "HTTP/1.1 100 Continue\r\n\r\n", status: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			p := NewResponseParser(DefaultLimits, r)
			p.NoBody = tc.noBody
			n, err := p.Parse([]byte(tc.in))
			if err != nil || n != len(tc.in) {
				t.Fatalf("parse: n=%d err=%v", n, err)
			}
			if tc.eof {
				if p.Done() {
					t.Fatal("until-close body completed before EOF")
				}
				if err := p.EOF(); err != nil {
					t.Fatal(err)
				}
			}
			if !p.Done() || r.complete != 1 || r.last.Status != tc.status || r.body.String() != tc.body {
				t.Fatalf("done=%v complete=%d status=%d body=%q", p.Done(), r.complete, r.last.Status, r.body.String())
			}
		})
	}
}

func TestResponseTruncated(t *testing.T) {
	p := NewResponseParser(DefaultLimits, &recorder{})
	if _, err := p.Parse([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")); err != nil {
		t.Fatal(err)
	}
	if err := p.EOF(); err == nil {
		t.Fatal("EOF inside a Content-Length body must be an error")
	}
}

func TestResponseRejects(t *testing.T) {
	for _, in := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
	} {
		p := NewResponseParser(DefaultLimits, &recorder{})
		_, err := p.Parse([]byte(in))
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Status != 502 {
			t.Errorf("%q: err %v, want 502", in, err)
		}
	}
}

type nopCB struct{}

func (nopCB) OnHead(*Head) error                 { return nil }
func (nopCB) OnBody([]byte) error                { return nil }
func (nopCB) OnTrailers(*protocol.Headers) error { return nil }
func (nopCB) OnComplete() error                  { return nil }

// FuzzRequestParser checks that no input panics, that the parser never
// consumes more than it was given, and that chunking the input does not change
// the outcome.
func FuzzRequestParser(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nA: b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole := &recorder{}
		errWhole := feed(NewRequestParser(DefaultLimits, whole), string(in), len(in)+1)
		pieces := &recorder{}
		errPieces := feed(NewRequestParser(DefaultLimits, pieces), string(in), int(step%16)+1)
		if (errWhole == nil) != (errPieces == nil) {
			t.Fatalf("whole err %v, pieces err %v", errWhole, errPieces)
		}
		if errWhole == nil && (whole.body.String() != pieces.body.String() || fmt.Sprint(whole.heads) != fmt.Sprint(pieces.heads)) {
			t.Fatalf("chunking changed the result")
		}
	})
}

func FuzzResponseParser(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p := NewResponseParser(DefaultLimits, nopCB{})
		n, _ := p.Parse(in)
		if n < 0 || n > len(in) {
			t.Fatalf("consumed %d of %d", n, len(in))
		}
		_ = p.EOF()
	})
}

func BenchmarkParseRequest(b *testing.B) {
	in := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n")
	p := NewRequestParser(DefaultLimits, nopCB{})
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p.Reset()
		if _, err := p.Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	in := []byte("HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 21 Nov 2026 06:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: keep-alive\r\n\r\n01234567890123456789")
	p := NewResponseParser(DefaultLimits, nopCB{})
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p.Reset()
		if _, err := p.Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
