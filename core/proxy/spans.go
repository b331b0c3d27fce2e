package proxy

import (
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/tracing"
)

// spanState is what a sampled request's spans need beyond the stream's own
// fields. It is allocated only for sampled requests on a listener that
// exports spans; everything else pays one nil check per hook.
type spanState struct {
	method, path, authority, proto string
	try                            tracing.Span // the upstream try in progress
	tryOpen                        bool
	tries                          int
}

// startSpans begins recording: called by traceContext with the first
// try's span id (already written upstream).
func (s *httpStream) startSpans(firstTry [8]byte) {
	s.ids.spans = &spanState{}
	s.ids.spans.try.ID = firstTry
	if s.start.IsZero() {
		s.start = time.Now()
	}
}

// spanRequest copies what the server span reports of the request head.
func (s *httpStream) spanRequest(h *stream.Head) {
	sp := s.ids.spans
	sp.method, sp.authority = string(h.Method), string(h.Headers.Get(hdrHosts))
	path := h.Target
	for i, c := range path {
		if c == '?' {
			path = path[:i]
			break
		}
	}
	sp.path = string(path)
	switch {
	case h.Major == 2:
		sp.proto = "2"
	case h.Major == 1 && h.Minor == 0:
		sp.proto = "1.0"
	default:
		sp.proto = "1.1"
	}
}

// spanTry starts an upstream try's client span, ending the one before (a
// retry): a retry gets a new span id, written into its saved head.
func (s *httpStream) spanTry() {
	sp := s.ids.spans
	if sp.tryOpen {
		s.spanTryEnd()
		sp.try.ID = tracing.NewSpanID()
		tracing.SetSpan(&s.head.Headers, sp.try.ID)
	}
	sp.try.Start, sp.try.Status, sp.tryOpen = time.Now(), 0, true
	sp.try.Resends = sp.tries
	if s.host != nil {
		sp.try.Peer = s.host.Address
	}
	sp.tries++
}

// spanTryStatus records the status a try answered with.
func (s *httpStream) spanTryStatus(h *protocol.Head) {
	if sp := s.ids.spans; sp != nil && sp.tryOpen {
		sp.try.Status = h.Status
	}
}

func (s *httpStream) spanTryEnd() {
	sp := s.ids.spans
	t := &sp.try
	t.Client, t.End = true, time.Now()
	t.Trace, t.Parent = s.ids.trace.TraceID, s.ids.trace.Span
	t.Method, t.Path, t.Protocol = sp.method, sp.path, ""
	if s.cluster != nil {
		t.Cluster = s.cluster.Name
	}
	s.cm.cfg.Identity.Spans.Submit(t)
	sp.tryOpen = false
}

// endSpans submits the server span (and the open try's) when the stream
// finishes; the stream's fields are final.
func (s *httpStream) endSpans() {
	sp := s.ids.spans
	if sp.tryOpen {
		if sp.try.Status == 0 && s.respStarted {
			sp.try.Status = s.status
		}
		sp.try.Flags = s.flags
		s.spanTryEnd()
	}
	cm := s.cm
	if cm.remoteStr == "" {
		cm.remoteStr = cm.conn.RemoteAddr().String()
	}
	span := tracing.Span{
		Trace: s.ids.trace.TraceID, ID: s.ids.trace.Span, Parent: s.ids.trace.Parent,
		Start: s.start, End: time.Now(), Method: sp.method, Path: sp.path, Authority: sp.authority,
		Peer: cm.remoteStr, Status: s.status, Flags: s.flags, Protocol: sp.proto,
	}
	if sp.tries > 1 {
		span.Resends = sp.tries - 1
	}
	if s.cluster != nil {
		span.Cluster = s.cluster.Name
	}
	s.ids.spans = nil
	cm.cfg.Identity.Spans.Submit(&span)
}
