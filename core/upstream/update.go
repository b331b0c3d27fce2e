package upstream

import (
	"context"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Hot reload of a cluster that keeps its hosts (and so their pools,
// health, outlier state and stats): its host set changes with SetHosts, its
// load-balancing policy with SetLB, and its background loops (health
// checks, DNS) are restarted by the caller with a new context.

// addHook runs for every host added while ctx is live (a health checker
// starting to check it).
type addHook struct {
	ctx context.Context
	fn  func(*Host)
}

// LBFactoryFor builds the factory of policy name (empty: DefaultLB) with its
// options, checking both, without touching any cluster.
func LBFactoryFor(name string, opts *yaml.Node) (LBFactory, string, error) {
	if name == "" {
		name = DefaultLB
	}
	pol, ok := lookupLB(name)
	if !ok {
		return nil, "", fmt.Errorf("upstream: unknown load balancer %q (have %v)", name, LBNames())
	}
	f, err := pol.Factory(opts, "lb_options")
	if err != nil {
		return nil, "", fmt.Errorf("upstream: %w", err)
	}
	return f, name, nil
}

// SetLB switches the cluster to the policy f (named name, from
// LBFactoryFor); the next pick uses it, over the same hosts.
func (c *Cluster) SetLB(f LBFactory, name string) {
	c.rebalanceMu.Lock()
	c.lbf, c.lbName = f, name
	c.rebalanceMu.Unlock()
	c.rebalance()
}

// ClearHealth marks every host healthy again (health checking was turned
// off: no checker is left to bring a failed host back).
func (c *Cluster) ClearHealth() {
	changed := false
	for _, h := range c.Hosts() {
		if h.unhealthy.Swap(false) {
			changed = true
		}
	}
	if changed {
		c.rebalance()
	}
}
