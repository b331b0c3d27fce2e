package http2

import (
	"bytes"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

func kv(pairs ...string) []HeaderField {
	var fs []HeaderField
	for i := 0; i+1 < len(pairs); i += 2 {
		fs = append(fs, HeaderField{Name: pairs[i], Value: pairs[i+1]})
	}
	return fs
}

// getReq is a valid GET with extra fields after the pseudo-fields.
func getReq(extra ...string) []HeaderField {
	return kv(append([]string{":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/"}, extra...)...)
}

// TestRequestHeadMalformed: each request RFC 9113 §8 calls malformed is
// refused with a reason; the valid ones map to the head a HTTP/1.1 hop
// would send.
func TestRequestHeadMalformed(t *testing.T) {
	cases := []struct {
		name   string
		fields []HeaderField
		ok     bool
	}{
		{"valid GET", getReq("accept", "*/*"), true},
		{"uppercase name (§8.2.1)", getReq("Accept", "*/*"), false},
		{"space in name (§8.2.1)", getReq("x y", "1"), false},
		{"CR LF in value (§8.2.1)", getReq("x", "a\r\nb: c"), false},
		{"NUL in value (§8.2.1)", getReq("x", "a\x00"), false},
		{"connection field (§8.2.2)", getReq("connection", "close"), false},
		{"transfer-encoding (§8.2.2)", getReq("transfer-encoding", "chunked"), false},
		{"TE other than trailers (§8.2.2)", getReq("te", "gzip"), false},
		{"TE trailers", getReq("te", "trailers"), true},
		{"pseudo after regular (§8.3)", kv(":method", "GET", "x", "1", ":scheme", "http", ":path", "/", ":authority", "a"), false},
		{"duplicate :path (§8.3.1)", kv(":method", "GET", ":scheme", "http", ":path", "/", ":path", "/x", ":authority", "a"), false},
		{"unknown pseudo (§8.3)", kv(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a", ":foo", "x"), false},
		{":status in a request (§8.3)", kv(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a", ":status", "200"), false},
		{"missing :path (§8.3.1)", kv(":method", "GET", ":scheme", "http", ":authority", "a"), false},
		{"empty :path (§8.3.1)", kv(":method", "GET", ":scheme", "http", ":path", "", ":authority", "a"), false},
		{"relative :path (§8.3.1)", kv(":method", "GET", ":scheme", "http", ":path", "a", ":authority", "a"), false},
		{"OPTIONS *", kv(":method", "OPTIONS", ":scheme", "http", ":path", "*", ":authority", "a"), true},
		{"GET * (§8.3.1)", kv(":method", "GET", ":scheme", "http", ":path", "*", ":authority", "a"), false},
		{"userinfo in :authority (§8.3.1)", kv(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "u@a"), false},
		{"no :authority nor host (RFC 9110 §7.2)", kv(":method", "GET", ":scheme", "http", ":path", "/"), false},
		{"host without :authority", kv(":method", "GET", ":scheme", "http", ":path", "/", "host", "a"), true},
		{"two hosts", kv(":method", "GET", ":scheme", "http", ":path", "/", "host", "a", "host", "b"), false},
		{"conflicting content-length", getReq("content-length", "1", "content-length", "2"), false},
		{"signed content-length", getReq("content-length", "+1"), false},
		{"plain CONNECT", kv(":method", "CONNECT", ":authority", "a:443"), true},
		{"CONNECT with :path (§8.5)", kv(":method", "CONNECT", ":authority", "a:443", ":path", "/"), false},
		{":protocol outside CONNECT (RFC 8441 §4)", kv(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a", ":protocol", "websocket"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h protocol.Head
			var p Pseudo
			why := RequestHead(tc.fields, &h, &p)
			if (why == "") != tc.ok {
				t.Fatalf("reason %q, want ok=%v", why, tc.ok)
			}
		})
	}
}

// TestRequestHeadAuthorityWins: a host field that differs from
// :authority is dropped, :authority forwarded as Host; cookies joined.
func TestRequestHeadAuthorityWins(t *testing.T) {
	var h protocol.Head
	var p Pseudo
	if why := RequestHead(getReq("host", "evil.example", "cookie", "a=1", "cookie", "b=2"), &h, &p); why != "" {
		t.Fatal(why)
	}
	if hs := values(&h.Headers, "host"); len(hs) != 1 || hs[0] != "example.com" {
		t.Fatalf("host %q", hs)
	}
	if c := values(&h.Headers, "cookie"); len(c) != 1 || c[0] != "a=1; b=2" {
		t.Fatalf("cookie %q", c)
	}
}

func values(hs *protocol.Headers, name string) []string {
	var v []string
	for _, f := range hs.Fields {
		if string(f.Name) == name {
			v = append(v, string(f.Value))
		}
	}
	return v
}

// TestResponseAndTrailers: :status rules (§8.3.2) and trailers without
// pseudo-fields or fields a trailer may not carry (RFC 9110 §6.5.1).
func TestResponseAndTrailers(t *testing.T) {
	for _, tc := range []struct {
		fields []HeaderField
		ok     bool
	}{
		{kv(":status", "200", "content-type", "text/plain"), true},
		{kv(":status", "20"), false},
		{kv(":status", "200", ":status", "200"), false},
		{kv("x", "1"), false},
		{kv(":status", "200", "x", "1", ":status", "204"), false},
		{kv(":status", "200", "Content-Type", "x"), false},
	} {
		var h protocol.Head
		if why := ResponseHead(tc.fields, &h); (why == "") != tc.ok {
			t.Errorf("%v: reason %q", tc.fields, why)
		}
	}
	var tr protocol.Headers
	if why, dropped := TrailerFields(kv("grpc-status", "0", "content-length", "5", "host", "x"), &tr); why != "" || dropped != 2 || len(tr.Fields) != 1 {
		t.Fatalf("trailers: %q dropped %d kept %d", why, dropped, len(tr.Fields))
	}
	if why, _ := TrailerFields(kv(":status", "200"), &tr); why == "" {
		t.Fatal("pseudo-field in trailers accepted")
	}
}

// TestRequestFieldsRoundTrip: a HTTP/1 head mapped to fields maps back to
// the same request; connection-specific fields are not forwarded.
func TestRequestFieldsRoundTrip(t *testing.T) {
	in := protocol.Head{Method: []byte("POST"), Target: []byte("http://Example.com/a?b"), ContentLength: 3,
		Headers: protocol.Headers{Fields: []protocol.Field{
			{Name: []byte("Connection"), Value: []byte("keep-alive, x-hop")},
			{Name: []byte("X-Hop"), Value: []byte("1")},
			{Name: []byte("TE"), Value: []byte("trailers")},
			{Name: []byte("Accept"), Value: []byte("*/*")},
		}}}
	fields := RequestFields(nil, &in, "http")
	var out protocol.Head
	var p Pseudo
	if why := RequestHead(fields, &out, &p); why != "" {
		t.Fatalf("%v: %s", fields, why)
	}
	if string(out.Method) != "POST" || string(out.Target) != "/a?b" || string(out.Headers.Get("host")) != "Example.com" ||
		out.ContentLength != 3 || out.Headers.Has("x-hop") || out.Headers.Has("connection") || string(out.Headers.Get("accept")) != "*/*" {
		t.Fatalf("round trip: %+v from %v", out, fields)
	}
}

// FuzzRequestHead: whatever field list a client sends, a request that is
// accepted carries only what an HTTP/1.1 hop parses the same way (valid
// lowercase names, valid values, no connection-specific fields, one
// Host), and mapping it back to HTTP/2 gives an accepted request with the
// same method, target and Host.
func FuzzRequestHead(f *testing.F) {
	f.Add(":method\x00GET\x00:scheme\x00https\x00:authority\x00a\x00:path\x00/\x00cookie\x00a\x00cookie\x00b")
	f.Add(":method\x00GET\x00:scheme\x00https\x00:authority\x00a\x00:path\x00/\x00cookie\x00\x00cookie\x00")
	f.Add(":method\x00CONNECT\x00:authority\x00a:1")
	f.Add(":method\x00GET\x00:scheme\x00http\x00:path\x00/\x00host\x00a\x00te\x00trailers\x00content-length\x000")
	f.Fuzz(func(t *testing.T, s string) {
		parts := strings.Split(s, "\x00")
		fields := kv(parts...)
		var h protocol.Head
		var p Pseudo
		if RequestHead(fields, &h, &p) != "" || p.Method == "CONNECT" {
			return
		}
		hosts := 0
		for _, fl := range h.Headers.Fields {
			name := string(fl.Name)
			if !ValidName(name) || !protocol.ValidFieldValue(string(fl.Value)) || connectionSpecificName(name) {
				t.Fatalf("forwarded field %q: %q", fl.Name, fl.Value)
			}
			if name == "host" {
				hosts++
			}
		}
		if hosts != 1 {
			t.Fatalf("%d Host fields", hosts)
		}
		again := RequestFields(nil, &h, p.Scheme)
		var h2 protocol.Head
		var p2 Pseudo
		if why := RequestHead(again, &h2, &p2); why != "" {
			t.Fatalf("re-mapped request refused: %s (%v)", why, again)
		}
		if !bytes.Equal(h.Method, h2.Method) || !bytes.Equal(h.Target, h2.Target) || !bytes.Equal(h.Headers.Get("host"), h2.Headers.Get("host")) {
			t.Fatalf("re-mapped %s %s %s, was %s %s %s", h2.Method, h2.Target, h2.Headers.Get("host"), h.Method, h.Target, h.Headers.Get("host"))
		}
	})
}

// BenchmarkHeadersDecode decodes a request's header block (HPACK, table
// warmed as on a long-lived connection) and maps it to a head.
func BenchmarkHeadersDecode(b *testing.B) {
	enc := NewEncoder()
	req := kv(":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/bench?x=1",
		"user-agent", "bench/1.0", "accept", "*/*", "accept-encoding", "gzip, br", "cookie", "a=1")
	dec := NewDecoder(4096, 64<<10, 1<<20)
	if _, _, err := dec.Decode(enc.Encode(req)); err != nil {
		b.Fatal(err)
	}
	block := bytes.Clone(enc.Encode(req))
	var h protocol.Head
	var p Pseudo
	b.ReportAllocs()
	for b.Loop() {
		fields, _, err := dec.Decode(block)
		if err != nil {
			b.Fatal(err)
		}
		if why := RequestHead(fields, &h, &p); why != "" {
			b.Fatal(why)
		}
	}
}

// Empty cookie crumbs are left out of the joined field: joining them as they
// come would forward "; ", a value no client could send on its own.
func TestCookieCrumbsJoin(t *testing.T) {
	for _, tc := range []struct {
		crumbs []string
		want   string
	}{
		{[]string{"a=1", "b=2"}, "a=1; b=2"},
		{[]string{"", "a=1", ""}, "a=1"},
		{[]string{"a=1", "", "b=2"}, "a=1; b=2"},
		{[]string{"", ""}, ""},
	} {
		args := []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/"}
		for _, c := range tc.crumbs {
			args = append(args, "cookie", c)
		}
		var h protocol.Head
		var p Pseudo
		if why := RequestHead(kv(args...), &h, &p); why != "" {
			t.Fatalf("%q: refused: %s", tc.crumbs, why)
		}
		if c := values(&h.Headers, "cookie"); len(c) != 1 || c[0] != tc.want {
			t.Errorf("%q: cookie %q, want %q", tc.crumbs, c, tc.want)
		}
	}
}
