package http1

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// ClientSettings configure the connections of one upstream pool.
type ClientSettings struct {
	Limits         h1.Limits
	ConnectTimeout time.Duration
	// MaxConnections bounds open connections to the host (0: unlimited).
	MaxConnections int
	// MaxPending bounds requests waiting for a connection (0: unlimited).
	MaxPending int
	// MaxRequestsPerConn closes a connection after that many requests (0: no limit).
	MaxRequestsPerConn int
	// IdleTimeout closes a pooled connection unused for that long (0: never).
	IdleTimeout   time.Duration
	HighWatermark int
	// ClusterConns and ClusterPending are the cluster-wide circuit breakers
	// every host's pool counts against (nil: none).
	ClusterConns, ClusterPending *stream.Breaker
	// Wrap, when set, secures each new connection (a crypto engine's client
	// side); writes before its handshake completes are queued by it.
	Wrap func(c transport.Conn, host string) transport.Conn
}

// PoolStats are a pool's counters.
type PoolStats = stream.PoolStats

// Pool keeps keep-alive HTTP/1 connections to one upstream address. Idle
// connections stay registered with the transport, so one the server closes
// leaves the pool at once instead of failing the next request.
type Pool struct {
	tr   transport.Transport
	addr string
	set  *ClientSettings

	mu         sync.Mutex
	idle       []*ClientConn // LIFO: the warmest connection first
	total      int           // open or connecting
	connecting int           // dials in flight
	waiters    []*waiter
	draining   bool

	Stats PoolStats
}

var _ stream.Pool = (*Pool)(nil)

// NewPool returns an empty pool for addr.
func NewPool(tr transport.Transport, addr string, set *ClientSettings) *Pool {
	return &Pool{tr: tr, addr: addr, set: set}
}

type waiter struct {
	p         *Pool
	dec       stream.ResponseDecoder
	sess      stream.Session
	cb        stream.PoolCallbacks
	cancelled bool // guarded by sess
}

// fail reports a pool failure to a waiter that left the queue, under its
// session.
func (w *waiter) fail(f stream.PoolFailure, err error) {
	w.sess.Lock()
	if !w.cancelled {
		w.cb.OnPoolFailure(f, err)
	}
	w.sess.Unlock()
}

// Cancel withdraws a pending request; call it under the session.
func (w *waiter) Cancel() {
	w.cancelled = true
	w.p.mu.Lock()
	for i, x := range w.p.waiters {
		if x == w {
			w.p.waiters = append(w.p.waiters[:i], w.p.waiters[i+1:]...)
			w.p.set.ClusterPending.Release()
			break
		}
	}
	w.p.mu.Unlock()
}

// NewStream implements stream.Pool.
func (p *Pool) NewStream(dec stream.ResponseDecoder, sess stream.Session, cb stream.PoolCallbacks) stream.Cancellable {
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		cc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if p.set.IdleTimeout > 0 && time.Since(cc.idleSince) > p.set.IdleTimeout {
			cc.tc.Close() // past its idle timeout: do not reuse
			continue
		}
		p.mu.Unlock()
		p.Stats.Reuses.Add(1)
		cb.OnPoolReady(cc.attach(dec, sess), true)
		return nil
	}
	if p.set.MaxPending > 0 && len(p.waiters) >= p.set.MaxPending || !p.set.ClusterPending.TryAcquire() {
		p.mu.Unlock()
		cb.OnPoolFailure(stream.Overflow, fmt.Errorf("http1: too many requests wait for %s", p.addr))
		return nil
	}
	if p.total == 0 && p.set.ClusterConns != nil && p.set.ClusterConns.Max > 0 && p.set.ClusterConns.Count() >= p.set.ClusterConns.Max {
		// No connection to this host and none may be opened: waiting could
		// last forever, so refuse now.
		p.mu.Unlock()
		p.set.ClusterPending.Release()
		cb.OnPoolFailure(stream.CxOverflow, fmt.Errorf("http1: cluster connection limit reached, none open to %s", p.addr))
		return nil
	}
	w := &waiter{p: p, dec: dec, sess: sess, cb: cb}
	p.waiters = append(p.waiters, w)
	p.maybeDialLocked()
	p.mu.Unlock()
	return w
}

// maybeDialLocked starts a connection when waiters outnumber the dials in
// flight and the connection limit allows. Caller holds p.mu.
func (p *Pool) maybeDialLocked() {
	if len(p.waiters) <= p.connecting || p.draining || (p.set.MaxConnections > 0 && p.total >= p.set.MaxConnections) {
		return
	}
	if !p.set.ClusterConns.TryAcquire() {
		if p.total == 0 {
			// Nothing to wait for on this host: refuse the oldest waiter.
			if w := p.popWaiter(); w != nil {
				go w.fail(stream.CxOverflow, fmt.Errorf("http1: cluster connection limit reached, none open to %s", p.addr))
			}
		}
		return // otherwise the waiters get a connection another request releases
	}
	p.total++
	p.connecting++
	p.Stats.ConnectsTotal.Add(1)
	p.tr.Dial("tcp", p.addr, p.set.ConnectTimeout, p.onConnect)
}

func (p *Pool) popWaiter() *waiter {
	if len(p.waiters) == 0 {
		return nil
	}
	p.set.ClusterPending.Release()
	w := p.waiters[0]
	p.waiters[0] = nil
	p.waiters = p.waiters[1:]
	return w
}

func (p *Pool) onConnect(tc transport.Conn, err error) {
	if err != nil {
		p.Stats.ConnectFailures.Add(1)
		p.set.ClusterConns.Release()
		p.mu.Lock()
		p.total--
		p.connecting--
		w := p.popWaiter()
		p.mu.Unlock()
		if w != nil {
			f := stream.ConnectFailure
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				f = stream.ConnectTimeout
			}
			w.fail(f, err)
		}
		return
	}
	if p.set.Wrap != nil {
		tc = p.set.Wrap(tc, p.addr)
	}
	cc := &ClientConn{pool: p, tc: tc}
	cc.p = h1.NewResponseParser(p.set.Limits, cc)
	p.Stats.Active.Add(1)
	if hs, ok := tc.(stream.Handshaker); ok {
		// Still connecting until the handshake ends; its OnClose (after a
		// failure) removes it like any closed connection.
		hs.OnHandshake(func(err error) { p.handshaken(cc, err) })
		tc.Start(cc)
		return
	}
	p.mu.Lock()
	p.connecting--
	p.mu.Unlock()
	tc.Start(cc)
	p.assign(cc)
}

// handshaken ends the connecting phase of a secured connection: ready, it
// serves a waiter; failed, the oldest waiter gets a connect failure.
func (p *Pool) handshaken(cc *ClientConn, err error) {
	p.mu.Lock()
	p.connecting--
	if err == nil {
		p.mu.Unlock()
		p.assign(cc)
		return
	}
	w := p.popWaiter()
	p.mu.Unlock()
	p.Stats.ConnectFailures.Add(1)
	if w != nil {
		w.fail(handshakeFailure(err), fmt.Errorf("http1: TLS handshake with %s: %w", p.addr, err))
	}
}

// handshakeFailure is a failed handshake's pool failure: a connect timeout
// when its timeout ended it, otherwise a connect failure.
func handshakeFailure(err error) stream.PoolFailure {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return stream.ConnectTimeout
	}
	return stream.ConnectFailure
}

// assign gives cc to the first live waiter or parks it as idle.
func (p *Pool) assign(cc *ClientConn) {
	for {
		p.mu.Lock()
		if cc.closed {
			p.mu.Unlock()
			return
		}
		w := p.popWaiter()
		if w == nil {
			p.parkAndUnlock(cc)
			return
		}
		p.mu.Unlock()
		w.sess.Lock()
		if w.cancelled {
			w.sess.Unlock()
			continue
		}
		w.cb.OnPoolReady(cc.attach(w.dec, w.sess), cc.requests > 0)
		w.sess.Unlock()
		return
	}
}

// release returns a connection that finished a request cleanly. Called under
// the finishing stream's session, so handing it to another session's waiter
// happens on a new goroutine (no two sessions are ever locked together).
func (p *Pool) release(cc *ClientConn) {
	p.mu.Lock()
	if len(p.waiters) > 0 {
		p.mu.Unlock()
		go p.assign(cc)
		return
	}
	p.parkAndUnlock(cc)
}

// parkAndUnlock, called with p.mu held, puts a free connection on the idle
// list, or closes it if the pool is draining or the connection is closed,
// and unlocks p.mu (before the close).
func (p *Pool) parkAndUnlock(cc *ClientConn) {
	if p.draining || cc.closed {
		p.mu.Unlock()
		cc.tc.Close()
		return
	}
	cc.idleSince = time.Now()
	p.idle = append(p.idle, cc)
	p.mu.Unlock()
}

// SweepIdle closes connections idle longer than the idle timeout; the
// cluster calls it periodically so quiet pools shrink without traffic.
func (p *Pool) SweepIdle(now time.Time) (closed int) {
	if p.set.IdleTimeout <= 0 {
		return 0
	}
	p.mu.Lock()
	var stale []*ClientConn
	kept := p.idle[:0]
	for _, cc := range p.idle {
		if now.Sub(cc.idleSince) > p.set.IdleTimeout {
			stale = append(stale, cc)
		} else {
			kept = append(kept, cc)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	p.mu.Unlock()
	for _, cc := range stale {
		cc.tc.Close()
	}
	return len(stale)
}

func (p *Pool) removeClosed(cc *ClientConn) {
	p.set.ClusterConns.Release()
	p.mu.Lock()
	cc.closed = true
	p.total--
	for i, x := range p.idle {
		if x == cc {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	// A slot opened: start a connection for a waiter, if any.
	p.maybeDialLocked()
	p.mu.Unlock()
	p.Stats.Active.Add(-1)
}

// Drain closes idle connections; busy ones close when their request ends.
func (p *Pool) Drain() {
	p.mu.Lock()
	p.draining = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, cc := range idle {
		cc.tc.Close()
	}
}

// Counters are the pool's counters.
func (p *Pool) Counters() *stream.PoolStats { return &p.Stats }

// Idle is the number of idle connections (for tests and stats).
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// ClientConn is one upstream HTTP/1 connection; it serves one stream at a
// time. Its transport events run under the session of the stream it serves.
type ClientConn struct {
	pool     *Pool
	tc       transport.Conn
	p        *h1.Parser
	in       inbuf
	owner    atomic.Pointer[clientStream]
	requests int
	// closeOnDrain: a finished tunnel closes once its writes are out.
	closeOnDrain atomic.Bool
	idleSince    time.Time // guarded by pool.mu
	closed       bool      // guarded by pool.mu
}

var (
	_ transport.Handler = (*ClientConn)(nil)
	_ h1.Callbacks      = (*ClientConn)(nil)
)

func (cc *ClientConn) attach(dec stream.ResponseDecoder, sess stream.Session) *clientStream {
	s := &clientStream{cc: cc, dec: dec}
	s.encoder = encoder{sess: sess, self: s, conn: cc.tc, hw: cc.pool.set.HighWatermark}
	cc.p.Reset()
	cc.owner.Store(s)
	return s
}

// lockOwner returns the current stream with its session held, or nil.
func (cc *ClientConn) lockOwner() *clientStream {
	for {
		s := cc.owner.Load()
		if s == nil {
			return nil
		}
		s.sess.Lock()
		if cc.owner.Load() == s {
			return s
		}
		s.sess.Unlock()
	}
}

func (cc *ClientConn) OnData(_ transport.Conn, b *buffer.Buf) {
	s := cc.lockOwner()
	if s == nil {
		// Bytes on an idle connection: the server broke the protocol.
		b.Release()
		cc.tc.Close()
		return
	}
	s.gotBytes = true
	if s.tun.is(tunOn) {
		s.tunnelData(b.Bytes())
		b.Release()
		s.sess.Unlock()
		return
	}
	cc.in.Add(b)
	for cc.in.Len() > 0 && !s.done() {
		n, err := cc.p.Parse(cc.in.Bytes())
		cc.in.Consume(n)
		if err != nil {
			if err != errStreamGone {
				s.fail(fmt.Errorf("http1: upstream response: %w", err))
			}
			break
		}
		if cc.p.Done() && s.interim {
			s.interim = false
			cc.p.Reset()
			cc.p.NoBody = s.headReq
			continue
		}
		if n == 0 {
			break
		}
	}
	if s.tun.is(tunOn) && cc.in.Len() > 0 {
		b := cc.in.Take() // bytes after the 101 are the tunnel's
		s.tunnelData(b.Bytes())
		b.Release()
	}
	if s.respDone && cc.in.Len() > 0 {
		cc.in.Reset()
		s.reusable = false // bytes after a complete response
	}
	s.maybeFinish()
	s.sess.Unlock()
}

func (cc *ClientConn) OnReadEOF(transport.Conn) {
	s := cc.lockOwner()
	if s == nil {
		cc.tc.Close()
		return
	}
	if s.tun.is(tunOn) {
		s.tunnelEOF()
		s.sess.Unlock()
		return
	}
	s.reusable = false
	if !s.respDone {
		if err := cc.p.EOF(); err != nil {
			s.fail(fmt.Errorf("http1: upstream closed mid-response: %w", err))
		}
	}
	s.maybeFinish()
	s.sess.Unlock()
	cc.tc.Close()
}

func (cc *ClientConn) OnDrained(transport.Conn) {
	if cc.closeOnDrain.Load() {
		cc.tc.Close()
		return
	}
	if s := cc.lockOwner(); s != nil {
		s.queued = false
		if !s.done() && s.drained() {
			s.dec.OnBelowWriteLowWatermark()
		}
		s.sess.Unlock()
	}
}

func (cc *ClientConn) OnClose(_ transport.Conn, err error) {
	if s := cc.lockOwner(); s != nil {
		if !s.done() {
			err = stream.UpstreamClosed(err)
			s.fail(err)
		}
		s.sess.Unlock()
	}
	cc.in.Reset()
	cc.pool.removeClosed(cc)
}

// h1.Callbacks for the response, delivered under the owner's session.

func (cc *ClientConn) OnHead(h *h1.Head) error {
	s := cc.current()
	if s == nil {
		return errStreamGone
	}
	if s.tun.is(tunCand) && (h.Status == 101 || h.Status >= 200) {
		if on, err := s.upgradeResponse(h); on || err != nil {
			return err
		}
	}
	if h.Status == 101 {
		return &protocol.Error{Status: 502, Reason: "unexpected 101 Switching Protocols"}
	}
	if h.Status < 200 {
		s.interim = true
		s.dec.DecodeInterim(h)
		return nil
	}
	if h.Close {
		s.reusable = false
	}
	s.respHead = true
	end := s.headReq || h.Status == 204 || h.Status == 304 || (!h.Chunked && h.ContentLength == 0)
	s.respEnded = end
	s.dec.DecodeHead(h, end)
	return nil
}

// errStreamGone stops the parser when the stream it was feeding was reset
// from inside a callback (for example the proxy dropped a response to
// retry it elsewhere); the connection is closed by that reset.
var errStreamGone = errors.New("http1: stream reset during response")

// current is the stream the parser is feeding, or nil if it went away.
func (cc *ClientConn) current() *clientStream {
	if s := cc.owner.Load(); s != nil && !s.done() {
		return s
	}
	return nil
}

func (cc *ClientConn) OnBody(p []byte) error {
	s := cc.current()
	if s == nil {
		return errStreamGone
	}
	if s.respEnded {
		return nil
	}
	last := cc.p.LastBody()
	s.respEnded = last
	s.dec.DecodeData(p, last)
	return nil
}

func (cc *ClientConn) OnTrailers(t *protocol.Headers) error {
	s := cc.current()
	if s == nil {
		return errStreamGone
	}
	if !s.respEnded {
		s.respEnded = true
		s.dec.DecodeTrailers(t)
	}
	return nil
}

func (cc *ClientConn) OnComplete() error {
	s := cc.current()
	if s == nil {
		return errStreamGone
	}
	if s.interim || s.tun.is(tunOn) {
		return nil
	}
	if !s.respEnded {
		s.respEnded = true
		s.dec.DecodeData(nil, true)
	}
	s.respDone = true
	return nil
}

// clientStream is one request on a ClientConn: the stream.RequestEncoder.
type clientStream struct {
	cc  *ClientConn
	dec stream.ResponseDecoder

	headReq   bool
	reqDone   bool
	interim   bool
	respHead  bool
	respEnded bool // end delivered to the decoder
	respDone  bool // parser finished the message
	failed    bool
	reset     bool
	finished  bool
	reusable  bool
	gotBytes  bool
	refused   bool // the head was refused: the next Flush reports errRefusedHead
	tun       tunnelState
	encoder
}

var _ stream.RequestEncoder = (*clientStream)(nil)

func (s *clientStream) done() bool { return s.finished || s.failed || s.reset }

// Flush writes the queued request bytes (stream.Flusher), or reports a
// refused head.
func (s *clientStream) Flush() {
	if s.refused {
		s.refused = false
		s.dec.OnReset(errRefusedHead)
		return
	}
	if s.done() {
		s.out.drop()
		s.out.queued = false
		return
	}
	if s.flush() {
		s.dec.OnAboveWriteHighWatermark()
	}
}

func (s *clientStream) EncodeHead(h *stream.Head, end bool) {
	if s.done() {
		return
	}
	if err := h1.CheckRequestHead(h); err != nil {
		s.refuse(err)
		return
	}
	if typ := stream.UpgradeType(h); typ != nil {
		s.encodeUpgrade(h, typ)
		return
	}
	s.reusable = true
	s.headReq = string(h.Method) == "HEAD"
	s.cc.p.NoBody = s.headReq
	fr := h1.Framing{ContentLength: -1}
	switch {
	case h.Chunked && !end:
		fr.Chunked, s.chunked = true, true
	case h.ContentLength >= 0:
		fr.ContentLength = h.ContentLength
	case !end:
		fr.Chunked, s.chunked = true, true // length unknown (e.g. from HTTP/2)
	}
	s.queue(h1.EncodeRequestHead(h, nil, fr))
	if end {
		s.reqDone = true
	}
}

func (s *clientStream) EncodeData(p []byte, end bool) {
	if s.done() || s.reqDone {
		return
	}
	if s.tun.is(tunCand) {
		if s.tun.is(tunOn) {
			s.tunnelWrite(p, end)
		}
		return // nothing goes before the upgrade: it could parse as a request
	}
	s.body(p)
	if end {
		s.end(nil)
		s.reqDone = true
		s.maybeFinish()
	}
}

func (s *clientStream) EncodeTrailers(t *protocol.Headers) {
	if s.done() || s.reqDone {
		return
	}
	s.end(t)
	s.reqDone = true
	s.maybeFinish()
}

// Reset abandons the request; the connection is closed, never reused.
func (s *clientStream) Reset() {
	if s.done() {
		return
	}
	s.reset = true
	s.out.drop()
	s.detach()
	s.cc.tc.Close()
}

func (s *clientStream) ReadDisable(d bool) {
	if !s.done() {
		s.readDisable(d)
	}
}

// errRefusedHead is the reset reason of a refused request head; the
// particular rule broken is logged at debug (keeping it would grow every
// stream for a rare event).
var errRefusedHead = fmt.Errorf("http1: %w: %w", stream.ErrUnencodable,
	&protocol.Error{Status: 400, Reason: "request head not encodable as HTTP/1.1"})

// refuse fails the stream for a head the encoder will not write (nothing
// reached the wire). The reset is reported from the deferred flush, not from
// inside EncodeHead, so the proxy never sees its stream reset re-entrantly.
func (s *clientStream) refuse(err error) {
	slog.Debug("http1: refused to encode an upstream request head", "err", err)
	s.failed, s.refused = true, true
	s.out.drop()
	s.detach()
	s.cc.tc.Close()
	s.schedule()
}

// fail reports an upstream failure to the decoder once.
func (s *clientStream) fail(err error) {
	if s.done() {
		return
	}
	s.failed = true
	s.out.drop()
	s.detach()
	s.cc.tc.Close()
	s.dec.OnReset(err)
}

func (s *clientStream) detach() {
	s.undoReadDisable()
	s.cc.owner.CompareAndSwap(s, nil)
}

// maybeFinish returns the connection once both directions are complete.
func (s *clientStream) maybeFinish() {
	if s.done() || !s.respDone {
		return
	}
	if !s.reqDone {
		// The response ended before the request: the connection is
		// mid-message and cannot be reused.
		s.finished = true
		s.out.drop()
		s.detach()
		s.cc.tc.Close()
		return
	}
	s.Flush()
	s.finished = true
	s.detach()
	s.cc.requests++
	max := s.cc.pool.set.MaxRequestsPerConn
	if !s.reusable || (max > 0 && s.cc.requests >= max) {
		s.cc.tc.Close()
		return
	}
	s.cc.pool.release(s.cc)
}
