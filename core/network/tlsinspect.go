package network

import (
	"net"
	"sync/atomic"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/transport"
)

// TLSInspector is the listener filter that secures a listener's
// connections with an engine. With Inspect, or with Beside servers, the
// first bytes decide which: the servers are asked in order (Beside first,
// Server last) whether the bytes start their handshake (offload.Claimer);
// none claiming, the connection is plaintext with Inspect and Server's
// otherwise. What is looked at is not consumed. Which bytes mean which
// engine the engines know (e.g. gm claims TLCP's record version 0x0101).
type TLSInspector struct {
	Server  offload.Server
	Inspect bool
	Beside  []offload.Server
}

var _ ListenerFilter = (*TLSInspector)(nil)

func (f *TLSInspector) OnAccept(tc transport.Conn) transport.Conn {
	if !f.Inspect && len(f.Beside) == 0 {
		return secured{f.Server.Wrap(tc)}
	}
	return &sniffConn{inner: tc, f: f}
}

// pick asks the servers in order; nil: plaintext.
func (f *TLSInspector) pick(first []byte) (srv offload.Server, needMore bool) {
	for _, s := range f.Beside {
		if match, more := claims(s, first); match || more {
			return s, more
		}
	}
	if match, more := claims(f.Server, first); match || more || !f.Inspect {
		return f.Server, more
	}
	return nil, false
}

// claims asks s; a server that cannot tell claims everything.
func claims(s offload.Server, first []byte) (match, needMore bool) {
	if c, ok := s.(offload.Claimer); ok {
		return c.Claims(first)
	}
	return true, false
}

// secured marks an engine connection as secure.
type secured struct{ offload.Conn }

func (secured) IsSecure() bool { return true }

// sniffConn waits for the first bytes, then routes everything either through
// the engine or straight to the handler.
type sniffConn struct {
	inner  transport.Conn
	f      *TLSInspector
	held   *buffer.Buf
	h      transport.Handler
	route  transport.Handler // where inner's events go once decided
	target atomic.Pointer[transport.Conn]
	tls    atomic.Bool
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
		srv, needMore := c.f.pick(b.Bytes())
		switch {
		case needMore:
			// Too little to tell: wait for more.
			c.held = b
			return
		case srv != nil:
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
