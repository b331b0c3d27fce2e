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

// tunnelState is one stream's upgrade state, a set of flags (one byte, so
// ordinary streams stay the size they were); guarded by the stream's session.
type tunnelState uint8

const (
	tunCand     tunnelState = 1 << iota // the request may become a tunnel
	tunConnect                          // it is CONNECT (2xx tunnels, no Upgrade field)
	tunOn                               // the response made it a tunnel
	tunInEnded                          // the peer half-closed; end was delivered
	tunOutEnded                         // our half-close is queued
	tunClosing                          // both ended: close once the write queue drains
)

func (t tunnelState) is(f tunnelState) bool { return t&f != 0 }

func (t *tunnelState) set(f tunnelState, on bool) {
	if on {
		*t |= f
	} else {
		*t &^= f
	}
}

var (
	hdrUpgrade  = []byte("Upgrade")
	connectType = []byte("CONNECT")
)

// start marks a candidate of upgrade type typ (nil: an ordinary request).
func (t *tunnelState) start(typ []byte) {
	*t = 0
	t.set(tunCand, typ != nil)
	t.set(tunConnect, stream.IsConnect(typ))
}

// headFields are the framing and extra fields of a tunnel's head: no body
// framing, and for an upgrade Connection: Upgrade with the Upgrade value
// (made per tunnel, so ordinary streams carry no room for it).
func (t *tunnelState) headFields(upgrade []byte) (h1.Framing, []protocol.Field) {
	fr := h1.Framing{ContentLength: -1}
	if t.is(tunConnect) {
		return fr, nil
	}
	fr.Connection = "Upgrade"
	return fr, []protocol.Field{{Name: hdrUpgrade, Value: upgrade}}
}

// bothEnded reports whether the tunnel is over in both directions.
func (t tunnelState) bothEnded() bool { return t.is(tunInEnded) && t.is(tunOutEnded) }

// Server side.

// tunnel is the stream whose connection is a tunnel, or nil.
func (sc *ServerConn) tunnel() *serverStream {
	if s := sc.cur; s != nil && s.tun.is(tunOn) && !s.finished {
		return s
	}
	return nil
}

// tunnelHead answers a candidate. A tunnelling status sends the head and
// turns the connection into a tunnel (true); any other is an ordinary
// response to a request that ended with its head (false).
func (s *serverStream) tunnelHead(h *stream.Head) bool {
	typ := connectOr(s.tun.is(tunConnect), h)
	if !stream.Tunnelled(typ, h.Status) {
		s.tun.set(tunCand, false)
		s.reqDone = true
		return false
	}
	s.respHeadSent = true
	s.tun.set(tunOn, true)
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
	if !s.tun.is(tunInEnded) {
		s.dec.DecodeData(b.Bytes(), false)
	}
	b.Release()
}

func (s *serverStream) tunnelEOF() {
	if s.tun.is(tunInEnded) {
		return
	}
	s.tun.set(tunInEnded, true)
	s.dec.DecodeData(nil, true)
	s.tunnelMaybeClose()
}

// tunnelWrite sends raw bytes; end half-closes the connection after them.
func (s *serverStream) tunnelWrite(p []byte, end bool) {
	if s.tun.is(tunOutEnded) {
		return
	}
	if len(p) > 0 {
		s.out.appendBytes(p)
		s.schedule()
	}
	if end {
		s.tun.set(tunOutEnded, true)
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
	if !s.queued {
		s.sc.c.Close()
		return
	}
	s.tun.set(tunClosing, true) // OnDrained closes
}

// tunnelDrained handles OnDrained for a tunnel's connection (true: done).
func (sc *ServerConn) tunnelDrained() bool {
	s := sc.cur
	if s == nil || !s.tun.is(tunOn) {
		return false
	}
	s.queued = false
	if s.tun.is(tunClosing) {
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
	typ := connectOr(s.tun.is(tunConnect), h)
	if !stream.Tunnelled(typ, h.Status) || (!s.tun.is(tunConnect) && h.Status == 101 && typ == nil) {
		if h.Status == 101 {
			return false, &protocol.Error{Status: 502, Reason: "101 Switching Protocols without Upgrade"}
		}
		s.tun.set(tunCand, false)
		s.reqDone = true // the request was its head
		return false, nil
	}
	s.tun.set(tunOn, true)
	s.respHead = true
	s.cc.p.NoBody = true // a 2xx to CONNECT has no body (RFC 9112 §6.3)
	s.dec.DecodeHead(h, false)
	return true, nil
}

func (s *clientStream) tunnelData(p []byte) {
	if !s.tun.is(tunInEnded) && len(p) > 0 {
		s.dec.DecodeData(p, false)
	}
}

func (s *clientStream) tunnelEOF() {
	if s.tun.is(tunInEnded) {
		return
	}
	s.tun.set(tunInEnded, true)
	s.dec.DecodeData(nil, true)
	s.tunnelMaybeClose()
}

func (s *clientStream) tunnelWrite(p []byte, end bool) {
	if s.tun.is(tunOutEnded) {
		return
	}
	if len(p) > 0 {
		s.out.appendBytes(p)
		s.schedule()
	}
	if end {
		s.tun.set(tunOutEnded, true)
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
	if !s.queued {
		s.cc.tc.Close()
		return
	}
	s.cc.closeOnDrain.Store(true)
}
