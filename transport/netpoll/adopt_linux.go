package netpoll

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/internal/sockcheck"
)

var _ transport.ListenerFDer = (*listener)(nil)

// adopt takes over an inherited listening socket (hot upgrade); it owns fd
// from here on, also on error.
func (t *Transport) adopt(fd int, address string) (transport.Listener, error) {
	if err := sockcheck.Listening(fd); err != nil {
		os.NewFile(uintptr(fd), "").Close()
		return nil, fmt.Errorf("netpoll: adopt %s: %w", address, err)
	}
	f := os.NewFile(uintptr(fd), "inherited "+address)
	l, err := net.FileListener(f) // a duplicate registered with the poller
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("netpoll: adopt %s: %w", address, err)
	}
	tl, ok := l.(*net.TCPListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("netpoll: adopt %s: not a TCP listener", address)
	}
	return &listener{l: tl, t: t, done: make(chan struct{})}, nil
}

// ListenerFD is the listening socket (transport.ListenerFDer).
func (l *listener) ListenerFD() (int, error) {
	rc, err := l.l.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("netpoll: %w", err)
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, fmt.Errorf("netpoll: %w", err)
	}
	return fd, nil
}

var (
	_ transport.Detacher    = (*conn)(nil)
	_ transport.ConnAdopter = (*Transport)(nil)
)

// Detach hands the socket over (transport.Detacher): the read goroutine
// stops before its next read (a parked read is woken by a past deadline)
// and calls done before it reports OnClose.
func (c *conn) Detach(done func(fd int, err error)) error {
	c.wmu.Lock()
	closed, busy := c.closed.Load() || c.werr != nil, c.q.Len() > 0 || c.flushing
	c.wmu.Unlock()
	switch {
	case closed:
		return transport.ErrClosed
	case busy:
		return transport.ErrBusy
	case !c.detachFn.CompareAndSwap(nil, &done):
		return errors.New("netpoll: already detaching")
	}
	select {
	case c.rdWake <- struct{}{}:
	default:
	}
	c.tc.SetReadDeadline(time.Unix(1, 0))
	return nil
}

// handOver duplicates the socket for done; read goroutine only.
func (c *conn) handOver(done func(int, error)) {
	fd, derr := -1, error(nil)
	if err := c.rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		derr = err
	}
	if derr != nil {
		done(-1, fmt.Errorf("netpoll: detach: %w", derr))
		return
	}
	done(fd, nil)
}

// AdoptConn takes over a connected socket (transport.ConnAdopter).
func (t *Transport) AdoptConn(fd int, prefix *buffer.Buf) (transport.Conn, error) {
	f := os.NewFile(uintptr(fd), "migrated")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		prefix.Release()
		return nil, fmt.Errorf("netpoll: adopt connection: %w", err)
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		prefix.Release()
		return nil, fmt.Errorf("netpoll: adopt connection: not TCP")
	}
	tc.SetNoDelay(true)
	c, err := t.newConn(tc)
	if err != nil {
		tc.Close()
		prefix.Release()
		return nil, err
	}
	c.prefix = prefix
	return c, nil
}

// reusePort sets SO_REUSEPORT before bind (Options.ReusePort).
func reusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", serr)
	}
	return nil
}
