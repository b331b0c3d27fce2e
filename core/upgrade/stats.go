package upgrade

import (
	"sync/atomic"

	"github.com/proxylab/proxylab/foundation/stats"
)

// Stats count one process's upgrades, from both sides: what it took over
// when it started as the new process (in), and what it handed on when a
// later one replaced it (out).
type Stats struct {
	// ListenersPassed: traffic listeners handed over to the new process.
	ListenersPassed atomic.Uint64
	// ListenersAdopted: traffic listeners taken over from the old one.
	ListenersAdopted atomic.Uint64
	// ConnectionsMigrated: established connections handed over.
	ConnectionsMigrated atomic.Uint64
	// ConnectionsAdopted: established connections taken over.
	ConnectionsAdopted atomic.Uint64
	// ConnectionsDrained: connections left to finish in this (old)
	// process after a hand-over.
	ConnectionsDrained atomic.Uint64
	// Failures: upgrade attempts that did not complete (this process kept
	// serving) or were refused.
	Failures atomic.Uint64
}

var _ stats.Collector = (*Stats)(nil)

// Collect exports the counters (stats.Collector).
func (s *Stats) Collect(emit stats.Emit) {
	out, in := stats.Label{Name: "direction", Value: "out"}, stats.Label{Name: "direction", Value: "in"}
	const hl = "Listening sockets handed over to a new process (out) or taken over from the old one (in)."
	emit("upgrade_listeners_passed", hl, stats.CounterKind, float64(s.ListenersPassed.Load()), out)
	emit("upgrade_listeners_passed", hl, stats.CounterKind, float64(s.ListenersAdopted.Load()), in)
	const hc = "Established connections handed over to a new process (out) or taken over from the old one (in)."
	emit("upgrade_connections_migrated", hc, stats.CounterKind, float64(s.ConnectionsMigrated.Load()), out)
	emit("upgrade_connections_migrated", hc, stats.CounterKind, float64(s.ConnectionsAdopted.Load()), in)
	emit("upgrade_connections_drained", "Connections left to finish in this process after it handed over.", stats.CounterKind, float64(s.ConnectionsDrained.Load()))
	emit("upgrade_failures", "Upgrade attempts refused or failed; this process kept serving.", stats.CounterKind, float64(s.Failures.Load()))
}
