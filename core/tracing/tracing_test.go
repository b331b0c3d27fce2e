package tracing

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

func TestParseTraceparent(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      bool
		sampled bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", true, true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true, true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", false, false}, // v00 is exact
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false, false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z", false, false},
		{"", false, false},
	} {
		c, ok := ParseTraceparent([]byte(tc.in))
		if ok != tc.ok || ok && c.Sampled != tc.sampled {
			t.Errorf("%q: ok %v sampled %v, want %v %v", tc.in, ok, c.Sampled, tc.ok, tc.sampled)
		}
		if ok {
			c.Span = c.Parent
			if out := AppendTraceparent(nil, &c); string(out[3:52]) != tc.in[3:52] {
				t.Errorf("%q: round trip %q", tc.in, out)
			}
		}
	}
}

func TestParseB3(t *testing.T) {
	for _, tc := range []struct {
		in               string
		ok               bool
		ids              bool
		sampled, decided bool
	}{
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", true, true, true, true},
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0", true, true, false, true},
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d", true, true, true, true},
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1", true, true, false, false},
		{"64fe8b2a57d3eff7-e457b5a2e4d86bd1-1", true, true, true, true},
		{"0", true, false, false, true},
		{"1", true, false, true, true},
		{"d", true, false, true, true},
		{"2", false, false, false, false},
		{"80f198ee56343ba864fe8b2a57d3eff7", false, false, false, false},
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-x", false, false, false, false},
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-x", false, false, false, false},
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-0000000000000000", false, false, false, false},
		{"80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1", false, false, false, false},
		{"80f198ee56343ba-e457b5a2e4d86bd1-1", false, false, false, false},
		{"80F198EE56343BA864FE8B2A57D3EFF7-e457b5a2e4d86bd1-1", false, false, false, false},
		{"--", false, false, false, false},
		{"", false, false, false, false},
	} {
		c, ok := ParseB3([]byte(tc.in))
		if ok != tc.ok {
			t.Errorf("%q: ok %v", tc.in, ok)
			continue
		}
		if !ok {
			continue
		}
		if ids := c.TraceID != [16]byte{}; ids != tc.ids || c.Sampled != tc.sampled || c.Decided != tc.decided {
			t.Errorf("%q: ids %v sampled %v decided %v", tc.in, ids, c.Sampled, c.Decided)
		}
		if tc.ids && tc.decided {
			c.Span, c.Parent = c.Parent, [8]byte{}
			if out := AppendB3(nil, &c); !bytes.HasPrefix([]byte(tc.in), out) {
				t.Errorf("%q: round trip %q", tc.in, out)
			}
		}
	}
}

func TestParseB3Multi(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	for _, tc := range []struct {
		name    string
		m       B3Headers
		ok, ids bool
		sampled bool
	}{
		{"full", B3Headers{TraceID: b("463ac35c9f6413ad48485a3953bb6124"), SpanID: b("a2fb4a1d1a96d312"), Sampled: b("1")}, true, true, true},
		{"short", B3Headers{TraceID: b("48485a3953bb6124"), SpanID: b("a2fb4a1d1a96d312"), Sampled: b("0")}, true, true, false},
		{"true", B3Headers{TraceID: b("48485a3953bb6124"), SpanID: b("a2fb4a1d1a96d312"), Sampled: b("true")}, true, true, true},
		{"debug", B3Headers{TraceID: b("48485a3953bb6124"), SpanID: b("a2fb4a1d1a96d312"), Flags: b("1")}, true, true, true},
		{"decision only", B3Headers{Sampled: b("0")}, true, false, false},
		{"no span", B3Headers{TraceID: b("48485a3953bb6124")}, false, false, false},
		{"no trace", B3Headers{SpanID: b("a2fb4a1d1a96d312")}, false, false, false},
		{"bad sampled", B3Headers{TraceID: b("48485a3953bb6124"), SpanID: b("a2fb4a1d1a96d312"), Sampled: b("yes")}, false, false, false},
		{"bad flags", B3Headers{Flags: b("2")}, false, false, false},
		{"bad hex", B3Headers{TraceID: b("48485a3953bb612g"), SpanID: b("a2fb4a1d1a96d312")}, false, false, false},
	} {
		c, ok := ParseB3Multi(&tc.m)
		if ok != tc.ok || ok && (c.TraceID != [16]byte{}) != tc.ids || ok && c.Sampled != tc.sampled {
			t.Errorf("%s: ok %v ids %v sampled %v", tc.name, ok, c.TraceID != [16]byte{}, c.Sampled)
		}
	}
}

func hdrs(kv ...string) *protocol.Headers {
	var h protocol.Headers
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], []byte(kv[i+1]))
	}
	return &h
}

// TestExtractInject: a continued trace is written back in the formats it
// came in with a new span whose parent is the sender's; malformed headers
// are removed.
func TestExtractInject(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := hdrs("traceparent", tp, "tracestate", "a=b", "b3", "junk", "x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736", "x-b3-spanid", "00f067aa0ba902b7")
	c, valid, bad := Extract(h)
	if !valid.Has(W3C) || !valid.Has(B3Multi) || !bad.Has(B3Single) || c.Format != W3C {
		t.Fatalf("valid %b bad %b format %v", valid, bad, c.Format)
	}
	c.Span = [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	var s Scratch
	Inject(h, &c, valid, bad, &s)
	if got := string(h.Get("traceparent")); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01" {
		t.Errorf("traceparent %q", got)
	}
	if h.Get("b3") != nil || string(h.Get("tracestate")) != "a=b" {
		t.Errorf("b3 %q tracestate %q", h.Get("b3"), h.Get("tracestate"))
	}
	if string(h.Get("x-b3-spanid")) != "0102030405060708" || string(h.Get("x-b3-parentspanid")) != "00f067aa0ba902b7" || string(h.Get("x-b3-sampled")) != "1" {
		t.Errorf("multi: %q", h.Fields)
	}
	// A malformed traceparent takes its tracestate with it.
	h = hdrs("traceparent", "00-zz", "tracestate", "a=b")
	c, valid, bad = Extract(h)
	if valid != 0 || !bad.Has(W3C) {
		t.Fatalf("valid %b bad %b", valid, bad)
	}
	c = NewTrace(W3C, true)
	Inject(h, &c, 1<<W3C, bad, &s)
	if h.Get("tracestate") != nil || len(h.Get("traceparent")) != 55 {
		t.Errorf("after: %q", h.Fields)
	}
	if _, ok := ParseTraceparent(h.Get("traceparent")); !ok {
		t.Errorf("written traceparent does not parse: %q", h.Get("traceparent"))
	}
}

func TestNewRequestIDUnique(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := make(map[[RequestIDLen]byte]bool, 100000)
	var id [RequestIDLen]byte
	for i := 0; i < 100000; i++ {
		NewRequestID(&id)
		if seen[id] {
			t.Fatalf("duplicate %s after %d", id[:], i)
		}
		seen[id] = true
		if i < 100 && !re.Match(id[:]) {
			t.Fatalf("not a UUIDv4: %s", id[:])
		}
	}
	if n := testing.AllocsPerRun(100, func() { NewRequestID(&id) }); n != 0 {
		t.Errorf("NewRequestID allocates %v", n)
	}
}

func TestValidRequestID(t *testing.T) {
	for in, want := range map[string]bool{"abc-123": true, "": false, "a b": false, "a\x00": false, string(bytes.Repeat([]byte("a"), 129)): false, "\xff": false} {
		if ValidRequestID([]byte(in)) != want {
			t.Errorf("%q: want %v", in, want)
		}
	}
}

func TestSampleRatio(t *testing.T) {
	n := 0
	for i := 0; i < 100000; i++ {
		if Sample(0.1) {
			n++
		}
	}
	// 10% of 100000: sd ~95; 6 sd bounds.
	if n < 10000-600 || n > 10000+600 {
		t.Errorf("sampled %d of 100000 at 10%%", n)
	}
	if Sample(0) || !Sample(1) {
		t.Error("0 and 1 are exact")
	}
}

// checkWritten: whatever a parser accepts, the continuation written from
// it parses again to the same trace.
func checkWritten(t *testing.T, c Context) {
	c.Span = NewSpanID()
	tp := AppendTraceparent(nil, &c)
	if x, ok := ParseTraceparent(tp); !ok || x.TraceID != c.TraceID || x.Parent != c.Span {
		t.Fatalf("traceparent %q does not parse back", tp)
	}
	b3 := AppendB3(nil, &c)
	if x, ok := ParseB3(b3); !ok || x.TraceID != c.TraceID || x.Parent != c.Span {
		t.Fatalf("b3 %q does not parse back", b3)
	}
}

func FuzzTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
	f.Add("ff-")
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseTraceparent([]byte(s))
		if ok {
			checkWritten(t, c)
		}
	})
}

func FuzzB3(f *testing.F) {
	f.Add("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", "", "", "")
	f.Add("d", "48485a3953bb6124", "a2fb4a1d1a96d312", "1")
	f.Fuzz(func(t *testing.T, single, tid, sid, sampled string) {
		if c, ok := ParseB3([]byte(single)); ok && c.TraceID != [16]byte{} {
			checkWritten(t, c)
		}
		m := B3Headers{TraceID: []byte(tid), SpanID: []byte(sid), Sampled: []byte(sampled)}
		if c, ok := ParseB3Multi(&m); ok && c.TraceID != [16]byte{} {
			checkWritten(t, c)
		}
		h := hdrs("b3", single, "x-b3-traceid", tid, "x-b3-spanid", sid, "x-b3-sampled", sampled)
		c, valid, bad := Extract(h)
		if c.TraceID == [16]byte{} {
			c = NewTrace(W3C, false)
		}
		c.Span = NewSpanID()
		var sc Scratch
		Inject(h, &c, valid|1<<W3C, bad, &sc)
		if _, v2, b2 := Extract(h); b2 != 0 || !v2.Has(W3C) {
			t.Fatalf("injected headers do not parse: %q (valid %b bad %b)", h.Fields, v2, b2)
		}
	})
}

// TestSetSpan: a retry's saved head gets the new try's span id in place,
// in each format Inject wrote, and still parses.
func TestSetSpan(t *testing.T) {
	c := NewTrace(W3C, true)
	c.Parent = NewSpanID()
	h := hdrs("x-b3-spanid", "0000000000000001", "Other", "v")
	var s Scratch
	Inject(h, &c, 1<<W3C|1<<B3Single|1<<B3Multi, 0, &s)
	// The saved head is a copy: give every value its own bytes.
	for i := range h.Fields {
		h.Fields[i].Value = append([]byte(nil), h.Fields[i].Value...)
	}
	span := [8]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	SetSpan(h, span)
	tp, ok := ParseTraceparent(h.Get("traceparent"))
	b3, ok2 := ParseB3(h.Get("b3"))
	if !ok || !ok2 || tp.Parent != span || b3.Parent != span || tp.TraceID != c.TraceID || b3.TraceID != c.TraceID {
		t.Fatalf("after SetSpan: %q", h.Fields)
	}
	if string(h.Get("x-b3-spanid")) != "deadbeef01020304" || string(h.Get("other")) != "v" {
		t.Fatalf("after SetSpan: %q", h.Fields)
	}
}

// BenchmarkContinueW3C: the per-request work of continuing a W3C trace
// (read, new span ids, write back) on a typical header set.
func BenchmarkContinueW3C(b *testing.B) {
	base := hdrs("host", "example.com", "user-agent", "bench", "accept", "*/*",
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	fields := make([]protocol.Field, 0, 16)
	var s Scratch
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h := protocol.Headers{Fields: append(fields[:0], base.Fields...)}
		c, valid, bad := Extract(&h)
		c.Span = NewSpanID()
		up := c
		up.Parent, up.Span = c.Span, NewSpanID()
		Inject(&h, &up, valid, bad, &s)
	}
}

// BenchmarkNewTraceAndRequestID: an edge request with no context: a
// request id, a new trace and a sampling decision.
func BenchmarkNewTraceAndRequestID(b *testing.B) {
	base := hdrs("host", "example.com", "user-agent", "bench", "accept", "*/*")
	fields := make([]protocol.Field, 0, 16)
	var s Scratch
	var id [RequestIDLen]byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h := protocol.Headers{Fields: append(fields[:0], base.Fields...)}
		NewRequestID(&id)
		_, valid, bad := Extract(&h)
		c := NewTrace(W3C, Sample(0.01))
		Inject(&h, &c, valid|1<<W3C, bad, &s)
	}
}
