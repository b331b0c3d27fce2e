package http1

import (
	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
)

// Upgrades and CONNECT over HTTP/1 (the contract is stream.UpgradeType's).
// A candidate request is encoded and decoded without body framing; once its
// response makes it a tunnel, every byte either way is passed through raw
// as Data, a FIN is end=true (half-close), and the connection closes when
// both directions ended and what was queued is written. A tunnel's upstream
// connection is never reused.

// tunnelState is one stream's upgrade state; it lives in the stream and is
// guarded by the stream's session.
type tunnelState struct {
	cand     bool // the request may become a tunnel
	connect  bool // it is CONNECT (2xx tunnels, no Upgrade field)
	on       bool // the response made it a tunnel
	inEnded  bool // the peer half-closed; end was delivered
	outEnded bool // our half-close is queued
	closing  bool // both ended: close once the write queue drains
	extra    [1]protocol.Field
}

var (
	hdrUpgrade  = []byte("Upgrade")
	connectType = []byte("CONNECT")
)

// start marks a candidate of upgrade type typ (nil: an ordinary request).
func (t *tunnelState) start(typ []byte) {
	t.cand = typ != nil
	t.connect = stream.IsConnect(typ)
}

// headFields are the framing and extra fields of a tunnel's head: no body
// framing, and for an upgrade Connection: Upgrade with the Upgrade value.
func (t *tunnelState) headFields(upgrade []byte) (h1.Framing, []protocol.Field) {
	fr := h1.Framing{ContentLength: -1}
	if t.connect {
		return fr, nil
	}
	fr.Connection = "Upgrade"
	t.extra[0] = protocol.Field{Name: hdrUpgrade, Value: upgrade}
	return fr, t.extra[:]
}

// bothEnded reports whether the tunnel is over in both directions.
func (t *tunnelState) bothEnded() bool { return t.inEnded && t.outEnded }

// Server side.

// tunnel is the stream whose connection is a tunnel, or nil.
func (sc *ServerConn) tunnel() *serverStream {
	if s := sc.cur; s != nil && s.tun.on && !s.finished {
		return s
	}
	return nil
}

// tunnelHead answers a candidate. A tunnelling status sends the head and
// turns the connection into a tunnel (true); any other is an ordinary
// response to a request that ended with its head (false).
func (s *serverStream) tunnelHead(h *stream.Head) bool {
	typ := connectOr(s.tun.connect, h)
	if !stream.Tunnelled(typ, h.Status) {
		s.tun.cand = false
		s.reqDone = true
		return false
	}
	s.respHeadSent, s.tun.on = true, true
	fr, extra := s.tun.headFields(h.Headers.Get("upgrade"))
	s.queue(h1.EncodeResponseHead(h, extra, fr))
	sc := s.sc
	if sc.pipelineDisabled {
		sc.pipelineDisabled = false
		sc.c.ReadDisable(false)
	}
	// Bytes the client sent after the head are the tunnel's first.
	if sc.in.Len() > 0 && !sc.dispatching {
		s.tunnelData(sc.in.Take())
	} // else dispatch passes them on when it unwinds
	if sc.peerEOF && !s.finished {
		s.tunnelEOF()
	}
	return true
}

// connectOr is the upgrade type to judge a response by.
func connectOr(connect bool, h *stream.Head) []byte {
	if connect {
		return connectType
	}
	return h.Headers.Get("upgrade")
}

func (s *serverStream) tunnelData(b *buffer.Buf) {
	if !s.tun.inEnded {
		s.dec.DecodeData(b.Bytes(), false)
	}
	b.Release()
}

func (s *serverStream) tunnelEOF() {
	if s.tun.inEnded {
		return
	}
	s.tun.inEnded = true
	s.dec.DecodeData(nil, true)
	s.tunnelMaybeClose()
}

// tunnelWrite sends raw bytes; end half-closes the connection after them.
func (s *serverStream) tunnelWrite(p []byte, end bool) {
	if s.tun.outEnded {
		return
	}
	if len(p) > 0 {
		s.out.appendBytes(p)
		s.schedule()
	}
	if end {
		s.tun.outEnded = true
		s.Flush()
		s.sc.c.CloseWrite()
		s.tunnelMaybeClose()
	}
}

func (s *serverStream) tunnelMaybeClose() {
	if s.finished || !s.tun.bothEnded() {
		return
	}
	s.finished = true
	s.undoReadDisable()
	if s.queued == 0 {
		s.sc.c.Close()
		return
	}
	s.tun.closing = true // OnDrained closes
}

// tunnelDrained handles OnDrained for a tunnel's connection (true: done).
func (sc *ServerConn) tunnelDrained() bool {
	s := sc.cur
	if s == nil || !s.tun.on {
		return false
	}
	s.queued = 0
	if s.tun.closing {
		sc.c.Close()
		return true
	}
	return s.finished
}

// Client side.

// encodeUpgrade sends a candidate's head: no body framing, the request's
// end decided by the response.
func (s *clientStream) encodeUpgrade(h *stream.Head, typ []byte) {
	s.tun.start(typ)
	s.reusable = false
	fr, extra := s.tun.headFields(typ)
	s.queue(h1.EncodeRequestHead(h, extra, fr))
}

// upgradeResponse takes the response head of a candidate: a tunnelling
// status makes the stream a tunnel (true).
func (s *clientStream) upgradeResponse(h *h1.Head) (bool, error) {
	typ := connectOr(s.tun.connect, h)
	if !stream.Tunnelled(typ, h.Status) || (!s.tun.connect && h.Status == 101 && typ == nil) {
		if h.Status == 101 {
			return false, &protocol.Error{Status: 502, Reason: "101 Switching Protocols without Upgrade"}
		}
		s.tun.cand = false
		s.reqDone = true // the request was its head
		return false, nil
	}
	s.tun.on, s.respHead = true, true
	s.cc.p.NoBody = true // a 2xx to CONNECT has no body (RFC 9112 §6.3)
	s.dec.DecodeHead(h, false)
	return true, nil
}

func (s *clientStream) tunnelData(p []byte) {
	if !s.tun.inEnded && len(p) > 0 {
		s.dec.DecodeData(p, false)
	}
}

func (s *clientStream) tunnelEOF() {
	if s.tun.inEnded {
		return
	}
	s.tun.inEnded = true
	s.dec.DecodeData(nil, true)
	s.tunnelMaybeClose()
}

func (s *clientStream) tunnelWrite(p []byte, end bool) {
	if s.tun.outEnded {
		return
	}
	if len(p) > 0 {
		s.out.appendBytes(p)
		s.schedule()
	}
	if end {
		s.tun.outEnded = true
		s.Flush()
		s.cc.tc.CloseWrite()
		s.tunnelMaybeClose()
	}
}

func (s *clientStream) tunnelMaybeClose() {
	if s.done() || !s.tun.bothEnded() {
		return
	}
	s.finished = true
	s.detach()
	if s.queued == 0 {
		s.cc.tc.Close()
		return
	}
	s.cc.closeOnDrain.Store(true)
}
