package upstream

import (
	"sort"
	"strings"
)

// Subsets configures subset load balancing: hosts are grouped by the values
// of the metadata keys each selector names, and a request whose route asks
// for metadata (LBContext.Subset) is balanced within the matching group.
type Subsets struct {
	Selectors [][]string
	// Fallback when no subset matches: "no_fallback" (503), "any_endpoint"
	// (the whole cluster) or "default_subset" (Default's hosts).
	Fallback string
	Default  map[string]string
}

// SubsetKey is the canonical form of a metadata match ("k1=v1,k2=v2", keys
// sorted), as routes and subsets both compute it.
func SubsetKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

// subsetLBs builds a balancer per subset present among hosts.
func (c *Cluster) subsetLBs(hosts []*Host) map[string]LoadBalancer {
	if c.subsets == nil {
		return nil
	}
	groups := map[string][]*Host{}
	for _, sel := range c.subsets.Selectors {
		for _, h := range hosts {
			m := map[string]string{}
			for _, k := range sel {
				v, ok := h.Metadata[k]
				if !ok {
					m = nil
					break
				}
				m[k] = v
			}
			if m != nil {
				key := SubsetKey(m)
				groups[key] = append(groups[key], h)
			}
		}
	}
	out := make(map[string]LoadBalancer, len(groups))
	for k, hs := range groups {
		out[k] = c.lbf(hs)
	}
	return out
}

// chooseSubset balances within the subset the request asks for, or applies
// the fallback policy.
func (c *Cluster) chooseSubset(st *lbState, ctx *LBContext) *Host {
	if lb, ok := st.subsets[ctx.Subset]; ok {
		return lb.Choose(ctx)
	}
	switch c.subsets.Fallback {
	case "any_endpoint":
		return st.lb.Choose(ctx)
	case "default_subset":
		if lb, ok := st.subsets[SubsetKey(c.subsets.Default)]; ok {
			return lb.Choose(ctx)
		}
	}
	return nil
}
