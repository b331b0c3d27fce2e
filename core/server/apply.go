package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/upstream"
)

// Hot reload. Apply takes a validated config and changes the running server
// to it, or changes nothing: everything new is built (and every new address
// bound) first, then swapped in; a failure before the swap undoes what was
// built. Names identify listeners and clusters across configs.
//
// Listeners: unchanged ones keep their socket and connections (an
// http_proxy listener whose routes changed gets the new table for its next
// request); a changed one on the same address keeps its socket, new
// connections get the new chain and the earlier ones are drained (HTTP/1
// Connection: close, HTTP/2 GOAWAY, tcp_proxy left to finish) and closed
// after drain_timeout; a new address is bound before the old listener
// drains; a removed one drains.
//
// Clusters: a change of hosts, lb, lb_options, health_check or DNS settings
// is made in place (hosts that stay keep their pools, health, outlier state
// and stats); any other change builds a new cluster, and the old one's pools
// drain once drain_timeout has let the requests holding it finish.

// liveState is the reload side of a Server; applyMu serialises Apply and
// guards the rest (Start fills it before any Apply).
type liveState struct {
	applyMu sync.Mutex
	root    context.Context               // parent of the clusters' loops; nil before Start
	stops   map[string]context.CancelFunc // a cluster's loops, by name
	retired []*retiredSet                 // what drains until its deadline
	pending map[string]*upstream.Cluster  // the clusters chains are built against, while planning
	stats   ReloadStats
	hash    hashCache
	closed  bool   // Drain or Close began: Apply refuses
	blocked string // BlockApply's reason: Apply refuses with it
}

// stopApplying makes Apply refuse from now on, once one in progress ended.
func (s *Server) stopApplying() {
	s.live.applyMu.Lock()
	s.live.closed = true
	s.live.applyMu.Unlock()
}

// retiredSet is what one Apply took out of service: listeners or listener
// generations draining, resources they still use, clusters whose pools
// drain at the deadline.
type retiredSet struct {
	timer     *time.Timer
	listeners []*network.Listener // stopped accepting, closed at the deadline
	gens      []retiredGen        // earlier generations of kept sockets
	infos     []*ListenerInfo     // their access logs and TLS servers
	clusters  []*upstream.Cluster
}

type retiredGen struct {
	l   *network.Listener
	gen uint64
}

func (r *retiredSet) empty() bool {
	return len(r.listeners)+len(r.gens)+len(r.infos)+len(r.clusters) == 0
}

// close ends what r holds; the caller removed it from the retired list.
func (r *retiredSet) close() {
	for _, l := range r.listeners {
		l.Close()
	}
	for _, g := range r.gens {
		g.l.CloseGen(g.gen)
	}
	for _, info := range r.infos {
		closeInfo(info)
	}
	for _, c := range r.clusters {
		c.Drain()
	}
}

func closeInfo(info *ListenerInfo) {
	if info.AccessLog != nil {
		info.AccessLog.Close()
	}
	if info.Spans != nil {
		info.Spans.Close()
	}
	if info.secure != nil {
		info.secure.Close()
	}
	for _, b := range info.beside {
		b.Close()
	}
	for _, f := range info.Filters {
		closeFactory(f.Name, f.Factory) // its listener stopped
	}
}

// Summary says what an Apply changed.
type Summary struct {
	ListenersAdded, ListenersChanged, ListenersRemoved int
	// ListenersRebound moved to a new address (counted in Changed too).
	ListenersRebound                                                 int
	RoutesChanged                                                    int // http_proxy listeners given a new route table
	ClustersAdded, ClustersRebuilt, ClustersUpdated, ClustersRemoved int
	HostsAdded, HostsRemoved                                         int
	Took                                                             time.Duration
}

func (s Summary) String() string {
	return fmt.Sprintf("listeners +%d ~%d (rebound %d) -%d, routes ~%d, clusters +%d ~%d rebuilt %d -%d, hosts +%d -%d, in %s",
		s.ListenersAdded, s.ListenersChanged, s.ListenersRebound, s.ListenersRemoved, s.RoutesChanged,
		s.ClustersAdded, s.ClustersUpdated, s.ClustersRebuilt, s.ClustersRemoved, s.HostsAdded, s.HostsRemoved, s.Took.Round(time.Microsecond))
}

// Apply changes the running server to cfg, an already validated config
// (config.Parse or the same model from another source), atomically: on an
// error nothing changed. Call it after Start; calls are serialised. It is
// cheap when little changed (a host set: no listener or route work).
func (s *Server) Apply(cfg *config.Config) error {
	_, err := s.ApplySummary(cfg)
	return err
}

// ApplySummary is Apply that also says what changed.
func (s *Server) ApplySummary(cfg *config.Config) (sum Summary, err error) {
	s.live.applyMu.Lock()
	defer s.live.applyMu.Unlock()
	start := time.Now()
	s.live.stats.Attempts.Add(1)
	defer func() {
		if err != nil {
			s.live.stats.Failures.Add(1)
			return
		}
		s.live.stats.Successes.Add(1)
		s.live.stats.LastSuccess.Store(time.Now().UnixNano())
	}()
	if s.live.blocked != "" {
		return sum, errors.New("server: apply: refused: " + s.live.blocked)
	}
	if s.live.root == nil || s.live.closed {
		return sum, errors.New("server: apply: the server is not running (not started, draining or closed)")
	}
	old := s.cfg // only Apply changes it, and applyMu is held
	if err := needsRestart(old, cfg); err != nil {
		return sum, err
	}
	p := &plan{s: s, old: old, cfg: cfg}
	if err := p.build(); err != nil {
		p.abort()
		if !strings.HasPrefix(err.Error(), "server:") {
			err = fmt.Errorf("server: %w", err) // e.g. upstream's
		}
		return sum, err
	}
	p.commit()
	p.sum.Took = time.Since(start)
	return p.sum, nil
}

// needsRestart refuses the changes Apply cannot make live.
func needsRestart(old, cfg *config.Config) error {
	var what []string
	add := func(changed bool, name string) {
		if changed {
			what = append(what, name)
		}
	}
	add(old.Transport != cfg.Transport, "transport")
	add(old.Workers != cfg.Workers, "workers")
	add(old.CPUs != cfg.CPUs, "cpus")
	add(old.ReusePort != cfg.ReusePort, "reuse_port")
	add(!same(old.Plugins, cfg.Plugins), "transport options")
	add(!equalAdmin(old.Admin, cfg.Admin), "admin")
	add(!same(old.DemoUpstream, cfg.DemoUpstream), "demo_upstream")
	add(old.Stats != cfg.Stats, "stats")
	if len(what) > 0 {
		return fmt.Errorf("server: %s changed: needs a restart", strings.Join(what, ", "))
	}
	return nil
}

func equalAdmin(a, b *config.Admin) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b // Secret compared as the string it is, not redacted
}

// startCluster starts c's background loops (idle sweep, DNS, outlier
// detection, health checks) under a context of their own, cancelling any
// loops the name had; health is the stats map to record its checker in.
func (s *Server) startCluster(cc config.Cluster, c *upstream.Cluster, health map[string]*upstream.HealthStats) {
	if s.live.stops == nil {
		s.live.stops = map[string]context.CancelFunc{}
	}
	if stop := s.live.stops[cc.Name]; stop != nil {
		stop()
	}
	ctx, cancel := context.WithCancel(s.live.root)
	s.live.stops[cc.Name] = cancel
	c.StartIdleSweep(ctx, cc.IdleTimeout.D())
	if cc.Type == "strict_dns" {
		d := upstream.DNS{Refresh: cc.DNSRefreshRate.D(), Resolver: cc.DNSResolver}
		d.Targets = hostConfigs(cc.Hosts)
		c.StartDNS(ctx, d, 5*time.Second)
	}
	if cc.OutlierDetection != nil {
		c.StartOutlierDetection(ctx)
	}
	if hc := cc.HealthCheck; hc != nil {
		st := health[cc.Name]
		if st == nil {
			st = &upstream.HealthStats{}
			health[cc.Name] = st
		}
		c.StartHealthChecks(ctx, upstream.HealthCheck{
			Type: hc.Type, Path: hc.Path, Host: hc.Host, ExpectedStatuses: hc.ExpectedStatuses,
			Interval: hc.Interval.D(), Jitter: hc.Jitter.D(), Timeout: hc.Timeout.D(),
			HealthyThreshold: hc.HealthyThreshold, UnhealthyThreshold: hc.UnhealthyThreshold,
		}, st)
	}
}

func (s *Server) stopCluster(name string) {
	if stop := s.live.stops[name]; stop != nil {
		stop()
		delete(s.live.stops, name)
	}
}

func hostConfigs(hosts []config.Host) []upstream.HostConfig {
	out := make([]upstream.HostConfig, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, upstream.HostConfig{Address: h.Address, Weight: h.Weight, Plaintext: h.Plaintext, Metadata: h.Metadata})
	}
	return out
}

// retire schedules r's end after d (at once when d is 0).
func (s *Server) retire(r *retiredSet, d time.Duration) {
	if r.empty() {
		return
	}
	s.mu.Lock()
	s.live.retired = append(s.live.retired, r)
	s.mu.Unlock()
	r.timer = time.AfterFunc(d, func() {
		s.mu.Lock()
		found := false
		for i, x := range s.live.retired {
			if x == r {
				s.live.retired = append(s.live.retired[:i], s.live.retired[i+1:]...)
				found = true
				break
			}
		}
		s.mu.Unlock()
		if found { // else Close took it
			r.close()
		}
	})
}

// closeRetired ends everything still draining (Close).
func (s *Server) closeRetired() {
	s.mu.Lock()
	rs := s.live.retired
	s.live.retired = nil
	s.mu.Unlock()
	for _, r := range rs {
		if r.timer != nil {
			r.timer.Stop()
		}
		r.close()
	}
}

// lookupCluster is the cluster chains are built against: the planned set
// during Apply, else the running one.
func (s *Server) lookupCluster(name string) *upstream.Cluster {
	if s.live.pending != nil {
		return s.live.pending[name]
	}
	return s.clusters.Get(name)
}

// clone copies the maps a plan writes into.
func cloneMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return maps.Clone(m)
}
