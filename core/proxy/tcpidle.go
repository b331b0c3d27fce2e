package proxy

import (
	"log/slog"
	"time"

	"github.com/proxylab/proxylab/transport"
)

// The tcp_proxy idle timeout (Envoy's tcp_proxy idle_timeout): a pair with
// no byte either way for TCPConfig.IdleTimeout is closed on both sides and
// counted. Bytes only move lastIO (a clock read); the one timer per pair,
// on the shared wheel, re-arms itself for what remains when it fires early.
// A spliced pair's bytes never reach user space: the transport's spliced
// byte counts tell whether it moved any.

// startIdle arms the idle timer of a new pair. Under the session.
func (f *tcpFilter) startIdle() {
	d := f.cfg.IdleTimeout
	if d <= 0 || f.cfg.Timers == nil {
		return
	}
	f.lastIO = time.Now()
	f.idle.Init(f.cfg.Timers, f)
	f.idle.Reset(d)
	f.idleArmed = true
}

// touch records bytes moving through the pair.
func (f *tcpFilter) touch() {
	if f.idleArmed {
		f.lastIO = time.Now()
	}
}

// stopIdle stops the timer once the downstream is gone.
func (f *tcpFilter) stopIdle() {
	if f.idleArmed {
		f.idleArmed = false
		f.idle.Stop()
	}
}

// splicedTotal is what the transport forwarded in the kernel both ways.
func (f *tcpFilter) splicedTotal() uint64 {
	var n uint64
	if s, ok := f.c.Transport().(transport.Splicer); ok {
		n += s.SplicedBytes()
	}
	if s, ok := f.u.(transport.Splicer); ok {
		n += s.SplicedBytes()
	}
	return n
}

// Expire runs the idle timeout (timer.Expirer), on the wheel's goroutine.
func (f *tcpFilter) Expire() {
	f.c.Lock()
	defer f.c.Unlock()
	if !f.idleArmed || f.closed[down] {
		return
	}
	now := time.Now()
	if f.spliced {
		if n := f.splicedTotal(); n != f.splicedSeen {
			f.splicedSeen, f.lastIO = n, now
		}
	}
	d := f.cfg.IdleTimeout
	if left := d - now.Sub(f.lastIO); left > 0 {
		f.idle.Reset(left)
		return
	}
	f.idleArmed = false
	if st := f.cfg.Stats; st != nil {
		st.IdleTimeout.Inc(f.c.ID())
	}
	slog.Debug("tcp_proxy: idle timeout, closing the pair", "idle", d)
	f.ended("", "idle_timeout")
	f.closeSide(up)
	f.closeSide(down)
}
