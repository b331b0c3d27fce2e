package proxy

import (
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/tracing"
)

// Identity is a listener's request identity and trace context settings
// (HTTPConfig.Identity; nil: both off, costing one nil check per request).
// Read-only once the listener runs.
type Identity struct {
	// RequestID handles x-request-id: a client's is kept when
	// PreserveExternal (else removed), one is made when there is none and
	// Generate, and it is returned on responses when AlwaysSetResponse.
	RequestID, PreserveExternal, Generate, AlwaysSetResponse bool
	// Tracing continues or starts a trace per request; Sampling (0-1) is
	// the share of new traces sampled, NewFormat how they are written.
	Tracing   bool
	Sampling  float64
	NewFormat tracing.Format
	// Spans, when not nil, gets a server span per sampled request and a
	// client span per upstream try (spans.go).
	Spans *tracing.Exporter
}

// identState is a stream's request id and trace context. It lives in the
// httpStream (no allocation): the header values written upstream alias it,
// and it outlives the forwarding of the head, retries included.
type identState struct {
	reqID   [128]byte // the request id (kept or made), for the response
	reqIDn  uint8
	trace   tracing.Context // Span: this hop's server span
	scratch tracing.Scratch
	spans   *spanState // set while a sampled request's spans are recorded
}

var hdrXRequestID = []byte("x-request-id")

const hdrXRequestIDs = "x-request-id"

// identify applies the listener's Identity to a request head before it is
// logged, filtered, hashed or routed, so x-request-id and the continued
// trace context are what every later step (and the upstream) sees. RPC
// frames travel opaque and are left alone.
func (s *httpStream) identify(h *stream.Head, id *Identity) {
	if h.Frame != nil {
		return
	}
	if id.RequestID {
		s.requestID(&h.Headers, id)
	}
	if id.Tracing {
		s.traceContext(&h.Headers, id)
		if s.ids.spans != nil {
			s.spanRequest(h)
		}
	}
}

func (s *httpStream) requestID(hs *protocol.Headers, id *Identity) {
	v := hs.Get(hdrXRequestIDs)
	if v != nil && id.PreserveExternal && tracing.ValidRequestID(v) {
		s.ids.reqIDn = uint8(copy(s.ids.reqID[:], v))
		return
	}
	if v != nil {
		hs.Del(hdrXRequestIDs)
	}
	if !id.Generate {
		return
	}
	tracing.NewRequestID((*[tracing.RequestIDLen]byte)(s.ids.reqID[:tracing.RequestIDLen]))
	s.ids.reqIDn = tracing.RequestIDLen
	hs.Append(hdrXRequestID, s.ids.reqID[:tracing.RequestIDLen:tracing.RequestIDLen])
}

// traceContext continues the request's trace with a new span (its parent
// the sender's), or starts one; malformed trace headers are removed and
// counted, never forwarded.
func (s *httpStream) traceContext(hs *protocol.Headers, id *Identity) {
	c, valid, bad := tracing.Extract(hs)
	if bad != 0 {
		if st := s.cm.cfg.Stats; st != nil {
			st.TraceMalformed.Inc(s.cm.id)
		}
	}
	write, drop := valid, bad
	switch {
	case valid != 0 && c.TraceID != [16]byte{}:
		if !c.Decided {
			c.Sampled, c.Decided = tracing.Sample(id.Sampling), true
		}
		c.Span = tracing.NewSpanID()
	case valid != 0: // a bare B3 sampling decision: a new trace, as decided
		f := c.Format
		c = tracing.NewTrace(f, c.Sampled)
		write, drop = 1<<f, drop|1<<tracing.W3C
	default:
		c = tracing.NewTrace(id.NewFormat, tracing.Sample(id.Sampling))
		write, drop = 1<<id.NewFormat, drop|1<<tracing.W3C // a lone tracestate goes too
	}
	s.ids.trace = c
	// Upstream sees the first try's span, a child of this hop's span.
	up := c
	up.Parent, up.Span = c.Span, tracing.NewSpanID()
	tracing.Inject(hs, &up, write, drop, &s.ids.scratch)
	if id.Spans != nil && c.Sampled {
		s.startSpans(up.Span)
	}
}

// identifyResponse returns the request id on a response when asked.
func (s *httpStream) identifyResponse(hs *protocol.Headers) {
	if id := s.cm.cfg.Identity; id != nil && id.AlwaysSetResponse && s.ids.reqIDn > 0 {
		hs.Del(hdrXRequestIDs)
		n := int(s.ids.reqIDn)
		hs.Append(hdrXRequestID, s.ids.reqID[:n:n])
	}
}
