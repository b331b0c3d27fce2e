// Package mux is the upstream connection pool of protocols that carry many
// requests at once on one connection: HTTP/2 streams, RPC requests matched by
// request ID. A request takes a free slot on an open connection; when every
// connection is full it waits while a new one is dialled.
//
// Lock order: a downstream session, then Pool.mu, then a Conn's own lock. A
// Conn's transport events take only its own lock and release it before
// taking any session; from under its lock a Conn may call SlotFreed and
// nothing else of the pool.
package mux

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/transport"
)

// Conn is one multiplexed upstream connection, implemented by a codec.
type Conn interface {
	// Start begins serving the transport connection; called once, after
	// the pool registered the Conn.
	Start()
	// Reserve takes a stream slot if the connection can carry another
	// stream now (called with the pool's lock held); never before Start
	// has run.
	Reserve() bool
	// Unreserve gives back a slot whose request went away.
	Unreserve()
	// Attach turns a reserved slot into a stream for dec, under sess.
	// reused says whether the connection carried a stream before.
	Attach(dec stream.ResponseDecoder, sess stream.Session) (enc stream.RequestEncoder, reused bool)
	// Retire stops new streams; the connection closes once its streams end.
	Retire()
	// Idle reports whether no stream is open or reserved.
	Idle() bool
	// CloseIfIdle closes the connection if it has had no stream for at
	// least d at now, and reports whether it did.
	CloseIfIdle(now time.Time, d time.Duration) bool
}

// Settings configure one pool.
type Settings struct {
	// Protocol names the codec in errors ("http2", "bolt" …).
	Protocol       string
	ConnectTimeout time.Duration
	// MaxConnections bounds open connections to the host (0: unlimited).
	MaxConnections int
	// MaxPending bounds requests waiting for a slot (0: unlimited).
	MaxPending int
	// IdleTimeout closes a connection without streams for that long.
	IdleTimeout time.Duration
	// StreamsPerConn is what a connection being dialled is expected to
	// carry, so one dial serves that many waiters.
	StreamsPerConn int
	// ClusterConns and ClusterPending are cluster-wide circuit breakers.
	ClusterConns, ClusterPending *stream.Breaker
	// Wrap secures each new connection (TLS), when set.
	Wrap func(c transport.Conn, host string) transport.Conn
}

// Opener makes the codec's Conn for a new transport connection (not yet
// started).
type Opener func(tc transport.Conn, p *Pool) Conn

// Pool keeps the multiplexed connections to one upstream address.
type Pool struct {
	tr   transport.Transport
	addr string
	set  *Settings
	open Opener

	mu         sync.Mutex
	conns      []Conn
	shaking    []Conn // secured connections whose handshake is running
	total      int
	connecting int
	waiters    []*waiter
	nwaiters   atomic.Int32 // len(waiters), readable under a Conn's lock
	draining   bool

	Stats stream.PoolStats
}

var _ stream.Pool = (*Pool)(nil)

// NewPool returns an empty pool for addr.
func NewPool(tr transport.Transport, addr string, set *Settings, open Opener) *Pool {
	return &Pool{tr: tr, addr: addr, set: set, open: open}
}

type waiter struct {
	p         *Pool
	dec       stream.ResponseDecoder
	sess      stream.Session
	cb        stream.PoolCallbacks
	cancelled bool // guarded by sess
}

// Cancel withdraws a pending request; call it under the session.
func (w *waiter) Cancel() {
	w.cancelled = true
	w.p.mu.Lock()
	for i, x := range w.p.waiters {
		if x == w {
			w.p.waiters = append(w.p.waiters[:i], w.p.waiters[i+1:]...)
			w.p.nwaiters.Store(int32(len(w.p.waiters)))
			w.p.set.ClusterPending.Release()
			break
		}
	}
	w.p.mu.Unlock()
}

func (w *waiter) fail(f stream.PoolFailure, err error) {
	w.sess.Lock()
	if !w.cancelled {
		w.cb.OnPoolFailure(f, err)
	}
	w.sess.Unlock()
}

// NewStream implements stream.Pool.
func (p *Pool) NewStream(dec stream.ResponseDecoder, sess stream.Session, cb stream.PoolCallbacks) stream.Cancellable {
	p.mu.Lock()
	if c := p.freeLocked(); c != nil {
		p.mu.Unlock()
		p.Stats.Reuses.Add(1)
		cb.OnPoolReady(c.Attach(dec, sess))
		return nil
	}
	if p.set.MaxPending > 0 && len(p.waiters) >= p.set.MaxPending || !p.set.ClusterPending.TryAcquire() {
		p.mu.Unlock()
		cb.OnPoolFailure(stream.Overflow, fmt.Errorf("%s: too many requests wait for %s", p.set.Protocol, p.addr))
		return nil
	}
	w := &waiter{p: p, dec: dec, sess: sess, cb: cb}
	p.waiters = append(p.waiters, w)
	p.nwaiters.Store(int32(len(p.waiters)))
	p.maybeDialLocked()
	p.mu.Unlock()
	return w
}

func (p *Pool) freeLocked() Conn {
	for _, c := range p.conns {
		if c.Reserve() {
			return c
		}
	}
	return nil
}

// maybeDialLocked opens a connection when the waiters cannot fit on the
// connections being dialled. Caller holds p.mu.
func (p *Pool) maybeDialLocked() {
	per := max(p.set.StreamsPerConn, 1)
	if len(p.waiters) <= p.connecting*per || p.draining || (p.set.MaxConnections > 0 && p.total >= p.set.MaxConnections) {
		return
	}
	if !p.set.ClusterConns.TryAcquire() {
		if p.total == 0 {
			if w := p.popWaiterLocked(); w != nil {
				go w.fail(stream.CxOverflow, fmt.Errorf("%s: cluster connection limit reached, none open to %s", p.set.Protocol, p.addr))
			}
		}
		return
	}
	p.total++
	p.connecting++
	p.Stats.ConnectsTotal.Add(1)
	p.tr.Dial("tcp", p.addr, p.set.ConnectTimeout, p.onConnect)
}

func (p *Pool) popWaiterLocked() *waiter {
	if len(p.waiters) == 0 {
		return nil
	}
	p.set.ClusterPending.Release()
	w := p.waiters[0]
	p.waiters[0] = nil
	p.waiters = p.waiters[1:]
	p.nwaiters.Store(int32(len(p.waiters)))
	return w
}

func (p *Pool) onConnect(tc transport.Conn, err error) {
	if err != nil {
		p.Stats.ConnectFailures.Add(1)
		p.set.ClusterConns.Release()
		p.mu.Lock()
		p.total--
		p.connecting--
		// The waiters this connection would have carried fail; the rest
		// wait for other dials.
		var failed []*waiter
		for range max(p.set.StreamsPerConn, 1) {
			w := p.popWaiterLocked()
			if w == nil {
				break
			}
			failed = append(failed, w)
		}
		p.mu.Unlock()
		f := stream.ConnectFailure
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			f = stream.ConnectTimeout
		}
		for _, w := range failed {
			w.fail(f, err)
		}
		return
	}
	if p.set.Wrap != nil {
		tc = p.set.Wrap(tc, p.addr)
	}
	c := p.open(tc, p)
	p.Stats.Active.Add(1)
	if hs, ok := tc.(stream.Handshaker); ok {
		// Kept out of conns (no stream is reserved on it) and counted as
		// connecting until the handshake ends.
		p.mu.Lock()
		p.shaking = append(p.shaking, c)
		p.mu.Unlock()
		hs.OnHandshake(func(err error) { p.handshaken(c, err) })
		c.Start()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	c.Start()
	// Counted as connecting until started (it takes no stream before),
	// so requests arriving meanwhile wait for it instead of dialling.
	p.mu.Lock()
	p.connecting--
	draining := p.draining
	p.mu.Unlock()
	if draining {
		c.Retire()
	}
	p.serveWaiters()
}

// handshaken ends the connecting phase of a secured connection: ready, it
// joins conns and serves waiters; failed, the waiters it would have
// carried get a connect failure (its OnClose removes it).
func (p *Pool) handshaken(c Conn, err error) {
	p.mu.Lock()
	p.connecting--
	live := removeConn(&p.shaking, c)
	if err == nil {
		if !live { // closed meanwhile
			p.maybeDialLocked()
			p.mu.Unlock()
			return
		}
		p.conns = append(p.conns, c)
		draining := p.draining
		p.mu.Unlock()
		if draining {
			c.Retire()
		}
		p.serveWaiters()
		return
	}
	var failed []*waiter
	for range max(p.set.StreamsPerConn, 1) {
		w := p.popWaiterLocked()
		if w == nil {
			break
		}
		failed = append(failed, w)
	}
	p.mu.Unlock()
	p.Stats.ConnectFailures.Add(1)
	f := stream.ConnectFailure
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		f = stream.ConnectTimeout
	}
	err = fmt.Errorf("%s: TLS handshake with %s: %w", p.set.Protocol, p.addr, err)
	for _, w := range failed {
		w.fail(f, err)
	}
}

func removeConn(list *[]Conn, c Conn) bool {
	for i, x := range *list {
		if x == c {
			*list = append((*list)[:i], (*list)[i+1:]...)
			return true
		}
	}
	return false
}

// serveWaiters gives free slots to waiting requests, each under its own
// session, holding no other lock meanwhile.
func (p *Pool) serveWaiters() {
	for {
		p.mu.Lock()
		if len(p.waiters) == 0 {
			p.mu.Unlock()
			return
		}
		c := p.freeLocked()
		if c == nil {
			p.maybeDialLocked()
			p.mu.Unlock()
			return
		}
		w := p.popWaiterLocked()
		p.mu.Unlock()
		w.sess.Lock()
		if w.cancelled {
			w.sess.Unlock()
			c.Unreserve()
			continue
		}
		w.cb.OnPoolReady(c.Attach(w.dec, w.sess))
		w.sess.Unlock()
	}
}

// SlotFreed tells the pool a stream ended on a connection: a waiter may
// take the slot. Safe to call under a Conn's lock.
func (p *Pool) SlotFreed() {
	if p.nwaiters.Load() > 0 {
		go p.serveWaiters()
	}
}

// Closed removes a connection whose transport closed.
func (p *Pool) Closed(c Conn) {
	p.set.ClusterConns.Release()
	p.mu.Lock()
	p.total--
	if !removeConn(&p.conns, c) {
		removeConn(&p.shaking, c)
	}
	p.maybeDialLocked()
	p.mu.Unlock()
	p.Stats.Active.Add(-1)
}

// Drain retires every connection: no new streams, each closes once its
// streams finish.
func (p *Pool) Drain() {
	p.mu.Lock()
	p.draining = true
	conns := append([]Conn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		c.Retire()
	}
}

// Idle is the number of connections without streams.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.conns {
		if c.Idle() {
			n++
		}
	}
	return n
}

// Counters are the pool's counters.
func (p *Pool) Counters() *stream.PoolStats { return &p.Stats }

// SweepIdle closes connections without streams for longer than the idle
// timeout.
func (p *Pool) SweepIdle(now time.Time) (closed int) {
	if p.set.IdleTimeout <= 0 {
		return 0
	}
	p.mu.Lock()
	conns := append([]Conn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		if c.CloseIfIdle(now, p.set.IdleTimeout) {
			closed++
		}
	}
	return closed
}
