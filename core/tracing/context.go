// Package tracing reads, continues and writes request identity and trace
// context headers: x-request-id, W3C traceparent/tracestate, and B3 in its
// single-header and multi-header forms. Everything here works on caller
// owned byte arrays: nothing allocates, nothing locks, nothing blocks; the
// random source is math/rand/v2's runtime generator (per-thread ChaCha8).
package tracing

import (
	"math/rand/v2"
)

// Format is the propagation format a trace context arrived in (and is
// written upstream in).
type Format uint8

const (
	// None: no trace context.
	None Format = iota
	// W3C: traceparent (and tracestate, passed through untouched).
	W3C
	// B3Single: the "b3" header.
	B3Single
	// B3Multi: the X-B3-* headers.
	B3Multi
)

func (f Format) String() string {
	switch f {
	case W3C:
		return "w3c"
	case B3Single:
		return "b3"
	case B3Multi:
		return "b3multi"
	}
	return "none"
}

// ParseFormat maps a config name to a Format ("w3c", "b3", "b3multi").
func ParseFormat(s string) (Format, bool) {
	switch s {
	case "w3c", "":
		return W3C, true
	case "b3":
		return B3Single, true
	case "b3multi":
		return B3Multi, true
	}
	return None, false
}

// Context is one hop's view of a trace: the trace, the span that sent the
// request (Parent, zero for a new trace) and the span this hop starts.
type Context struct {
	TraceID [16]byte
	// Short: the trace id arrived as 64 bits (B3 allows it); it is written
	// back the same way.
	Short   bool
	Parent  [8]byte
	Span    [8]byte
	Sampled bool
	// Decided: the sampling state came with the context (else this hop
	// decides, as for a new trace).
	Decided bool
	Debug   bool // B3 debug (x-b3-flags: 1, or b3 "d"): always sampled
	Format  Format
}

// HasParent reports whether the context continues an incoming span.
func (c *Context) HasParent() bool { return c.Parent != [8]byte{} }

// NewTrace starts a trace with fresh ids, sampled as asked.
func NewTrace(f Format, sampled bool) Context {
	c := Context{Format: f, Sampled: sampled, Decided: true}
	fillRandom(c.TraceID[:])
	c.Span = NewSpanID()
	return c
}

// NewSpanID is a random non-zero span id.
func NewSpanID() [8]byte {
	var s [8]byte
	fillRandom(s[:])
	return s
}

// fillRandom fills b (a multiple of 8 bytes) with random bytes, never all
// zero (an all-zero id is invalid in both W3C and B3).
func fillRandom(b []byte) {
	for {
		for i := 0; i < len(b); i += 8 {
			v := rand.Uint64()
			for j := 0; j < 8; j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		for _, x := range b {
			if x != 0 {
				return
			}
		}
	}
}

// Sample decides a new trace: true with probability ratio (0..1).
func Sample(ratio float64) bool {
	switch {
	case ratio <= 0:
		return false
	case ratio >= 1:
		return true
	}
	return rand.Float64() < ratio
}

const hexDigits = "0123456789abcdef"

// appendHex writes b as lowercase hex.
func appendHex(dst []byte, b []byte) []byte {
	for _, x := range b {
		dst = append(dst, hexDigits[x>>4], hexDigits[x&15])
	}
	return dst
}

// unhex decodes exactly len(dst)*2 lowercase hex digits from src.
func unhex(dst []byte, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := nibble(src[2*i])
		lo, ok2 := nibble(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
