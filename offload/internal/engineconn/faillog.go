package engineconn

import (
	"log/slog"
	"sync"
	"time"
)

// failLog logs failed handshakes, rate-limited: at most failLogBurst lines
// per failLogWindow for one Handshakers pool (one listener or cluster); the
// lines dropped are counted and reported on the next line logged, so a
// scanner hammering a port cannot flood the log while every failure is
// still counted by the stats. Lines are at Info level: a failed handshake
// is the peer's doing, not the proxy's fault (Envoy logs its TLS errors at
// debug, HAProxy its "SSL handshake failure" in the connection log).
type failLog struct {
	mu         sync.Mutex
	start      time.Time // the current window's start
	n          int       // lines logged in the window
	suppressed int       // lines dropped since the last one logged
	logger     *slog.Logger
	now        func() time.Time
}

const (
	failLogBurst  = 10
	failLogWindow = time.Second
)

// log writes one failure line unless the window's budget is spent.
// side is "server" or "client"; reason the metrics name of the failure.
func (f *failLog) log(side, peer, reason string, err error) {
	now := time.Now
	if f.now != nil {
		now = f.now
	}
	t := now()
	f.mu.Lock()
	if t.Sub(f.start) >= failLogWindow {
		f.start, f.n = t, 0
	}
	if f.n >= failLogBurst {
		f.suppressed++
		f.mu.Unlock()
		return
	}
	f.n++
	dropped := f.suppressed
	f.suppressed = 0
	l := f.logger
	f.mu.Unlock()
	if l == nil {
		l = slog.Default()
	}
	attrs := []any{"side", side, "peer", peer, "reason", reason, "err", err}
	if dropped > 0 {
		attrs = append(attrs, "suppressed", dropped)
	}
	l.Info("tls: handshake failed", attrs...)
}
