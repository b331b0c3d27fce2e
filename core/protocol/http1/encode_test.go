package http1

import (
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

func TestEncodeRequestHeadStripsHopByHop(t *testing.T) {
	r := &recorder{}
	p := NewRequestParser(DefaultLimits, r)
	var got string
	p.cb = cbFunc(func(h *Head) {
		got = string(EncodeRequestHead(h, []protocol.Field{{Name: []byte("X-Forwarded-For"), Value: []byte("10.0.0.1")}}, Framing{ContentLength: 3}).Bytes())
	})
	in := "POST /p HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nUpgrade: foo\r\nContent-Length: 3\r\nX-Keep: k\r\n\r\nabc"
	if _, err := p.Parse([]byte(in)); err != nil {
		t.Fatal(err)
	}
	want := "POST /p HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nX-Keep: k\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 3\r\n\r\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

func TestEncodeResponseHead(t *testing.T) {
	h := &Head{Status: 404, ContentLength: -1}
	h.Headers.Add("Server", []byte("up"))
	h.Headers.Add("Transfer-Encoding", []byte("chunked"))
	got := string(EncodeResponseHead(h, nil, Framing{ContentLength: -1, Chunked: true, Connection: "close"}).Bytes())
	want := "HTTP/1.1 404 Not Found\r\nServer: up\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestEncodeChunksRoundTrip(t *testing.T) {
	tr := &protocol.Headers{}
	tr.Add("X-Checksum", []byte("abc"))
	msg := "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
		string(EncodeChunk([]byte("hello ")).Bytes()) + string(EncodeChunk([]byte("world")).Bytes()) + string(EncodeLastChunk(tr).Bytes())
	r := &recorder{}
	if err := feed(NewRequestParser(DefaultLimits, r), msg, 5); err != nil {
		t.Fatal(err)
	}
	if r.body.String() != "hello world" || len(r.trailers) != 1 || r.trailers[0] != "X-Checksum=abc" {
		t.Fatalf("body %q trailers %v", r.body.String(), r.trailers)
	}
}

func TestEncodeLocalReply(t *testing.T) {
	got := string(EncodeLocalReply(503, "no healthy upstream", true, false).Bytes())
	want := "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 41\r\nConnection: close\r\n\r\nService Unavailable: no healthy upstream\n"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

type cbFunc func(h *Head)

func (f cbFunc) OnHead(h *Head) error             { f(h); return nil }
func (cbFunc) OnBody([]byte) error                { return nil }
func (cbFunc) OnTrailers(*protocol.Headers) error { return nil }
func (cbFunc) OnComplete() error                  { return nil }

func BenchmarkEncodeResponseHead(b *testing.B) {
	h := &Head{Status: 200}
	h.Headers.Add("Server", []byte("nginx"))
	h.Headers.Add("Content-Type", []byte("text/plain"))
	h.Headers.Add("Date", []byte("Sat, 21 Nov 2026 06:00:00 GMT"))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		EncodeResponseHead(h, nil, Framing{ContentLength: 20}).Release()
	}
}
