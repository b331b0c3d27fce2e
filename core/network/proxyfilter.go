package network

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
)

// ProxyProtocol is the listener filter reading a PROXY header (v1 or v2)
// before anything else on a connection, as HAProxy's accept-proxy and
// Envoy's proxy_protocol listener filter do. The addresses it carries become
// the connection's RemoteAddr and LocalAddr, so access logs,
// X-Forwarded-For and filters see the client's. It goes first among a
// listener's filters: the header precedes a TLS handshake.
//
// A connection is closed and counted when its source is not in Trusted, its
// header is malformed or too long, or no complete header came within
// Timeout. The listener's other filters and its chain only run after.
type ProxyProtocol struct {
	// Version pins 1 or 2; 0 accepts either (auto-detected).
	Version int
	// Trusted are the source prefixes allowed to send a header; others are
	// refused (an untrusted peer could claim any address).
	Trusted []netip.Prefix
	// Timeout bounds the wait for a complete header.
	Timeout time.Duration
	Stats   *ProxyProtocolStats // nil: not counted
}

// ProxyProtocolStats count the filter's outcomes (Envoy's
// proxy_proto.* listener stats).
type ProxyProtocolStats struct {
	Found, Local                                 stats.Counter
	Malformed, TooLong, Untrusted, TimedOut, EOF stats.Counter
}

var _ stats.Collector = (*ProxyProtocolStats)(nil)

// Collect exports the counters as proxylab_proxy_protocol_total{result}.
func (s *ProxyProtocolStats) Collect(emit stats.Emit) {
	for _, r := range []struct {
		name string
		c    *stats.Counter
	}{{"found", &s.Found}, {"local", &s.Local}, {"malformed", &s.Malformed}, {"too_long", &s.TooLong},
		{"untrusted", &s.Untrusted}, {"timeout", &s.TimedOut}, {"eof", &s.EOF}} {
		emit("proxy_protocol_total", "PROXY protocol headers read on a listener, by result (all but found and local refused the connection).",
			stats.CounterKind, float64(r.c.Value()), stats.Label{Name: "result", Value: r.name})
	}
}

// inc counts c (nil: not counted).
func (s *ProxyProtocolStats) inc(c *stats.Counter, key uint64) {
	if c != nil {
		c.Inc(key)
	}
}

var _ AsyncListenerFilter = (*ProxyProtocol)(nil)

// OnAccept is not used: the filter is asynchronous (OnAcceptAsync).
func (f *ProxyProtocol) OnAccept(transport.Conn) transport.Conn { return nil }

// OnAcceptAsync refuses untrusted sources at once, else reads the header
// from tc and resumes with a connection carrying its addresses.
func (f *ProxyProtocol) OnAcceptAsync(tc transport.Conn, resume func(transport.Conn)) {
	key := uint64(time.Now().UnixNano())
	ap, ok := addrPort(tc.RemoteAddr())
	if !ok || !f.trusts(ap.Addr()) {
		f.Stats.inc(f.statsField(func(s *ProxyProtocolStats) *stats.Counter { return &s.Untrusted }), key)
		slog.Debug("network: proxy protocol: untrusted source refused", "remote", tc.RemoteAddr())
		tc.Close()
		return
	}
	c := &ppConn{inner: tc, f: f, key: key, resume: resume}
	if f.Timeout > 0 {
		c.timer = time.AfterFunc(f.Timeout, c.expire)
	}
	tc.Start((*ppHandler)(c))
}

func (f *ProxyProtocol) trusts(a netip.Addr) bool {
	for _, p := range f.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// statsField picks a counter of f.Stats (nil when f counts nothing).
func (f *ProxyProtocol) statsField(pick func(*ProxyProtocolStats) *stats.Counter) *stats.Counter {
	if f.Stats == nil {
		return nil
	}
	return pick(f.Stats)
}

// ppConn is a connection whose PROXY header is being read (state 0), was
// read (1: the rest of the listener runs on it) or was refused (2). Its
// events are inner's, serialized by the transport; the timer may refuse it
// from its own goroutine, which only closes inner.
type ppConn struct {
	inner  transport.Conn
	f      *ProxyProtocol
	key    uint64
	resume func(transport.Conn)
	h      transport.Handler // set by Start, after resume
	held   *buffer.Buf       // header bytes so far; then what followed it
	timer  *time.Timer
	state  atomic.Int32
	remote net.Addr // set once, before state becomes 1
	local  net.Addr
}

// RemoteAddr is the client the header named (the peer itself for LOCAL).
func (c *ppConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.inner.RemoteAddr()
}

// LocalAddr is the destination the header named.
func (c *ppConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.inner.LocalAddr()
}

// Start delivers what followed the header, then inner's events go to h.
func (c *ppConn) Start(h transport.Handler) {
	c.h = h
	if b := c.held; b != nil {
		c.held = nil
		h.OnData(c, b)
	}
}

// expire runs on the timer's goroutine; Close may be called from anywhere.
func (c *ppConn) expire() {
	if c.state.CompareAndSwap(0, 2) {
		c.f.Stats.inc(c.f.statsField(func(s *ProxyProtocolStats) *stats.Counter { return &s.TimedOut }), c.key)
		c.inner.Close()
	}
}

func (c *ppConn) Write(bufs ...*buffer.Buf) (int, error) { return c.inner.Write(bufs...) }
func (c *ppConn) ReadDisable(d bool)                     { c.inner.ReadDisable(d) }
func (c *ppConn) CloseWrite() error                      { return c.inner.CloseWrite() }
func (c *ppConn) Close() error                           { return c.inner.Close() }

// Unwrap is the connection underneath (its socket: original destination).
func (c *ppConn) Unwrap() transport.Conn { return c.inner }

// ppHandler receives inner's events.
type ppHandler ppConn

func (p *ppHandler) OnData(_ transport.Conn, b *buffer.Buf) {
	c := (*ppConn)(p)
	switch c.state.Load() {
	case 1:
		if c.h != nil {
			c.h.OnData(c, b)
			return
		}
		b.Release()
		return
	case 2:
		b.Release()
		return
	}
	if c.held != nil {
		nb := buffer.Get(c.held.Len() + b.Len())
		nb.Append(c.held.Bytes())
		nb.Append(b.Bytes())
		c.held.Release()
		b.Release()
		b, c.held = nb, nil
	}
	hdr, n, err := ParseProxyHeader(b.Bytes(), c.f.Version)
	if errors.Is(err, ErrProxyNeedMore) {
		c.held = b
		return
	}
	if err != nil {
		b.Release()
		c.refuse(err)
		return
	}
	if !hdr.Local {
		c.remote, c.local = net.TCPAddrFromAddrPort(hdr.Src), net.TCPAddrFromAddrPort(hdr.Dst)
	}
	if !c.state.CompareAndSwap(0, 1) {
		b.Release() // the timer won
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	pick := func(s *ProxyProtocolStats) *stats.Counter { return &s.Found }
	if hdr.Local {
		pick = func(s *ProxyProtocolStats) *stats.Counter { return &s.Local }
	}
	c.f.Stats.inc(c.f.statsField(pick), c.key)
	if b.Len() > n {
		c.held = buffer.Get(b.Len() - n)
		c.held.Append(b.Bytes()[n:])
	}
	b.Release()
	c.resume(c)
}

func (c *ppConn) refuse(err error) {
	if !c.state.CompareAndSwap(0, 2) {
		return
	}
	pick := func(s *ProxyProtocolStats) *stats.Counter { return &s.Malformed }
	if errors.Is(err, ErrProxyTooLong) {
		pick = func(s *ProxyProtocolStats) *stats.Counter { return &s.TooLong }
	}
	c.f.Stats.inc(c.f.statsField(pick), c.key)
	slog.Debug("network: proxy protocol: refused", "remote", c.inner.RemoteAddr(), "err", err)
	c.inner.Close()
}

func (p *ppHandler) OnReadEOF(transport.Conn) {
	c := (*ppConn)(p)
	if c.state.Load() == 1 && c.h != nil {
		c.h.OnReadEOF(c)
		return
	}
	if c.state.CompareAndSwap(0, 2) {
		c.f.Stats.inc(c.f.statsField(func(s *ProxyProtocolStats) *stats.Counter { return &s.EOF }), c.key)
	}
	c.inner.Close()
}

func (p *ppHandler) OnDrained(transport.Conn) {
	if c := (*ppConn)(p); c.h != nil {
		c.h.OnDrained(c)
	}
}

func (p *ppHandler) OnClose(_ transport.Conn, err error) {
	c := (*ppConn)(p)
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.held != nil {
		c.held.Release()
		c.held = nil
	}
	c.state.CompareAndSwap(0, 2)
	if c.h != nil {
		c.h.OnClose(c, err)
	}
}
