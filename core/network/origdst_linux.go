package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/transport"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h).
const ip6tSOOriginalDst = 80

// originalDst asks the kernel for the destination before NAT, else (no NAT
// entry, as under TPROXY) the socket's local address; redirected says
// which.
func originalDst(tc transport.Conn) (dst netip.AddrPort, redirected bool, err error) {
	sc, ok := syscallConner(tc)
	if !ok {
		return dst, false, errNoSocket
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return dst, false, err
	}
	var local netip.AddrPort
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		// The socket's own address: a transport may report its listener's
		// (rawepoll does, bound to 0.0.0.0) where TPROXY kept the
		// destination.
		ls, err := unix.Getsockname(int(fd))
		if err != nil {
			serr = err
			return
		}
		switch ls := ls.(type) {
		case *unix.SockaddrInet4:
			local = netip.AddrPortFrom(netip.AddrFrom4(ls.Addr), uint16(ls.Port))
		case *unix.SockaddrInet6:
			local = netip.AddrPortFrom(netip.AddrFrom16(ls.Addr).Unmap(), uint16(ls.Port))
		default:
			serr = errors.New("network: original destination: not a TCP/IP socket")
			return
		}
		if local.Addr().Is4() {
			var sa unix.RawSockaddrInet4
			l := uint32(unsafe.Sizeof(sa))
			serr = getsockopt(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), &l)
			if serr == nil {
				dst = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
			}
			return
		}
		var sa unix.RawSockaddrInet6
		l := uint32(unsafe.Sizeof(sa))
		serr = getsockopt(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst, unsafe.Pointer(&sa), &l)
		if serr == nil {
			a := netip.AddrFrom16(sa.Addr).Unmap()
			dst = netip.AddrPortFrom(a, binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
		}
	})
	if cerr != nil {
		return dst, false, cerr
	}
	if errors.Is(serr, unix.ENOENT) || errors.Is(serr, unix.ENOPROTOOPT) {
		return local, false, nil // no NAT: the local address is the destination
	}
	if serr != nil {
		return dst, false, serr
	}
	return dst, dst != local, nil
}

func getsockopt(fd, level, opt int, p unsafe.Pointer, l *uint32) error {
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// SetTransparent sets IP_TRANSPARENT (IPV6_TRANSPARENT) on l's socket so
// TPROXY can deliver connections addressed elsewhere to it (needs
// CAP_NET_ADMIN).
func (l *Listener) SetTransparent() error {
	fl, ok := l.tl.(transport.ListenerFDer)
	if !ok {
		return errors.New("network: transparent: the transport's listener has no socket")
	}
	fd, err := fl.ListenerFD()
	if err != nil {
		return err
	}
	if ap, _ := addrPort(l.tl.Addr()); ap.Addr().Is4() {
		err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT, 1)
	} else {
		err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
	}
	if err != nil {
		return fmt.Errorf("network: transparent: %w", err)
	}
	return nil
}
