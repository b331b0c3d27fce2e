//go:build !linux

package network

import (
	"errors"
	"net/netip"

	"github.com/proxylab/proxylab/transport"
)

// originalDst: without NAT lookups the local address is the destination.
func originalDst(tc transport.Conn) (netip.AddrPort, bool, error) {
	ap, ok := addrPort(tc.LocalAddr())
	if !ok {
		return ap, false, errNoSocket
	}
	return ap, false, nil
}

// SetTransparent needs Linux.
func (l *Listener) SetTransparent() error {
	return errors.New("network: transparent listeners need Linux")
}
