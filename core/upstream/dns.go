package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"time"
)

// DNS makes a STRICT_DNS cluster: each target name is resolved on an
// interval and every address it returns is a host.
type DNS struct {
	Targets  []HostConfig // Address is "name:port"
	Refresh  time.Duration
	Resolver string // "ip:port" of the DNS server to ask; empty: the system's
}

func (d DNS) resolver() *net.Resolver {
	if d.Resolver == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, network, d.Resolver)
	}}
}

// resolve returns the host set the targets name now.
func (d DNS) resolve(ctx context.Context) ([]HostConfig, error) {
	r := d.resolver()
	var out []HostConfig
	for _, t := range d.Targets {
		name, port, err := net.SplitHostPort(t.Address)
		if err != nil {
			return nil, fmt.Errorf("upstream: dns target %q: %w", t.Address, err)
		}
		ips, err := r.LookupNetIP(ctx, "ip4", name)
		if err != nil {
			return nil, fmt.Errorf("upstream: resolving %s: %w", name, err)
		}
		sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
		p, _ := strconv.Atoi(port)
		for _, ip := range ips {
			out = append(out, HostConfig{Address: netip.AddrPortFrom(ip.Unmap(), uint16(p)).String(), Weight: t.Weight,
				Plaintext: t.Plaintext, Hostname: name, Metadata: t.Metadata})
		}
	}
	return out, nil
}

// StartDNS resolves now (bounded by timeout, so listeners start with hosts)
// and then every Refresh until ctx ends. A failed resolution keeps the
// current hosts.
func (c *Cluster) StartDNS(ctx context.Context, d DNS, timeout time.Duration) {
	refresh := func() {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		hosts, err := d.resolve(rctx)
		if err != nil {
			slog.Warn("upstream: DNS refresh failed, keeping hosts", "cluster", c.Name, "err", err)
			return
		}
		if added, removed := c.SetHosts(hosts); added+removed > 0 {
			slog.Info("upstream: DNS changed hosts", "cluster", c.Name, "added", added, "removed", removed, "hosts", len(hosts))
		}
	}
	refresh()
	every(ctx, d.Refresh, func(time.Time) { refresh() })
}
