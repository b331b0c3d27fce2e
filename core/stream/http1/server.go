package http1

import (
	"errors"
	"sync"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/timer"
)

// ServerSettings configure downstream HTTP/1 connections.
type ServerSettings struct {
	Limits h1.Limits
	// HeaderTimeout bounds the time from a request's first byte to the end
	// of its head (408 when exceeded).
	HeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request in flight.
	IdleTimeout time.Duration
	// HighWatermark is the queued-write size above which the stream asks the
	// upstream side to stop reading.
	HighWatermark int
	// Linger bounds how long a closing connection waits for the client's FIN
	// after the last response, so an unread request body does not turn the
	// close into a reset that destroys the response.
	Linger time.Duration
	// Timers is the shared wheel every connection's timeouts run on.
	Timers *timer.Wheel
}

type timerKind uint8

const (
	timerNone timerKind = iota
	timerIdle
	timerHeader
	timerLinger
)

// ServerConn is the terminal read filter of an HTTP/1 connection: it parses
// requests and runs one stream at a time. Pipelined requests wait in the input
// buffer (reading paused) until the response before them is complete, so
// responses go out in order.
type ServerConn struct {
	network.BaseFilter
	set *ServerSettings
	cbs stream.ServerCallbacks
	c   *network.Conn
	p   *h1.Parser
	in  inbuf
	cur *serverStream

	dispatching      bool
	pipelineDisabled bool
	draining         bool
	lingering        bool
	peerEOF          bool
	migrating        bool // hot upgrade: hand over at the next boundary (migrate.go)
	handing          bool // handed over: parse nothing more

	timer     timer.Timer
	tkind     timerKind
	tdeadline time.Time
}

var (
	_ network.ReadFilter    = (*ServerConn)(nil)
	_ network.ConnCallbacks = (*ServerConn)(nil)
	_ network.Drainer       = (*ServerConn)(nil)
	_ network.HalfCloser    = (*ServerConn)(nil)
	_ h1.Callbacks          = (*ServerConn)(nil)
)

// NewServerConn returns the filter for one connection.
func NewServerConn(set *ServerSettings, cbs stream.ServerCallbacks) *ServerConn {
	return &ServerConn{set: set, cbs: cbs}
}

// Parsers are pooled: an idle keep-alive connection holds none (nor its
// header-field array), which is most of what idle connections would cost.
var parsers sync.Pool

func (sc *ServerConn) parser() *h1.Parser {
	if sc.p == nil {
		if v := parsers.Get(); v != nil {
			sc.p = v.(*h1.Parser)
			sc.p.Rebind(sc.set.Limits, sc)
		} else {
			sc.p = h1.NewRequestParser(sc.set.Limits, sc)
		}
	}
	return sc.p
}

// releaseParser returns the parser when the connection is between requests
// with nothing buffered.
func (sc *ServerConn) releaseParser() {
	if sc.p != nil && sc.cur == nil && sc.p.Idle() && sc.in.Len() == 0 {
		sc.p.Rebind(sc.set.Limits, nil)
		parsers.Put(sc.p)
		sc.p = nil
	}
}

// requestPending reports whether a byte of the next request has arrived:
// buffered (an incomplete request line is not yet consumed by the parser) or
// consumed into a head the parser is still assembling. The header timer runs
// from then, so a request line trickled byte by byte is bounded too.
func (sc *ServerConn) requestPending() bool {
	return sc.in.Len() > 0 || (sc.p != nil && !sc.p.Idle())
}

// Session is the connection's session (valid after OnNewConnection).
func (sc *ServerConn) Session() stream.Session { return sc.c }

func (sc *ServerConn) OnNewConnection(c *network.Conn) network.FilterStatus {
	sc.c = c
	sc.timer.Init(sc.set.Timers, sc)
	sc.updateTimer()
	return network.Continue
}

func (sc *ServerConn) OnData(_ *network.Conn, b *buffer.Buf) network.FilterStatus {
	if s := sc.tunnel(); s != nil {
		s.tunnelData(b)
		return network.StopIteration
	}
	if sc.lingering {
		b.Release()
		return network.StopIteration
	}
	sc.in.Add(b)
	sc.dispatch()
	return network.StopIteration
}

// dispatch parses buffered input until it runs out, a request is waiting for
// its response, or the connection is closing. Not re-entrant: a stream that
// completes inside a parser callback leaves the next request to this loop.
func (sc *ServerConn) dispatch() {
	if sc.dispatching {
		return
	}
	sc.dispatching = true
	for sc.in.Len() > 0 && !sc.lingering && !sc.handing && sc.tunnel() == nil {
		p := sc.parser()
		if p.Done() {
			if sc.cur != nil {
				if !sc.pipelineDisabled {
					sc.pipelineDisabled = true
					sc.c.ReadDisable(true)
				}
				break
			}
			p.Reset()
			if sc.draining {
				sc.c.Close()
				break
			}
		}
		n, err := p.Parse(sc.in.Bytes())
		sc.in.Consume(n)
		if err != nil {
			sc.protocolError(err)
			break
		}
		if n == 0 && !p.Done() {
			break
		}
	}
	if s := sc.tunnel(); s != nil && sc.in.Len() > 0 {
		s.tunnelData(sc.in.Take()) // a tunnel began inside a callback
	}
	if sc.p != nil && sc.p.Done() && sc.cur == nil {
		sc.p.Reset()
	}
	sc.releaseParser()
	sc.dispatching = false
	sc.updateTimer()
}

// OnHead starts a stream (h1.Callbacks).
func (sc *ServerConn) OnHead(h *h1.Head) error {
	typ := stream.UpgradeType(h)
	if typ != nil && stream.HasUpgradeBody(h) {
		return &protocol.Error{Status: 400, Reason: "upgrade or CONNECT request with a body"}
	}
	s := &serverStream{sc: sc, minor: h.Minor, headReq: string(h.Method) == "HEAD", reqClose: h.Close}
	s.encoder = encoder{sess: sc.c, self: s, conn: sc.c, hw: sc.set.HighWatermark}
	s.tun.start(typ)
	// A request without a body ends with its head; mark it now so a reply
	// made while decoding the head keeps the connection alive. An upgrade
	// candidate's end is decided by its response (stream.UpgradeType).
	end := !h.Chunked && h.ContentLength <= 0 && typ == nil
	s.reqDone = end
	sc.cur = s
	sc.setTimer(timerNone, 0)
	s.dec = sc.cbs.NewStream(s)
	s.dec.DecodeHead(h, end)
	return nil
}

func (sc *ServerConn) active() *serverStream {
	if s := sc.cur; s != nil && !s.finished && !s.reqDone {
		return s
	}
	return nil
}

func (sc *ServerConn) OnBody(p []byte) error {
	if s := sc.active(); s != nil {
		last := sc.p.LastBody()
		s.reqDone = last
		s.dec.DecodeData(p, last)
	}
	return nil
}

func (sc *ServerConn) OnTrailers(t *protocol.Headers) error {
	if s := sc.active(); s != nil {
		s.reqDone = true
		s.dec.DecodeTrailers(t)
	}
	return nil
}

func (sc *ServerConn) OnComplete() error {
	if s := sc.active(); s != nil && !s.tun.is(tunCand) {
		s.reqDone = true
		s.dec.DecodeData(nil, true)
	}
	return nil
}

func (sc *ServerConn) protocolError(err error) {
	pe := &protocol.Error{Status: 400, Reason: err.Error()}
	errors.As(err, &pe)
	if s := sc.cur; s != nil && !s.finished {
		s.finished = true
		s.dec.OnReset(err)
		if s.respHeadSent {
			sc.c.Close()
			return
		}
	}
	sc.cur = nil
	sc.c.Write(h1.EncodeLocalReply(pe.Status, pe.Reason, true, false))
	sc.closeGracefully()
}

// closeGracefully sends FIN after the queued response and waits (bounded)
// for the client's FIN, discarding what it still sends.
func (sc *ServerConn) closeGracefully() {
	if sc.lingering {
		return
	}
	sc.lingering = true
	sc.in.Reset()
	sc.c.CloseWrite()
	sc.tkind = timerNone
	sc.setTimer(timerLinger, sc.set.Linger)
}

// HandlesHalfClose: a client may half-close after its request and still
// wait for the response.
func (sc *ServerConn) HandlesHalfClose() bool { return true }

func (sc *ServerConn) OnReadEOF(*network.Conn) {
	sc.peerEOF = true
	if s := sc.tunnel(); s != nil {
		s.tunnelEOF()
		return
	}
	switch s := sc.cur; {
	case sc.lingering || s == nil:
		sc.c.Close()
	case !s.reqDone && !s.tun.is(tunCand):
		s.finished = true
		s.dec.OnReset(stream.ErrDownstreamReset)
		sc.c.Close()
	}
	// An upgrade candidate's client may half-close after its early data:
	// the tunnel, if it opens, starts half-closed (tunnelHead).
	// Otherwise the request is complete: answer it, then close.
}

func (sc *ServerConn) OnDrained(*network.Conn) {
	if sc.tunnelDrained() {
		return
	}
	if s := sc.cur; s != nil && !s.finished && s.drained() {
		s.dec.OnBelowWriteLowWatermark()
	}
}

func (sc *ServerConn) OnClose(*network.Conn, error) {
	sc.timer.Stop()
	sc.tkind = timerNone
	if s := sc.cur; s != nil && !s.finished {
		s.finished = true
		s.out.drop()
		s.dec.OnReset(stream.ErrDownstreamReset)
	}
	sc.cur = nil
	sc.in.Reset()
	sc.releaseParser()
}

// Drain closes an idle connection now, a busy one (a request begun, even
// partly received) after its response.
func (sc *ServerConn) Drain(*network.Conn) {
	sc.draining = true
	if sc.cur == nil && !sc.requestPending() {
		sc.c.Close()
	}
}

func (sc *ServerConn) onResponseComplete(s *serverStream) {
	if !s.reqDone || sc.peerEOF || sc.draining {
		s.closeAfter = true
	}
	s.Flush()
	s.finished = true
	sc.cur = nil
	s.undoReadDisable()
	if s.closeAfter {
		sc.closeGracefully()
		return
	}
	if sc.pipelineDisabled {
		sc.pipelineDisabled = false
		sc.c.ReadDisable(false)
	}
	if sc.migrating && sc.handOver() {
		return
	}
	sc.dispatch()
}

func (sc *ServerConn) updateTimer() {
	switch {
	case sc.lingering:
	case sc.cur != nil:
		sc.setTimer(timerNone, 0)
	case sc.requestPending():
		sc.setTimer(timerHeader, sc.set.HeaderTimeout)
	default:
		sc.setTimer(timerIdle, sc.set.IdleTimeout)
	}
}

// setTimer arms the connection timer for kind; re-arming the kind already
// armed keeps the original deadline (a slow head cannot extend its own).
func (sc *ServerConn) setTimer(kind timerKind, d time.Duration) {
	if sc.tkind == kind {
		return
	}
	sc.tkind = kind
	if kind == timerNone || d <= 0 {
		sc.tkind = timerNone
		sc.timer.Stop()
		return
	}
	sc.tdeadline = time.Now().Add(d)
	sc.timer.Reset(d)
}

// Expire runs the connection timer's action (timer.Expirer).
func (sc *ServerConn) Expire() {
	sc.c.Lock()
	defer sc.c.Unlock()
	if sc.tkind == timerNone || sc.c.Closed() {
		return
	}
	if left := time.Until(sc.tdeadline); left > 0 {
		sc.timer.Reset(left) // re-armed for a later deadline while firing
		return
	}
	kind := sc.tkind
	sc.tkind = timerNone
	switch kind {
	case timerIdle, timerLinger:
		sc.c.Close()
	case timerHeader:
		sc.c.Write(h1.EncodeLocalReply(408, "request header read timeout", true, false))
		sc.closeGracefully()
	}
}

// serverStream is one request/response exchange on a ServerConn; it is the
// stream.ResponseEncoder the proxy writes the response to.
type serverStream struct {
	sc       *ServerConn
	dec      stream.RequestDecoder
	minor    int
	headReq  bool
	reqClose bool

	reqDone      bool
	respHeadSent bool
	finished     bool
	closeAfter   bool
	tun          tunnelState
	encoder
}

var _ stream.ResponseEncoder = (*serverStream)(nil)

func (s *serverStream) Session() stream.Session { return s.sc.c }

// Flush writes the queued response bytes (stream.Flusher).
func (s *serverStream) Flush() {
	if s.flush() && !s.finished {
		s.dec.OnAboveWriteHighWatermark()
	}
}

func (s *serverStream) EncodeInterim(h *stream.Head) {
	if s.finished || s.respHeadSent || s.minor == 0 {
		return // HTTP/1.0 clients do not understand 1xx
	}
	if h.Status >= 200 || h1.CheckResponseHead(h) != nil {
		return // an interim response is optional: a malformed one is dropped
	}
	s.queue(h1.EncodeResponseHead(h, nil, h1.Framing{ContentLength: -1}))
}

func (s *serverStream) EncodeHead(h *stream.Head, end bool) {
	if s.finished || s.respHeadSent {
		return
	}
	if err := h1.CheckResponseHead(h); err != nil {
		// Never on the wire: the client gets a whole 502 instead, and the
		// rest of this response is ignored (the stream is finished).
		pe := err.(*protocol.Error)
		s.LocalReply(pe.Status, pe.Reason)
		return
	}
	if s.tun.is(tunCand) && s.tunnelHead(h) {
		return
	}
	s.respHeadSent = true
	fr := h1.Framing{ContentLength: -1}
	switch {
	case s.headReq || h.Status == 304:
		// The upstream's length describes the representation, not this
		// (empty) body: pass it on as it was.
		fr.ContentLength = h.ContentLength
	case h.Status == 204 || h.Status < 200:
	case end:
		fr.ContentLength = 0
	case h.ContentLength >= 0 && !h.Chunked:
		fr.ContentLength = h.ContentLength
	case s.minor >= 1:
		fr.Chunked, s.chunked = true, true
	default:
		s.closeAfter = true // HTTP/1.0 without a length: delimit by close
	}
	if s.sc.draining || s.reqClose || s.sc.peerEOF || s.closeAfter {
		fr.Connection, s.closeAfter = "close", true
	} else if s.minor == 0 {
		fr.Connection = "keep-alive"
	}
	s.queue(h1.EncodeResponseHead(h, nil, fr))
	if end {
		s.sc.onResponseComplete(s)
	}
}

func (s *serverStream) EncodeData(p []byte, end bool) {
	if s.finished || !s.respHeadSent {
		return
	}
	if s.tun.is(tunOn) {
		s.tunnelWrite(p, end)
		return
	}
	if !s.headReq {
		s.body(p)
	}
	if end {
		s.end(nil)
		s.sc.onResponseComplete(s)
	}
}

func (s *serverStream) EncodeTrailers(t *protocol.Headers) {
	if s.finished || !s.respHeadSent {
		return
	}
	s.end(t)
	s.sc.onResponseComplete(s)
}

func (s *serverStream) LocalReply(status int, reason string) {
	if s.finished {
		return
	}
	if s.respHeadSent {
		s.Reset()
		return
	}
	s.respHeadSent = true
	s.closeAfter = s.sc.draining || s.reqClose || !s.reqDone || s.sc.peerEOF
	s.queue(h1.EncodeLocalReply(status, reason, s.closeAfter, s.headReq))
	s.sc.onResponseComplete(s)
}

// Reset aborts the exchange; HTTP/1 can only do that by closing.
func (s *serverStream) Reset() {
	if s.finished {
		return
	}
	s.finished = true
	s.out.drop()
	s.sc.cur = nil
	s.sc.c.Close()
}

func (s *serverStream) ReadDisable(d bool) {
	if !s.finished {
		s.readDisable(d)
	}
}
