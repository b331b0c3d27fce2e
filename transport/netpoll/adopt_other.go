//go:build !linux

package netpoll

import (
	"fmt"
	"os"

	"github.com/proxylab/proxylab/transport"
)

// adopt refuses inherited sockets: hot upgrade is Linux only.
func (t *Transport) adopt(fd int, address string) (transport.Listener, error) {
	os.NewFile(uintptr(fd), "").Close()
	return nil, fmt.Errorf("netpoll: adopt %s: hot upgrade is supported on Linux only", address)
}
