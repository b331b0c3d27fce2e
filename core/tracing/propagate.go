package tracing

import "github.com/proxylab/proxylab/core/protocol"

// Header names (lookups are case-insensitive).
const (
	HdrTraceparent = "traceparent"
	HdrTracestate  = "tracestate"
	HdrB3          = "b3"
	HdrB3TraceID   = "x-b3-traceid"
	HdrB3SpanID    = "x-b3-spanid"
	HdrB3Parent    = "x-b3-parentspanid"
	HdrB3Sampled   = "x-b3-sampled"
	HdrB3Flags     = "x-b3-flags"
)

// Names written upstream ([]byte: Headers.Append keeps them without a copy).
var (
	nTraceparent = []byte("traceparent")
	nB3          = []byte("b3")
	nB3TraceID   = []byte("x-b3-traceid")
	nB3SpanID    = []byte("x-b3-spanid")
	nB3Parent    = []byte("x-b3-parentspanid")
	nB3Sampled   = []byte("x-b3-sampled")
	nB3Flags     = []byte("x-b3-flags")
)

// Formats is a set of propagation formats, one bit per Format.
type Formats uint8

// Has reports whether f is in the set.
func (s Formats) Has(f Format) bool { return s&(1<<f) != 0 }

// Extract reads a request's trace context. Every format present is
// checked: the malformed ones are reported (and Inject removes them, so
// nothing broken is forwarded); the valid ones are kept in the set, and the
// first valid one in the order traceparent, b3, X-B3-* is the context.
// found is false when no valid context with ids arrived (a bare B3 sampling
// decision is returned as a context with a zero TraceID).
func Extract(hs *protocol.Headers) (c Context, valid, malformed Formats) {
	var tp, b3 []byte
	var m B3Headers
	for i := range hs.Fields { // one pass: most requests carry none of these
		f := &hs.Fields[i]
		switch len(f.Name) {
		case 2:
			if b3 == nil && equalName(f.Name, HdrB3) {
				b3 = f.Value
			}
		case 10:
			if m.Flags == nil && equalName(f.Name, HdrB3Flags) {
				m.Flags = f.Value
			}
		case 11:
			if tp == nil && equalName(f.Name, HdrTraceparent) {
				tp = f.Value
			} else if m.SpanID == nil && equalName(f.Name, HdrB3SpanID) {
				m.SpanID = f.Value
			}
		case 12:
			if m.TraceID == nil && equalName(f.Name, HdrB3TraceID) {
				m.TraceID = f.Value
			} else if m.Sampled == nil && equalName(f.Name, HdrB3Sampled) {
				m.Sampled = f.Value
			}
		}
	}
	if tp != nil {
		if x, ok := ParseTraceparent(tp); ok {
			c, valid = x, valid|1<<W3C
		} else {
			malformed |= 1 << W3C
		}
	}
	if b3 != nil {
		if x, ok := ParseB3(b3); ok {
			if valid == 0 {
				c = x
			}
			valid |= 1 << B3Single
		} else {
			malformed |= 1 << B3Single
		}
	}
	if m.Present() {
		if x, ok := ParseB3Multi(&m); ok {
			if valid == 0 {
				c = x
			}
			valid |= 1 << B3Multi
		} else {
			malformed |= 1 << B3Multi
		}
	}
	return c, valid, malformed
}

// Scratch is storage for the header values Inject writes; it must outlive
// the headers that alias it (the request's forwarding).
type Scratch [192]byte

// Inject removes every trace header of the formats in drop and writes c
// upstream in every format of write (c's span as the sender, c's parent as
// its parent). tracestate goes with traceparent: it is dropped when the
// traceparent was malformed or is not written, kept as it came otherwise.
func Inject(hs *protocol.Headers, c *Context, write, drop Formats, buf *Scratch) {
	all := write | drop
	if all.Has(W3C) {
		hs.Del(HdrTraceparent)
		if !write.Has(W3C) || drop.Has(W3C) {
			hs.Del(HdrTracestate)
		}
	}
	if all.Has(B3Single) {
		hs.Del(HdrB3)
	}
	if all.Has(B3Multi) {
		for _, n := range [...]string{HdrB3TraceID, HdrB3SpanID, HdrB3Parent, HdrB3Sampled, HdrB3Flags} {
			hs.Del(n)
		}
	}
	b := buf[:0]
	put := func(name []byte, from int) {
		hs.Append(name, b[from:len(b):len(b)])
	}
	if write.Has(W3C) {
		n := len(b)
		b = AppendTraceparent(b, c)
		put(nTraceparent, n)
	}
	if write.Has(B3Single) {
		n := len(b)
		b = AppendB3(b, c)
		put(nB3, n)
	}
	if write.Has(B3Multi) {
		n := len(b)
		b = appendTraceID(b, c, true)
		put(nB3TraceID, n)
		n = len(b)
		b = appendHex(b, c.Span[:])
		put(nB3SpanID, n)
		if c.HasParent() {
			n = len(b)
			b = appendHex(b, c.Parent[:])
			put(nB3Parent, n)
		}
		if c.Debug {
			b = append(b, '1')
			put(nB3Flags, len(b)-1)
		} else {
			b = append(b, "01"[b2i(c.Sampled)])
			put(nB3Sampled, len(b)-1)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SetSpan overwrites, in place, the span id of the trace headers Inject
// wrote into hs (an owned copy: a retry's saved head), so each upstream try
// names its own span. Values not of Inject's shape are left alone.
func SetSpan(hs *protocol.Headers, span [8]byte) {
	var hx [16]byte
	appendHex(hx[:0], span[:])
	for i := range hs.Fields {
		f := &hs.Fields[i]
		switch {
		case equalName(f.Name, HdrTraceparent) && len(f.Value) == 55:
			copy(f.Value[36:52], hx[:])
		case equalName(f.Name, HdrB3) && len(f.Value) > 34:
			for j, c := range f.Value {
				if c == '-' {
					if len(f.Value) >= j+17 {
						copy(f.Value[j+1:j+17], hx[:])
					}
					break
				}
			}
		case equalName(f.Name, HdrB3SpanID) && len(f.Value) == 16:
			copy(f.Value, hx[:])
		}
	}
}

// equalName compares a header name to a lower-case one, ASCII case-folded.
func equalName(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
