package rawepoll

import (
	"fmt"

	"golang.org/x/sys/unix"

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
