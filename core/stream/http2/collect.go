package http2

import "github.com/proxylab/proxylab/foundation/stats"

// Collect exports the codec's events and open streams (proxylab_http2_*);
// the caller adds the side and name labels.
func (st *Stats) Collect(emit stats.Emit) {
	st.Each(func(event string, v uint64) {
		emit("http2_events_total", "HTTP/2 protocol events (streams, resets, GOAWAYs, errors and attacks refused) by side.",
			stats.CounterKind, float64(v), stats.Label{Name: "event", Value: event})
	})
	emit("http2_streams_active", "HTTP/2 streams open.", stats.GaugeKind, float64(st.ActiveStreams.Load()))
}

var _ stats.Collector = (*Stats)(nil)
