package pool

import (
	"sync"
	"time"

	"github.com/proxylab/proxylab/core/stream"
)

// Base is the bookkeeping every Conn shares, embedded by the codec's Conn:
// its lock, the stream slots, the idle time, and the queue of streams whose
// events wait to be delivered under their own sessions. It provides
// Unreserve, Idle and CloseIfIdle of the Conn interface.
//
// Fields are guarded by Mu; methods say whether they take it.
type Base struct {
	Mu     sync.Mutex
	Pool   *Pool
	Closer interface{ Close() error } // the transport connection

	Reserved, Active, Used int
	Retiring, Closed       bool
	Started                bool // Start ran: streams may be attached
	IdleSince              time.Time
	ready                  []Runner
	freed                  bool // a slot freed while requests waited: Deliver serves them
}

// Runner is a stream with events to deliver; Run takes its session.
type Runner interface{ Run() }

// TryReserveLocked takes a slot when the connection is started, open, not
// retiring and room says the codec has room. Mu held.
func (b *Base) TryReserveLocked(room bool) bool {
	if !b.Started || b.Closed || b.Retiring || !room {
		return false
	}
	b.Reserved++
	return true
}

// Unreserve gives back a slot whose request went away (Conn).
func (b *Base) Unreserve() {
	b.Mu.Lock()
	b.Reserved--
	b.Mu.Unlock()
}

// AttachLocked turns a reserved slot into an active stream and reports
// whether the connection carried one before. Mu held.
func (b *Base) AttachLocked() (reused bool) {
	b.Reserved--
	b.Active++
	reused = b.Used > 0
	b.Used++
	return reused
}

// Idle reports whether no stream is open or reserved (Conn).
func (b *Base) Idle() bool {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	return b.Active+b.Reserved == 0
}

// CloseIfIdle closes a connection idle for longer than d (Conn).
func (b *Base) CloseIfIdle(now time.Time, d time.Duration) bool {
	b.Mu.Lock()
	stale := b.Active+b.Reserved == 0 && now.Sub(b.IdleSince) > d && !b.Closed
	if stale {
		b.Retiring = true
	}
	b.Mu.Unlock()
	if stale {
		b.Closer.Close()
	}
	return stale
}

// MaybeCloseLocked closes a connection that is going away (retiring, or
// draining by the peer's say) once its streams are done. Mu held.
func (b *Base) MaybeCloseLocked(draining bool) {
	if (b.Retiring || draining) && b.Active+b.Reserved == 0 && !b.Closed {
		b.Closed = true
		go b.Closer.Close()
	}
}

// ReleaseLocked frees a stream's slot once (released is the stream's own
// flag) and offers it to waiters unless the connection is going away.
// Mu held.
func (b *Base) ReleaseLocked(released *bool, draining bool) {
	if *released {
		return
	}
	*released = true
	b.Active--
	if b.Active+b.Reserved == 0 {
		b.IdleSince = time.Now()
	}
	if !b.Retiring && !draining && b.Pool.Waiting() {
		b.freed = true
	}
	b.MaybeCloseLocked(draining)
}

// ScheduleLocked queues r for delivery once (queued is r's own flag).
// Mu held.
func (b *Base) ScheduleLocked(r Runner, queued *bool) {
	if !*queued {
		*queued = true
		b.ready = append(b.ready, r)
	}
}

// Deliver runs the queued streams' events, each under its own session,
// then gives a slot freed meanwhile to the pool's waiters (on this
// goroutine: no hand-off). Called with no lock held, from the connection's
// event goroutine.
func (b *Base) Deliver() {
	for {
		b.Mu.Lock()
		if len(b.ready) == 0 {
			freed := b.freed
			b.freed = false
			b.Mu.Unlock()
			if freed {
				b.Pool.ServeWaiters()
			}
			return
		}
		r := b.ready[0]
		b.ready[0] = nil
		b.ready = b.ready[1:]
		b.Mu.Unlock()
		r.Run()
	}
}

// KickLocked is Deliver's counterpart off the event path: a stream ended
// under its downstream session s (a reset, the request's last byte) and
// freed a slot while requests waited. s may not block on another session,
// so the waiters are served when s unlocks (Pool.ServeFrom). Mu held, and
// s held.
func (b *Base) KickLocked(s stream.Session) {
	if b.freed {
		b.freed = false
		s.DeferFlush(&kick{p: b.Pool, s: s})
	}
}

// kick serves a pool's waiters at the end of a session's event, or when a
// busy session a waiter belongs to is released (Session.Post).
type kick struct {
	p *Pool
	s stream.Session
}

func (k *kick) Flush() { k.p.ServeFrom(k.s) }
