package config

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// validateClusters checks the clusters and records their names for the
// routes and listeners that refer to them. A cluster without lb gets the
// binary's default policy here.
func (c *Config) validateClusters(v *checker) {
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		p := fmt.Sprintf("clusters[%d]", i)
		switch {
		case cl.Name == "":
			v.add(p+".name", "required")
		case v.clusters[cl.Name]:
			v.add(p+".name", "duplicate cluster name %q", cl.Name)
		}
		v.clusters[cl.Name] = true
		cl.validate(v, p)
	}
}

// validate checks one cluster at path p.
func (cl *Cluster) validate(v *checker, p string) {
	k := v.k
	if cl.LB == "" {
		cl.LB = k.DefaultLB
	}
	if cl.LB != "" && !slices.Contains(k.LBs, cl.LB) {
		v.add(p+".lb", "unknown policy %q (available: %s)", cl.LB, strings.Join(k.LBs, ", "))
	} else if k.LBOptions != nil {
		v.addPlugin(p+".lb_options", k.LBOptions(cl.LB, cl.LBOptions, p+".lb_options"))
	}
	if cl.ConnectTimeout <= 0 {
		v.add(p+".connect_timeout", "must be > 0")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_connections", cl.MaxConnections}, {"max_pending", cl.MaxPending}, {"max_requests_per_connection", cl.MaxRequestsPerConnection}} {
		if f.v < 0 {
			v.add(p+"."+f.name, "must be >= 0 (0 means unlimited)")
		}
	}
	if len(cl.Hosts) == 0 && cl.Type != TypeOriginalDst {
		v.add(p+".hosts", "at least one host is required")
	}
	cl.validateSubsets(p, v.add)
	cl.validateOutlier(p, v.add)
	cl.validateBreakers(p, v.add)
	cl.validateHealthCheck(p, v.add)
	if t := cl.TLS; t != nil {
		if !slices.Contains(k.Engines, t.Engine) {
			v.add(p+".tls.engine", "unknown engine %q (available: %s)", t.Engine, strings.Join(k.Engines, ", "))
		}
		if t.CAFile != "" {
			checkFile(t.CAFile, p+".tls.ca_file", v.add)
		}
		if c := t.ClientCert; c != nil {
			checkFile(c.CertFile, p+".tls.client_cert.cert_file", v.add)
			checkKeyFile(c, p+".tls.client_cert.key_file", v.add)
		}
	}
	if codec, ok := k.codec(cl.Protocol); !ok {
		v.add(p+".protocol", "unknown protocol %q (%s)", cl.Protocol, strings.Join(k.codecNames(), ", "))
	} else {
		var keys []string
		for _, o := range codec.Options {
			if !o.Listener {
				keys = append(keys, o.Key)
			}
		}
		validateCodecOptions(cl.Options, keys, p, v)
	}
	cl.validateHosts(p, v.add)
}

func (cl *Cluster) validateSubsets(p string, add func(string, string, ...any)) {
	sc := cl.Subsets
	if sc == nil {
		return
	}
	sp := p + ".lb_subset_config"
	if len(sc.SubsetSelectors) == 0 {
		add(sp+".subset_selectors", "at least one selector (a list of metadata keys) is required")
	}
	switch sc.FallbackPolicy {
	case "no_fallback", "any_endpoint":
	case "default_subset":
		if len(sc.DefaultSubset) == 0 {
			add(sp+".default_subset", "required with fallback_policy default_subset")
		}
	default:
		add(sp+".fallback_policy", "unknown policy %q (no_fallback, any_endpoint, default_subset)", sc.FallbackPolicy)
	}
}

func (cl *Cluster) validateOutlier(p string, add func(string, string, ...any)) {
	od := cl.OutlierDetection
	if od == nil {
		return
	}
	op := p + ".outlier_detection"
	if od.Interval <= 0 || od.BaseEjectionTime <= 0 {
		add(op, "interval and base_ejection_time must be > 0")
	}
	if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
		add(op+".max_ejection_percent", "must be 0–100")
	}
	if od.Consecutive5xx < 0 || od.ConsecutiveConnectFailure < 0 {
		add(op, "consecutive counts must be >= 0 (0 disables)")
	}
}

func (cl *Cluster) validateBreakers(p string, add func(string, string, ...any)) {
	cb := cl.CircuitBreakers
	for _, f := range []struct {
		name string
		v    int
	}{{"max_connections", cb.MaxConnections}, {"max_pending_requests", cb.MaxPendingRequests}, {"max_requests", cb.MaxRequests}, {"max_retries", cb.MaxRetries}} {
		if f.v < 0 {
			add(p+".circuit_breakers."+f.name, "must be >= 0 (0 means unlimited)")
		}
	}
	if rb := cb.RetryBudget; rb != nil && (rb.BudgetPercent <= 0 || rb.BudgetPercent > 100 || rb.MinRetryConcurrency < 0) {
		add(p+".circuit_breakers.retry_budget", "budget_percent must be in (0, 100], min_retry_concurrency >= 0")
	}
}

func (cl *Cluster) validateHealthCheck(p string, add func(string, string, ...any)) {
	hc := cl.HealthCheck
	if hc == nil {
		return
	}
	hp := p + ".health_check"
	if hc.Type != "tcp" && hc.Type != "http" {
		add(hp+".type", "unknown type %q (tcp, http)", hc.Type)
	}
	if hc.Interval <= 0 || hc.Timeout <= 0 {
		add(hp, "interval and timeout must be > 0")
	}
	if hc.HealthyThreshold < 1 || hc.UnhealthyThreshold < 1 {
		add(hp, "healthy_threshold and unhealthy_threshold must be >= 1")
	}
	if hc.Type == "http" && !strings.HasPrefix(hc.Path, "/") {
		add(hp+".path", "must start with /")
	}
}

// validateHosts checks the discovery type and the host list.
func (cl *Cluster) validateHosts(p string, add func(string, string, ...any)) {
	switch cl.Type {
	case "static", "strict_dns":
	case TypeOriginalDst:
		cl.validateOriginalDst(p, add) // sidecar.go
	default:
		add(p+".type", "unknown type %q (static, strict_dns, original_dst)", cl.Type)
	}
	if cl.Type == "strict_dns" && cl.DNSRefreshRate <= 0 {
		add(p+".dns_refresh_rate", "must be > 0")
	}
	if cl.DNSResolver != "" {
		checkAddr(cl.DNSResolver, p+".dns_resolver", add)
	}
	for j, h := range cl.Hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", p, j)
		if cl.Type == "strict_dns" {
			if _, port, err := net.SplitHostPort(h.Address); err != nil || port == "" {
				add(hp+".address", "invalid address %q: want name:port", h.Address)
			}
		} else {
			checkAddr(h.Address, hp+".address", add)
		}
		if h.Weight == 0 {
			add(hp+".weight", "must be >= 1")
		}
	}
}
