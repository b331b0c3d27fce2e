package server

import (
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
)

// listenerFilters are a listener's configured listener_filters, in order
// (decoded and checked at load); info keeps them for the admin's metrics.
func listenerFilters(lc config.Listener, info *ListenerInfo) []network.ListenerFilter {
	var out []network.ListenerFilter
	for _, f := range lc.ListenerFilters {
		out = append(out, f.Filter.(network.ListenerFilter))
	}
	info.ListenerFilters = out
	return out
}
