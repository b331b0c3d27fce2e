package http1

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/stream/pool"
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

// Pool keeps keep-alive HTTP/1 connections to one upstream address: the
// shared pool machinery with one stream per connection. Idle connections
// stay registered with the transport, so one the server closes leaves the
// pool at once instead of failing the next request.
type Pool = pool.Pool

// NewPool returns an empty pool for addr.
func NewPool(tr transport.Transport, addr string, set *ClientSettings) *Pool {
	ps := &pool.Settings{
		Protocol: "http1", ConnectTimeout: set.ConnectTimeout, MaxConnections: set.MaxConnections,
		MaxPending: set.MaxPending, IdleTimeout: set.IdleTimeout, StreamsPerConn: 1,
		ClusterConns: set.ClusterConns, ClusterPending: set.ClusterPending, Wrap: set.Wrap,
	}
	return pool.NewPool(tr, addr, ps, func(tc transport.Conn, p *pool.Pool) pool.Conn {
		cc := &ClientConn{set: set, tc: tc}
		cc.Pool, cc.Closer, cc.IdleSince = p, tc, time.Now()
		cc.p = h1.NewResponseParser(set.Limits, cc)
		return cc
	})
}

// ClientConn is one upstream HTTP/1 connection; it serves one stream at a
// time (its pool slot). Its transport events run under the session of the
// stream it serves; Base.Mu guards only the slot bookkeeping.
type ClientConn struct {
	pool.Base
	set   *ClientSettings
	tc    transport.Conn
	p     *h1.Parser
	in    inbuf
	owner atomic.Pointer[clientStream]
	// requests is how many responses ended on the connection (owner's
	// session).
	requests int
	// closeOnDrain: a finished tunnel closes once its writes are out.
	closeOnDrain atomic.Bool
}

var (
	_ transport.Handler = (*ClientConn)(nil)
	_ h1.Callbacks      = (*ClientConn)(nil)
	_ pool.Conn         = (*ClientConn)(nil)
)

// Start begins reading the connection (pool.Conn).
func (cc *ClientConn) Start() {
	cc.tc.Start(cc)
	cc.Mu.Lock()
	cc.Started = true
	cc.Mu.Unlock()
}

// Reserve takes the connection's one slot when it is free (pool.Conn).
func (cc *ClientConn) Reserve() bool {
	cc.Mu.Lock()
	defer cc.Mu.Unlock()
	return cc.TryReserveLocked(cc.Active+cc.Reserved == 0)
}

// Attach gives the connection to a request (pool.Conn); reused says it
// carried one before.
func (cc *ClientConn) Attach(dec stream.ResponseDecoder, sess stream.Session) (stream.RequestEncoder, bool) {
	cc.Mu.Lock()
	reused := cc.AttachLocked()
	cc.Mu.Unlock()
	s := &clientStream{cc: cc, dec: dec}
	s.encoder = encoder{sess: sess, self: s, conn: cc.tc, hw: cc.set.HighWatermark}
	cc.p.Reset()
	cc.owner.Store(s)
	return s, reused
}

// Retire closes the connection now if idle, else once its request ends
// (pool.Conn).
func (cc *ClientConn) Retire() {
	cc.Mu.Lock()
	cc.Retiring = true
	cc.MaybeCloseLocked(false)
	cc.Mu.Unlock()
}

// release gives the slot back after a clean response, under the finished
// stream's session; a waiter takes it from OnData once that session is
// unlocked (Deliver), on this goroutine.
func (cc *ClientConn) release() {
	var released bool
	cc.Mu.Lock()
	retiring := cc.Retiring
	cc.ReleaseLocked(&released, false)
	cc.Mu.Unlock()
	if !retiring {
		cc.Pool.Released(cc)
	}
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
	cc.Deliver() // a freed connection goes to a waiter, on this goroutine
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
	cc.Mu.Lock()
	cc.Closed = true
	cc.Mu.Unlock()
	cc.Pool.Closed(cc)
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
	max := s.cc.set.MaxRequestsPerConn
	if !s.reusable || (max > 0 && s.cc.requests >= max) {
		s.cc.tc.Close()
		return
	}
	s.cc.release()
}
