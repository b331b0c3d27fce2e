package upgrade

import (
	"sync/atomic"

	"github.com/proxylab/proxylab/foundation/stats"
)

// Stats count one process's upgrades: as the old process, what it passed
// on; as the new one, what it took over.
type Stats struct {
	// ListenersPassed: traffic listeners handed over (old) or adopted (new).
	ListenersPassed atomic.Uint64
	// ConnectionsMigrated: established connections handed over (old) or
	// adopted (new).
	ConnectionsMigrated atomic.Uint64
	// ConnectionsDrained: connections left to finish in the old process.
	ConnectionsDrained atomic.Uint64
	// Failures: upgrade attempts that did not complete (the old process
	// kept serving) or were refused.
	Failures atomic.Uint64
}

var _ stats.Collector = (*Stats)(nil)

// Collect exports the counters (stats.Collector).
func (s *Stats) Collect(emit stats.Emit) {
	emit("upgrade_listeners_passed", "Listening sockets handed over (old process) or adopted (new process).", stats.CounterKind, float64(s.ListenersPassed.Load()))
	emit("upgrade_connections_migrated", "Established connections handed over (old process) or adopted (new process).", stats.CounterKind, float64(s.ConnectionsMigrated.Load()))
	emit("upgrade_connections_drained", "Connections left to finish in the old process after a hand-over.", stats.CounterKind, float64(s.ConnectionsDrained.Load()))
	emit("upgrade_failures", "Upgrade attempts refused or failed; the old process kept serving.", stats.CounterKind, float64(s.Failures.Load()))
}
