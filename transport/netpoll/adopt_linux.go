package netpoll

import (
	"fmt"
	"net"
	"os"

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
	return &listener{l: tl, t: t}, nil
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
