package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt): a header a proxy writes
// before the first byte of a connection, carrying the client's address.

// ProxyHeader is a decoded PROXY header. Local is true for a v2 LOCAL
// command or a v1 "UNKNOWN" line: the connection's own addresses stand.
type ProxyHeader struct {
	Version  int
	Local    bool
	Src, Dst netip.AddrPort
}

const (
	proxyV1Max = 107 // the longest v1 line, CRLF included (spec 2.1)
	// ProxyV2Max bounds a v2 header (16-byte prefix and TLVs); longer is
	// refused as too long (HAProxy's own limit is the same order).
	ProxyV2Max = 16 + 1024
)

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

	// ErrProxyNeedMore: b is a valid beginning; read more.
	ErrProxyNeedMore = errors.New("network: proxy protocol: incomplete header")
	// ErrProxyTooLong: the header exceeds its version's bound.
	ErrProxyTooLong = errors.New("network: proxy protocol: header too long")
	// ErrProxyMalformed: b is not a PROXY header.
	ErrProxyMalformed = errors.New("network: proxy protocol: malformed header")
)

// ParseProxyHeader decodes the header at the start of b, of version want (1
// or 2; 0 accepts either). It returns the header and its length; bytes after
// it belong to the application. ErrProxyNeedMore means b is too short yet.
func ParseProxyHeader(b []byte, want int) (ProxyHeader, int, error) {
	if want != 2 {
		if n := min(len(b), len(proxyV1Sig)); bytes.Equal(b[:n], proxyV1Sig[:n]) {
			if n < len(proxyV1Sig) {
				return ProxyHeader{}, 0, ErrProxyNeedMore
			}
			return parseProxyV1(b)
		}
	}
	if want != 1 {
		if n := min(len(b), len(proxyV2Sig)); bytes.Equal(b[:n], proxyV2Sig[:n]) {
			return parseProxyV2(b)
		}
	}
	if len(b) == 0 {
		return ProxyHeader{}, 0, ErrProxyNeedMore
	}
	return ProxyHeader{}, 0, ErrProxyMalformed
}

func parseProxyV1(b []byte) (ProxyHeader, int, error) {
	end := bytes.Index(b[:min(len(b), proxyV1Max)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= proxyV1Max {
			return ProxyHeader{}, 0, ErrProxyTooLong
		}
		if bytes.IndexByte(b, '\n') >= 0 {
			return ProxyHeader{}, 0, fmt.Errorf("%w: v1 line not ended by CRLF", ErrProxyMalformed)
		}
		return ProxyHeader{}, 0, ErrProxyNeedMore
	}
	f := bytes.Split(b[len(proxyV1Sig):end], []byte(" "))
	h := ProxyHeader{Version: 1}
	if string(f[0]) == "UNKNOWN" { // the rest of the line is ignored (spec)
		h.Local = true
		return h, end + 2, nil
	}
	if len(f) != 5 || (string(f[0]) != "TCP4" && string(f[0]) != "TCP6") {
		return ProxyHeader{}, 0, fmt.Errorf("%w: v1 wants TCP4|TCP6 src dst sport dport", ErrProxyMalformed)
	}
	v4 := string(f[0]) == "TCP4"
	var addrs [2]netip.AddrPort
	for i := range 2 {
		a, err := netip.ParseAddr(string(f[1+i]))
		if err != nil || a.Is4() != v4 || a.Zone() != "" {
			return ProxyHeader{}, 0, fmt.Errorf("%w: v1 address %q", ErrProxyMalformed, f[1+i])
		}
		p := f[3+i]
		if len(p) == 0 || len(p) > 5 || (len(p) > 1 && p[0] == '0') {
			return ProxyHeader{}, 0, fmt.Errorf("%w: v1 port %q", ErrProxyMalformed, p)
		}
		port, err := strconv.ParseUint(string(p), 10, 16)
		if err != nil {
			return ProxyHeader{}, 0, fmt.Errorf("%w: v1 port %q", ErrProxyMalformed, p)
		}
		addrs[i] = netip.AddrPortFrom(a, uint16(port))
	}
	h.Src, h.Dst = addrs[0], addrs[1]
	return h, end + 2, nil
}

func parseProxyV2(b []byte) (ProxyHeader, int, error) {
	if len(b) < 16 {
		return ProxyHeader{}, 0, ErrProxyNeedMore
	}
	verCmd, fam := b[12], b[13]
	if verCmd>>4 != 2 {
		return ProxyHeader{}, 0, fmt.Errorf("%w: v2 version nibble %d", ErrProxyMalformed, verCmd>>4)
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if n > ProxyV2Max {
		return ProxyHeader{}, 0, ErrProxyTooLong
	}
	if len(b) < n {
		return ProxyHeader{}, 0, ErrProxyNeedMore
	}
	h := ProxyHeader{Version: 2}
	body := b[16:n]
	switch verCmd & 0xF {
	case 0: // LOCAL: health checks of the sending proxy; no address
		h.Local = true
		return h, n, nil
	case 1: // PROXY
	default:
		return ProxyHeader{}, 0, fmt.Errorf("%w: v2 command %d", ErrProxyMalformed, verCmd&0xF)
	}
	switch fam {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return ProxyHeader{}, 0, fmt.Errorf("%w: v2 IPv4 block of %d bytes", ErrProxyMalformed, len(body))
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return ProxyHeader{}, 0, fmt.Errorf("%w: v2 IPv6 block of %d bytes", ErrProxyMalformed, len(body))
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	case 0x00: // UNSPEC: the spec says keep the connection's own addresses
		h.Local = true
	default: // UDP, unix sockets: not something a TCP listener can stand for
		return ProxyHeader{}, 0, fmt.Errorf("%w: v2 family/transport 0x%02x", ErrProxyMalformed, fam)
	}
	return h, n, nil
}

// AppendProxyHeader appends a version 1 or 2 PROXY header for a connection
// from src to dst (TCP addresses of the same family; anything else is sent
// as v1 UNKNOWN / v2 LOCAL, which the receiver reads as "no address").
func AppendProxyHeader(dst []byte, version int, from, to net.Addr) []byte {
	s, sok := addrPort(from)
	d, dok := addrPort(to)
	known := sok && dok && s.Addr().Is4() == d.Addr().Is4()
	if version == 1 {
		if !known {
			return append(dst, "PROXY UNKNOWN\r\n"...)
		}
		fam := "TCP4 "
		if !s.Addr().Is4() {
			fam = "TCP6 "
		}
		dst = append(append(dst, "PROXY "...), fam...)
		dst = append(s.Addr().AppendTo(dst), ' ')
		dst = append(d.Addr().AppendTo(dst), ' ')
		dst = append(strconv.AppendUint(dst, uint64(s.Port()), 10), ' ')
		dst = strconv.AppendUint(dst, uint64(d.Port()), 10)
		return append(dst, "\r\n"...)
	}
	dst = append(dst, proxyV2Sig...)
	switch {
	case !known:
		return append(dst, 0x20, 0x00, 0, 0)
	case s.Addr().Is4():
		dst = append(dst, 0x21, 0x11, 0, 12)
		dst = append(dst, s.Addr().AsSlice()...)
		dst = append(dst, d.Addr().AsSlice()...)
	default:
		dst = append(dst, 0x21, 0x21, 0, 36)
		dst = append(dst, s.Addr().AsSlice()...)
		dst = append(dst, d.Addr().AsSlice()...)
	}
	dst = binary.BigEndian.AppendUint16(dst, s.Port())
	return binary.BigEndian.AppendUint16(dst, d.Port())
}

// addrPort is a TCP address as netip (IPv4-mapped IPv6 unmapped).
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.Addr().IsValid()
}
