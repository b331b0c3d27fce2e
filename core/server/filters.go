package server

import (
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/proxy"
	"github.com/proxylab/proxylab/core/router"
)

// httpFilters turns a listener's decoded http_filters into the proxy's
// chain and the index of each filter name in it.
func httpFilters(h *config.HTTPProxy) ([]proxy.FilterSpec, map[string]int) {
	if len(h.HTTPFilters) == 0 {
		return nil, nil
	}
	specs := make([]proxy.FilterSpec, 0, len(h.HTTPFilters))
	idx := make(map[string]int, len(h.HTTPFilters))
	for _, f := range h.HTTPFilters {
		m, _ := filter.Lookup(f.Name) // validated at load
		idx[f.Name] = len(specs)
		specs = append(specs, proxy.FilterSpec{Name: f.Name, Kinds: m.Kinds, Factory: f.Factory.(filter.Factory)})
	}
	return specs, idx
}

// filterOverrides places a route's or virtual host's overrides at the
// listener's filter indices; overrides of filters the listener does not
// run are ignored.
func filterOverrides(m map[string]config.FilterOverride, idx map[string]int) []router.FilterOverride {
	var out []router.FilterOverride
	for name, ov := range m {
		i, ok := idx[name]
		if !ok {
			continue
		}
		if out == nil {
			out = make([]router.FilterOverride, len(idx))
		}
		out[i] = router.FilterOverride{Set: true, Disabled: ov.Disabled, Config: ov.Config}
	}
	return out
}
