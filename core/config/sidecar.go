package config

import (
	"fmt"
	"net/netip"
	"time"
)

// ListenerProxyProtocol makes a listener read a PROXY header (v1 or v2)
// before anything else on each connection.
type ListenerProxyProtocol struct {
	// Version pins 1 or 2; 0 (the default) accepts either.
	Version int `yaml:"version"`
	// TrustedSources are the prefixes allowed to send a header (required;
	// 0.0.0.0/0 and ::/0 trust everyone). Other peers are refused.
	TrustedSources []string `yaml:"trusted_sources"`
	// Timeout bounds the wait for a complete header.
	Timeout Duration `yaml:"timeout"`
}

func (p *ListenerProxyProtocol) setDefaults() { p.Timeout = Duration(5 * time.Second) }

// Prefixes parses TrustedSources (validated: no error then).
func (p *ListenerProxyProtocol) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range p.TrustedSources {
		if pf, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pf.Masked())
		}
	}
	return out
}

func (p *ListenerProxyProtocol) validate(path string, add func(string, string, ...any)) {
	if p.Version < 0 || p.Version > 2 {
		add(path+".version", "must be 1, 2 or 0 (either)")
	}
	if len(p.TrustedSources) == 0 {
		add(path+".trusted_sources", "required: the prefixes allowed to send a header (0.0.0.0/0 and ::/0 trust everyone)")
	}
	for i, s := range p.TrustedSources {
		if _, err := netip.ParsePrefix(s); err != nil {
			add(fmt.Sprintf("%s.trusted_sources[%d]", path, i), "%v", err)
		}
	}
	if p.Timeout <= 0 {
		add(path+".timeout", "must be > 0")
	}
}

// ClusterProxyProtocol makes tcp_proxy write a PROXY header carrying the
// downstream's addresses before the first byte of each upstream connection.
type ClusterProxyProtocol struct {
	Version int `yaml:"version"` // 1 or 2
}

func (p *ClusterProxyProtocol) validate(path string, add func(string, string, ...any)) {
	if p.Version != 1 && p.Version != 2 {
		add(path+".version", "must be 1 or 2")
	}
}

// checkProxyProtocol validates the proxy_protocol blocks, and refuses one on
// a cluster HTTP routes send to: pooled HTTP connections carry requests of
// many clients, so no single client address fits them (Envoy too sends it
// only on connections dedicated to one downstream).
func (c *Config) checkProxyProtocol(add func(string, string, ...any)) {
	pp := map[string]int{}
	for i, cl := range c.Clusters {
		if cl.ProxyProtocol != nil {
			cl.ProxyProtocol.validate(fmt.Sprintf("clusters[%d].proxy_protocol", i), add)
			pp[cl.Name] = i
		}
	}
	for i, l := range c.Listeners {
		if l.ProxyProtocol != nil {
			l.ProxyProtocol.validate(fmt.Sprintf("listeners[%d].proxy_protocol", i), add)
		}
	}
	if len(pp) == 0 {
		return
	}
	for i, vh := range c.Routes {
		for j, r := range vh.Routes {
			names := []string{r.Cluster}
			for _, w := range r.WeightedClusters {
				names = append(names, w.Name)
			}
			for _, m := range r.RequestMirrorPolicies {
				names = append(names, m.Cluster)
			}
			for _, n := range names {
				if k, ok := pp[n]; ok {
					add(fmt.Sprintf("clusters[%d].proxy_protocol", k), "cluster %q is used by HTTP route routes[%d].routes[%d]: only tcp_proxy sends a PROXY header (pooled HTTP connections carry many clients)", n, i, j)
				}
			}
		}
	}
}

// TypeOriginalDst is the cluster type connecting to each downstream
// connection's original destination (a listener with original_dst).
const TypeOriginalDst = "original_dst"

func (cl *Cluster) validateOriginalDst(p string, add func(string, string, ...any)) {
	if len(cl.Hosts) > 0 {
		add(p+".hosts", "an original_dst cluster has no hosts: it connects where each connection was going")
	}
	if cl.MaxHosts < 0 {
		add(p+".max_hosts", "must be >= 0 (0: unlimited)")
	}
	if cl.TLS != nil || cl.HealthCheck != nil || cl.Subsets != nil {
		add(p+".type", "an original_dst cluster takes no tls, health_check or lb_subset_config")
	}
}

// checkOriginalDst: an original_dst cluster serves tcp_proxy listeners that
// read the original destination.
func (c *Config) checkOriginalDst(add func(string, string, ...any)) {
	od := map[string]bool{}
	for _, cl := range c.Clusters {
		if cl.Type == TypeOriginalDst {
			od[cl.Name] = true
		}
	}
	for i, l := range c.Listeners {
		if l.TCP != nil && od[l.TCP.Cluster] && !l.OriginalDst {
			add(fmt.Sprintf("listeners[%d].tcp_proxy.cluster", i), "original_dst cluster %q needs original_dst: true on the listener", l.TCP.Cluster)
		}
		if l.Transparent && !l.OriginalDst {
			add(fmt.Sprintf("listeners[%d].transparent", i), "needs original_dst: true (TPROXY keeps the destination as the local address)")
		}
	}
	for i, vh := range c.Routes {
		for j, r := range vh.Routes {
			names := []string{r.Cluster}
			for _, w := range r.WeightedClusters {
				names = append(names, w.Name)
			}
			for _, n := range names {
				if od[n] {
					add(fmt.Sprintf("routes[%d].routes[%d]", i, j), "original_dst cluster %q serves tcp_proxy only", n)
				}
			}
		}
	}
}
