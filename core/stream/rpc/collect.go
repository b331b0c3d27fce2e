package rpc

import "github.com/proxylab/proxylab/foundation/stats"

// Collect exports the codec's events (proxylab_rpc_events_total, labelled
// with the codec); the caller adds the side and name labels.
func (st *Stats) Collect(emit stats.Emit) {
	st.Each(func(event string, v uint64) {
		emit("rpc_events_total", "RPC protocol events (requests, heartbeats, bad frames) by side and codec.",
			stats.CounterKind, float64(v), stats.Label{Name: "codec", Value: st.Codec}, stats.Label{Name: "event", Value: event})
	})
}

var _ stats.Collector = (*Stats)(nil)
