package http2

import (
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
	if ok, err := sc.admit(id); !ok {
		return err
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

// admit decides whether the peer may open stream id: false (with a
// connection error, or nil when the stream was reset or refused here)
// when it may not.
func (sc *ServerConn) admit(id uint32) (bool, error) {
	if id <= sc.lastID {
		if sc.wasReset(id) {
			return false, nil // sent before the peer saw our reset (§5.4.2)
		}
		// §5.1.1: a new stream's id must exceed every earlier one.
		return false, &connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on a closed or lower stream id"}
	}
	sc.lastID = id
	if sc.cont.selfDep { // §5.3.1: a stream cannot depend on itself
		sc.set.Stats.ProtocolErrors.Add(1)
		sc.resetStream(id, http2.ErrCodeProtocol)
		return false, nil
	}
	if sc.goAwaySent || sc.closing {
		sc.resetStream(id, http2.ErrCodeRefusedStream)
		return false, nil
	}
	if uint32(len(sc.streams)) >= sc.set.MaxConcurrentStreams {
		sc.set.Stats.RefusedStreams.Add(1)
		sc.resetStream(id, http2.ErrCodeRefusedStream) // §5.1.2
		return false, nil
	}
	return true, nil
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
