package network

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func v2(cmd, fam byte, body []byte) []byte {
	b := append([]byte{}, proxyV2Sig...)
	b = append(b, 0x20|cmd, fam, byte(len(body)>>8), byte(len(body)))
	return append(b, body...)
}

func TestParseProxyHeader(t *testing.T) {
	v4body := []byte{192, 0, 2, 1, 198, 51, 100, 7, 0x30, 0x39, 0x01, 0xbb}
	v6body := make([]byte, 36)
	copy(v6body, netip.MustParseAddr("2001:db8::1").AsSlice())
	copy(v6body[16:], netip.MustParseAddr("2001:db8::2").AsSlice())
	v6body[32], v6body[33], v6body[34], v6body[35] = 0, 80, 0, 81
	long := v2(1, 0x11, make([]byte, ProxyV2Max))
	tests := []struct {
		name     string
		in       string
		want     int // version pinned (0: either)
		err      error
		n        int
		src, dst string
		local    bool
	}{
		{name: "v1 tcp4", in: "PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\nGET", n: 45, src: "192.0.2.1:12345", dst: "198.51.100.7:443"},
		{name: "v1 tcp6", in: "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", n: 44, src: "[2001:db8::1]:1", dst: "[2001:db8::2]:65535"},
		{name: "v1 unknown", in: "PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\nx", n: 39, local: true},
		{name: "v1 partial", in: "PROXY TCP4 192.0.2.1", err: ErrProxyNeedMore},
		{name: "v1 partial sig", in: "PRO", err: ErrProxyNeedMore},
		{name: "empty", in: "", err: ErrProxyNeedMore},
		{name: "v1 family mismatch", in: "PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n", err: ErrProxyMalformed},
		{name: "v1 port too big", in: "PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n", err: ErrProxyMalformed},
		{name: "v1 port leading zero", in: "PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n", err: ErrProxyMalformed},
		{name: "v1 port sign", in: "PROXY TCP4 192.0.2.1 192.0.2.2 +1 2\r\n", err: ErrProxyMalformed},
		{name: "v1 extra field", in: "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n", err: ErrProxyMalformed},
		{name: "v1 double space", in: "PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n", err: ErrProxyMalformed},
		{name: "v1 bare LF", in: "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", err: ErrProxyMalformed},
		{name: "v1 zone", in: "PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n", err: ErrProxyMalformed},
		{name: "v1 too long", in: "PROXY TCP4 " + string(bytes.Repeat([]byte("1"), 120)), err: ErrProxyTooLong},
		{name: "v1 pinned v2", in: "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n", want: 2, err: ErrProxyMalformed},
		{name: "not proxy", in: "GET / HTTP/1.1\r\n", err: ErrProxyMalformed},
		{name: "v2 tcp4", in: string(v2(1, 0x11, v4body)) + "tail", n: 28, src: "192.0.2.1:12345", dst: "198.51.100.7:443"},
		{name: "v2 tcp4 with TLVs", in: string(v2(1, 0x11, append(append([]byte{}, v4body...), 0x04, 0, 1, 0))), n: 32, src: "192.0.2.1:12345", dst: "198.51.100.7:443"},
		{name: "v2 tcp6", in: string(v2(1, 0x21, v6body)), n: 52, src: "[2001:db8::1]:80", dst: "[2001:db8::2]:81"},
		{name: "v2 local", in: string(v2(0, 0x00, nil)), n: 16, local: true},
		{name: "v2 unspec", in: string(v2(1, 0x00, []byte{1, 2})), n: 18, local: true},
		{name: "v2 partial", in: string(v2(1, 0x11, v4body)[:20]), err: ErrProxyNeedMore},
		{name: "v2 partial sig", in: "\r\n\r\n\x00", err: ErrProxyNeedMore},
		{name: "v2 short ipv4 block", in: string(v2(1, 0x11, v4body[:8])), err: ErrProxyMalformed},
		{name: "v2 udp", in: string(v2(1, 0x12, v4body)), err: ErrProxyMalformed},
		{name: "v2 unix", in: string(v2(1, 0x31, make([]byte, 216))), err: ErrProxyMalformed},
		{name: "v2 bad command", in: string(v2(2, 0x11, v4body)), err: ErrProxyMalformed},
		{name: "v2 bad version", in: string(append(append([]byte{}, proxyV2Sig...), 0x11, 0x11, 0, 0)), err: ErrProxyMalformed},
		{name: "v2 too long", in: string(long[:16]), err: ErrProxyTooLong},
		{name: "v2 pinned v1", in: string(v2(1, 0x11, v4body)), want: 1, err: ErrProxyMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ParseProxyHeader([]byte(tt.in), tt.want)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if n != tt.n || h.Local != tt.local {
				t.Fatalf("n = %d local = %v, want %d %v", n, h.Local, tt.n, tt.local)
			}
			if !tt.local && (h.Src.String() != tt.src || h.Dst.String() != tt.dst) {
				t.Fatalf("src %s dst %s, want %s %s", h.Src, h.Dst, tt.src, tt.dst)
			}
		})
	}
}

func TestAppendProxyHeaderRoundTrip(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tests := []struct {
		from, to net.Addr
		local    bool
	}{
		{tcp("192.0.2.1:1234"), tcp("198.51.100.7:80"), false},
		{tcp("[2001:db8::1]:1"), tcp("[2001:db8::2]:65535"), false},
		{tcp("[::ffff:192.0.2.1]:9"), tcp("192.0.2.2:10"), false}, // mapped: sent as TCP4
		{tcp("192.0.2.1:1"), tcp("[2001:db8::2]:2"), true},        // mixed families: UNKNOWN / LOCAL
		{&net.UnixAddr{Name: "/x"}, tcp("192.0.2.2:10"), true},
	}
	for _, v := range []int{1, 2} {
		for _, tt := range tests {
			b := AppendProxyHeader(nil, v, tt.from, tt.to)
			h, n, err := ParseProxyHeader(b, v)
			if err != nil || n != len(b) || h.Version != v || h.Local != tt.local {
				t.Fatalf("v%d %v→%v: %q: h=%+v n=%d err=%v", v, tt.from, tt.to, b, h, n, err)
			}
			if !tt.local {
				fs, _ := addrPort(tt.from)
				if h.Src != fs {
					t.Fatalf("v%d: src %v, want %v", v, h.Src, fs)
				}
			}
		}
	}
}

// FuzzProxyProtocol: the decoder never panics, never claims more bytes than
// it has, needs-more only for a prefix that can still grow into a header
// within bound, and what it accepts re-encodes to what it decodes.
func FuzzProxyProtocol(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\n"), byte(0))
	f.Add([]byte("PROXY UNKNOWN\r\n"), byte(1))
	f.Add(v2(1, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 7, 0x30, 0x39, 0x01, 0xbb}), byte(2))
	f.Add(v2(1, 0x21, make([]byte, 40)), byte(0))
	f.Add(v2(0, 0, nil), byte(0))
	f.Fuzz(func(t *testing.T, b []byte, want byte) {
		w := int(want % 3)
		h, n, err := ParseProxyHeader(b, w)
		if errors.Is(err, ErrProxyNeedMore) {
			if len(b) >= ProxyV2Max {
				t.Fatalf("needs more after %d bytes", len(b))
			}
			return
		}
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) || n > ProxyV2Max {
			t.Fatalf("n = %d of %d", n, len(b))
		}
		if w != 0 && h.Version != w {
			t.Fatalf("version %d, pinned %d", h.Version, w)
		}
		if h.Local {
			return
		}
		src, dst := net.TCPAddrFromAddrPort(h.Src), net.TCPAddrFromAddrPort(h.Dst)
		again, n2, err := ParseProxyHeader(AppendProxyHeader(nil, h.Version, src, dst), h.Version)
		if unmapped(h.Src).Addr().Is4() != unmapped(h.Dst).Addr().Is4() {
			if err != nil || !again.Local { // mixed families go out as "no address"
				t.Fatalf("mixed %+v re-encoded as %+v %v", h, again, err)
			}
			return
		}
		if err != nil || n2 == 0 || again.Src != unmapped(h.Src) || again.Dst != unmapped(h.Dst) {
			t.Fatalf("re-encoded %+v: %+v %v", h, again, err)
		}
	})
}

func unmapped(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
