package http1

import "github.com/proxylab/proxylab/core/network"

var _ network.Migrator = (*ServerConn)(nil)

// maxCarry bounds the unparsed bytes a connection hands over (pipelined
// requests beyond it are served here first).
const maxCarry = 32 << 10

// Migrate agrees to hand the connection over at the next request boundary
// (network.Migrator): at once when idle, else after the response in
// flight. A closing, half-closed or tunnelling connection stays here.
func (sc *ServerConn) Migrate(*network.Conn) bool {
	if sc.lingering || sc.peerEOF || sc.draining || sc.tunnel() != nil {
		return false
	}
	sc.migrating = true
	sc.handOver()
	return true
}

// handOver detaches the connection when it is between requests; true
// when it did. Session lock held.
func (sc *ServerConn) handOver() bool {
	// Between requests: no stream, and the parser has nothing of the next
	// head (a finished parser is only waiting for its reset).
	if sc.cur != nil || (sc.p != nil && !sc.p.Idle() && !sc.p.Done()) || sc.in.Len() > maxCarry || sc.handing {
		return sc.handing
	}
	sc.handing = true
	sc.setTimer(timerNone, 0)
	sc.c.HandOver()
	return true
}

// Unhandled gives up the bytes not parsed yet (network.Migrator).
func (sc *ServerConn) Unhandled(*network.Conn) []byte {
	b := append([]byte(nil), sc.in.Bytes()...)
	sc.in.Reset()
	return b
}
