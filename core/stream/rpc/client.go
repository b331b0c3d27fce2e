package rpc

import (
	"fmt"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/stream/pool"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// ClientSettings configure the connections of one upstream pool.
type ClientSettings struct {
	Codec          xprotocol.Codec
	ConnectTimeout time.Duration
	MaxConnections int // per host; 0: unlimited
	MaxPending     int // requests waiting for a connection; 0: unlimited
	// MaxInFlight bounds requests in flight on one connection (1024 by
	// default); beyond it another connection is opened.
	MaxInFlight int
	IdleTimeout time.Duration
	// HeartbeatInterval sends a heartbeat on a connection idle that long;
	// one left unanswered for another interval closes the connection.
	// 0 disables heartbeats.
	HeartbeatInterval            time.Duration
	ClusterConns, ClusterPending *stream.Breaker
	Wrap                         func(c transport.Conn, host string) transport.Conn
	Stats                        *Stats
}

func (s *ClientSettings) maxInFlight() int {
	if s.MaxInFlight > 0 {
		return s.MaxInFlight
	}
	return 1024
}

// NewPool returns the pool of multiplexed connections to addr.
func NewPool(tr transport.Transport, addr string, set *ClientSettings) *pool.Pool {
	if set.Stats == nil {
		set.Stats = &Stats{}
	}
	ms := &pool.Settings{
		Protocol: set.Codec.Name(), ConnectTimeout: set.ConnectTimeout, MaxConnections: set.MaxConnections,
		MaxPending: set.MaxPending, IdleTimeout: set.IdleTimeout, StreamsPerConn: set.maxInFlight(),
		ClusterConns: set.ClusterConns, ClusterPending: set.ClusterPending, Wrap: set.Wrap,
	}
	return pool.NewPool(tr, addr, ms, func(tc transport.Conn, p *pool.Pool) pool.Conn {
		cc := &ClientConn{set: set, tc: tc, streams: map[uint64]*clientStream{}}
		cc.Pool, cc.Closer, cc.IdleSince = p, tc, time.Now()
		return cc
	})
}

// ClientConn is one upstream connection carrying many requests, matched to
// their responses by request ID (out of order is fine).
type ClientConn struct {
	pool.Base // Mu guards everything below
	set       *ClientSettings
	tc        transport.Conn
	in        buffer.Input
	out       buffer.Chain
	f         xprotocol.Frame // the reader's frame
	peek      xprotocol.Frame // EncodeHead's look at a request

	streams map[uint64]*clientStream
	nextID  uint64

	hb          *time.Timer
	hbPending   bool // a heartbeat is waiting for its reply
	lastTraffic time.Time
}

var (
	_ transport.Handler = (*ClientConn)(nil)
	_ pool.Conn         = (*ClientConn)(nil)
)

// Start begins reading and the heartbeat timer.
func (cc *ClientConn) Start() {
	cc.tc.Start(cc)
	cc.Mu.Lock()
	cc.Started = true
	if d := cc.set.HeartbeatInterval; d > 0 {
		cc.lastTraffic = time.Now()
		cc.hb = time.AfterFunc(d, cc.heartbeat)
	}
	cc.Mu.Unlock()
}

// heartbeat probes a quiet connection and closes one whose previous probe
// went unanswered.
func (cc *ClientConn) heartbeat() {
	cc.Mu.Lock()
	if cc.Closed {
		cc.Mu.Unlock()
		return
	}
	d := cc.set.HeartbeatInterval
	if cc.hbPending {
		cc.Closed = true
		cc.Mu.Unlock()
		cc.tc.Close() // no reply for a whole interval: the peer is gone
		return
	}
	if time.Since(cc.lastTraffic) >= d {
		cc.hbPending = true
		cc.out.Write(cc.set.Codec.AppendHeartbeat(nil, cc.allocID()))
		cc.flushLocked()
	}
	cc.hb.Reset(d)
	cc.Mu.Unlock()
}

// allocID returns a request ID not in use on this connection.
func (cc *ClientConn) allocID() uint64 {
	max := cc.set.Codec.MaxID()
	for {
		cc.nextID++
		if cc.nextID > max {
			cc.nextID = 1
		}
		if _, busy := cc.streams[cc.nextID]; !busy {
			return cc.nextID
		}
	}
}

// Reserve takes a slot if the connection can carry another request.
func (cc *ClientConn) Reserve() bool {
	cc.Mu.Lock()
	defer cc.Mu.Unlock()
	return cc.TryReserveLocked(cc.Active+cc.Reserved < cc.set.maxInFlight())
}

// Attach turns a reserved slot into a request stream.
func (cc *ClientConn) Attach(dec stream.ResponseDecoder, sess stream.Session) (stream.RequestEncoder, bool) {
	cc.Mu.Lock()
	defer cc.Mu.Unlock()
	reused := cc.AttachLocked()
	return &clientStream{cc: cc, dec: dec, sess: sess}, reused
}

// Retire closes the connection once its requests are answered.
func (cc *ClientConn) Retire() {
	cc.Mu.Lock()
	cc.Retiring = true
	cc.MaybeCloseLocked(false)
	cc.Mu.Unlock()
}

func (cc *ClientConn) flushLocked() { cc.out.WriteTo(cc.tc) }

func (cc *ClientConn) OnData(_ transport.Conn, b *buffer.Buf) {
	cc.Mu.Lock()
	cc.in.Add(b)
	cc.lastTraffic = time.Now()
	codec := cc.set.Codec
	var bad error
	for cc.in.Len() > 0 {
		n, err := codec.Decode(cc.in.Bytes(), &cc.f)
		if err != nil {
			bad = err
			break
		}
		if n == 0 {
			break
		}
		cc.frame(&cc.f)
		cc.in.Consume(n)
	}
	if bad != nil {
		cc.set.Stats.BadFrames.Add(1)
		cc.failAllLocked(&protocol.Error{Status: 502, Reason: fmt.Sprintf("upstream sent a bad frame: %v", bad)})
		cc.in.Reset()
	}
	cc.flushLocked()
	cc.Mu.Unlock()
	cc.Deliver()
	if bad != nil {
		cc.tc.Close()
	}
}

// frame handles one upstream frame (cc.mu held).
func (cc *ClientConn) frame(f *xprotocol.Frame) {
	switch f.Kind {
	case xprotocol.Response:
	case xprotocol.HeartbeatReply:
		cc.hbPending = false
		return
	case xprotocol.Heartbeat:
		cc.out.Write(cc.set.Codec.AppendHeartbeatReply(nil, f))
		return
	default:
		cc.set.Stats.UnknownResponses.Add(1)
		return
	}
	cs := cc.streams[f.ID]
	if cs == nil {
		cc.set.Stats.UnknownResponses.Add(1) // its request went away (reset, timed out)
		return
	}
	delete(cc.streams, f.ID)
	cs.evFrame = append(cs.evFrame[:0], f.Raw...)
	cs.evStatus = cc.set.Codec.HTTPStatus(f)
	cs.ev |= evHead
	cc.release(cs)
	cc.schedule(cs)
}

func (cc *ClientConn) OnReadEOF(transport.Conn) { cc.tc.Close() }
func (cc *ClientConn) OnDrained(transport.Conn) {}

func (cc *ClientConn) OnClose(_ transport.Conn, err error) {
	cc.Mu.Lock()
	cc.Closed = true
	if cc.hb != nil {
		cc.hb.Stop()
	}
	err = stream.UpstreamClosed(err)
	cc.failAllLocked(err)
	cc.out.Drop()
	cc.in.Reset()
	cc.Mu.Unlock()
	cc.Deliver()
	cc.Pool.Closed(cc)
}

// failAllLocked resets every request in flight with err.
func (cc *ClientConn) failAllLocked(err error) {
	cc.Retiring = true
	for id, cs := range cc.streams {
		delete(cc.streams, id)
		cs.queueReset(err)
	}
}

// release frees cs's slot, once (Mu held).
func (cc *ClientConn) release(cs *clientStream) { cc.ReleaseLocked(&cs.released, false) }

func (cc *ClientConn) schedule(cs *clientStream) { cc.ScheduleLocked(cs, &cs.queued) }

type evKind uint8

const (
	evHead evKind = 1 << iota
	evReset
)

// clientStream is one upstream request: the proxy's encoder. Fields
// marked (mu) are guarded by cc.mu; the rest by the session.
type clientStream struct {
	cc          *ClientConn
	dec         stream.ResponseDecoder
	sess        stream.Session
	id          uint64
	sent        bool
	finished    bool
	flushQueued bool

	queued   bool   // (mu)
	released bool   // (mu)
	ev       evKind // (mu)
	evStatus int    // (mu)
	evFrame  []byte // (mu) the response frame, owned
	evErr    error  // (mu)
	runFrame []byte // the frame being delivered (session)
}

var _ stream.RequestEncoder = (*clientStream)(nil)

func (cs *clientStream) queueReset(err error) {
	if cs.ev&(evReset|evHead) != 0 {
		return
	}
	cs.ev |= evReset
	cs.evErr = err
	cs.cc.release(cs)
	cs.cc.schedule(cs)
}

// run delivers the queued event under the session.
func (cs *clientStream) Run() {
	cc := cs.cc
	cs.sess.Lock()
	defer cs.sess.Unlock()
	cc.Mu.Lock()
	ev, status, err := cs.ev, cs.evStatus, cs.evErr
	cs.ev, cs.queued = 0, false
	cs.runFrame, cs.evFrame = cs.evFrame, cs.runFrame
	cc.Mu.Unlock()
	if cs.finished {
		return
	}
	switch {
	case ev&evHead != 0:
		cs.finished = true
		// A oneway request's synthetic answer has no frame.
		h := protocol.Head{Status: status, Minor: 1, Frame: cs.runFrame}
		cs.dec.DecodeHead(&h, true)
	case ev&evReset != 0:
		cs.finished = true
		cs.dec.OnReset(err)
	}
}

// Flush writes the connection's queued frames (stream.Flusher).
func (cs *clientStream) Flush() {
	cs.flushQueued = false
	cs.cc.Mu.Lock()
	cs.cc.flushLocked()
	cs.cc.Mu.Unlock()
}

// EncodeHead sends the request frame under a fresh upstream ID. A oneway
// request is answered at once (nothing will come back).
func (cs *clientStream) EncodeHead(h *stream.Head, _ bool) {
	if cs.finished || cs.sent {
		return
	}
	cs.sent = true
	cc := cs.cc
	cc.Mu.Lock()
	defer cc.Mu.Unlock()
	if cs.ev&evReset != 0 {
		return
	}
	if cc.Closed {
		cs.queueReset(fmt.Errorf("%w: connection closed", stream.ErrUpstreamReset))
		go cc.Deliver()
		return
	}
	if h.Frame == nil {
		cs.queueReset(&protocol.Error{Status: 502, Reason: "not a " + cc.set.Codec.Name() + " request (route an RPC listener to an RPC cluster of the same protocol)"})
		go cc.Deliver()
		return
	}
	if n, err := cc.set.Codec.Decode(h.Frame, &cc.peek); err != nil || n != len(h.Frame) {
		cs.queueReset(&protocol.Error{Status: 400, Reason: "not a " + cc.set.Codec.Name() + " frame"})
		go cc.Deliver()
		return
	}
	oneway := cc.peek.Kind == xprotocol.Oneway
	cs.id = cc.allocID()
	cc.out.Write(h.Frame)
	cc.set.Codec.SetID(cc.out.Tail(len(h.Frame)), cs.id)
	cc.lastTraffic = time.Now()
	if oneway {
		cs.ev |= evHead
		cs.evStatus, cs.evFrame = 200, nil
		cc.release(cs)
		cc.schedule(cs)
		go cc.Deliver()
	} else {
		cc.streams[cs.id] = cs
	}
	if !cs.flushQueued {
		cs.flushQueued = true
		cs.sess.DeferFlush(cs)
	}
}

func (cs *clientStream) EncodeData([]byte, bool)          {}
func (cs *clientStream) EncodeTrailers(*protocol.Headers) {}

// Reset abandons the request: a late response is dropped; the connection
// carries on.
func (cs *clientStream) Reset() {
	if cs.finished {
		return
	}
	cs.finished = true
	cc := cs.cc
	cc.Mu.Lock()
	if cc.streams[cs.id] == cs {
		delete(cc.streams, cs.id)
	}
	cc.release(cs)
	cc.KickLocked(cs.sess)
	cc.Mu.Unlock()
}

// ReadDisable is a no-op: one slow downstream must not stall the other
// requests sharing the upstream connection, and responses are whole frames
// bounded by the codec's maximum.
func (cs *clientStream) ReadDisable(bool) {}
