//go:build !linux

package netpoll

import (
	"fmt"
	"os"
	"syscall"

	"github.com/proxylab/proxylab/transport"
)

// adopt refuses inherited sockets: hot upgrade is Linux only.
func (t *Transport) adopt(fd int, address string) (transport.Listener, error) {
	os.NewFile(uintptr(fd), "").Close()
	return nil, fmt.Errorf("netpoll: adopt %s: hot upgrade is supported on Linux only", address)
}

// handOver is unreachable: Detach exists on Linux only.
func (c *conn) handOver(done func(int, error)) {
	done(-1, fmt.Errorf("netpoll: hot upgrade is supported on Linux only"))
}

// reusePort refuses: reuse_port is Linux only here.
func reusePort(_, _ string, _ syscall.RawConn) error {
	return fmt.Errorf("reuse_port is supported on Linux only")
}
