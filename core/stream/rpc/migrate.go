package rpc

import "github.com/proxylab/proxylab/core/network"

var _ network.Migrator = (*ServerConn)(nil)

// Migrate agrees to hand the connection over (network.Migrator): at once
// when no request is in flight, else once the last answer is written.
// From now on frames are not parsed here: what arrives is carried to the
// next process, so the boundary comes even under a steady request flow.
// A draining connection stays. Session lock held.
func (sc *ServerConn) Migrate(*network.Conn) bool {
	if sc.draining || sc.c.Closed() {
		return false
	}
	sc.migrating = true
	if sc.paused { // the next process reads what the pause held back
		sc.paused = false
		sc.c.ReadDisable(false)
	}
	sc.handOver()
	return true
}

// handOver detaches the connection once nothing is in flight and every
// answer was handed to the transport (a pending Flush comes back here; a
// write the transport queued retries at OnDrained).
func (sc *ServerConn) handOver() {
	if sc.inFlight > 0 || sc.handing || sc.flushQueued || sc.c.Closed() {
		return
	}
	sc.handing = true
	sc.c.HandOver()
}

// Unhandled gives up the bytes not parsed (network.Migrator).
func (sc *ServerConn) Unhandled(*network.Conn) []byte {
	b := append([]byte(nil), sc.in.Bytes()...)
	sc.in.Reset()
	return b
}
