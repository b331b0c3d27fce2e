package http2

import (
	"fmt"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/stream/pool"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// ClientSettings configure the connections of one upstream pool.
type ClientSettings struct {
	// H2 are the protocol settings (Prepare applied).
	H2             *Settings
	ConnectTimeout time.Duration
	// MaxConnections bounds open connections to the host (0: unlimited).
	MaxConnections int
	// MaxPending bounds requests waiting for a stream (0: unlimited).
	MaxPending int
	// MaxRequestsPerConn retires a connection after that many streams.
	MaxRequestsPerConn int
	// IdleTimeout closes a connection without streams for that long.
	IdleTimeout time.Duration
	// ClusterConns and ClusterPending are cluster-wide circuit breakers.
	ClusterConns, ClusterPending *stream.Breaker
	// Wrap secures each new connection (TLS with ALPN h2), when set.
	Wrap func(c transport.Conn, host string) transport.Conn
	// Scheme is the :scheme of requests ("http" or "https").
	Scheme string
}

// NewPool returns the pool of multiplexed HTTP/2 connections to addr.
func NewPool(tr transport.Transport, addr string, set *ClientSettings) *pool.Pool {
	ms := &pool.Settings{
		Protocol: "http2", ConnectTimeout: set.ConnectTimeout, MaxConnections: set.MaxConnections,
		MaxPending: set.MaxPending, IdleTimeout: set.IdleTimeout, StreamsPerConn: int(set.H2.MaxConcurrentStreams),
		ClusterConns: set.ClusterConns, ClusterPending: set.ClusterPending, Wrap: set.Wrap,
	}
	return pool.NewPool(tr, addr, ms, func(tc transport.Conn, p *pool.Pool) pool.Conn {
		cc := &ClientConn{cset: set, tc: tc, nextID: 1}
		cc.Pool, cc.Closer, cc.IdleSince = p, tc, time.Now()
		cc.conn.init(set.H2, cc, false)
		cc.peerMaxStreams = 100 // RFC 9113 §6.5.2: assume 100 until SETTINGS
		return cc
	})
}

// ClientConn is one upstream HTTP/2 connection carrying many streams.
type ClientConn struct {
	pool.Base // Mu guards everything below and the engine
	conn
	cset *ClientSettings
	tc   transport.Conn

	nextID    uint32
	encFields []http2.HeaderField // encoding scratch
}

var (
	_ transport.Handler = (*ClientConn)(nil)
	_ roleEvents        = (*ClientConn)(nil)
	_ pool.Conn         = (*ClientConn)(nil)
)

// Start sends the preface and SETTINGS and begins reading (pool.Conn).
func (cc *ClientConn) Start() {
	cc.Mu.Lock()
	cc.start(true)
	cc.Mu.Unlock()
	cc.tc.Start(cc)
	cc.Mu.Lock()
	cc.Started = true
	cc.flushLocked()
	cc.Mu.Unlock()
}

// Retire sends GOAWAY and closes once the streams in flight end.
func (cc *ClientConn) Retire() {
	cc.Mu.Lock()
	cc.Retiring = true
	cc.goAway(http2.ErrCodeNo, "draining")
	cc.MaybeCloseLocked(cc.goAwayRecv)
	cc.flushLocked()
	cc.Mu.Unlock()
}

// limit is how many streams may be open at once.
func (cc *ClientConn) limit() int {
	return int(min(cc.set.MaxConcurrentStreams, cc.peerMaxStreams))
}

// Reserve takes a stream slot if the connection can carry another stream.
func (cc *ClientConn) Reserve() bool {
	cc.Mu.Lock()
	defer cc.Mu.Unlock()
	max := cc.cset.MaxRequestsPerConn
	return cc.TryReserveLocked(!cc.goAwayRecv && !cc.goAwaySent && cc.Active+cc.Reserved < cc.limit() && (max <= 0 || cc.Used+cc.Reserved < max))
}

// Attach turns a reserved slot into a stream for dec under sess.
func (cc *ClientConn) Attach(dec stream.ResponseDecoder, sess stream.Session) (stream.RequestEncoder, bool) {
	cc.Mu.Lock()
	defer cc.Mu.Unlock()
	reused := cc.AttachLocked()
	cs := &clientStream{cc: cc, dec: dec, sess: sess}
	if cc.Closed {
		cs.queueReset(fmt.Errorf("%w: connection closed", stream.ErrUpstreamReset))
	}
	return cs, reused
}

func (cc *ClientConn) isServer() bool { return false }

func (cc *ClientConn) isIdle(id uint32) bool { return id%2 == 0 || id >= cc.nextID }

func (cc *ClientConn) wantFlush() {}

// flushLocked writes the queued frames. Caller holds cc.Mu.
func (cc *ClientConn) flushLocked() {
	if q, _ := cc.out.WriteTo(cc.tc); q > cc.set.HighWatermark {
		cc.blocked = true
	}
}

func (cc *ClientConn) OnData(_ transport.Conn, b *buffer.Buf) {
	cc.Mu.Lock()
	if cc.Closed {
		cc.Mu.Unlock()
		b.Release()
		return
	}
	cc.in.Add(b)
	err := cc.feed()
	cc.flushLocked()
	if err != nil {
		cc.failAllLocked(fmt.Errorf("%w: %w", stream.ErrUpstreamReset, err))
		cc.Mu.Unlock()
		cc.Deliver()
		cc.tc.Close()
		return
	}
	cc.MaybeCloseLocked(cc.goAwayRecv)
	cc.Mu.Unlock()
	cc.Deliver()
}

func (cc *ClientConn) OnReadEOF(transport.Conn) { cc.tc.Close() }

func (cc *ClientConn) OnDrained(transport.Conn) {
	cc.Mu.Lock()
	if cc.blocked {
		cc.blocked = false
		cc.pump()
		cc.flushLocked()
	}
	cc.Mu.Unlock()
	cc.Deliver()
}

func (cc *ClientConn) OnClose(_ transport.Conn, err error) {
	cc.Mu.Lock()
	cc.Closed = true
	err = stream.UpstreamClosed(err)
	cc.failAllLocked(err)
	cc.out.Drop()
	cc.in.Reset()
	cc.Mu.Unlock()
	cc.Deliver()
	cc.Pool.Closed(cc)
}

// failAllLocked resets every stream with err.
func (cc *ClientConn) failAllLocked(err error) {
	cc.Retiring = true
	for _, st := range cc.streams {
		cc.forget(st)
		if cs, ok := st.owner.(*clientStream); ok {
			cs.queueReset(err)
		}
	}
}

// onForget: the engine is done with st (both directions ended or reset).
func (cc *ClientConn) onForget(st *h2stream) {
	if cs, ok := st.owner.(*clientStream); ok {
		cc.onStreamClosed(cs)
	}
}

// onStreamClosed frees cs's slot, once.
func (cc *ClientConn) onStreamClosed(cs *clientStream) { cc.ReleaseLocked(&cs.released, cc.goAwayRecv) }

// onHeaders: a response head, interim head or trailers (RFC 9113 §8.1).
func (cc *ClientConn) onHeaders(id uint32, st *h2stream, end bool) error {
	if st == nil {
		if cc.isIdle(id) {
			return &connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on an idle stream"}
		}
		return nil // a stream we reset: ignore (§5.4.2)
	}
	cs := st.owner.(*clientStream)
	if cc.listLarge {
		cc.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	if cs.gotHead {
		cc.onTrailers(st, cs, end)
		return nil
	}
	var h protocol.Head
	h.Headers.Fields = cs.headFields[:0]
	if why := http2.ResponseHead(cc.fields, &h); why != "" {
		cc.malformed(st, why)
		return nil
	}
	if h.Status < 200 {
		if h.Status == 101 || end {
			cc.malformed(st, "invalid interim response")
			return nil
		}
		if h.Status == 100 {
			cs.evInterim, cs.headFields = h, h.Headers.Fields
			cs.ev |= evInterim
			cc.schedule(cs)
		}
		return nil
	}
	if end && h.ContentLength > 0 && !cs.headReq && h.Status != 304 {
		cc.malformed(st, "content-length without DATA")
		return nil
	}
	cs.gotHead = true
	if !cs.headReq && h.Status != 304 && h.Status != 204 {
		st.wantLen = h.ContentLength
	}
	cs.evHead, cs.headFields = h, h.Headers.Fields
	cs.ev |= evHead
	if end {
		st.remoteDone = true
		cs.ev |= evEnd
	}
	cc.schedule(cs)
	cc.maybeForget(st)
	return nil
}

// onTrailers takes a response's second header block: trailers, which
// must end the stream (RFC 9113 §8.1).
func (cc *ClientConn) onTrailers(st *h2stream, cs *clientStream, end bool) {
	if !end {
		cc.malformed(st, "trailers without END_STREAM")
		return
	}
	why, dropped := http2.TrailerFields(cc.fields, &cs.evTrl)
	cc.set.Stats.TrailerFieldsDropped.Add(uint64(dropped))
	if why != "" {
		cc.malformed(st, why)
		return
	}
	if st.wantLen >= 0 && st.gotLen != st.wantLen {
		cc.malformed(st, "DATA does not match content-length")
		return
	}
	st.remoteDone = true
	cs.ev |= evTrailers
	cc.schedule(cs)
	cc.maybeForget(st)
}

func (cc *ClientConn) onData(st *h2stream, p []byte, end bool) {
	cs := st.owner.(*clientStream)
	if !cs.gotHead {
		cc.malformed(st, "DATA before the response head")
		return
	}
	cs.evData = append(cs.evData, p...)
	if end {
		cs.ev |= evEnd
	}
	cc.schedule(cs)
}

func (cc *ClientConn) onRSTStream(st *h2stream, code http2.ErrCode) {
	cs, ok := st.owner.(*clientStream)
	if !ok {
		return
	}
	var err error = &StreamError{Code: code, Remote: true}
	if code == http2.ErrCodeRefusedStream {
		err = stream.ErrRefused
	}
	cs.queueReset(err)
}

func (cc *ClientConn) onLocalReset(st *h2stream, err error) {
	if cs, ok := st.owner.(*clientStream); ok {
		cs.queueReset(&protocol.Error{Status: 502, Reason: err.Error()})
	}
}

// onGoAway: streams above last were never processed and may be retried
// elsewhere; the rest finish, then the connection closes.
func (cc *ClientConn) onGoAway(last uint32, _ http2.ErrCode) {
	for id, st := range cc.streams {
		if id > last {
			cc.forget(st)
			if cs, ok := st.owner.(*clientStream); ok {
				cs.queueReset(stream.ErrRefused)
			}
		}
	}
}

func (cc *ClientConn) onSendReady(st *h2stream) {
	if cs, ok := st.owner.(*clientStream); ok {
		cs.ev |= evBelow
		cc.schedule(cs)
	}
}

func (cc *ClientConn) schedule(cs *clientStream) { cc.ScheduleLocked(cs, &cs.queued) }

type evKind uint8

const (
	evInterim evKind = 1 << iota
	evHead
	evEnd
	evTrailers
	evReset
	evBelow
)

// clientStream is one request on a ClientConn: the proxy's encoder. Fields
// marked (mu) are guarded by cc.mu; the rest by the session.
type clientStream struct {
	cc   *ClientConn
	dec  stream.ResponseDecoder
	sess stream.Session
	st   *h2stream

	headReq     bool
	finished    bool // the proxy is done, or a reset was delivered
	flushQueued bool

	// events waiting for delivery (mu)
	queued     bool
	ev         evKind
	evInterim  protocol.Head
	evHead     protocol.Head
	headFields []protocol.Field
	evData     []byte
	evTrl      protocol.Headers
	evErr      error
	gotHead    bool
	released   bool   // its slot was given back (mu)
	runData    []byte // swapped with evData for delivery (session)
}

var _ stream.RequestEncoder = (*clientStream)(nil)

func (cs *clientStream) queueReset(err error) {
	if cs.ev&evReset != 0 {
		return
	}
	cs.ev |= evReset
	cs.evErr = err
	cs.cc.onStreamClosed(cs)
	cs.cc.schedule(cs)
}

// run delivers the queued events under the session, in order.
func (cs *clientStream) Run() {
	cc := cs.cc
	cs.sess.Lock()
	defer cs.sess.Unlock()
	cc.Mu.Lock()
	ev := cs.ev
	cs.ev, cs.queued = 0, false
	interim, head, trl, err := cs.evInterim, cs.evHead, cs.evTrl, cs.evErr
	cs.runData, cs.evData = cs.evData, cs.runData[:0]
	cc.Mu.Unlock()
	if cs.finished {
		return
	}
	data := cs.runData
	if ev&evInterim != 0 {
		cs.dec.DecodeInterim(&interim)
	}
	if ev&evHead != 0 {
		cs.dec.DecodeHead(&head, ev&evEnd != 0 && len(data) == 0 && ev&evTrailers == 0)
	}
	if cs.finished {
		return
	}
	end := ev&evEnd != 0 && ev&evTrailers == 0
	if len(data) > 0 || (end && ev&evHead == 0) {
		cs.dec.DecodeData(data, end)
	}
	if ev&evTrailers != 0 && !cs.finished {
		cs.dec.DecodeTrailers(&trl)
	}
	if ev&(evEnd|evTrailers) != 0 {
		cs.finished = true
	}
	if len(data) > 0 {
		cc.Mu.Lock()
		if st := cs.st; st != nil && cc.streams[st.id] == st {
			cc.returnStream(st, int32(len(data)))
			cc.flushLocked()
		}
		cc.Mu.Unlock()
	}
	if ev&evReset != 0 && !cs.finished {
		cs.finished = true
		cs.dec.OnReset(err)
		return
	}
	if ev&evBelow != 0 && !cs.finished {
		cs.dec.OnBelowWriteLowWatermark()
	}
}

// Flush writes the connection's queued frames (stream.Flusher).
func (cs *clientStream) Flush() {
	cs.flushQueued = false
	cs.cc.Mu.Lock()
	cs.cc.flushLocked()
	cs.cc.Mu.Unlock()
}

func (cs *clientStream) scheduleFlush() {
	if !cs.flushQueued {
		cs.flushQueued = true
		cs.sess.DeferFlush(cs)
	}
}

func (cs *clientStream) EncodeHead(h *stream.Head, end bool) {
	if cs.finished || cs.st != nil {
		return
	}
	cc := cs.cc
	cc.Mu.Lock()
	defer cc.Mu.Unlock()
	if cs.ev&evReset != 0 {
		return
	}
	if cc.Closed || cc.goAwayRecv || cc.nextID > 1<<31-1 {
		cs.queueReset(stream.ErrRefused)
		go cc.Deliver()
		return
	}
	cs.headReq = string(h.Method) == "HEAD"
	id := cc.nextID
	cc.nextID += 2
	cs.st = cc.newStream(id)
	cs.st.owner = cs
	cc.encFields = http2.RequestFields(cc.encFields[:0], h, cc.cset.Scheme)
	cc.writeHeaders(cs.st, cc.encFields, end)
	cs.scheduleFlush()
}

func (cs *clientStream) EncodeData(p []byte, end bool) {
	if cs.finished || cs.st == nil {
		return
	}
	cc := cs.cc
	cc.Mu.Lock()
	crossed := false
	if cc.streams[cs.st.id] == cs.st && !cs.st.localDone {
		crossed = cc.sendData(cs.st, p, end)
	}
	cc.KickLocked(cs.sess)
	cc.Mu.Unlock()
	cs.scheduleFlush()
	if crossed {
		cs.dec.OnAboveWriteHighWatermark()
	}
}

func (cs *clientStream) EncodeTrailers(t *protocol.Headers) {
	if cs.finished || cs.st == nil {
		return
	}
	cc := cs.cc
	cc.Mu.Lock()
	if cc.streams[cs.st.id] == cs.st && !cs.st.localDone {
		cc.encFields = http2.TrailerList(cc.encFields[:0], t)
		if len(cc.encFields) == 0 {
			cc.sendData(cs.st, nil, true)
		} else {
			cc.sendTrailers(cs.st, cc.encFields)
		}
	}
	cc.KickLocked(cs.sess)
	cc.Mu.Unlock()
	cs.scheduleFlush()
}

// Reset abandons the request with RST_STREAM(CANCEL); the connection
// carries on.
func (cs *clientStream) Reset() {
	if cs.finished {
		return
	}
	cs.finished = true
	cc := cs.cc
	cc.Mu.Lock()
	if st := cs.st; st != nil && cc.streams[st.id] == st {
		st.owner = nil
		cc.resetStream(st.id, http2.ErrCodeCancel)
	}
	cc.onStreamClosed(cs)
	cc.KickLocked(cs.sess)
	cc.Mu.Unlock()
	cs.scheduleFlush()
}

func (cs *clientStream) ReadDisable(d bool) {
	if cs.finished || cs.st == nil {
		return
	}
	cc := cs.cc
	cc.Mu.Lock()
	if cc.streams[cs.st.id] == cs.st {
		cc.hold(cs.st, d)
	}
	cc.Mu.Unlock()
	cs.scheduleFlush()
}
