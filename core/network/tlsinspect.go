package network

import (
	"net"
	"sync/atomic"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/transport"
)

// TLSInspector is the listener filter that secures a listener's
// connections with an engine. With
// Inspect, one port serves TLS and plaintext clients: the first byte decides
// (a TLS record starts with 0x16, no HTTP request does). With TLCP set, the
// same port also serves TLCP clients, told apart by the ClientHello
// record's version (0x0101). What is looked at is not consumed.
type TLSInspector struct {
	Server  offload.Server
	Inspect bool
	TLCP    offload.Server
}

var _ ListenerFilter = (*TLSInspector)(nil)

func (f *TLSInspector) OnAccept(tc transport.Conn) transport.Conn {
	if !f.Inspect && f.TLCP == nil {
		return secured{f.Server.Wrap(tc)}
	}
	return &sniffConn{inner: tc, srv: f.Server, tlcp: f.TLCP, plainOK: f.Inspect}
}

// secured marks an engine connection as secure.
type secured struct{ offload.Conn }

func (secured) IsSecure() bool { return true }

// sniffConn waits for the first bytes, then routes everything either through
// the engine or straight to the handler.
type sniffConn struct {
	inner   transport.Conn
	srv     offload.Server
	tlcp    offload.Server // serves ClientHellos of record version 0x0101, when set
	plainOK bool           // non-TLS first bytes go through in plaintext
	held    *buffer.Buf
	h       transport.Handler
	route   transport.Handler // where inner's events go once decided
	target  atomic.Pointer[transport.Conn]
	tls     atomic.Bool
}

func (c *sniffConn) LocalAddr() net.Addr  { return c.inner.LocalAddr() }
func (c *sniffConn) RemoteAddr() net.Addr { return c.inner.RemoteAddr() }
func (c *sniffConn) IsSecure() bool       { return c.tls.Load() }

func (c *sniffConn) Start(h transport.Handler) {
	c.h = h
	c.inner.Start((*sniffHandler)(c))
}

func (c *sniffConn) conn() transport.Conn {
	if t := c.target.Load(); t != nil {
		return *t
	}
	return c.inner
}

func (c *sniffConn) Write(bufs ...*buffer.Buf) (int, error) { return c.conn().Write(bufs...) }
func (c *sniffConn) ReadDisable(d bool)                     { c.conn().ReadDisable(d) }
func (c *sniffConn) CloseWrite() error                      { return c.conn().CloseWrite() }
func (c *sniffConn) Close() error                           { return c.conn().Close() }

// sniffHandler receives inner's events; they are serialized by the transport.
type sniffHandler sniffConn

func (s *sniffHandler) OnData(tc transport.Conn, b *buffer.Buf) {
	c := (*sniffConn)(s)
	if c.route == nil {
		if c.held != nil {
			nb := buffer.Get(c.held.Len() + b.Len())
			nb.Append(c.held.Bytes())
			nb.Append(b.Bytes())
			c.held.Release()
			b.Release()
			b, c.held = nb, nil
		}
		p := b.Bytes()
		switch {
		case p[0] == 0x16 && c.tlcp != nil && len(p) < 3:
			// Too little to read the record version: wait for more.
			c.held = b
			return
		case p[0] == 0x16 || !c.plainOK: // a TLS (or TLCP) handshake record
			srv := c.srv
			if c.tlcp != nil && len(p) >= 3 && p[1] == 0x01 && p[2] == 0x01 {
				srv = c.tlcp
			}
			sc := srv.Wrap(c.inner)
			var t transport.Conn = sc
			c.target.Store(&t)
			c.tls.Store(true)
			c.route = sc.Attach(plainSide{c})
		default:
			var t transport.Conn = c.inner
			c.target.Store(&t)
			c.route = plainSide{c}
		}
	}
	c.route.OnData(tc, b)
}

func (s *sniffHandler) OnReadEOF(tc transport.Conn) { s.routeOrPlain().OnReadEOF(tc) }
func (s *sniffHandler) OnDrained(tc transport.Conn) { s.routeOrPlain().OnDrained(tc) }
func (s *sniffHandler) OnClose(tc transport.Conn, err error) {
	if s.held != nil {
		s.held.Release()
		s.held = nil
	}
	s.routeOrPlain().OnClose(tc, err)
}

func (s *sniffHandler) routeOrPlain() transport.Handler {
	if s.route != nil {
		return s.route
	}
	return plainSide{(*sniffConn)(s)}
}

// plainSide hands events to the upper handler as coming from the sniffConn.
type plainSide struct{ c *sniffConn }

func (p plainSide) OnData(_ transport.Conn, b *buffer.Buf) { p.c.h.OnData(p.c, b) }
func (p plainSide) OnReadEOF(transport.Conn)               { p.c.h.OnReadEOF(p.c) }
func (p plainSide) OnDrained(transport.Conn)               { p.c.h.OnDrained(p.c) }
func (p plainSide) OnClose(_ transport.Conn, err error)    { p.c.h.OnClose(p.c, err) }
