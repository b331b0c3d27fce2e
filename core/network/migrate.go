package network

import (
	"errors"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// Connection migration (hot upgrade): after a new process took over the
// listening sockets, the old one hands it each downstream connection that
// is between requests — the socket and the bytes read but not handled —
// instead of closing it. A connection in the middle of a request moves at
// its end; one that cannot move (listener filters such as TLS, a protocol
// whose state cannot be exported, a tunnel) drains as on a stop.

// Migrator is implemented by terminal read filters that can hand their
// connection over at a request boundary.
type Migrator interface {
	// Migrate is called with the session lock held. false: the connection
	// cannot move and is drained instead. true: the filter starts nothing
	// new and calls c.HandOver at the next request boundary (at once when
	// idle); until then it serves as before.
	Migrate(c *Conn) bool
	// Unhandled gives up the bytes read but not handled, at hand-over
	// (lock held); the filter parses nothing after that.
	Unhandled(c *Conn) []byte
}

// Handoff receives a connection handed over: its listener's name, the
// socket's descriptor and the bytes read but not handled, in order (both
// now the receiver's). It runs on a transport goroutine and must not block.
// fd is -1 (and data nil) when a connection Migrate counted as moving
// closed instead: each moving connection reports exactly once.
type Handoff func(listener string, fd int, data []byte)

// migration is a connection's hand-over state; session lock held.
type migration struct {
	to        Handoff
	m         Migrator
	detaching bool // Detach accepted: nothing more is written or parsed
	delivered bool // to was called with the socket
	retry     bool // Detach found writes queued: again at OnDrained
	carry     buffer.Input
}

func (mg *migration) refuseWrite(bufs []*buffer.Buf) (int, error) {
	for _, b := range bufs {
		b.Release()
	}
	return 0, transport.ErrClosed
}

// drained retries a hand-over deferred by queued writes; true when the
// connection is being handed over (its filters hear nothing more).
func (mg *migration) drained(c *Conn) bool {
	if mg.retry {
		c.HandOver()
	}
	return mg.detaching
}

// Migrate stops accepting, hands every connection that can move to to
// (now or at its next request boundary) and drains the others. It returns
// how many will move and how many drain. Connections of listeners with
// listener filters (TLS) all drain: their record state stays here.
func (l *Listener) Migrate(to Handoff) (moving, draining int) {
	for _, c := range l.stop() {
		if len(l.filters) == 0 && c.migrate(to) {
			moving++
			continue
		}
		c.drain()
		draining++
	}
	return moving, draining
}

func (c *Conn) migrate(to Handoff) bool {
	c.mu.Lock()
	defer c.Unlock()
	if c.closed {
		return false
	}
	if _, ok := c.tc.(transport.Detacher); !ok {
		return false
	}
	for _, f := range c.read {
		m, ok := f.(Migrator)
		if !ok {
			continue
		}
		c.mig = &migration{to: to, m: m}
		if m.Migrate(c) {
			return true
		}
		c.mig = nil
		return false
	}
	return false
}

// HandOver detaches the connection's socket for the process taking over;
// the migrating filter calls it, session lock held, at a request boundary.
func (c *Conn) HandOver() {
	mg := c.mig
	if mg == nil || mg.detaching || c.closed {
		return
	}
	mg.retry = false
	mg.detaching = true
	err := c.tc.(transport.Detacher).Detach(c.handedOver)
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrBusy):
		mg.detaching, mg.retry = false, true
	default:
		mg.detaching = false
		c.tc.Close()
	}
}

// handedOver runs on the transport's goroutine before OnClose.
func (c *Conn) handedOver(fd int, err error) {
	if err != nil {
		return // the connection closes
	}
	c.mu.Lock()
	mg := c.mig
	data := mg.m.Unhandled(c)
	if mg.carry.Len() > 0 {
		data = append(data, mg.carry.Bytes()...)
		mg.carry.Reset()
	}
	mg.delivered = true
	c.Unlock()
	mg.to(c.l.Name, fd, data)
}

// gaveUp, from OnClose without the lock, reports a moving connection that
// closed before it was handed over (mg nil: none).
func (mg *migration) gaveUp(c *Conn) {
	if mg != nil && c.l != nil {
		mg.to(c.l.Name, -1, nil)
	}
}

// Adopt serves a connection handed over by another process as if it had
// been accepted here. Listeners with listener filters refuse it (closed).
func (l *Listener) Adopt(tc transport.Conn) bool {
	if len(l.filters) > 0 {
		tc.Close()
		return false
	}
	l.accept(tc)
	return true
}
