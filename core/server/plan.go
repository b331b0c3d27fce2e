package server

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/upstream"
)

// plan is one Apply: build fills it (binding new addresses, building new
// clusters and chains) without touching what runs; commit swaps it in;
// abort undoes build. Owned by the goroutine running Apply.
type plan struct {
	s        *Server
	old, cfg *config.Config
	b        *Server // builds with cfg and copies of s's stats maps
	sum      Summary

	clusters map[string]*upstream.Cluster // the new set
	fresh    []*upstream.Cluster          // built by this plan (added or rebuilt)
	start    []config.Cluster             // clusters whose loops (re)start
	gone     []*upstream.Cluster          // removed or rebuilt: drain at the deadline
	goneName []string                     // their loops stop (removed ones)
	hosts    map[*upstream.Cluster][]upstream.HostConfig
	lbs      map[*upstream.Cluster]lbChange
	unhealth []*upstream.Cluster // health checking turned off
	changedC map[string]bool     // clusters whose object or host count changed (tcp chains)

	infos   []*ListenerInfo                 // the new list, in config order
	shares  map[*ListenerInfo]*ListenerInfo // a changed listener's new info → the running one it shares an access log with
	bound   []*network.Listener
	swaps   []listenerSwap
	routers [][2]*router.Router  // {running, new}
	dropped []*ListenerInfo      // removed, or moved to a new address
	kept    [][2]config.Listener // unchanged listeners: {running, new config's}
}

type lbChange struct {
	f    upstream.LBFactory
	name string
}

// listenerSwap gives a kept socket a new chain.
type listenerSwap struct {
	l       *network.Listener
	filters []network.ListenerFilter
	chain   network.ChainFactory
	drain   bool          // the earlier connections drain (the listener changed)
	old     *ListenerInfo // its resources close at the deadline (drain only)
}

func (p *plan) build() error {
	s := p.s
	p.b = &Server{cfg: p.cfg, tr: s.tr, log: s.log, timers: s.timers, clusters: s.clusters,
		clusterTLS: cloneMap(s.clusterTLS), codecStats: cloneMap(s.codecStats), health: cloneMap(s.health)}
	if err := p.buildClusters(); err != nil {
		return err
	}
	p.b.live.pending = p.clusters
	return p.buildListeners()
}

func (p *plan) buildClusters() error {
	running := p.s.clusters.Map()
	p.clusters = make(map[string]*upstream.Cluster, len(p.cfg.Clusters))
	p.hosts, p.lbs, p.changedC = map[*upstream.Cluster][]upstream.HostConfig{}, map[*upstream.Cluster]lbChange{}, map[string]bool{}
	prevs := make(map[string]*config.Cluster, len(p.old.Clusters))
	for i := range p.old.Clusters {
		prevs[p.old.Clusters[i].Name] = &p.old.Clusters[i]
	}
	for _, cc := range p.cfg.Clusters {
		prev, had := prevs[cc.Name]
		c := running[cc.Name]
		if had && c != nil && sameBase(prev, &cc) {
			p.clusters[cc.Name] = c
			if err := p.updateCluster(*prev, cc, c); err != nil {
				return err
			}
			continue
		}
		nc, err := p.b.buildCluster(cc)
		if err != nil {
			return err
		}
		p.clusters[cc.Name], p.fresh, p.start = nc, append(p.fresh, nc), append(p.start, cc)
		p.changedC[cc.Name] = true
		if c != nil {
			p.gone = append(p.gone, c)
			p.sum.ClustersRebuilt++
		} else {
			p.sum.ClustersAdded++
		}
	}
	for name, c := range running {
		if _, ok := p.clusters[name]; !ok {
			p.gone, p.goneName = append(p.gone, c), append(p.goneName, name)
			p.changedC[name] = true
			delete(p.b.clusterTLS, name)
			delete(p.b.codecStats, name)
			delete(p.b.health, name)
			p.sum.ClustersRemoved++
		}
	}
	return nil
}

// updateCluster plans the in-place changes of a kept cluster.
func (p *plan) updateCluster(prev, cc config.Cluster, c *upstream.Cluster) error {
	changed := false
	if prev.LB != cc.LB || !same(prev.LBOptions, cc.LBOptions) {
		f, name, err := upstream.LBFactoryFor(cc.LB, cc.LBOptions)
		if err != nil {
			return fmt.Errorf("server: cluster %q: %w", cc.Name, err)
		}
		p.lbs[c], changed = lbChange{f, name}, true
	}
	hostsChanged := !slices.EqualFunc(prev.Hosts, cc.Hosts, sameHost)
	loops := !reflect.DeepEqual(prev.HealthCheck, cc.HealthCheck) || prev.DNSRefreshRate != cc.DNSRefreshRate || prev.DNSResolver != cc.DNSResolver
	if cc.Type == "strict_dns" {
		loops = loops || hostsChanged // the targets: DNS restarts
	} else if hostsChanged {
		p.hosts[c], changed = hostConfigs(cc.Hosts), true
		if len(prev.Hosts) != len(cc.Hosts) {
			p.changedC[cc.Name] = true
		}
	}
	if loops {
		p.start, changed = append(p.start, cc), true
		if prev.HealthCheck != nil && cc.HealthCheck == nil {
			p.unhealth = append(p.unhealth, c)
			delete(p.b.health, cc.Name)
		}
	}
	if changed {
		p.sum.ClustersUpdated++
	}
	return nil
}

func (p *plan) buildListeners() error {
	s, b := p.s, p.b
	running := map[string]*ListenerInfo{}
	p.shares = map[*ListenerInfo]*ListenerInfo{}
	for _, info := range s.infos {
		running[info.Name] = info
	}
	for _, lc := range p.cfg.Listeners {
		info := running[lc.Name]
		prev, had := listenerConfig(p.old, lc.Name)
		delete(running, lc.Name)
		switch {
		case info == nil || !had:
			ni := &ListenerInfo{Name: lc.Name}
			if err := p.bind(lc, ni); err != nil {
				return err
			}
			p.infos = append(p.infos, ni)
			p.sum.ListenersAdded++
		case same(&prev, &lc):
			p.infos = append(p.infos, info)
			p.kept = append(p.kept, [2]config.Listener{prev, lc})
			if err := p.keepListener(lc, info); err != nil {
				return err
			}
		default:
			ni := carryStats(info, prev, lc)
			p.shares[ni] = info
			p.sum.ListenersChanged++
			if prev.Address != lc.Address {
				if err := p.bind(lc, ni); err != nil {
					return err
				}
				p.dropped = append(p.dropped, unshared(info, ni))
				p.sum.ListenersRebound++
			} else {
				filters, chain, err := b.listenerParts(lc, ni)
				if err != nil {
					closeInfo(unshared(ni, info))
					return err
				}
				ni.Listener, ni.filters = info.Listener, filters
				p.swaps = append(p.swaps, listenerSwap{l: info.Listener, filters: filters, chain: chain, drain: true, old: unshared(info, ni)})
			}
			p.infos = append(p.infos, ni)
			if info.router != nil && ni.router != nil {
				// The old connections' next requests (before they
				// close) route with the new table too: it names no
				// cluster this reload removes.
				p.routers = append(p.routers, [2]*router.Router{info.router, ni.router})
			}
		}
	}
	for _, info := range running {
		p.dropped = append(p.dropped, info)
		p.sum.ListenersRemoved++
	}
	return nil
}

// keepListener plans what an unchanged listener needs: a new route table
// when the virtual hosts it serves changed, a new tcp_proxy chain when its
// cluster was rebuilt or its host count changed (its connections keep the
// cluster they hold; none is drained).
func (p *plan) keepListener(lc config.Listener, info *ListenerInfo) error {
	if h := lc.HTTP; h != nil && info.router != nil {
		if a, b := selectedVHosts(p.old, h), selectedVHosts(p.cfg, h); !same(&a, &b) {
			p.routers = append(p.routers, [2]*router.Router{info.router, p.b.routerFor(h)})
			p.sum.RoutesChanged++
		}
		return nil
	}
	if t := lc.TCP; t != nil && p.changedC[t.Cluster] {
		tmp := *info
		chain, err := p.b.chainFor(lc, &tmp)
		if err != nil {
			return err
		}
		p.swaps = append(p.swaps, listenerSwap{l: info.Listener, filters: info.filters, chain: chain})
	}
	return nil
}

// bind builds lc's listener on a new socket (not accepting until commit).
func (p *plan) bind(lc config.Listener, ni *ListenerInfo) error {
	filters, chain, err := p.b.listenerParts(lc, ni)
	if err != nil {
		closeInfo(unshared(ni, p.shares[ni]))
		return err
	}
	l, err := network.NewListener(lc.Name, p.s.tr, lc.Address, filters, chain)
	if err != nil {
		closeInfo(unshared(ni, p.shares[ni]))
		return fmt.Errorf("server: listener %q: %w", lc.Name, err)
	}
	l.Stats = ni.Conn
	ni.Listener, ni.filters = l, filters
	p.bound = append(p.bound, l)
	return nil
}

// carryStats starts a changed listener's info with the counters of the
// running one, so its metrics go on (the filter's only if it is the same),
// and its access log when that is set the same (one writer per file: two
// would interleave their buffers).
func carryStats(info *ListenerInfo, prev, lc config.Listener) *ListenerInfo {
	ni := &ListenerInfo{Name: lc.Name, Conn: info.Conn}
	if lc.HTTP != nil {
		ni.HTTP = info.HTTP
		if prev.HTTP != nil && prev.HTTP.AccessLog != nil && lc.HTTP.AccessLog != nil && *prev.HTTP.AccessLog == *lc.HTTP.AccessLog {
			ni.AccessLog = info.AccessLog
		}
	} else {
		ni.TCP = info.TCP
	}
	return ni
}

// unshared is info without what other uses too: what may be closed with
// info (closeInfo) while other lives.
func unshared(info, other *ListenerInfo) *ListenerInfo {
	if other == nil || info.AccessLog != other.AccessLog {
		return info
	}
	cp := *info
	cp.AccessLog = nil
	return &cp
}

// abort undoes build: nothing it made was in use.
func (p *plan) abort() {
	for _, l := range p.bound {
		l.Close()
	}
	for _, info := range p.infos {
		if !slices.Contains(p.s.infos, info) {
			closeInfo(unshared(info, p.shares[info]))
		}
	}
	for _, c := range p.fresh {
		c.Drain()
	}
	for _, k := range p.kept {
		if k[0].HTTP != k[1].HTTP {
			closeFactories(k[1].HTTP) // decoded for a config that does not run
		}
	}
}

// commit swaps the plan in. Order matters: the clusters routes may name
// exist before the routes do, and clusters leave the set only after no
// route or chain names them.
func (p *plan) commit() {
	s := p.s
	for _, k := range p.kept {
		keepFactories(k[0], k[1])
	}
	union := maps.Clone(p.clusters)
	for _, c := range p.gone {
		if _, ok := union[c.Name]; !ok {
			union[c.Name] = c
		}
	}
	s.clusters.Set(union)
	for c, lc := range p.lbs {
		c.SetLB(lc.f, lc.name)
	}
	for c, hs := range p.hosts {
		added, removed := c.SetHosts(hs)
		p.sum.HostsAdded, p.sum.HostsRemoved = p.sum.HostsAdded+added, p.sum.HostsRemoved+removed
	}
	for _, c := range p.unhealth {
		c.ClearHealth()
	}
	for _, name := range p.goneName {
		s.stopCluster(name)
	}
	for _, cc := range p.start {
		s.startCluster(cc, p.clusters[cc.Name], p.b.health)
	}
	for _, r := range p.routers {
		r[0].Set(r[1])
	}
	for _, l := range p.bound {
		l.Start()
		s.log.Info("listener ready", "name", l.Name, "address", l.Addr().String())
	}
	r := &retiredSet{clusters: p.gone}
	for _, sw := range p.swaps {
		gen := sw.l.Update(sw.filters, sw.chain)
		if sw.drain {
			sw.l.DrainGen(gen)
			r.gens, r.infos = append(r.gens, retiredGen{sw.l, gen}), append(r.infos, sw.old)
		}
	}
	for _, info := range p.dropped {
		info.Listener.Retire()
		r.listeners, r.infos = append(r.listeners, info.Listener), append(r.infos, info)
	}
	listeners := make([]*network.Listener, 0, len(p.infos))
	for _, info := range p.infos {
		listeners = append(listeners, info.Listener)
	}
	s.mu.Lock()
	s.cfg, s.infos, s.listeners = p.cfg, p.infos, listeners
	s.clusterTLS, s.codecStats, s.health = p.b.clusterTLS, p.b.codecStats, p.b.health
	s.mu.Unlock()
	s.clusters.Set(p.clusters)
	s.retire(r, p.cfg.DrainTimeout.D())
}

// same reports whether two config values are equal: deeply, or as YAML
// (raw lb_options and plugin blocks hold YAML nodes whose line numbers move
// when the file is edited elsewhere).
func same(a, b any) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	ya, err := yaml.Marshal(a)
	if err != nil {
		return false
	}
	yb, err := yaml.Marshal(b)
	return err == nil && bytes.Equal(ya, yb)
}

func sameHost(a, b config.Host) bool {
	return a.Address == b.Address && a.Weight == b.Weight && a.Plaintext == b.Plaintext && maps.Equal(a.Metadata, b.Metadata)
}

// sameBase compares two clusters' settings but those Apply changes in
// place (hosts, lb, lb_options, health_check, DNS).
func sameBase(a, b *config.Cluster) bool {
	ca, cb := *a, *b
	for _, c := range []*config.Cluster{&ca, &cb} {
		c.Hosts, c.LB, c.LBOptions, c.HealthCheck, c.DNSRefreshRate, c.DNSResolver = nil, "", nil, nil, 0, ""
	}
	return same(&ca, &cb)
}

func listenerConfig(cfg *config.Config, name string) (config.Listener, bool) {
	for _, l := range cfg.Listeners {
		if l.Name == name {
			return l, true
		}
	}
	return config.Listener{}, false
}

// selectedVHosts are the virtual hosts an http_proxy listener serves.
func selectedVHosts(cfg *config.Config, h *config.HTTPProxy) []config.VirtualHost {
	if len(h.VirtualHosts) == 0 {
		return cfg.Routes
	}
	var out []config.VirtualHost
	for _, vh := range cfg.Routes {
		if slices.Contains(h.VirtualHosts, vh.Name) {
			out = append(out, vh)
		}
	}
	return out
}
