package proxy

import (
	"sync"

	"github.com/proxylab/proxylab/foundation/stats"
)

// OriginalDst is an original_dst cluster as tcp_proxy uses it: each
// connection goes where its downstream was going (the listener's
// original_dst filter made that the downstream's LocalAddr). It keeps the
// set of destinations with open connections, bounded by MaxHosts; a
// destination leaves it with its last connection (nothing idle is kept).
type OriginalDst struct {
	Name     string
	MaxHosts int // 0: unlimited
	Stats    OriginalDstStats

	mu    sync.Mutex
	hosts map[string]int // destination → open connections
}

// OriginalDstStats are an original_dst cluster's metrics.
type OriginalDstStats struct {
	CxTotal, ConnectFail, Overflow stats.Counter
}

var _ stats.Collector = (*OriginalDst)(nil)

// NewOriginalDst returns an empty original_dst cluster.
func NewOriginalDst(name string, maxHosts int) *OriginalDst {
	return &OriginalDst{Name: name, MaxHosts: maxHosts, hosts: map[string]int{}}
}

// acquire counts a connection to dst; false when dst is new and MaxHosts
// destinations are open already (counted as overflow).
func (o *OriginalDst) acquire(dst string, key uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.hosts[dst]; !ok && o.MaxHosts > 0 && len(o.hosts) >= o.MaxHosts {
		o.Stats.Overflow.Inc(key)
		return false
	}
	o.hosts[dst]++
	o.Stats.CxTotal.Inc(key)
	return true
}

// release ends a connection acquire counted.
func (o *OriginalDst) release(dst string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hosts[dst]--; o.hosts[dst] <= 0 {
		delete(o.hosts, dst)
	}
}

// Hosts is the number of destinations with open connections.
func (o *OriginalDst) Hosts() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.hosts)
}

// Collect exports the cluster's metrics (scrape time).
func (o *OriginalDst) Collect(emit stats.Emit) {
	l := stats.Label{Name: "cluster", Value: o.Name}
	emit("original_dst_hosts", "Destinations an original_dst cluster has connections to.", stats.GaugeKind, float64(o.Hosts()), l)
	emit("original_dst_cx_total", "Connections an original_dst cluster opened.", stats.CounterKind, float64(o.Stats.CxTotal.Value()), l)
	emit("original_dst_cx_connect_fail_total", "Connections to an original destination that failed.", stats.CounterKind, float64(o.Stats.ConnectFail.Value()), l)
	emit("original_dst_overflow_total", "Connections refused because max_hosts destinations were open.", stats.CounterKind, float64(o.Stats.Overflow.Value()), l)
}
