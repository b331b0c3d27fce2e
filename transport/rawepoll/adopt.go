package rawepoll

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/internal/sockcheck"
)

var _ transport.ListenerFDer = (*listener)(nil)

// adopt takes over an inherited listening socket (hot upgrade); it owns fd
// from here on, also on error. The socket's accept queue is shared with
// the process that passed it until that one closes its descriptor.
func (t *Transport) adopt(fd int, address string) (transport.Listener, error) {
	if err := sockcheck.Listening(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rawepoll: adopt %s: %w", address, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rawepoll: adopt %s: %w", address, err)
	}
	return &listener{t: t, fd: fd, addr: addrPort(bound), owner: t.loops[0]}, nil
}

// ListenerFD is the listening socket (transport.ListenerFDer).
func (ls *listener) ListenerFD() (int, error) {
	if ls.closed.Load() {
		return -1, fmt.Errorf("rawepoll: listener %s is closed", ls.addr)
	}
	return ls.fd, nil
}

var (
	_ transport.Detacher    = (*conn)(nil)
	_ transport.ConnAdopter = (*Transport)(nil)
)

// Detach hands the socket over (transport.Detacher): reading stops now
// and the loop calls done, then closes the connection.
func (c *conn) Detach(done func(fd int, err error)) error {
	c.wmu.Lock()
	closed, busy := c.closed || c.werr != nil, c.q.Len() > 0
	c.wmu.Unlock()
	switch {
	case closed:
		return transport.ErrClosed
	case busy:
		return transport.ErrBusy
	}
	c.rdDisabled.Add(1) // never re-enabled: the connection ends here
	c.l.post(task{kind: taskDetach, c: c, detach: done})
	return nil
}

// handOver duplicates the socket for done, then closes; loop goroutine
// only.
func (c *conn) handOver(done func(int, error)) {
	if c.finalized {
		done(-1, transport.ErrClosed)
		return
	}
	unix.EpollCtl(c.l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	fd, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		done(-1, fmt.Errorf("rawepoll: detach: %w", err))
	} else {
		done(fd, nil)
	}
	c.wmu.Lock()
	c.closed = true
	c.q.Drop()
	c.wmu.Unlock()
	c.finalize(nil)
}

// deliverPrefix hands an adopted connection's carried bytes to the
// handler before anything read from the socket; loop goroutine only.
func (c *conn) deliverPrefix() {
	if p := c.prefix; p != nil {
		c.prefix = nil
		c.h.OnData(c, p)
	}
}

// AdoptConn takes over a connected socket (transport.ConnAdopter).
func (t *Transport) AdoptConn(fd int, prefix *buffer.Buf) (transport.Conn, error) {
	fail := func(err error) (transport.Conn, error) {
		unix.Close(fd)
		prefix.Release()
		return nil, fmt.Errorf("rawepoll: adopt connection: %w", err)
	}
	if fd >= len(t.table) {
		return fail(fmt.Errorf("descriptor %d above the table size %d", fd, len(t.table)))
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail(err)
	}
	unix.CloseOnExec(fd)
	la, err := unix.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	ra, err := unix.Getpeername(fd)
	if err != nil {
		return fail(err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := t.newConn(fd, t.pick())
	c.laddr, c.raddr, c.prefix = addrPort(la), addrPort(ra), prefix
	if err := c.register(); err != nil {
		return fail(err)
	}
	return c, nil
}
