package compressor

import (
	"bytes"
	"io"
	"math/rand"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/filter/filtertest"
	"github.com/proxylab/proxylab/core/protocol"
)

func factory(t testing.TB, s string) *Factory {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	f, errs := decode(&n, "f")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return f.(*Factory)
}

// Decompress reverses an encoding with the libraries' readers.
func Decompress(t testing.TB, enc string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	var err error
	switch enc {
	case "gzip":
		r, err = gzip.NewReader(bytes.NewReader(b))
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(b))
		r = d
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", enc, err)
	}
	return out
}

func TestNegotiate(t *testing.T) {
	f := factory(t, `encodings: [{name: zstd}, {name: br}, {name: gzip}]`)
	cases := []struct{ ae, want string }{
		{"gzip", "gzip"},
		{"gzip, br", "br"},
		{"gzip, br, zstd", "zstd"},
		{"gzip;q=1.0, br;q=0.5", "br"}, // server order decides among accepted
		{"br;q=0, gzip", "gzip"},
		{"zstd;q=0, br;q=0.000, GZIP;Q=0.001", "gzip"},
		{"*", "zstd"},
		{"*;q=0.5, zstd;q=0", "br"},
		{"*;q=0", ""},
		{"identity", ""},
		{"x-gzip", "gzip"},
		{"gzip;q=2", ""},
		{"gzip;q=abc", ""},
		{"gzip;q=0.5;foo=bar", "gzip"},
		{" , ,gzip ;q=0.8 ", "gzip"},
		{"", ""},
	}
	for _, tc := range cases {
		got := ""
		if e := negotiate([]byte(tc.ae), f.encodings); e != nil {
			got = e.name
		}
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.ae, got, tc.want)
		}
	}
}

type resp struct {
	status  int
	hdrs    []string
	clen    int64
	reqHdrs []string
	method  string
	grpc    bool
}

func run(t *testing.T, f *Factory, r resp, body [][]byte, trailers bool) (*protocol.Head, []byte, *filtertest.Stream) {
	t.Helper()
	s := filtertest.NewStream()
	s.I.IsGRPC = r.grpc
	fl := f.NewFilter(s).(*stream)
	req := &protocol.Head{Method: []byte(r.method), Target: []byte("/")}
	if r.method == "" {
		req.Method = []byte("GET")
	}
	for i := 0; i+1 < len(r.reqHdrs); i += 2 {
		req.Headers.Add(r.reqHdrs[i], []byte(r.reqHdrs[i+1]))
	}
	fl.DecodeHeaders(req, true)
	h := &protocol.Head{Status: r.status, ContentLength: r.clen, Minor: 1, Major: 1}
	for i := 0; i+1 < len(r.hdrs); i += 2 {
		h.Headers.Add(r.hdrs[i], []byte(r.hdrs[i+1]))
	}
	fl.EncodeHeaders(h, len(body) == 0)
	var out []byte
	for i, p := range body {
		b := &filter.Body{Bytes: p}
		fl.EncodeData(b, i == len(body)-1 && !trailers)
		out = append(out, b.Bytes...)
	}
	if trailers {
		fl.EncodeTrailers(&protocol.Headers{})
		out = append(out, s.AddedEncoded...)
	}
	fl.OnDestroy()
	return h, out, s
}

func TestCompressRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	var pieces [][]byte
	var whole []byte
	for i := 0; i < 20; i++ {
		p := []byte(strings.Repeat("hello compressor ", rnd.Intn(500)))
		p = append(p, byte(rnd.Intn(256)))
		pieces = append(pieces, p)
		whole = append(whole, p...)
	}
	for _, enc := range []string{"gzip", "br", "zstd"} {
		for _, trailers := range []bool{false, true} {
			f := factory(t, `encodings: [{name: `+enc+`}]`)
			h, out, _ := run(t, f, resp{status: 200, clen: int64(len(whole)), hdrs: []string{"Content-Type", "text/plain; charset=utf-8", "Content-Length", "99999", "ETag", `"abc"`},
				reqHdrs: []string{"Accept-Encoding", "gzip, br, zstd"}}, pieces, trailers)
			if got := string(h.Headers.Get("content-encoding")); got != enc {
				t.Fatalf("%s: content-encoding %q", enc, got)
			}
			if h.Headers.Has("content-length") || h.ContentLength != -1 {
				t.Fatalf("%s: length not removed: %+v", enc, h)
			}
			if string(h.Headers.Get("vary")) != "Accept-Encoding" || string(h.Headers.Get("etag")) != `W/"abc"` {
				t.Fatalf("%s: vary/etag %q %q", enc, h.Headers.Get("vary"), h.Headers.Get("etag"))
			}
			if got := Decompress(t, enc, out); !bytes.Equal(got, whole) {
				t.Fatalf("%s trailers=%v: round trip differs (%d vs %d bytes)", enc, trailers, len(got), len(whole))
			}
			if len(out) >= len(whole) {
				t.Fatalf("%s: not smaller: %d >= %d", enc, len(out), len(whole))
			}
			if e := f.encodings[0]; e.stats.Compressed.Value() != 1 || e.stats.BytesIn.Value() != uint64(len(whole)) || e.stats.BytesOut.Value() != uint64(len(out)) {
				t.Fatalf("%s: counters %d %d %d", enc, e.stats.Compressed.Value(), e.stats.BytesIn.Value(), e.stats.BytesOut.Value())
			}
		}
	}
}

// TestStreamingFlush: each piece's output decodes to everything sent so
// far, before the last piece (no buffering of the body).
func TestStreamingFlush(t *testing.T) {
	for _, enc := range []string{"gzip", "br", "zstd"} {
		f := factory(t, `encodings: [{name: `+enc+`}]`)
		s := filtertest.NewStream()
		fl := f.NewFilter(s).(*stream)
		req := &protocol.Head{Method: []byte("GET")}
		req.Headers.Add("accept-encoding", []byte(enc))
		fl.DecodeHeaders(req, true)
		fl.EncodeHeaders(&protocol.Head{Status: 200, ContentLength: -1}, false)
		var out, sent []byte
		for i := 0; i < 3; i++ {
			p := []byte(strings.Repeat("chunk ", 10+i))
			sent = append(sent, p...)
			b := &filter.Body{Bytes: p}
			fl.EncodeData(b, false)
			if len(b.Bytes) == 0 {
				t.Fatalf("%s: piece %d produced nothing", enc, i)
			}
			out = append(out, b.Bytes...)
			if got := partial(t, enc, out); !bytes.Equal(got, sent) {
				t.Fatalf("%s: after piece %d decoded %q, want %q", enc, i, got, sent)
			}
		}
		b := &filter.Body{}
		fl.EncodeData(b, true)
		out = append(out, b.Bytes...)
		if got := Decompress(t, enc, out); !bytes.Equal(got, sent) {
			t.Fatalf("%s: final differs", enc)
		}
		fl.OnDestroy()
	}
}

// partial decodes what a flushed, unfinished stream holds so far.
func partial(t *testing.T, enc string, b []byte) []byte {
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		d, _ := zstd.NewReader(bytes.NewReader(b))
		defer d.Close()
		r = d
	}
	buf := make([]byte, 1<<16)
	var out []byte
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil || n == 0 {
			return out
		}
	}
}

func TestSkipRules(t *testing.T) {
	body := [][]byte{[]byte(strings.Repeat("x", 100))}
	ae := []string{"Accept-Encoding", "gzip"}
	cases := []struct {
		name string
		r    resp
		cfg  string
		want bool
	}{
		{"plain 200", resp{status: 200, clen: -1, reqHdrs: ae}, "", true},
		{"no accept-encoding", resp{status: 200, clen: -1}, "", false},
		{"404", resp{status: 404, clen: -1, reqHdrs: ae}, "", false},
		{"HEAD", resp{status: 200, clen: -1, reqHdrs: ae, method: "HEAD"}, "", false},
		{"grpc", resp{status: 200, clen: -1, reqHdrs: ae, grpc: true}, "", false},
		{"already encoded", resp{status: 200, clen: -1, reqHdrs: ae, hdrs: []string{"Content-Encoding", "br"}}, "", false},
		{"identity encoding", resp{status: 200, clen: -1, reqHdrs: ae, hdrs: []string{"Content-Encoding", "identity"}}, "", true},
		{"no-transform", resp{status: 200, clen: -1, reqHdrs: ae, hdrs: []string{"Cache-Control", "public, No-Transform"}}, "", false},
		{"short", resp{status: 200, clen: 29, reqHdrs: ae}, "", false},
		{"short header", resp{status: 200, clen: -1, reqHdrs: ae, hdrs: []string{"Content-Length", "10"}}, "", false},
		{"min length", resp{status: 200, clen: 30, reqHdrs: ae}, "", true},
		{"image", resp{status: 200, clen: -1, reqHdrs: ae, hdrs: []string{"Content-Type", "image/png"}}, "", false},
		{"json", resp{status: 200, clen: -1, reqHdrs: ae, hdrs: []string{"Content-Type", "Application/JSON ; charset=utf-8"}}, "", true},
		{"custom type", resp{status: 200, clen: -1, reqHdrs: ae, hdrs: []string{"Content-Type", "image/png"}}, "content_type: [image/png]", true},
		{"etag disabled", resp{status: 200, clen: -1, reqHdrs: ae, hdrs: []string{"ETag", "x"}}, "disable_on_etag_header: true", false},
		{"gzip not offered", resp{status: 200, clen: -1, reqHdrs: ae}, "encodings: [{name: br}]", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == "" {
				cfg = "{}"
			}
			h, out, _ := run(t, factory(t, cfg), tc.r, body, false)
			got := h.Headers.Has("content-encoding") && string(h.Headers.Get("content-encoding")) != "br" && string(h.Headers.Get("content-encoding")) != "identity"
			if got != tc.want {
				t.Fatalf("compressed = %v, want %v (%+v)", got, tc.want, h.Headers)
			}
			if !got && !bytes.Equal(out, body[0]) {
				t.Fatal("uncompressed body changed")
			}
		})
	}
}

func TestVaryMerge(t *testing.T) {
	f := factory(t, `{}`)
	h, _, _ := run(t, f, resp{status: 200, clen: -1, reqHdrs: []string{"accept-encoding", "gzip"}, hdrs: []string{"Vary", "Origin"}}, [][]byte{[]byte(strings.Repeat("y", 64))}, false)
	if string(h.Headers.Get("vary")) != "Origin, Accept-Encoding" {
		t.Fatalf("vary %q", h.Headers.Get("vary"))
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{`encodings: [{name: lz4}]`, "f.encodings[0].name: must be gzip, br or zstd"},
		{`encodings: [{name: gzip, level: 10}]`, "f.encodings[0].level: must be 1 to 9"},
		{`encodings: [{name: gzip}, {name: gzip}]`, "f.encodings[1].name: gzip listed twice"},
		{`min_content_length: -1`, "f.min_content_length: must not be negative"},
		{`bogus: 1`, "f.bogus: unknown field"},
	}
	for _, tc := range cases {
		var n yaml.Node
		_ = yaml.Unmarshal([]byte(tc.yaml), &n)
		_, errs := decode(&n, "f")
		var all []string
		for _, e := range errs {
			all = append(all, e.Error())
		}
		if !strings.Contains(strings.Join(all, "\n"), tc.want) {
			t.Errorf("%s: %q, want %q", tc.yaml, all, tc.want)
		}
	}
}

func BenchmarkCompressorGzip4K(b *testing.B) {
	f := factory(b, `encodings: [{name: gzip, level: 1}]`)
	s := filtertest.NewStream()
	body := []byte(strings.Repeat("benchmark body text ", 200))
	req := &protocol.Head{Method: []byte("GET")}
	req.Headers.Add("accept-encoding", []byte("gzip"))
	b.ReportAllocs()
	for b.Loop() {
		fl := f.NewFilter(s).(*stream)
		fl.DecodeHeaders(req, true)
		h := &protocol.Head{Status: 200, ContentLength: -1}
		fl.EncodeHeaders(h, false)
		fl.EncodeData(&filter.Body{Bytes: body}, true)
		fl.OnDestroy()
	}
}

// FuzzNegotiate: any Accept-Encoding value picks nil or a configured
// encoding the value names (or reaches through *), never one it refused
// with q=0 by name, and never panics.
func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{"gzip", "br;q=0.5, zstd;q=0", "*;q=0.1", "gzip;q=1.000;x=y", ";;,,q=", "GZIP;Q=0.0001"} {
		f.Add(s)
	}
	fa := factory(f, `encodings: [{name: zstd}, {name: br}, {name: gzip}]`)
	f.Fuzz(func(t *testing.T, ae string) {
		e := negotiate([]byte(ae), fa.encodings)
		if e == nil {
			return
		}
		low := strings.ToLower(ae)
		if !strings.Contains(low, e.name) && !strings.Contains(low, "*") && !(e.name == "gzip" && strings.Contains(low, "x-gzip")) {
			t.Fatalf("%q chose %s, which it does not name", ae, e.name)
		}
		for _, item := range strings.Split(low, ",") {
			name, params, _ := strings.Cut(item, ";")
			if strings.TrimSpace(name) == e.name && qvalue([]byte(params)) == 0 {
				if strings.Count(low, e.name) == 1 {
					t.Fatalf("%q chose %s refused with q=0", ae, e.name)
				}
			}
		}
	})
}
