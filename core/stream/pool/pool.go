// Package pool is the upstream connection pool of every client codec. A
// codec supplies a Conn per dialled transport connection and how many
// streams one connection carries at once: 1 for HTTP/1 (a connection serves
// one request at a time and is reusable once its response ends cleanly),
// the peer's concurrent-stream limit for HTTP/2, N requests matched by ID
// for the RPC codecs. A request takes a free slot on an open connection;
// when every connection is full it waits while a new one is dialled.
//
// Lock order: a downstream session, then Pool.mu, then a Conn's own lock. A
// Conn's transport events take only its own lock and release it before
// taking any session; from under its lock a Conn may flag a freed slot in
// Base and call nothing else of the pool.
//
// Waiters are served without starting a goroutine. Where a connection's
// own event frees the slot (a response ended), the codec's event handler
// calls Base.Deliver once it holds no lock, and Deliver hands the slot to
// the oldest waiter under that waiter's session. Where a stream ends under
// a downstream session (a reset, a request's last byte), the slot is
// offered when that session unlocks (Base.KickLocked, Pool.ServeFrom); a
// waiter of another session that is busy then is handed to it
// (Session.Post) and served when its holder releases it.
package pool

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/transport"
)

// Conn is one upstream connection, implemented by a codec.
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
	// Protocol names the codec in errors ("http1", "http2", "bolt" …).
	Protocol       string
	ConnectTimeout time.Duration
	// MaxConnections bounds open connections to the host (0: unlimited).
	MaxConnections int
	// MaxPending bounds requests waiting for a slot (0: unlimited).
	MaxPending int
	// IdleTimeout closes a connection without streams for that long; one
	// found past it when a request looks for a slot is closed, not reused.
	IdleTimeout time.Duration
	// StreamsPerConn is what a connection being dialled is expected to
	// carry (1 for HTTP/1), so one dial serves that many waiters and a
	// failed one fails that many.
	StreamsPerConn int
	// ClusterConns and ClusterPending are cluster-wide circuit breakers.
	ClusterConns, ClusterPending *stream.Breaker
	// Wrap secures each new connection (TLS), when set.
	Wrap func(c transport.Conn, host string) transport.Conn
}

// Opener makes the codec's Conn for a new transport connection (not yet
// started).
type Opener func(tc transport.Conn, p *Pool) Conn

// Pool keeps the connections to one upstream address.
type Pool struct {
	tr   transport.Transport
	addr string
	set  *Settings
	open Opener

	mu         sync.Mutex
	conns      []Conn // the warmest (last released) first
	shaking    []Conn // secured connections whose handshake is running
	total      int
	connecting int
	waiters    []*waiter
	nwaiters   atomic.Int32 // len(waiters), readable under a Conn's lock
	draining   bool

	stats *stream.PoolStats
	own   stream.PoolStats
}

var _ stream.Pool = (*Pool)(nil)

// NewPool returns an empty pool for addr.
func NewPool(tr transport.Transport, addr string, set *Settings, open Opener) *Pool {
	p := &Pool{tr: tr, addr: addr, set: set, open: open}
	p.stats = &p.own
	return p
}

// UseStats makes the pool count into s (shared by the pools of one host);
// call it before the pool's first use.
func (p *Pool) UseStats(s *stream.PoolStats) { p.stats = s }

// Limited reports whether the pool bounds its host's connections or
// pending requests (then a host keeps one pool, not one per loop).
func (p *Pool) Limited() bool { return p.set.MaxConnections > 0 || p.set.MaxPending > 0 }

// Protocol is the codec the pool's connections speak.
func (p *Pool) Protocol() string { return p.set.Protocol }

// Settings are the pool's settings (read only).
func (p *Pool) Settings() *Settings { return p.set }

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
	w.failLocked(f, err)
	w.sess.Unlock()
}

// failLocked reports the failure unless the request went away; under the
// waiter's session.
func (w *waiter) failLocked(f stream.PoolFailure, err error) {
	if !w.cancelled {
		w.cb.OnPoolFailure(f, err)
	}
}

// failFrom fails the waiter from under session held without blocking on
// another: at once when it is held's own, else handed to its session.
func (w *waiter) failFrom(held stream.Session, f stream.PoolFailure, err error) {
	if w.sess == held {
		w.failLocked(f, err)
		return
	}
	w.sess.Post(&failure{w: w, f: f, err: err})
}

// failure is a waiter's failure posted to its session.
type failure struct {
	w   *waiter
	f   stream.PoolFailure
	err error
}

func (x *failure) Flush() { x.w.failLocked(x.f, x.err) }

// NewStream implements stream.Pool.
func (p *Pool) NewStream(dec stream.ResponseDecoder, sess stream.Session, cb stream.PoolCallbacks) stream.Cancellable {
	p.mu.Lock()
	if c := p.freeLocked(); c != nil {
		p.mu.Unlock()
		p.stats.Reuses.Add(1)
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
	// A stream that ended since the scan above, on a connection's event,
	// saw no waiter (Waiting) and so serves none: look again now that one
	// is visible.
	if c := p.freeLocked(); c != nil {
		p.removeWaiterLocked(w)
		p.mu.Unlock()
		p.stats.Reuses.Add(1)
		cb.OnPoolReady(c.Attach(dec, sess))
		return nil
	}
	if p.maybeDialLocked() {
		// Nothing to wait for on this host and no connection may be
		// opened: waiting could last forever, so refuse now.
		p.removeWaiterLocked(w)
		p.mu.Unlock()
		cb.OnPoolFailure(stream.CxOverflow, p.cxOverflow())
		return nil
	}
	p.mu.Unlock()
	return w
}

func (p *Pool) cxOverflow() error {
	return fmt.Errorf("%s: cluster connection limit reached, none open to %s", p.set.Protocol, p.addr)
}

// freeLocked reserves a slot on the warmest connection that has one; one
// found past the idle timeout is closed instead. A connection carrying one
// stream at a time moves to the back once reserved, so free ones stay in
// front and the search is short. Caller holds p.mu.
func (p *Pool) freeLocked() Conn {
	var now time.Time
	for i, c := range p.conns {
		if p.set.IdleTimeout > 0 {
			if now.IsZero() {
				now = time.Now()
			}
			if c.CloseIfIdle(now, p.set.IdleTimeout) {
				continue // its OnClose removes it
			}
		}
		if c.Reserve() {
			if p.set.StreamsPerConn <= 1 {
				copy(p.conns[i:], p.conns[i+1:])
				p.conns[len(p.conns)-1] = c
			}
			return c
		}
	}
	return nil
}

// maybeDialLocked opens a connection when the waiters cannot fit on the
// connections being dialled. It reports starved when the cluster's
// connection breaker refuses and the pool has no connection at all: the
// caller then fails its oldest waiter (none would ever serve it). Caller
// holds p.mu.
func (p *Pool) maybeDialLocked() (starved bool) {
	per := max(p.set.StreamsPerConn, 1)
	if len(p.waiters) <= p.connecting*per || p.draining || (p.set.MaxConnections > 0 && p.total >= p.set.MaxConnections) {
		return false
	}
	if !p.set.ClusterConns.TryAcquire() {
		return p.total == 0 // otherwise a connection another request releases serves them
	}
	p.total++
	p.connecting++
	p.stats.ConnectsTotal.Add(1)
	near := nearConn(p.waiters[len(p.waiters)-1].sess)
	if nd, ok := p.tr.(transport.NearDialer); ok && near != nil {
		nd.DialNear(near, "tcp", p.addr, p.set.ConnectTimeout, p.onConnect)
		return false
	}
	p.tr.Dial("tcp", p.addr, p.set.ConnectTimeout, p.onConnect)
	return false
}

// nearConn is the downstream transport connection behind a session, when
// it exposes one: a reactor transport dials the upstream on its loop.
func nearConn(s stream.Session) transport.Conn {
	if t, ok := s.(interface{ Transport() transport.Conn }); ok {
		return t.Transport()
	}
	return nil
}

// dialLocked runs maybeDialLocked where no session is held and returns the
// waiter to fail when the pool is starved (nil otherwise). Caller holds p.mu.
func (p *Pool) dialLocked() *waiter {
	if p.maybeDialLocked() {
		return p.popWaiterLocked()
	}
	return nil
}

func (p *Pool) removeWaiterLocked(w *waiter) {
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.nwaiters.Store(int32(len(p.waiters)))
			p.set.ClusterPending.Release()
			return
		}
	}
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

// popFailedLocked takes the waiters a failed connection would have
// carried. Caller holds p.mu.
func (p *Pool) popFailedLocked() []*waiter {
	var failed []*waiter
	for range max(p.set.StreamsPerConn, 1) {
		w := p.popWaiterLocked()
		if w == nil {
			break
		}
		failed = append(failed, w)
	}
	return failed
}

// connectFailure is a failed dial's or handshake's pool failure: a
// connect timeout when a timeout ended it, otherwise a connect failure.
func connectFailure(err error) stream.PoolFailure {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return stream.ConnectTimeout
	}
	return stream.ConnectFailure
}

func (p *Pool) onConnect(tc transport.Conn, err error) {
	if err != nil {
		p.stats.ConnectFailures.Add(1)
		p.set.ClusterConns.Release()
		p.mu.Lock()
		p.total--
		p.connecting--
		// The waiters this connection would have carried fail; the rest
		// wait for other dials.
		failed := p.popFailedLocked()
		p.mu.Unlock()
		f := connectFailure(err)
		for _, w := range failed {
			w.fail(f, err)
		}
		return
	}
	if p.set.Wrap != nil {
		tc = p.set.Wrap(tc, p.addr)
	}
	c := p.open(tc, p)
	p.stats.Active.Add(1)
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
	p.addLocked(c)
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
	p.ServeWaiters()
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
			starved := p.dialLocked()
			p.mu.Unlock()
			if starved != nil {
				starved.fail(stream.CxOverflow, p.cxOverflow())
			}
			return
		}
		p.addLocked(c)
		draining := p.draining
		p.mu.Unlock()
		if draining {
			c.Retire()
		}
		p.ServeWaiters()
		return
	}
	failed := p.popFailedLocked()
	p.mu.Unlock()
	p.stats.ConnectFailures.Add(1)
	f := connectFailure(err)
	err = fmt.Errorf("%s: TLS handshake with %s: %w", p.set.Protocol, p.addr, err)
	for _, w := range failed {
		w.fail(f, err)
	}
}

// addLocked puts a new connection first: it is the warmest. Caller holds
// p.mu.
func (p *Pool) addLocked(c Conn) {
	p.conns = append(p.conns, nil)
	copy(p.conns[1:], p.conns)
	p.conns[0] = c
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

// ServeWaiters gives free slots to waiting requests, each under its own
// session. Call it holding no lock: from a connection's event handler once
// it released its own lock (Base.Deliver does), or from a dial's callback.
func (p *Pool) ServeWaiters() {
	for {
		p.mu.Lock()
		if len(p.waiters) == 0 {
			p.mu.Unlock()
			return
		}
		c := p.freeLocked()
		if c == nil {
			starved := p.dialLocked()
			p.mu.Unlock()
			if starved != nil {
				starved.fail(stream.CxOverflow, p.cxOverflow())
				continue
			}
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

// Waiting reports whether requests wait for a slot. Safe under a Conn's
// lock.
func (p *Pool) Waiting() bool { return p.nwaiters.Load() > 0 }

// ServeFrom serves waiters from under session held (a deferred flush at
// the end of its event): a waiter of the same session is served at once;
// one of another session only if that session is free now (never blocking
// on it: two sessions are never waited for together). A waiter whose
// session is busy is handed to that session (Session.Post): its holder
// serves the waiters when it releases it, on its own goroutine. No
// goroutine is started either way.
func (p *Pool) ServeFrom(held stream.Session) {
	for {
		p.mu.Lock()
		if len(p.waiters) == 0 {
			p.mu.Unlock()
			return
		}
		w := p.waiters[0]
		other := w.sess != held
		if other && !w.sess.TryLock() {
			p.mu.Unlock()
			w.sess.Post(&kick{p: p, s: w.sess})
			return
		}
		c := p.freeLocked()
		if c == nil {
			starved := p.dialLocked()
			p.mu.Unlock()
			if other {
				w.sess.Unlock()
			}
			if starved != nil {
				starved.failFrom(held, stream.CxOverflow, p.cxOverflow())
			}
			return
		}
		p.popWaiterLocked()
		p.mu.Unlock()
		if w.cancelled {
			c.Unreserve()
		} else {
			w.cb.OnPoolReady(c.Attach(w.dec, w.sess))
		}
		if other {
			w.sess.Unlock()
		}
	}
}

// Released moves c, whose stream just ended, to the front of the
// connections, so the warmest connection serves the next request (the
// least likely to have been closed by the server meanwhile). Call it
// under the finished stream's session, not under c's lock.
func (p *Pool) Released(c Conn) {
	p.mu.Lock()
	for i, x := range p.conns {
		if x == c {
			copy(p.conns[1:i+1], p.conns[:i])
			p.conns[0] = c
			break
		}
	}
	p.mu.Unlock()
}

// Closed removes a connection whose transport closed. Call it from the
// connection's close event, holding no lock.
func (p *Pool) Closed(c Conn) {
	p.set.ClusterConns.Release()
	p.mu.Lock()
	p.total--
	if !removeConn(&p.conns, c) {
		removeConn(&p.shaking, c)
	}
	starved := p.dialLocked()
	p.mu.Unlock()
	p.stats.Active.Add(-1)
	if starved != nil {
		starved.fail(stream.CxOverflow, p.cxOverflow())
	}
}

// Drain retires every connection: no new streams, each closes once its
// streams finish (an idle one at once).
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
func (p *Pool) Counters() *stream.PoolStats { return p.stats }

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
