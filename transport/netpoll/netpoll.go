// Package netpoll is the baseline transport: a goroutine per connection on Go's
// runtime poller. It drives the transport.Handler callbacks from that goroutine
// and does its own non-blocking vectored writes through syscall.RawConn, so a
// write never parks the caller (which is usually the peer connection's reader).
//
// An idle connection holds its read goroutine but no read buffer: the buffer is
// taken from the pool only once the socket is readable.
package netpoll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/internal/writeq"
)

// Name is the registered name.
const Name = "netpoll"

// Transport is the netpoll transport.
type Transport struct {
	opts transport.Options

	accepts, dials, dialFails atomic.Uint64
	reads, eagain, writes     stats.Counter // sharded by connection
	ids                       atomic.Uint64
}

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.StatsReporter = (*Transport)(nil)
)

// Stats reports the transport's counters (transport.StatsReporter).
func (t *Transport) Stats() transport.Stats {
	return transport.Stats{Accepts: t.accepts.Load(), Dials: t.dials.Load(), DialFailures: t.dialFails.Load(),
		Reads: t.reads.Value(), EAGAINReads: t.eagain.Value(), Writes: t.writes.Value()}
}

// New builds a netpoll transport.
func New(opts transport.Options) (transport.Transport, error) {
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = 16 << 10
	}
	return &Transport{opts: opts}, nil
}

func (t *Transport) Name() string { return Name }
func (t *Transport) Close() error { return nil }

// Listen binds address.
func (t *Transport) Listen(network, address string) (transport.Listener, error) {
	if fd, ok := transport.TakeInherited(t.opts, network, address); ok {
		return t.adopt(fd, address)
	}
	lc := net.ListenConfig{}
	if t.opts.ReusePort {
		lc.Control = reusePort
	}
	l, err := lc.Listen(context.Background(), network, address)
	if err != nil {
		return nil, fmt.Errorf("netpoll: listen %s: %w", address, err)
	}
	return &listener{l: l.(*net.TCPListener), t: t, done: make(chan struct{})}, nil
}

// Dial connects in a new goroutine and reports through done.
func (t *Transport) Dial(network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	t.dials.Add(1)
	go func() {
		d := net.Dialer{Timeout: timeout}
		c, err := d.Dial(network, address)
		if err != nil {
			t.dialFails.Add(1)
			done(nil, fmt.Errorf("netpoll: dial %s: %w", address, err))
			return
		}
		nc, err := t.newConn(c.(*net.TCPConn))
		if err != nil {
			c.Close()
			done(nil, err)
			return
		}
		done(nc, nil)
	}()
}

type listener struct {
	l       *net.TCPListener
	t       *Transport
	closed  atomic.Bool
	started atomic.Bool
	done    chan struct{} // closed when the accept goroutine returned
}

func (l *listener) Addr() net.Addr { return l.l.Addr() }

// Close stops accepting; it returns once the accept goroutine ended, so
// no connection is handed to accept after it (hot upgrade: one accepted
// meanwhile is served, not dropped). Not from inside accept.
func (l *listener) Close() error {
	l.closed.Store(true)
	err := l.l.Close()
	if l.started.Load() {
		<-l.done
	}
	return err
}

func (l *listener) Start(accept func(transport.Conn)) {
	l.started.Store(true)
	go func() {
		defer close(l.done)
		var backoff time.Duration
		for {
			c, err := l.l.AcceptTCP()
			if err != nil {
				if l.closed.Load() || errors.Is(err, net.ErrClosed) {
					return
				}
				// EMFILE and friends: back off instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			backoff = 0
			l.t.accepts.Add(1)
			nc, err := l.t.newConn(c)
			if err != nil {
				c.Close()
				continue
			}
			accept(nc)
		}
	}()
}

// errDetached ends the read loop of a connection handed over (Detach).
var errDetached = errors.New("netpoll: detached")

// iovs lends iovec arrays to writes, so a connection does not carry one.
var iovs = sync.Pool{New: func() any { return new([writeq.MaxIov]unix.Iovec) }}

type conn struct {
	t        *Transport
	id       uint64 // shard key for the transport's counters
	tc       *net.TCPConn
	rc       syscall.RawConn
	h        transport.Handler
	readSize int

	// Read side: touched only by the read goroutine.
	rbuf   *buffer.Buf
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	rdMu    sync.Mutex
	rdCount int
	rdWake  chan struct{}

	// Write side, guarded by wmu. While flushing is true the flusher goroutine
	// owns the socket's write direction and iov; Write only appends.
	wmu        sync.Mutex
	q          writeq.Queue
	flushing   bool
	shutAfter  bool
	werr       error
	iov        []unix.Iovec // borrowed from iovs while a write is under way
	wn         int
	wErrno     error
	tryWriteFn func(fd uintptr) bool
	waitFn     func(fd uintptr) bool

	closed  atomic.Bool
	closeCh chan struct{}

	// Hot upgrade (adopt_linux.go): bytes to deliver first, and the
	// hand-over a Detach asked for.
	prefix   *buffer.Buf
	detachFn atomic.Pointer[func(int, error)]
}

var (
	_ transport.Conn          = (*conn)(nil)
	_ transport.SyscallConner = (*conn)(nil)
)

func (t *Transport) newConn(tc *net.TCPConn) (*conn, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	c := &conn{t: t, id: t.ids.Add(1), tc: tc, rc: rc, readSize: t.opts.ReadBufferSize, rdWake: make(chan struct{}, 1), closeCh: make(chan struct{})}
	c.readFn = c.doRead
	c.tryWriteFn = func(fd uintptr) bool { c.writev(fd); return true }
	c.waitFn = func(fd uintptr) bool { return c.writev(fd) }
	return c, nil
}

func (c *conn) LocalAddr() net.Addr                           { return c.tc.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr                          { return c.tc.RemoteAddr() }
func (c *conn) SyscallConn() (syscall.RawConn, error)         { return c.rc, nil }
func (c *conn) Start(h transport.Handler)                     { c.h = h; go c.readLoop() }
func (c *conn) String() string                                { return fmt.Sprintf("netpoll %s->%s", c.RemoteAddr(), c.LocalAddr()) }
func (c *conn) setReadResult(b *buffer.Buf, n int, err error) { c.rbuf, c.rn, c.rerr = b, n, err }

// doRead runs inside RawConn.Read; returning false parks until readable. The
// buffer is taken only when a read may succeed and given back on EAGAIN.
func (c *conn) doRead(fd uintptr) bool {
	if c.detachFn.Load() != nil {
		c.setReadResult(nil, 0, errDetached) // the socket is being handed over: read nothing more
		return true
	}
	b := buffer.Get(c.readSize)
	for {
		n, err := unix.Read(int(fd), b.Free())
		c.t.reads.Inc(c.id)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			c.t.eagain.Inc(c.id)
			b.Release()
			return false
		}
		if err != nil {
			n = 0
		}
		c.setReadResult(b, n, err)
		return true
	}
}

func (c *conn) readLoop() {
	var err error
	if p := c.prefix; p != nil {
		c.prefix = nil
		c.h.OnData(c, p)
	}
	for c.waitReadEnabled() && c.detachFn.Load() == nil {
		if rerr := c.rc.Read(c.readFn); rerr != nil {
			err = rerr
			break
		}
		b := c.rbuf
		c.rbuf = nil
		if c.rerr == errDetached {
			break
		}
		if c.rerr != nil {
			b.Release()
			err = c.rerr
			break
		}
		if c.rn == 0 {
			b.Release()
			c.h.OnReadEOF(c)
			<-c.closeCh
			break
		}
		b.Commit(c.rn)
		c.h.OnData(c, b)
	}
	if c.closed.Load() {
		err = nil // a local Close is not an error, but a failed write is
	}
	if done := c.detachFn.Load(); done != nil && !c.closed.Load() {
		c.handOver(*done)
		err = nil
	}
	c.Close()
	c.wmu.Lock()
	if err == nil {
		err = c.werr
	}
	c.wmu.Unlock()
	c.h.OnClose(c, err)
}

func (c *conn) waitReadEnabled() bool {
	for {
		if c.closed.Load() {
			return false
		}
		if c.detachFn.Load() != nil {
			return true // the loop hands the socket over
		}
		c.rdMu.Lock()
		n := c.rdCount
		c.rdMu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-c.rdWake:
		case <-c.closeCh:
			return false
		}
	}
}

// ReadDisable nests; a read already parked in the poller may still deliver
// one OnData after ReadDisable(true).
func (c *conn) ReadDisable(disable bool) {
	c.rdMu.Lock()
	if disable {
		c.rdCount++
	} else if c.rdCount > 0 {
		c.rdCount--
		if c.rdCount == 0 {
			select {
			case c.rdWake <- struct{}{}:
			default:
			}
		}
	}
	c.rdMu.Unlock()
}

// writev writes c.iov; returns false on EAGAIN so a blocking caller waits.
func (c *conn) writev(fd uintptr) bool {
	c.t.writes.Inc(c.id)
	n, e := writeq.Writev(fd, c.iov)
	switch e {
	case 0:
		c.wn, c.wErrno = n, nil
		return true
	case unix.EAGAIN:
		c.wn, c.wErrno = 0, nil
		return false
	default:
		c.wn, c.wErrno = 0, e
		return true
	}
}

func (c *conn) Write(bufs ...*buffer.Buf) (int, error) {
	c.wmu.Lock()
	if c.closed.Load() || c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		for _, b := range bufs {
			b.Release()
		}
		if err == nil {
			err = transport.ErrClosed
		}
		return 0, err
	}
	c.q.Push(bufs)
	if c.flushing || c.q.Len() == 0 {
		q := c.q.Len()
		c.wmu.Unlock()
		return q, nil
	}
	iov := iovs.Get().(*[writeq.MaxIov]unix.Iovec)
	for c.q.Len() > 0 {
		n, _ := c.q.Iov(iov[:])
		c.iov = iov[:n]
		if err := c.rc.Write(c.tryWriteFn); err != nil {
			c.wErrno = err
		}
		if c.wErrno != nil {
			c.iov = nil
			iovs.Put(iov)
			return 0, c.failWriteLocked(c.wErrno)
		}
		if c.wn == 0 {
			break
		}
		c.q.Consume(c.wn)
	}
	c.iov = nil
	iovs.Put(iov)
	if c.q.Len() > 0 {
		c.flushing = true
		go c.flush()
	}
	q := c.q.Len()
	c.wmu.Unlock()
	return q, nil
}

// failWriteLocked records a write error, drops the queue and closes the
// socket; the read goroutine then reports OnClose. Unlocks wmu.
func (c *conn) failWriteLocked(err error) error {
	err = fmt.Errorf("netpoll: write: %w", err)
	c.werr = err
	c.q.Drop()
	c.wmu.Unlock()
	c.Close()
	return err
}

// flush runs while the socket is full, parking in the poller until writable.
func (c *conn) flush() {
	iov := iovs.Get().(*[writeq.MaxIov]unix.Iovec)
	defer iovs.Put(iov)
	for {
		c.wmu.Lock()
		if c.closed.Load() || c.werr != nil {
			c.q.Drop()
			c.flushing = false
			c.wmu.Unlock()
			return
		}
		if c.q.Len() == 0 {
			c.flushing = false
			shut := c.shutAfter
			c.wmu.Unlock()
			if shut {
				c.tc.CloseWrite()
			}
			c.h.OnDrained(c)
			return
		}
		n, _ := c.q.Iov(iov[:])
		c.iov = iov[:n]
		c.wmu.Unlock()
		err := c.rc.Write(c.waitFn)
		c.wmu.Lock()
		if err == nil {
			err = c.wErrno
		}
		if err != nil {
			if !c.closed.Load() {
				c.failWriteLocked(err)
			} else {
				c.wmu.Unlock()
			}
			continue
		}
		c.q.Consume(c.wn)
		c.wmu.Unlock()
	}
}

func (c *conn) CloseWrite() error {
	c.wmu.Lock()
	if c.q.Len() > 0 {
		c.shutAfter = true
		c.wmu.Unlock()
		return nil
	}
	c.wmu.Unlock()
	return c.tc.CloseWrite()
}

func (c *conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	close(c.closeCh)
	c.wmu.Lock()
	if !c.flushing {
		c.q.Drop()
	}
	c.wmu.Unlock()
	return c.tc.Close()
}
