package network

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
)

// OriginalDst is the listener filter recovering where an intercepted
// connection was going: the destination before iptables REDIRECT
// (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST), or, when there was no NAT
// (TPROXY, IP_TRANSPARENT), the connection's local address. The connection
// goes on with that destination as its LocalAddr, which an original_dst
// cluster connects to (Envoy's original_dst listener filter).
//
// A destination that is the listener itself (a client dialing the proxy's
// own port, which would make it connect to itself forever) is refused and
// counted.
type OriginalDst struct {
	// Own is the listener's bound address (set once the listener is bound,
	// before it accepts).
	Own   func() net.Addr
	Stats *OriginalDstStats // nil: not counted
}

// OriginalDstStats count the filter's outcomes.
type OriginalDstStats struct {
	NAT, Local, Loop, Failed stats.Counter
}

var _ stats.Collector = (*OriginalDstStats)(nil)

// Collect exports proxylab_original_dst_total{result}.
func (s *OriginalDstStats) Collect(emit stats.Emit) {
	for _, r := range []struct {
		name string
		c    *stats.Counter
	}{{"redirected", &s.NAT}, {"local", &s.Local}, {"loop", &s.Loop}, {"failed", &s.Failed}} {
		emit("original_dst_total", "Original destinations read on a listener: redirected (SO_ORIGINAL_DST), local (TPROXY or not intercepted), loop and failed (refused).",
			stats.CounterKind, float64(r.c.Value()), stats.Label{Name: "result", Value: r.name})
	}
}

var _ ListenerFilter = (*OriginalDst)(nil)

func (f *OriginalDst) OnAccept(tc transport.Conn) transport.Conn {
	key := uint64(time.Now().UnixNano())
	dst, redirected, err := originalDst(tc)
	if err != nil {
		f.count(func(s *OriginalDstStats) *stats.Counter { return &s.Failed }, key)
		slog.Debug("network: original destination unknown", "remote", tc.RemoteAddr(), "err", err)
		return nil
	}
	if f.isOwn(dst, redirected) {
		f.count(func(s *OriginalDstStats) *stats.Counter { return &s.Loop }, key)
		slog.Debug("network: original destination is the proxy itself: refused", "remote", tc.RemoteAddr(), "dst", dst)
		return nil
	}
	if redirected {
		f.count(func(s *OriginalDstStats) *stats.Counter { return &s.NAT }, key)
	} else {
		f.count(func(s *OriginalDstStats) *stats.Counter { return &s.Local }, key)
	}
	return &dstConn{Conn: tc, dst: net.TCPAddrFromAddrPort(dst)}
}

func (f *OriginalDst) count(pick func(*OriginalDstStats) *stats.Counter, key uint64) {
	if f.Stats != nil {
		pick(f.Stats).Inc(key)
	}
}

// isOwn: dst is the listener's own address: its port on its IP or, bound
// to the unspecified address, on any local IP. Not redirected, dst is the
// socket's local address, so the port alone tells; a redirected one on the
// listener's port is the proxy only on loopback or its bound IP.
func (f *OriginalDst) isOwn(dst netip.AddrPort, redirected bool) bool {
	if f.Own == nil {
		return false
	}
	own, ok := addrPort(f.Own())
	if !ok || own.Port() != dst.Port() {
		return false
	}
	if !redirected || dst.Addr().IsLoopback() {
		return true
	}
	return own.Addr() == dst.Addr()
}

// dstConn is a connection whose LocalAddr is its original destination.
type dstConn struct {
	transport.Conn
	dst net.Addr
}

func (c *dstConn) LocalAddr() net.Addr { return c.dst }

// Unwrap is the connection underneath.
func (c *dstConn) Unwrap() transport.Conn { return c.Conn }

var _ transport.Splicer = (*dstConn)(nil)

// errNoSplice: the connection underneath cannot forward in the kernel.
var errNoSplice = errors.New("network: original destination: the transport does not splice")

// Splice lets the transport join the socket underneath with peer (the
// destination only changed what LocalAddr says).
func (c *dstConn) Splice(peer transport.Conn) error {
	if s, ok := c.Conn.(transport.Splicer); ok {
		return s.Splice(peer)
	}
	return errNoSplice
}

// SplicedBytes is the connection underneath's (0 if it cannot splice).
func (c *dstConn) SplicedBytes() uint64 {
	if s, ok := c.Conn.(transport.Splicer); ok {
		return s.SplicedBytes()
	}
	return 0
}

// errNoSocket: the connection has no kernel socket to ask (dpdk).
var errNoSocket = errors.New("network: original destination: no kernel socket")

// syscallConner finds the kernel socket under wrappers (Unwrap).
func syscallConner(tc transport.Conn) (transport.SyscallConner, bool) {
	for {
		if sc, ok := tc.(transport.SyscallConner); ok {
			return sc, true
		}
		u, ok := tc.(interface{ Unwrap() transport.Conn })
		if !ok {
			return nil, false
		}
		tc = u.Unwrap()
	}
}
