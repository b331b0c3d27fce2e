// Package stats holds the hot-path metrics: counters, gauges and latency
// histograms that cost one uncontended atomic add on a cache line of their
// own and never allocate or lock. A writer picks a shard (its connection's
// ID, so one connection always hits the same line); readers sum the shards
// at scrape time. Beside the stack: every layer may import it, it imports
// nothing of ours.
package stats

import (
	"math"
	"sync/atomic"
	"time"
)

// Shards is the number of cache lines a metric is spread over.
const Shards = 8

type slot struct {
	v atomic.Uint64
	_ [56]byte // one cache line per slot
}

// Counter only goes up. The zero value is ready; methods on a nil
// *Counter do nothing, so disabled stats cost a nil check.
type Counter struct{ s [Shards]slot }

// Add adds v on the shard for key (e.g. a connection ID).
func (c *Counter) Add(key uint64, v uint64) {
	if c != nil {
		c.s[key&(Shards-1)].v.Add(v)
	}
}

// Inc adds one.
func (c *Counter) Inc(key uint64) { c.Add(key, 1) }

// Value sums the shards.
func (c *Counter) Value() uint64 {
	if c == nil {
		return 0
	}
	var t uint64
	for i := range c.s {
		t += c.s[i].v.Load()
	}
	return t
}

// Gauge goes up and down (active connections, requests in flight).
type Gauge struct{ s [Shards]slot }

// Add adds d (which may be negative) on key's shard.
func (g *Gauge) Add(key uint64, d int64) {
	if g != nil {
		g.s[key&(Shards-1)].v.Add(uint64(d))
	}
}

// Value sums the shards.
func (g *Gauge) Value() int64 {
	if g == nil {
		return 0
	}
	var t int64
	for i := range g.s {
		t += int64(g.s[i].v.Load())
	}
	return t
}

// LatencyBuckets are the histogram upper bounds, in seconds: 100µs to 60s,
// roughly ×2.5 apart, as a proxy's request times spread.
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

var bucketNanos = func() []uint64 {
	out := make([]uint64, len(LatencyBuckets))
	for i, b := range LatencyBuckets {
		out[i] = uint64(b * 1e9)
	}
	return out
}()

type histShard struct {
	counts [19]atomic.Uint64 // len(LatencyBuckets)+1 (the last is +Inf)
	sum    atomic.Uint64     // nanoseconds
	_      [40]byte
}

// Histogram counts durations into LatencyBuckets.
type Histogram struct{ s [Shards]histShard }

// Observe records d on key's shard.
func (h *Histogram) Observe(key uint64, d time.Duration) {
	if h == nil {
		return
	}
	ns := uint64(max(d, 0))
	i := 0
	for i < len(bucketNanos) && ns > bucketNanos[i] {
		i++
	}
	sh := &h.s[key&(Shards-1)]
	sh.counts[i].Add(1)
	sh.sum.Add(ns)
}

// Snapshot returns cumulative bucket counts (as Prometheus wants them), the
// total count and the sum in seconds.
func (h *Histogram) Snapshot() (cumulative map[float64]uint64, count uint64, sum float64) {
	cumulative = make(map[float64]uint64, len(LatencyBuckets))
	if h == nil {
		return cumulative, 0, 0
	}
	var per [19]uint64
	var ns uint64
	for s := range h.s {
		for i := range per {
			per[i] += h.s[s].counts[i].Load()
		}
		ns += h.s[s].sum.Load()
	}
	for i, b := range LatencyBuckets {
		count += per[i]
		cumulative[b] = count
	}
	count += per[len(LatencyBuckets)]
	return cumulative, count, float64(ns) / 1e9
}

// Quantile estimates the q-quantile from the buckets (upper bound of the
// bucket it falls in), for human-readable /stats output.
func (h *Histogram) Quantile(q float64) float64 {
	cum, count, _ := h.Snapshot()
	if count == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(count)))
	for _, b := range LatencyBuckets {
		if cum[b] >= rank {
			return b
		}
	}
	return math.Inf(1)
}
