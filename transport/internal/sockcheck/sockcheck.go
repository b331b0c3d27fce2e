//go:build linux

// Package sockcheck checks descriptors a transport is asked to adopt (hot
// upgrade), so a wrong descriptor is refused with a reason instead of
// failing later in accept.
package sockcheck

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Listening returns nil when fd is a listening TCP socket (IPv4 or IPv6),
// and makes it non-blocking and close-on-exec.
func Listening(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("sockcheck: fd %d: %w", fd, err)
	}
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("sockcheck: fd %d: %w", fd, err)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return fmt.Errorf("sockcheck: fd %d: %w", fd, err)
	}
	if typ != unix.SOCK_STREAM || (dom != unix.AF_INET && dom != unix.AF_INET6) || acc != 1 {
		return fmt.Errorf("sockcheck: fd %d is not a listening TCP socket (type %d, domain %d, accepting %d)", fd, typ, dom, acc)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("sockcheck: fd %d: %w", fd, err)
	}
	unix.CloseOnExec(fd)
	return nil
}
