package tracing

// ParseTraceparent reads a W3C traceparent value
// ("00-<32 hex trace>-<16 hex parent>-<2 hex flags>"). A later version is
// read by its version-00 prefix when what follows is "-" (the spec's
// forward compatibility); version ff, upper-case hex, all-zero ids and any
// other shape are refused. The result's Parent is the sender's span.
func ParseTraceparent(v []byte) (c Context, ok bool) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return c, false
	}
	var ver [1]byte
	if !unhex(ver[:], v[0:2]) || ver[0] == 0xff {
		return c, false
	}
	if ver[0] == 0 && len(v) != 55 || len(v) > 55 && v[55] != '-' {
		return c, false
	}
	var flags [1]byte
	if !unhex(c.TraceID[:], v[3:35]) || !unhex(c.Parent[:], v[36:52]) || !unhex(flags[:], v[53:55]) {
		return Context{}, false
	}
	if allZero(c.TraceID[:]) || allZero(c.Parent[:]) {
		return Context{}, false
	}
	c.Sampled, c.Decided, c.Format = flags[0]&1 == 1, true, W3C
	return c, true
}

// AppendTraceparent writes c as a version-00 traceparent naming c.Span.
func AppendTraceparent(dst []byte, c *Context) []byte {
	dst = append(dst, "00-"...)
	dst = appendTraceID(dst, c, false)
	dst = append(dst, '-')
	dst = appendHex(dst, c.Span[:])
	if c.Sampled {
		return append(dst, "-01"...)
	}
	return append(dst, "-00"...)
}

// appendTraceID writes the trace id, 64-bit when it came so and short is
// allowed (B3), else 128-bit.
func appendTraceID(dst []byte, c *Context, short bool) []byte {
	if short && c.Short {
		return appendHex(dst, c.TraceID[8:])
	}
	return appendHex(dst, c.TraceID[:])
}

// parseTraceID reads a 16 or 32 hex digit B3 trace id (a 64-bit one is
// kept in the low half).
func parseTraceID(c *Context, v []byte) bool {
	switch len(v) {
	case 32:
		return unhex(c.TraceID[:], v) && !allZero(c.TraceID[:])
	case 16:
		c.Short = true
		return unhex(c.TraceID[8:], v) && !allZero(c.TraceID[8:])
	}
	return false
}

// ParseB3 reads the single "b3" header:
// "<trace>-<span>[-<sampling>[-<parent span>]]" or a bare sampling state
// ("0", "1", "d"). A bare state gives a Context with a zero TraceID and
// ok true: a decision without a trace to continue.
func ParseB3(v []byte) (c Context, ok bool) {
	c.Format = B3Single
	if len(v) == 1 {
		return c, b3Sampling(&c, v[0])
	}
	var parts [4][]byte
	n := 0
	for start := 0; ; {
		i := start
		for i < len(v) && v[i] != '-' {
			i++
		}
		if n == len(parts) {
			return Context{}, false
		}
		parts[n] = v[start:i]
		n++
		if i == len(v) {
			break
		}
		start = i + 1
	}
	if n < 2 || !parseTraceID(&c, parts[0]) || !unhex(c.Parent[:], parts[1]) || allZero(c.Parent[:]) {
		return Context{}, false
	}
	if n >= 3 && (len(parts[2]) != 1 || !b3Sampling(&c, parts[2][0])) {
		return Context{}, false
	}
	if n == 4 {
		var p [8]byte // the sender's parent: checked, not kept
		if !unhex(p[:], parts[3]) || allZero(p[:]) {
			return Context{}, false
		}
	}
	return c, true
}

func b3Sampling(c *Context, b byte) bool {
	c.Decided = true
	switch b {
	case '0':
		c.Sampled = false
	case '1':
		c.Sampled = true
	case 'd':
		c.Sampled, c.Debug = true, true
	default:
		return false
	}
	return true
}

// AppendB3 writes c as a single b3 value: this hop's span, its parent.
func AppendB3(dst []byte, c *Context) []byte {
	dst = appendTraceID(dst, c, true)
	dst = append(dst, '-')
	dst = appendHex(dst, c.Span[:])
	switch {
	case c.Debug:
		dst = append(dst, "-d"...)
	case c.Sampled:
		dst = append(dst, "-1"...)
	default:
		dst = append(dst, "-0"...)
	}
	if c.HasParent() {
		dst = append(dst, '-')
		dst = appendHex(dst, c.Parent[:])
	}
	return dst
}

// B3Headers are the multi-header B3 values a request carried (nil: absent).
type B3Headers struct {
	TraceID, SpanID, Sampled, Flags []byte
}

// Present reports whether any X-B3 header was there.
func (m *B3Headers) Present() bool {
	return m.TraceID != nil || m.SpanID != nil || m.Sampled != nil || m.Flags != nil
}

// ParseB3Multi reads X-B3-TraceId, X-B3-SpanId, X-B3-Sampled ("1", "0",
// "true", "false") and X-B3-Flags ("1": debug). Ids without the other id
// are malformed; a sampling state alone is a decision without a trace
// (zero TraceID).
func ParseB3Multi(m *B3Headers) (c Context, ok bool) {
	c.Format = B3Multi
	c.Decided = m.Sampled != nil || m.Flags != nil
	if m.Sampled != nil {
		switch string(m.Sampled) {
		case "1", "true":
			c.Sampled = true
		case "0", "false":
		default:
			return Context{}, false
		}
	}
	if m.Flags != nil {
		if string(m.Flags) != "1" {
			return Context{}, false
		}
		c.Sampled, c.Debug = true, true
	}
	if m.TraceID == nil && m.SpanID == nil {
		return c, true
	}
	if !parseTraceID(&c, m.TraceID) || !unhex(c.Parent[:], m.SpanID) || allZero(c.Parent[:]) {
		return Context{}, false
	}
	return c, true
}
