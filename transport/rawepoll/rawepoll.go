//go:build linux

// Package rawepoll is a readiness-driven reactor: its own epoll instances
// (one per worker, edge-triggered) over non-blocking sockets that are never
// handed to Go's runtime poller. An idle connection holds no goroutine and no
// read buffer: a buffer is taken from the pool when an edge says bytes
// arrived and handed to the handler with them.
//
// Workers. Each worker is one goroutine looping on epoll_wait, and the
// transport.Handler callbacks run on it. The contract forbids handlers from
// blocking, so the loops themselves are the bounded worker pool: a separate
// pool would add a goroutine hand-off per event for nothing.
//
// Ownership. A connection belongs to one loop. Only that loop reads it and
// only that loop closes its fd (Close from elsewhere posts a task), so an fd
// number is never reused while the loop might still touch it; epoll events
// carry fd and a generation, and a stale event for a reused fd is ignored.
// Writes may come from any goroutine: they are serialized by the
// connection's write lock, under which the fd is guaranteed open.
//
// Reads. After an edge the loop reads until a short read, EAGAIN or EOF. A
// short read means the receive queue was empty at that moment and any later
// arrival raises a new edge, so the extra read that would only return
// EAGAIN is skipped, unless the peer has shut down (EPOLLRDHUP), in which case
// the loop reads on to deliver the EOF.
package rawepoll

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
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
const Name = "rawepoll"

const (
	maxEvents        = 256
	maxReadsPerEvent = 16 // then the loop moves on and comes back (fairness)
	listenerMark     = -1 // epoll data pad value of a listening socket
	wakeMark         = -2 // epoll data pad value of the loop's eventfd
)

// Transport is the rawepoll transport.
type Transport struct {
	opts  transport.Options
	loops []*loop
	next  atomic.Uint32
	table []atomic.Pointer[conn] // by fd
	gen   atomic.Int32

	accepts, dials, dialFails atomic.Uint64
	writevs                   stats.Counter // writes come from any goroutine: sharded
}

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.StatsReporter = (*Transport)(nil)
)

// New starts the reactor: Options.Workers loops, default one per pinned CPU
// (or per GOMAXPROCS when not pinned).
func New(opts transport.Options) (transport.Transport, error) {
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = 16 << 10
	}
	n := opts.Workers
	if n <= 0 {
		n = len(opts.CPUs)
	}
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return nil, fmt.Errorf("rawepoll: getrlimit: %w", err)
	}
	size := min(rl.Cur, 1<<22)
	t := &Transport{opts: opts, table: make([]atomic.Pointer[conn], size)}
	for i := 0; i < n; i++ {
		l, err := newLoop(t)
		if err != nil {
			t.Close()
			return nil, err
		}
		l.id = i
		t.loops = append(t.loops, l)
		go l.run()
	}
	return t, nil
}

func (t *Transport) Name() string { return Name }

// Close stops the loops.
func (t *Transport) Close() error {
	for _, l := range t.loops {
		l.post(task{kind: taskStop})
	}
	return nil
}

func (t *Transport) pick() *loop {
	return t.loops[int(t.next.Add(1))%len(t.loops)]
}

// Stats sums the loops' counters (transport.StatsReporter).
func (t *Transport) Stats() transport.Stats {
	s := transport.Stats{Loops: len(t.loops), Accepts: t.accepts.Load(), Dials: t.dials.Load(), DialFailures: t.dialFails.Load()}
	for _, l := range t.loops {
		s.Wakeups += l.nWakeups.Load()
		s.Events += l.nEvents.Load()
		s.Reads += l.nReads.Load()
		s.EAGAINReads += l.nEAGAIN.Load()
	}
	s.Writes = t.writevs.Value()
	return s
}

// timeoutError is a connect timeout: a net.Error whose Timeout is true.
type timeoutError struct{}

func (timeoutError) Error() string   { return "rawepoll: connect timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

type taskKind uint8

const (
	taskStart taskKind = iota
	taskClose
	taskResume
	taskRetryRead // readable again after an EAGAIN that followed the peer's FIN
	taskConnectTimeout
	taskAddListener
	taskAcceptRetry
	taskRemoveListener
	taskStop
	taskDetach
)

type task struct {
	kind taskKind
	c    *conn
	h    transport.Handler
	ls   *listener
	done chan struct{}
	// detach is taskDetach's hand-over callback (adopt.go).
	detach func(int, error)
}

type loop struct {
	t        *Transport
	id       int // index in t.loops
	epfd     int
	evfd     int
	events   [maxEvents]unix.EpollEvent
	lsocks   map[int]*listener // loop goroutine only
	mu       sync.Mutex
	tasks    []task
	run2     []task
	sleeping atomic.Bool

	nWakeups, nEvents, nReads, nEAGAIN atomic.Uint64
}

func newLoop(t *Transport) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("rawepoll: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("rawepoll: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd), Pad: wakeMark}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("rawepoll: epoll_ctl: %w", err)
	}
	return &loop{t: t, epfd: epfd, evfd: evfd, lsocks: map[int]*listener{}}, nil
}

// post queues a task for the loop and wakes it if it sleeps.
func (l *loop) post(tk task) {
	l.mu.Lock()
	l.tasks = append(l.tasks, tk)
	l.mu.Unlock()
	if l.sleeping.CompareAndSwap(true, false) {
		var one = [8]byte{1}
		unix.Write(l.evfd, one[:])
	}
}

func (l *loop) hasTasks() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tasks) > 0
}

// runTasks returns false when the loop must stop.
func (l *loop) runTasks() bool {
	l.mu.Lock()
	l.run2, l.tasks = l.tasks, l.run2[:0]
	l.mu.Unlock()
	for i := range l.run2 {
		tk := &l.run2[i]
		switch tk.kind {
		case taskStart:
			c := tk.c
			c.h, c.started = tk.h, true
			if c.finalized {
				c.h.OnClose(c, c.closeErr)
			} else {
				c.deliverPrefix()
				c.doRead()
			}
		case taskClose:
			tk.c.finalize(nil)
		case taskResume:
			if !tk.c.finalized && tk.c.started {
				tk.c.doRead()
			}
		case taskRetryRead:
			if !tk.c.finalized && tk.c.started && !tk.c.eof {
				tk.c.readable = true
				tk.c.doRead()
			}
		case taskConnectTimeout:
			if c := tk.c; c.connecting && !c.finalized {
				c.finalize(timeoutError{})
			}
		case taskAddListener:
			ls := tk.ls
			l.lsocks[ls.fd] = ls
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(ls.fd), Pad: listenerMark}
			if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ls.fd, &ev); err == nil {
				ls.acceptAll(l)
			}
		case taskAcceptRetry:
			if _, ok := l.lsocks[tk.ls.fd]; ok {
				tk.ls.paused = false
				tk.ls.acceptAll(l)
			}
		case taskRemoveListener:
			if _, ok := l.lsocks[tk.ls.fd]; ok {
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, tk.ls.fd, nil)
				delete(l.lsocks, tk.ls.fd)
			}
			close(tk.done)
		case taskDetach:
			tk.c.handOver(tk.detach)
		case taskStop:
			return false
		}
		*tk = task{}
	}
	return true
}

func (l *loop) run() {
	defer func() {
		unix.Close(l.epfd)
		unix.Close(l.evfd)
	}()
	timeout := -1
	for {
		if !l.runTasks() {
			return
		}
		l.sleeping.Store(true)
		if l.hasTasks() {
			l.sleeping.Store(false)
			continue
		}
		n, err := unix.EpollWait(l.epfd, l.events[:], timeout)
		l.sleeping.Store(false)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			panic(fmt.Sprintf("rawepoll: epoll_wait: %v", err)) // EBADF/EINVAL: a bug, not load
		}
		l.nWakeups.Add(1)
		l.nEvents.Add(uint64(n))
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			switch ev.Pad {
			case wakeMark:
				var b [8]byte
				unix.Read(l.evfd, b[:])
			case listenerMark:
				if ls := l.lsocks[int(ev.Fd)]; ls != nil {
					ls.acceptAll(l)
				}
			default:
				c := l.t.table[ev.Fd].Load()
				if c != nil && c.gen == ev.Pad && c.l == l {
					c.onEvents(ev.Events)
				}
			}
		}
	}
}

// conn is one socket owned by a loop.
type conn struct {
	t   *Transport
	l   *loop
	fd  int
	gen int32

	laddr, raddr netip.AddrPort

	// Loop goroutine only.
	h          transport.Handler
	started    bool
	readable   bool // an edge not yet drained
	rdhup      bool // the peer shut down its side
	eof        bool
	finalized  bool
	closeErr   error
	connecting bool
	dialDone   func(transport.Conn, error)
	dialTimer  *time.Timer

	rdDisabled atomic.Int32
	prefix     *buffer.Buf // hot upgrade: delivered first (AdoptConn)

	// Write side, guarded by wmu; the fd stays open while wmu is held and
	// closed is false.
	wmu       sync.Mutex
	closed    bool
	q         writeq.Queue
	shutAfter bool
	werr      error
}

var (
	_ transport.Conn          = (*conn)(nil)
	_ transport.SyscallConner = (*conn)(nil)
	_ transport.NearDialer    = (*Transport)(nil)
	_ transport.Looper        = (*conn)(nil)
)

// Loop is the index of the event loop running the connection's callbacks
// (transport.Looper).
func (c *conn) Loop() int { return c.l.id }

func (t *Transport) newConn(fd int, l *loop) *conn {
	return &conn{t: t, l: l, fd: fd, gen: t.gen.Add(1) & 0x7fffffff}
}

// register publishes the fully initialised conn to its loop (the table store
// is what the loop synchronises with) and adds it to the loop's epoll.
func (c *conn) register() error {
	c.t.table[c.fd].Store(c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.fd), Pad: c.gen}
	if err := unix.EpollCtl(c.l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		c.t.table[c.fd].CompareAndSwap(c, nil)
		return fmt.Errorf("rawepoll: epoll_ctl add: %w", err)
	}
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.laddr) }
func (c *conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.raddr) }
func (c *conn) String() string       { return fmt.Sprintf("rawepoll fd %d %s->%s", c.fd, c.raddr, c.laddr) }

// Start hands the connection to its loop; events begin on the loop goroutine.
func (c *conn) Start(h transport.Handler) { c.l.post(task{kind: taskStart, c: c, h: h}) }

func (c *conn) onEvents(ev uint32) {
	if c.connecting {
		// Bytes and even a FIN can come with the connect's own edge; note
		// both, or the short-read rule would wait for an edge that never
		// comes.
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			c.readable = true
		}
		if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			c.rdhup = true
		}
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			c.finishConnect()
		}
		return
	}
	if ev&unix.EPOLLOUT != 0 {
		c.flushWritable()
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
		if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.rdhup = true
		}
		if c.started {
			c.doRead()
		}
	}
}

// doRead drains the socket into pooled buffers and hands them over.
func (c *conn) doRead() {
	size := c.t.opts.ReadBufferSize
	for i := 0; c.readable && !c.eof && !c.finalized && c.rdDisabled.Load() == 0; i++ {
		if i == maxReadsPerEvent {
			c.l.post(task{kind: taskResume, c: c})
			return
		}
		b := buffer.Get(size)
		n, err := unix.Read(c.fd, b.Free())
		c.l.nReads.Add(1)
		if err != nil {
			b.Release()
			switch err {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				c.l.nEAGAIN.Add(1)
				c.readable = false
				if c.rdhup {
					// The peer's FIN is in, yet nothing to read: the bytes
					// ahead of it are still with a BPF stream parser
					// (sockmap), which wakes nobody when it is done. Look
					// again shortly.
					time.AfterFunc(time.Millisecond, func() {
						c.l.post(task{kind: taskRetryRead, c: c})
					})
				}
				return
			}
			c.finalize(fmt.Errorf("rawepoll: read: %w", err))
			return
		}
		if n == 0 {
			b.Release()
			c.eof, c.readable = true, false
			c.h.OnReadEOF(c)
			return
		}
		short := n < len(b.Free())
		b.Commit(n)
		c.h.OnData(c, b)
		if short && !c.rdhup {
			c.readable = false
			return
		}
	}
}

func (c *conn) ReadDisable(disable bool) {
	if disable {
		c.rdDisabled.Add(1)
		return
	}
	switch v := c.rdDisabled.Add(-1); {
	case v == 0:
		c.l.post(task{kind: taskResume, c: c})
	case v < 0:
		c.rdDisabled.Add(1) // unbalanced enable: ignore
	}
}

// writeLocked writes the queue until it is empty or the socket is full.
// Caller holds wmu and closed is false.
func (c *conn) writeLocked() error {
	var iov [writeq.MaxIov]unix.Iovec
	for c.q.Len() > 0 {
		n, total := c.q.Iov(iov[:])
		w, e := writeq.Writev(uintptr(c.fd), iov[:n])
		c.t.writevs.Inc(uint64(c.fd))
		switch e {
		case 0:
		case unix.EAGAIN:
			return nil
		default:
			return fmt.Errorf("rawepoll: write: %w", e)
		}
		c.q.Consume(w)
		if w < total {
			return nil // partial: the socket is full; EPOLLOUT follows
		}
	}
	return nil
}

// Write never blocks: what the socket does not take is queued and flushed by
// the loop on EPOLLOUT.
func (c *conn) Write(bufs ...*buffer.Buf) (int, error) {
	c.wmu.Lock()
	if c.closed || c.werr != nil {
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
	wasEmpty := c.q.Len() == 0
	c.q.Push(bufs)
	if wasEmpty && c.q.Len() > 0 {
		if err := c.writeLocked(); err != nil {
			c.werr = err
			c.q.Drop()
			c.wmu.Unlock()
			c.Close()
			return 0, err
		}
	}
	q := c.q.Len()
	c.wmu.Unlock()
	return q, nil
}

// flushWritable runs on EPOLLOUT.
func (c *conn) flushWritable() {
	c.wmu.Lock()
	if c.closed || c.q.Len() == 0 {
		c.wmu.Unlock()
		return
	}
	if err := c.writeLocked(); err != nil {
		c.werr = err
		c.q.Drop()
		c.wmu.Unlock()
		c.finalize(err)
		return
	}
	drained := c.q.Len() == 0
	if drained && c.shutAfter {
		c.shutAfter = false
		unix.Shutdown(c.fd, unix.SHUT_WR)
	}
	c.wmu.Unlock()
	if drained && c.started {
		c.h.OnDrained(c)
	}
}

func (c *conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return transport.ErrClosed
	}
	if c.q.Len() > 0 {
		c.shutAfter = true
		return nil
	}
	if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
		return fmt.Errorf("rawepoll: shutdown: %w", err)
	}
	return nil
}

// Close drops queued writes and has the loop close the fd and report OnClose.
func (c *conn) Close() error {
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return nil
	}
	c.closed = true
	c.q.Drop()
	c.wmu.Unlock()
	c.l.post(task{kind: taskClose, c: c})
	return nil
}

// finalize closes the fd and reports the end; loop goroutine only.
func (c *conn) finalize(err error) {
	if c.finalized {
		return
	}
	c.finalized = true
	c.wmu.Lock()
	if err == nil {
		err = c.werr
	}
	c.closed = true
	c.q.Drop()
	unix.EpollCtl(c.l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	unix.Close(c.fd)
	c.t.table[c.fd].CompareAndSwap(c, nil)
	c.wmu.Unlock()
	c.closeErr = err
	switch {
	case c.connecting:
		c.t.dialFails.Add(1)
		c.connecting = false
		if c.dialTimer != nil {
			c.dialTimer.Stop()
		}
		c.dialDone(nil, fmt.Errorf("rawepoll: dial %s: %w", c.raddr, err))
	case c.started:
		c.h.OnClose(c, err)
	}
}

// SyscallConn exposes the socket. Its Read and Write wait functions are not
// supported: the fd is non-blocking and belongs to the reactor.
func (c *conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

type rawConn struct{ c *conn }

func (r rawConn) Control(f func(fd uintptr)) error {
	r.c.wmu.Lock()
	defer r.c.wmu.Unlock()
	if r.c.closed {
		return transport.ErrClosed
	}
	f(uintptr(r.c.fd))
	return nil
}

var errRawIO = errors.New("rawepoll: RawConn Read/Write are not supported; use Control")

func (rawConn) Read(func(uintptr) bool) error  { return errRawIO }
func (rawConn) Write(func(uintptr) bool) error { return errRawIO }

func sockaddr(ap netip.AddrPort) (unix.Sockaddr, int) {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, unix.AF_INET
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, unix.AF_INET6
}

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

func resolve(address string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ta, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, err
	}
	// An IPv4 address comes back 4-in-6: unmapped, it gets an AF_INET
	// socket (what sockmap's programs and most tools expect).
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// Dial connects without blocking; the loop reports the result.
func (t *Transport) Dial(network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	t.dialOn(nil, address, timeout, done)
}

// DialNear connects on near's event loop (transport.NearDialer): the two
// connections' callbacks then never run at the same time.
func (t *Transport) DialNear(near transport.Conn, network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	var l *loop
	if nc, ok := near.(*conn); ok && nc.t == t {
		l = nc.l
	}
	t.dialOn(l, address, timeout, done)
}

// dialOn connects on loop l (nil: the next loop in turn).
func (t *Transport) dialOn(l *loop, address string, timeout time.Duration, done func(transport.Conn, error)) {
	t.dials.Add(1)
	fail := func(err error) {
		t.dialFails.Add(1)
		go done(nil, fmt.Errorf("rawepoll: dial %s: %w", address, err))
	}
	ap, err := resolve(address)
	if err != nil {
		fail(err)
		return
	}
	sa, family := sockaddr(ap)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail(err)
		return
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		fail(err)
		return
	}
	if l == nil {
		l = t.pick()
	}
	c := t.newConn(fd, l)
	c.raddr, c.connecting, c.dialDone = ap, true, done
	if timeout > 0 {
		c.dialTimer = time.AfterFunc(timeout, func() { l.post(task{kind: taskConnectTimeout, c: c}) })
	}
	if err := c.register(); err != nil {
		unix.Close(fd)
		fail(err)
	}
}

func (c *conn) finishConnect() {
	errno, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = syscall.Errno(errno)
	}
	if err != nil {
		c.finalize(err)
		return
	}
	if sa, err := unix.Getsockname(c.fd); err == nil {
		c.laddr = addrPort(sa)
	}
	c.connecting = false
	if c.dialTimer != nil {
		c.dialTimer.Stop()
	}
	c.dialDone(c, nil)
}

// listener is one listening socket, accepted from by one loop; accepted
// connections are spread over all loops.
type listener struct {
	t      *Transport
	fd     int
	addr   netip.AddrPort
	owner  *loop
	accept func(transport.Conn)
	closed atomic.Bool
	paused bool // accept hit a resource limit; retried shortly
}

// Listen binds address with a non-blocking socket.
func (t *Transport) Listen(network, address string) (transport.Listener, error) {
	if fd, ok := transport.TakeInherited(t.opts, network, address); ok {
		return t.adopt(fd, address)
	}
	ap, err := resolve(address)
	if err != nil {
		return nil, fmt.Errorf("rawepoll: listen %s: %w", address, err)
	}
	sa, family := sockaddr(ap)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rawepoll: listen %s: %w", address, err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if t.opts.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("rawepoll: listen %s: SO_REUSEPORT: %w", address, err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rawepoll: listen %s: %w", address, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rawepoll: listen %s: %w", address, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rawepoll: listen %s: %w", address, err)
	}
	return &listener{t: t, fd: fd, addr: addrPort(bound), owner: t.loops[0]}, nil
}

func (ls *listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(ls.addr) }

func (ls *listener) Start(accept func(transport.Conn)) {
	ls.accept = accept
	ls.owner.post(task{kind: taskAddListener, ls: ls})
}

// Close stops accepting; it returns once the loop no longer uses the socket.
func (ls *listener) Close() error {
	if ls.closed.Swap(true) {
		return nil
	}
	if ls.accept != nil {
		done := make(chan struct{})
		ls.owner.post(task{kind: taskRemoveListener, ls: ls, done: done})
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	return unix.Close(ls.fd)
}

// acceptAll accepts until EAGAIN (edge-triggered); loop goroutine only.
func (ls *listener) acceptAll(l *loop) {
	if ls.paused || ls.closed.Load() {
		return
	}
	for {
		fd, sa, err := unix.Accept4(ls.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch err {
			case unix.EAGAIN:
				return
			case unix.EINTR, unix.ECONNABORTED:
				continue
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				// Out of descriptors: pending connections stay queued
				// and the edge will not repeat, so come back shortly.
				ls.paused = true
				time.AfterFunc(10*time.Millisecond, func() {
					l.post(task{kind: taskAcceptRetry, ls: ls})
				})
				return
			}
			return
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		ls.t.accepts.Add(1)
		target := ls.t.pick()
		c := ls.t.newConn(fd, target)
		c.raddr, c.laddr = addrPort(sa), ls.addr
		if err := c.register(); err != nil {
			unix.Close(fd)
			continue
		}
		ls.accept(c)
	}
}
