package http2

import (
	"strconv"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/timer"
)

// ServerConn is the terminal read filter of a downstream HTTP/2 connection.
// Every event runs under the connection's session; frames queued while
// handling one are written together when the session is released.
type ServerConn struct {
	network.BaseFilter
	conn
	cbs stream.ServerCallbacks
	c   *network.Conn

	lastID      uint32
	flushQueued bool
	readStopped bool // Flush stopped reading: too much output queued
	flood       bool // closing after a flood: reading stays stopped
	inData      bool // feed is parsing input
	// answered are streams whose response completed while feed ran and
	// whose request had not ended: reset with NO_ERROR once the input read
	// so far is parsed, unless it ended them (RFC 9113 §8.1).
	answered []*h2stream
	draining bool
	closing  bool // connection error or GOAWAY done: waiting to close
	timer    timer.Timer
	timerOn  bool

	head      protocol.Head
	trl       protocol.Headers
	encFields []http2.HeaderField // encoding scratch
}

var (
	_ network.ReadFilter    = (*ServerConn)(nil)
	_ network.ConnCallbacks = (*ServerConn)(nil)
	_ network.Drainer       = (*ServerConn)(nil)
	_ network.HalfCloser    = (*ServerConn)(nil)
	_ stream.Flusher        = (*ServerConn)(nil)
	_ roleEvents            = (*ServerConn)(nil)
)

// NewServerConn returns the filter for one connection; set must have been
// made by Settings.Server (defaults applied once).
func NewServerConn(set *Settings, cbs stream.ServerCallbacks) *ServerConn {
	sc := &ServerConn{cbs: cbs}
	sc.conn.init(set, sc, true)
	return sc
}

// Prepare applies the defaults to zero fields; call once per config.
func (s *Settings) Prepare() *Settings { return s.withDefaults() }

// Session is the connection's session.
func (sc *ServerConn) Session() stream.Session { return sc.c }

// Stats are the counters this connection adds to.
func (sc *ServerConn) Stats() *Stats { return sc.set.Stats }

func (sc *ServerConn) OnNewConnection(c *network.Conn) network.FilterStatus {
	sc.c = c
	if sc.set.Timers != nil {
		sc.timer.Init(sc.set.Timers, sc)
	}
	sc.start(false)
	sc.updateTimer()
	return network.Continue
}

func (sc *ServerConn) OnData(_ *network.Conn, b *buffer.Buf) network.FilterStatus {
	if sc.closing {
		b.Release()
		return network.StopIteration
	}
	sc.in.Add(b)
	sc.inData = true
	err := sc.feed()
	sc.inData = false
	if err != nil {
		clear(sc.answered)
		sc.answered = sc.answered[:0]
		sc.shutdown(err)
	} else {
		sc.stopSenders()
		sc.maybeClose() // the input may have ended the last stream
	}
	sc.updateTimer()
	return network.StopIteration
}

// shutdown ends the connection after a connection error (its GOAWAY is
// queued): every stream is reset, the GOAWAY flushed, then FIN.
func (sc *ServerConn) shutdown(err error) {
	sc.closing = true
	sc.in.Reset()
	if ce, ok := err.(*connError); ok && ce.Code == http2.ErrCodeEnhanceYourCalm && !sc.readStopped {
		// A flood: read no more of it while the GOAWAY lingers.
		sc.readStopped, sc.flood = true, true
		sc.c.ReadDisable(true)
	}
	for _, st := range sc.streams {
		sc.forget(st)
		if ss, ok := st.owner.(*serverStream); ok && !ss.finished {
			ss.finished = true
			ss.dec.OnReset(err)
		}
	}
	sc.Flush()
	sc.c.CloseWrite()
	sc.armTimer(2 * time.Second)
}

// Flush writes the queued frames (stream.Flusher, run at session release).
// Past the high watermark DATA waits for OnDrained; past maxQueuedBytes
// (the peer reads nothing while it keeps provoking HEADERS or control
// frames) the connection stops reading until the queue drains, so what
// one client can make us hold is bounded.
func (sc *ServerConn) Flush() {
	sc.flushQueued = false
	q, _ := sc.out.WriteTo(sc.c)
	switch {
	case q == 0:
		sc.ctlQueued = 0
	case q > sc.set.HighWatermark:
		sc.blocked = true
	}
	if q > sc.maxQueuedBytes() && !sc.readStopped && !sc.c.Closed() {
		sc.readStopped = true
		sc.c.ReadDisable(true)
	}
}

// maxQueuedBytes bounds the transport queue before reading stops.
func (sc *ServerConn) maxQueuedBytes() int { return max(1<<20, 4*sc.set.HighWatermark) }

func (sc *ServerConn) wantFlush() {
	if !sc.flushQueued && sc.c != nil {
		sc.flushQueued = true
		sc.c.DeferFlush(sc)
	}
}

func (sc *ServerConn) isServer() bool { return true }

func (sc *ServerConn) onForget(*h2stream) {}

func (sc *ServerConn) lastOpened() uint32 { return sc.lastID }

func (sc *ServerConn) isIdle(id uint32) bool { return id%2 == 0 || id > sc.lastID }

// HandlesHalfClose: a client may half-close and still read responses.
func (sc *ServerConn) HandlesHalfClose() bool { return true }

func (sc *ServerConn) OnReadEOF(*network.Conn) {
	if sc.closing || len(sc.streams) == 0 {
		sc.c.Close()
		return
	}
	// Streams whose request is complete may still be answered; the rest
	// cannot complete.
	for _, st := range sc.streams {
		if !st.remoteDone {
			sc.resetStream(st.id, http2.ErrCodeCancel)
		}
	}
	sc.closing = true
	sc.maybeClose()
}

func (sc *ServerConn) OnDrained(*network.Conn) {
	sc.ctlQueued = 0
	if sc.readStopped && !sc.flood {
		sc.readStopped = false
		sc.c.ReadDisable(false)
	}
	if sc.blocked {
		sc.blocked = false
		n := len(sc.streams)
		sc.pump()
		if len(sc.streams) < n { // streams ended: maybe the last one
			sc.maybeClose()
			sc.updateTimer()
		}
	}
}

func (sc *ServerConn) OnClose(*network.Conn, error) {
	sc.timer.Stop()
	sc.timerOn = false
	for _, st := range sc.streams {
		sc.forget(st)
		if ss, ok := st.owner.(*serverStream); ok && !ss.finished {
			ss.finished = true
			ss.dec.OnReset(stream.ErrDownstreamReset)
		}
	}
	sc.out.Drop()
	sc.in.Reset()
}

// Drain sends GOAWAY (no new streams); the connection closes once the
// streams in flight finish.
func (sc *ServerConn) Drain(*network.Conn) {
	sc.draining = true
	sc.goAway(http2.ErrCodeNo, "draining")
	sc.maybeClose()
}

// maybeClose closes a draining or closing connection with no streams left.
func (sc *ServerConn) maybeClose() {
	if (sc.draining || sc.closing || sc.goAwayRecv) && len(sc.streams) == 0 {
		sc.closing = true
		sc.Flush()
		sc.c.CloseWrite()
		sc.armTimer(2 * time.Second)
	}
}

func (sc *ServerConn) updateTimer() {
	if sc.closing {
		return
	}
	if len(sc.streams) == 0 {
		sc.armTimer(sc.set.IdleTimeout)
	} else if sc.timerOn {
		sc.timerOn = false
		sc.timer.Stop()
	}
}

func (sc *ServerConn) armTimer(d time.Duration) {
	if sc.set.Timers == nil || d <= 0 {
		return
	}
	sc.timerOn = true
	sc.timer.Reset(d)
}

// Expire closes an idle connection (GOAWAY first) or one that waited long
// enough for the peer's FIN (timer.Expirer).
func (sc *ServerConn) Expire() {
	sc.c.Lock()
	defer sc.c.Unlock()
	if !sc.timerOn || sc.c.Closed() {
		return
	}
	sc.timerOn = false
	if sc.closing {
		sc.c.Close()
		return
	}
	if len(sc.streams) == 0 {
		sc.goAway(http2.ErrCodeNo, "idle timeout")
		sc.closing = true
		sc.Flush()
		sc.c.CloseWrite()
		sc.armTimer(2 * time.Second)
	}
}

// onHeaders opens a stream or delivers its trailers (RFC 9113 §5.1, §8.1).
func (sc *ServerConn) onHeaders(id uint32, st *h2stream, end bool) error {
	if id%2 == 0 {
		return &connError{Code: http2.ErrCodeProtocol, Reason: "client opened an even stream"} // §5.1.1
	}
	if st != nil {
		if sc.cont.selfDep {
			sc.malformed(st, "stream depends on itself")
			return nil
		}
		return sc.trailers(st, end)
	}
	if id <= sc.lastID {
		if sc.wasReset(id) {
			return nil // sent before the peer saw our reset (§5.4.2)
		}
		// §5.1.1: a new stream's id must exceed every earlier one.
		return &connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on a closed or lower stream id"}
	}
	sc.lastID = id
	if sc.cont.selfDep { // §5.3.1: a stream cannot depend on itself
		sc.set.Stats.ProtocolErrors.Add(1)
		sc.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	if sc.goAwaySent || sc.closing {
		sc.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if uint32(len(sc.streams)) >= sc.set.MaxConcurrentStreams {
		sc.set.Stats.RefusedStreams.Add(1)
		sc.resetStream(id, http2.ErrCodeRefusedStream) // §5.1.2
		return nil
	}
	st = sc.newStream(id)
	st.remoteDone = end
	ss := &serverStream{sc: sc, st: st}
	st.owner = ss
	if sc.listLarge {
		ss.reply(431, "request header list too large")
		return nil
	}
	why := requestHead(sc.fields, &sc.head)
	if why == "" && end && sc.head.ContentLength > 0 {
		why = "content-length without DATA"
	}
	if why != "" {
		st.owner = nil
		sc.malformed(st, why)
		return nil
	}
	if ss.tunnel, ss.ext = stream.UpgradeType(&sc.head) != nil, sc.head.Upgrade; ss.tunnel {
		if why := sc.checkConnect(ss, end); why != "" {
			st.owner = nil
			sc.malformed(st, why)
			return nil
		}
	}
	st.wantLen = sc.head.ContentLength
	ss.headReq = string(sc.head.Method) == "HEAD"
	ss.dec = sc.cbs.NewStream(ss)
	ss.dec.DecodeHead(&sc.head, end)
	return nil
}

func (sc *ServerConn) trailers(st *h2stream, end bool) error {
	ss, _ := st.owner.(*serverStream)
	if st.remoteDone {
		sc.resetStream(st.id, http2.ErrCodeStreamClosed)
		return nil
	}
	if !end {
		sc.malformed(st, "trailers without END_STREAM") // §8.1
		return nil
	}
	why, dropped := http2.TrailerFields(sc.fields, &sc.trl)
	sc.set.Stats.TrailerFieldsDropped.Add(uint64(dropped))
	if why != "" || sc.listLarge {
		sc.malformed(st, why)
		return nil
	}
	if st.wantLen >= 0 && st.gotLen != st.wantLen {
		sc.malformed(st, "DATA does not match content-length")
		return nil
	}
	st.remoteDone = true
	if ss != nil && !ss.finished {
		ss.dec.DecodeTrailers(&sc.trl)
	}
	sc.maybeForget(st)
	return nil
}

func (sc *ServerConn) onData(st *h2stream, p []byte, end bool) {
	ss, _ := st.owner.(*serverStream)
	if ss == nil || ss.finished {
		sc.returnStream(st, int32(len(p)))
		return
	}
	ss.dec.DecodeData(p, end)
	if sc.streams[st.id] == st {
		sc.returnStream(st, int32(len(p)))
	}
	if end && ss.tunOn && ss.respEnded && !ss.finished {
		ss.complete() // the tunnel ended both ways
	}
}

func (sc *ServerConn) onRSTStream(st *h2stream, code http2.ErrCode) {
	ss, _ := st.owner.(*serverStream)
	if ss == nil || ss.finished {
		return
	}
	ss.finished = true
	if !sc.takeResetToken() {
		// Streams opened and cancelled faster than the budget allows:
		// rapid reset (CVE-2023-44487).
		sc.set.Stats.RapidResets.Add(1)
		ss.dec.OnReset(&StreamError{Code: code, Remote: true})
		sc.shutdown(sc.fail(http2.ErrCodeEnhanceYourCalm, "too many stream resets"))
		return
	}
	ss.dec.OnReset(&StreamError{Code: code, Remote: true})
	sc.maybeClose()
}

func (sc *ServerConn) onLocalReset(st *h2stream, err error) {
	if ss, ok := st.owner.(*serverStream); ok && !ss.finished {
		ss.finished = true
		if ss.dec != nil {
			ss.dec.OnReset(err)
		}
	}
	sc.maybeClose()
}

func (sc *ServerConn) onGoAway(uint32, http2.ErrCode) { sc.maybeClose() }

func (sc *ServerConn) onSendReady(st *h2stream) {
	if ss, ok := st.owner.(*serverStream); ok && !ss.finished {
		ss.dec.OnBelowWriteLowWatermark()
	}
}

// serverStream is one request/response exchange: the proxy's encoder.
type serverStream struct {
	sc       *ServerConn
	st       *h2stream
	dec      stream.RequestDecoder
	headReq  bool
	headSent bool
	finished bool
	// CONNECT and extended CONNECT (connect.go).
	tunnel, ext, tunOn, respEnded bool
}

var _ stream.ResponseEncoder = (*serverStream)(nil)

func (s *serverStream) Session() stream.Session { return s.sc.c }

func (s *serverStream) EncodeInterim(h *stream.Head) {
	if s.finished || s.headSent || h.Status == 101 {
		return
	}
	sc := s.sc
	sc.encFields = http2.AppendRegular(append(sc.encFields[:0], http2.HeaderField{Name: ":status", Value: http2.StatusString(h.Status)}), &h.Headers, false)
	sc.writeHeaders(s.st, sc.encFields, false)
}

func (s *serverStream) EncodeHead(h *stream.Head, end bool) {
	if s.finished || s.headSent {
		return
	}
	if s.tunnel && s.encodeTunnelHead(h) {
		return
	}
	s.headSent = true
	sc := s.sc
	sc.encFields = http2.ResponseFields(sc.encFields[:0], h)
	sc.writeHeaders(s.st, sc.encFields, end)
	if end {
		s.complete()
	}
}

func (s *serverStream) EncodeData(p []byte, end bool) {
	if s.finished || !s.headSent {
		return
	}
	if s.tunOn {
		s.tunnelData(p, end)
		return
	}
	if s.headReq {
		p = nil
		if !end {
			return
		}
	}
	if s.sc.sendData(s.st, p, end) {
		s.dec.OnAboveWriteHighWatermark()
	}
	if end {
		s.complete()
	}
}

func (s *serverStream) EncodeTrailers(t *protocol.Headers) {
	if s.finished || !s.headSent {
		return
	}
	sc := s.sc
	sc.encFields = http2.TrailerList(sc.encFields[:0], t)
	if len(sc.encFields) == 0 {
		sc.sendData(s.st, nil, true)
	} else {
		sc.sendTrailers(s.st, sc.encFields)
	}
	s.complete()
}

func (s *serverStream) LocalReply(status int, reason string) {
	if s.finished {
		return
	}
	if s.headSent {
		s.Reset()
		return
	}
	s.reply(status, reason)
}

// reply sends a whole response of the proxy's own.
func (s *serverStream) reply(status int, reason string) {
	s.headSent = true
	sc := s.sc
	body := reason + "\n"
	sc.encFields = append(sc.encFields[:0],
		http2.HeaderField{Name: ":status", Value: http2.StatusString(status)},
		http2.HeaderField{Name: "content-type", Value: "text/plain"},
		http2.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))},
	)
	if s.headReq {
		sc.writeHeaders(s.st, sc.encFields, true)
	} else {
		sc.writeHeaders(s.st, sc.encFields, false)
		sc.sendData(s.st, []byte(body), true)
	}
	s.complete()
}

// complete ends the exchange from the proxy's side. A response complete
// before its request asks the client to stop sending (RFC 9113 §8.1) —
// but only if the request is still open after the input already read
// (a local reply to a POST whose body is in the same read must not be
// followed by RST_STREAM: stopSenders decides once feed is done).
func (s *serverStream) complete() {
	s.finished = true
	st := s.st
	if !st.remoteDone && s.sc.streams[st.id] == st {
		if s.sc.inData {
			s.sc.answered = append(s.sc.answered, st)
		} else {
			s.sc.stopSender(st)
		}
	}
	s.sc.maybeClose()
	s.sc.updateTimer()
}

// stopSender resets st with NO_ERROR if its request is still open and its
// response fully sent — unless the rest of a body of known length fits in
// the stream's window: the client then finishes it without waiting on us,
// so the request is not really still open, and the stream ends cleanly
// when it does (clients such as curl fail on the reset otherwise).
func (sc *ServerConn) stopSender(st *h2stream) {
	if st.wantLen >= 0 && st.wantLen-st.gotLen <= int64(st.recvWin) {
		return
	}
	if !st.remoteDone && st.localDone && len(st.pend) == 0 && !st.hasPendTrl && sc.streams[st.id] == st {
		st.owner = nil
		sc.resetStream(st.id, http2.ErrCodeNo)
	}
}

// stopSenders runs stopSender for the streams answered during feed.
func (sc *ServerConn) stopSenders() {
	if len(sc.answered) == 0 {
		return
	}
	for _, st := range sc.answered {
		sc.stopSender(st)
	}
	clear(sc.answered)
	sc.answered = sc.answered[:0]
}

// Reset aborts the stream with RST_STREAM; the connection lives on.
func (s *serverStream) Reset() {
	if s.finished {
		return
	}
	s.finished = true
	s.st.owner = nil
	s.sc.resetStream(s.st.id, http2.ErrCodeInternal)
	s.sc.maybeClose()
}

// ResetWith resets with the code a peer's reset carried (CANCEL passes on
// as CANCEL), so cancellation propagates (stream.ReasonResetter).
func (s *serverStream) ResetWith(reason error) {
	if s.finished {
		return
	}
	code := http2.ErrCodeInternal
	if se, ok := reason.(*StreamError); ok && se.Code == http2.ErrCodeCancel {
		code = http2.ErrCodeCancel
	}
	s.finished = true
	s.st.owner = nil
	s.sc.resetStream(s.st.id, code)
	s.sc.maybeClose()
}

func (s *serverStream) ReadDisable(d bool) {
	if !s.finished {
		s.sc.hold(s.st, d)
	}
}
