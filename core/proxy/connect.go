package proxy

import (
	"context"
	"fmt"
	"net"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// rawUpstream is the destination of a terminated CONNECT: a TCP connection
// the proxy dialled itself, used as the stream's RequestEncoder (bytes are
// written raw, end is a half-close) and feeding the stream's upstream
// decoder. It belongs to one httpStream; all its events run under the
// downstream session. Its connection is closed when the tunnel ends.
type rawUpstream struct {
	s    *httpStream
	addr string
	tc   transport.Conn

	queued       int
	disabled     int
	aboveHW      bool
	reset        bool // reset or closed: nothing more is delivered
	inEnded      bool // the destination half-closed
	outEnded     bool // our half-close is queued
	closeOnDrain bool
}

var (
	_ stream.RequestEncoder = (*rawUpstream)(nil)
	_ transport.Handler     = (*rawUpstream)(nil)
)

func bufFrom(p []byte) *buffer.Buf { return buffer.From(p) }

// onConnect runs on the transport's goroutine when the dial completes.
func (r *rawUpstream) onConnect(tc transport.Conn, err error) {
	s := r.s
	sess := s.cm.conn
	sess.Lock()
	defer sess.Unlock()
	if s.done || r.reset {
		if tc != nil {
			tc.Close()
		}
		return
	}
	if err != nil {
		s.localReply(503, "UF", fmt.Sprintf("CONNECT to %s failed: %v", r.addr, err))
		return
	}
	r.tc = tc
	tc.Start(r)
	s.up.enc = r
	h := protocol.Head{Status: 200, ContentLength: -1}
	s.up.DecodeHead(&h, false)
}

// resolveAndDial looks a destination name up (bounded by the connect
// timeout) and dials its first address, IPv4 preferred; it runs on its own
// goroutine, which ends with the lookup.
func (r *rawUpstream) resolveAndDial(host, port string, tc TunnelConfig) {
	ctx, cancel := context.WithTimeout(context.Background(), tc.ConnectTimeout)
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	cancel()
	if err == nil && len(ips) == 0 {
		err = fmt.Errorf("no address for %s", host)
	}
	if err != nil {
		r.onConnect(nil, fmt.Errorf("proxy: resolving CONNECT destination: %w", err))
		return
	}
	ip := ips[0]
	for _, a := range ips {
		if a.Unmap().Is4() {
			ip = a
			break
		}
	}
	tc.Transport.Dial("tcp", net.JoinHostPort(ip.Unmap().String(), port), tc.ConnectTimeout, r.onConnect)
}

func (r *rawUpstream) EncodeHead(*stream.Head, bool) {}

func (r *rawUpstream) EncodeData(p []byte, end bool) {
	if r.reset || r.outEnded || r.tc == nil {
		return
	}
	if len(p) > 0 {
		r.queued, _ = r.tc.Write(buffer.From(p))
		if r.queued > r.s.cm.cfg.Server.HighWatermark && !r.aboveHW {
			r.aboveHW = true
			r.s.up.OnAboveWriteHighWatermark()
		}
	}
	if end {
		r.outEnded = true
		r.tc.CloseWrite()
		r.maybeClose()
	}
}

func (r *rawUpstream) EncodeTrailers(*protocol.Headers) { r.EncodeData(nil, true) }

// Reset drops the destination connection.
func (r *rawUpstream) Reset() {
	if r.reset {
		return
	}
	r.reset = true
	if r.tc != nil {
		r.tc.Close()
	}
}

func (r *rawUpstream) ReadDisable(d bool) {
	if r.tc == nil || r.reset {
		return
	}
	if d {
		r.disabled++
	} else if r.disabled > 0 {
		r.disabled--
	} else {
		return
	}
	r.tc.ReadDisable(d)
}

func (r *rawUpstream) maybeClose() {
	if !r.inEnded || !r.outEnded {
		return
	}
	r.reset = true
	if r.queued == 0 {
		r.tc.Close()
		return
	}
	r.closeOnDrain = true
}

// transport.Handler, each event under the downstream session.

func (r *rawUpstream) OnData(_ transport.Conn, b *buffer.Buf) {
	sess := r.s.cm.conn
	sess.Lock()
	if !r.reset && !r.inEnded {
		r.s.up.DecodeData(b.Bytes(), false)
	}
	sess.Unlock()
	b.Release()
}

func (r *rawUpstream) OnReadEOF(transport.Conn) {
	sess := r.s.cm.conn
	sess.Lock()
	if !r.reset && !r.inEnded {
		r.inEnded = true
		r.s.up.DecodeData(nil, true)
		r.maybeClose()
	}
	sess.Unlock()
}

func (r *rawUpstream) OnDrained(transport.Conn) {
	sess := r.s.cm.conn
	sess.Lock()
	r.queued = 0
	switch {
	case r.closeOnDrain:
		r.tc.Close()
	case r.aboveHW:
		r.aboveHW = false
		r.s.up.OnBelowWriteLowWatermark()
	}
	sess.Unlock()
}

func (r *rawUpstream) OnClose(_ transport.Conn, err error) {
	sess := r.s.cm.conn
	sess.Lock()
	if !r.reset {
		r.reset = true
		r.s.up.OnReset(stream.UpstreamClosed(err))
	}
	sess.Unlock()
}
