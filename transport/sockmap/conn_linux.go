package sockmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// conn is a reactor connection with what splicing needs: the bytes that
// reached user space either way (so EOF handling knows when the kernel has
// forwarded the rest) and, once spliced, the peer.
type conn struct {
	transport.Conn
	t  *Transport
	h  transport.Handler
	rc syscall.RawConn

	mu      sync.Mutex
	read    uint64 // bytes delivered by OnData
	written uint64 // bytes handed to Write
	eof     bool   // OnReadEOF delivered: the peer's FIN was received
	moved   uint64 // bytes a splice's set-up moved to the peer in user space
	sp      *spliced
}

// spliced is a connection's half of a spliced pair.
type spliced struct {
	peer               *conn
	cookie, peerCookie uint64
	shut               bool   // CloseWrite asked for
	stopped            bool   // closed: the flush wait ends
	final              uint64 // the kernel's count when it closed
}

var (
	_ transport.Conn          = (*conn)(nil)
	_ transport.Splicer       = (*conn)(nil)
	_ transport.SyscallConner = (*conn)(nil)
	_ transport.Looper        = (*conn)(nil)
)

// Loop is the reactor loop the connection runs on (transport.Looper), so
// the layers above keep per-loop state for it as for rawepoll's own.
func (c *conn) Loop() int {
	if l, ok := c.Conn.(transport.Looper); ok {
		return l.Loop()
	}
	return -1
}

func (t *Transport) wrap(c transport.Conn) transport.Conn {
	w := &conn{Conn: c, t: t}
	if sc, ok := c.(transport.SyscallConner); ok {
		w.rc, _ = sc.SyscallConn()
	}
	return w
}

func (c *conn) SyscallConn() (syscall.RawConn, error) {
	if c.rc == nil {
		return nil, errors.New("sockmap: no socket")
	}
	return c.rc, nil
}

// Start passes the reactor's events on with this connection as their
// subject.
func (c *conn) Start(h transport.Handler) {
	c.h = h
	c.Conn.Start(events{c})
}

func (c *conn) Write(bufs ...*buffer.Buf) (int, error) {
	n := 0
	for _, b := range bufs {
		n += b.Len()
	}
	c.mu.Lock()
	c.written += uint64(n)
	c.mu.Unlock()
	return c.Conn.Write(bufs...)
}

type events struct{ c *conn }

func (e events) OnData(_ transport.Conn, b *buffer.Buf) {
	e.c.mu.Lock()
	e.c.read += uint64(b.Len())
	e.c.mu.Unlock()
	e.c.h.OnData(e.c, b)
}
func (e events) OnReadEOF(transport.Conn) {
	e.c.mu.Lock()
	e.c.eof = true
	e.c.mu.Unlock()
	e.c.h.OnReadEOF(e.c)
}
func (e events) OnDrained(transport.Conn) { e.c.h.OnDrained(e.c) }
func (e events) OnClose(_ transport.Conn, err error) {
	e.c.unsplice()
	e.c.h.OnClose(e.c, err)
}

// withFD runs f with the socket; an error when it is closed.
func (c *conn) withFD(f func(fd int) error) error {
	if c.rc == nil {
		return errors.New("no socket")
	}
	var ferr error
	if err := c.rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// tuple is a socket's key in local_socks, from its side.
func tupleOf(fd int) (sockmapTuple, error) {
	la, err := unix.Getsockname(fd)
	if err != nil {
		return sockmapTuple{}, err
	}
	ra, err := unix.Getpeername(fd)
	if err != nil {
		return sockmapTuple{}, err
	}
	l, lok := la.(*unix.SockaddrInet4)
	r, rok := ra.(*unix.SockaddrInet4)
	if !lok || !rok {
		return sockmapTuple{}, errors.New("not IPv4")
	}
	// Addresses as the kernel stores them (network order) read as the
	// host's integers, like the BPF side; ports in host order.
	return sockmapTuple{
		LocalIp4:  binary.NativeEndian.Uint32(l.Addr[:]),
		RemoteIp4: binary.NativeEndian.Uint32(r.Addr[:]),
		LocalPort: uint32(l.Port), RemotePort: uint32(r.Port),
	}, nil
}

func reverse(k sockmapTuple) sockmapTuple {
	return sockmapTuple{LocalIp4: k.RemoteIp4, RemoteIp4: k.LocalIp4, LocalPort: k.RemotePort, RemotePort: k.LocalPort}
}

// Splice joins c and peer in the kernel; see transport.Splicer.
func (c *conn) Splice(peer transport.Conn) error {
	t := c.t
	if !t.splice {
		return t.fallback("disabled", nil)
	}
	p, ok := peer.(*conn)
	if !ok || p.t != t {
		return t.fallback("peer-not-sockmap", errNotSockmap)
	}
	// Reading stops while the maps change; what arrives meanwhile waits
	// in the socket and is forwarded by the kick below, in order.
	c.ReadDisable(true)
	p.ReadDisable(true)
	defer c.ReadDisable(false)
	defer p.ReadDisable(false)
	var ca, cb uint64
	err := c.withFD(func(fa int) error {
		return p.withFD(func(fb int) error {
			var err error
			ca, cb, err = t.join(c, p, fa, fb)
			return err
		})
	})
	if err != nil {
		var fe *fallbackError
		if errors.As(err, &fe) {
			return t.fallback(fe.reason, fe.err)
		}
		return t.fallback("closed", err)
	}
	c.mu.Lock()
	c.sp = &spliced{peer: p, cookie: ca, peerCookie: cb}
	c.mu.Unlock()
	p.mu.Lock()
	p.sp = &spliced{peer: c, cookie: cb, peerCookie: ca}
	p.mu.Unlock()
	t.splices.Add(1)
	t.log.Debug("sockmap: spliced", "cookies", [2]uint64{ca, cb})
	return nil
}

type fallbackError struct {
	reason string
	err    error
}

func (e *fallbackError) Error() string { return e.reason + ": " + e.err.Error() }

// join puts sockets fa and fb in the splice maps: both as redirect targets
// first, then their peers, then both under the stream programs, then a kick
// for bytes that arrived before. It returns their cookies.
//
// Both receive queues are emptied first, in user space, into the other
// socket: a stream parser attached while a socket's next byte is in the
// middle of a queued buffer (user space read part of it) frames from the
// buffer's start and loses bytes at the end. It runs on the pair's event
// loop (NearDialer), so nothing else reads either socket meanwhile.
func (t *Transport) join(a, b *conn, fa, fb int) (uint64, uint64, error) {
	if !t.useMaps() {
		return 0, 0, &fallbackError{"closed", transport.ErrClosed}
	}
	defer t.doneMaps()
	for _, d := range []struct {
		from, to *conn
		ffd, tfd int
	}{{a, b, fa, fb}, {b, a, fb, fa}} {
		n, eof, err := drain(d.ffd, d.tfd)
		d.from.mu.Lock()
		d.from.read += uint64(n)
		d.from.moved += uint64(n)
		d.from.mu.Unlock()
		d.to.mu.Lock()
		d.to.written += uint64(n)
		d.to.mu.Unlock()
		if err != nil {
			return 0, 0, &fallbackError{"drain", err}
		}
		if eof {
			// The FIN stays readable: the pair finishes in user space.
			return 0, 0, &fallbackError{"ended", errors.New("a side already sent FIN")}
		}
	}
	ca, err := unix.GetsockoptUint64(fa, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return 0, 0, &fallbackError{"no-cookie", err}
	}
	cb, err := unix.GetsockoptUint64(fb, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return 0, 0, &fallbackError{"no-cookie", err}
	}
	// A hop that SK_MSG already keeps in the kernel (its far end is in
	// local_socks) receives messages into the socket directly, past any
	// stream program: it stays as it is.
	for _, fd := range []int{fa, fb} {
		k, err := tupleOf(fd)
		if err != nil {
			return 0, 0, &fallbackError{"not-ipv4", err}
		}
		var cookie uint64
		if t.objs.LocalSocks.Lookup(reverse(k), &cookie) == nil {
			return 0, 0, &fallbackError{"same-host-redirected", errors.New("the hop is already redirected by SK_MSG")}
		}
		// Its own entry, if any, stays: with the far end absent, the
		// SK_MSG verdict passes everything, and removing it would tear
		// down the socket's BPF state while the splice sets up a new one
		// (which loses bytes).
	}
	undo := func() {
		t.objs.SplicePeers.Delete(ca)
		t.objs.SplicePeers.Delete(cb)
		t.objs.SpliceTargets.Delete(ca)
		t.objs.SpliceTargets.Delete(cb)
	}
	if err := t.objs.SpliceTargets.Update(ca, uint64(fa), ebpf.UpdateNoExist); err != nil {
		return 0, 0, &fallbackError{"map-update", err}
	}
	if err := t.objs.SpliceTargets.Update(cb, uint64(fb), ebpf.UpdateNoExist); err != nil {
		undo()
		return 0, 0, &fallbackError{"map-update", err}
	}
	if err := t.objs.SplicePeers.Update(ca, sockmapPeer{Cookie: cb}, ebpf.UpdateNoExist); err != nil {
		undo()
		return 0, 0, &fallbackError{"map-update", err}
	}
	if err := t.objs.SplicePeers.Update(cb, sockmapPeer{Cookie: ca}, ebpf.UpdateNoExist); err != nil {
		undo()
		return 0, 0, &fallbackError{"map-update", err}
	}
	if err := t.objs.SpliceStreams.Update(ca, uint64(fa), ebpf.UpdateNoExist); err != nil {
		undo()
		return 0, 0, &fallbackError{"map-update", err}
	}
	if err := t.objs.SpliceStreams.Update(cb, uint64(fb), ebpf.UpdateNoExist); err != nil {
		// fa already forwards to fb; fb cannot be attached: the pair
		// cannot go back to user space in order.
		t.objs.SpliceStreams.Delete(ca)
		undo()
		return 0, 0, fmt.Errorf("sockmap: attaching the second socket: %w", err)
	}
	// Bytes queued before the stream programs were attached are parsed
	// only at the next data-ready: setting SO_RCVLOWAT raises one now.
	unix.SetsockoptInt(fa, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	unix.SetsockoptInt(fb, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	return ca, cb, nil
}

// drainLimit bounds what join moves in user space before giving up on a
// sender that never pauses.
const drainLimit = 8 << 20

// drain moves what is queued on socket from into socket to, until from has
// nothing more (EAGAIN) or says EOF.
func drain(from, to int) (moved int, eof bool, err error) {
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(2 * time.Second)
	for moved < drainLimit {
		n, err := unix.Read(from, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return moved, false, nil
		case err != nil:
			return moved, false, err
		case n == 0:
			return moved, true, nil
		}
		if err := writeAll(to, buf[:n], deadline); err != nil {
			return moved, false, err
		}
		moved += n
	}
	return moved, false, errors.New("the sender did not pause")
}

// writeAll writes p to non-blocking socket fd, waiting for room until
// deadline.
func writeAll(fd int, p []byte, deadline time.Time) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			wait := time.Until(deadline)
			if wait <= 0 {
				return errors.New("the peer socket stayed full")
			}
			unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, int(wait/time.Millisecond)+1)
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// SplicedBytes are the bytes forwarded from this connection to its peer by
// the transport: in the kernel, and what a splice's set-up moved (also when
// the splice then fell back).
func (c *conn) SplicedBytes() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sp == nil {
		return c.moved // a splice that fell back may have moved some
	}
	if c.sp.stopped {
		return c.sp.final + c.moved
	}
	var p sockmapPeer
	if !c.t.useMaps() {
		return c.moved
	}
	err := c.t.objs.SplicePeers.Lookup(c.sp.cookie, &p)
	c.t.doneMaps()
	if err != nil {
		return c.moved
	}
	return p.Bytes + c.moved
}

// unsplice forgets a closed connection's peer entry (the kernel drops the
// socket from the sockhashes itself) and ends a flush wait.
func (c *conn) unsplice() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sp == nil || c.sp.stopped {
		return
	}
	c.sp.stopped = true
	if !c.t.useMaps() {
		return
	}
	defer c.t.doneMaps()
	var p sockmapPeer
	if c.t.objs.SplicePeers.Lookup(c.sp.cookie, &p) == nil {
		c.sp.final = p.Bytes
	}
	c.t.objs.SplicePeers.Delete(c.sp.cookie)
}

// CloseWrite on a spliced connection sends FIN only once everything the
// kernel forwards into it from its peer has entered its socket: the peer has
// sent FIN (that is why the caller asks), and every byte the peer received
// was either read by user space or redirected here. Then OnDrained.
func (c *conn) CloseWrite() error {
	c.mu.Lock()
	sp := c.sp
	if sp == nil {
		c.mu.Unlock()
		return c.Conn.CloseWrite()
	}
	if sp.shut {
		c.mu.Unlock()
		return nil
	}
	sp.shut = true
	c.mu.Unlock()
	// Checked from a timer, never from inside this call: OnDrained must
	// not run within a Conn method (the caller holds its own lock).
	deadline := time.Now().Add(flushTimeout)
	time.AfterFunc(0, func() { c.flushThenShut(deadline, 100*time.Microsecond) })
	return nil
}

// flushTimeout bounds the wait for forwarded bytes (a peer that stops
// reading); then FIN goes anyway.
const flushTimeout = 30 * time.Second

func (c *conn) flushThenShut(deadline time.Time, wait time.Duration) {
	done, err := c.flushed()
	if err == nil && !done && time.Now().Before(deadline) {
		time.AfterFunc(wait, func() { c.flushThenShut(deadline, min(2*wait, 5*time.Millisecond)) })
		return
	}
	if err != nil {
		return // closed meanwhile
	}
	if !done {
		c.t.log.Warn("sockmap: forwarded bytes still not sent; sending FIN anyway", "after", flushTimeout)
	}
	if c.withFD(func(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) }) == nil {
		c.h.OnDrained(c)
	}
}

// flushed says whether everything bound for c has entered c's socket.
func (c *conn) flushed() (bool, error) {
	c.mu.Lock()
	sp, written := c.sp, c.written
	stopped := sp.stopped
	c.mu.Unlock()
	if stopped {
		return false, transport.ErrClosed
	}
	peer := sp.peer
	peer.mu.Lock()
	peerRead, peerGone, redirected, peerFIN := peer.read, peer.sp.stopped, peer.sp.final, peer.eof
	peer.mu.Unlock()
	if !peerGone {
		// Every byte the peer received has been read by user space or
		// redirected here (a closed peer receives nothing more).
		var pp sockmapPeer
		var received uint64
		err := peer.withFD(func(fd int) error {
			if !c.t.useMaps() {
				return transport.ErrClosed
			}
			err := c.t.objs.SplicePeers.Lookup(sp.peerCookie, &pp)
			c.t.doneMaps()
			if err != nil {
				return err
			}
			ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
			if err == nil {
				received = ti.Bytes_received
				if peerFIN && received > 0 {
					received-- // the count includes the FIN's sequence number
				}
			}
			return err
		})
		if err == nil {
			if redirected = pp.Bytes; peerRead+redirected < received {
				return false, nil
			}
		} else {
			peer.mu.Lock()
			redirected = peer.sp.final
			peer.mu.Unlock()
		}
	}
	// ...and what user space wrote plus what was redirected is in this
	// socket: acknowledged, or queued ahead of where FIN will go.
	var inSocket uint64
	err := c.withFD(func(fd int) error {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return err
		}
		inSocket = ti.Bytes_acked + uint64(outq)
		return nil
	})
	if err != nil {
		return false, err
	}
	return inSocket >= written+redirected, nil
}
