package ktls

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// hostSupports sets TCP_ULP "tls" on a connected loopback socket (the ULP
// attaches only to established connections): ENOENT means the kernel has
// no TLS module.
func hostSupports() (bool, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, fmt.Sprintf("probe: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return false, fmt.Sprintf("probe: %v", err)
	}
	defer c.Close()
	if a, err := ln.Accept(); err == nil {
		a.Close()
	}
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return false, fmt.Sprintf("probe: %v", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.SOL_TCP, unix.TCP_ULP, "tls")
	}); err != nil {
		return false, fmt.Sprintf("probe: %v", err)
	}
	switch {
	case serr == nil:
		return true, ""
	case errors.Is(serr, syscall.ENOENT):
		return false, "setsockopt TCP_ULP tls: ENOENT (no tls module in this kernel)"
	}
	return false, fmt.Sprintf("setsockopt TCP_ULP tls: %v", serr)
}
