// Package upstream holds clusters of hosts, the load balancers that pick
// among them, and each host's connection pools.
package upstream

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/transport"
	"gopkg.in/yaml.v3"
)

// Host is one upstream endpoint.
type Host struct {
	Address      string
	AddressBytes []byte // Address, for headers without a conversion per request
	Weight       uint32
	cluster      *Cluster
	pool         HTTPPool

	Metadata       map[string]string
	ActiveRequests atomic.Int64
	RqTotal        stats.Counter
	// unhealthy is set by active health checks.
	unhealthy atomic.Bool
	outlier   hostOutlier
	removed   chan struct{} // closed when the host leaves the cluster
	// TLS secures connections to the host; nil for plaintext.
	TLS offload.Client
}

// Healthy reports the host's health-check state (true until checked).
func (h *Host) Healthy() bool { return !h.unhealthy.Load() }

// Cluster returns the cluster the host belongs to.
func (h *Host) Cluster() *Cluster { return h.cluster }

// HTTPPool is what a host's connection pool offers, whatever the codec it
// speaks upstream.
type HTTPPool = stream.HostPool

// HTTPPool is the host's connection pool (of the cluster's codec).
func (h *Host) HTTPPool() HTTPPool { return h.pool }

// LBContext carries what a load balancer may hash or look at.
type LBContext struct {
	// Hash is the request's hash for consistent policies, when HasHash.
	Hash    uint64
	HasHash bool
	// Subset, when not empty, asks for hosts whose metadata match
	// (SubsetKey form), in a cluster with subsets.
	Subset string
}

// LoadBalancer picks a host. Implementations must be safe for concurrent use.
type LoadBalancer interface {
	Choose(ctx *LBContext) *Host
}

// LBFactory builds a policy over a fixed host set.
type LBFactory func(hosts []*Host) LoadBalancer

var lbs = registry.New[LBPolicy]("load balancer")

// RegisterLB makes a load-balancing policy without options available by
// name (an lb_options block for it is refused); duplicates panic.
func RegisterLB(name string, f LBFactory) { lbs.Register(name, NoOptions(f)) }

// RegisterLBPolicy makes a policy with options available by name;
// duplicates panic. See Options for building p from a typed struct.
func RegisterLBPolicy(name string, p LBPolicy) { lbs.Register(name, p) }

// LBNames lists the registered policies, sorted.
func LBNames() []string { return lbs.Names() }

func lookupLB(name string) (LBPolicy, bool) { return lbs.Get(name) }

type roundRobin struct {
	hosts []*Host
	next  atomic.Uint64
}

// NewRoundRobin cycles through the hosts in order.
func NewRoundRobin(hosts []*Host) LoadBalancer { return &roundRobin{hosts: hosts} }

func (r *roundRobin) Choose(*LBContext) *Host {
	if len(r.hosts) == 0 {
		return nil
	}
	return r.hosts[(r.next.Add(1)-1)%uint64(len(r.hosts))]
}

type random struct{ hosts []*Host }

// NewRandom picks a host uniformly at random.
func NewRandom(hosts []*Host) LoadBalancer { return &random{hosts: hosts} }

func (r *random) Choose(*LBContext) *Host {
	if len(r.hosts) == 0 {
		return nil
	}
	return r.hosts[rand.IntN(len(r.hosts))]
}

// ClusterConfig is what the config layer hands over to build a cluster.
type ClusterConfig struct {
	Name string
	LB   string
	// LBOptions is the cluster's lb_options block, decoded by the policy
	// (nil: the policy's defaults).
	LBOptions *yaml.Node
	Hosts     []HostConfig
	// Codec is the client side of the codec the hosts' pools speak;
	// Carries is its request protocol (stream.Codec.Carries).
	Codec   stream.Client
	Carries string
	// Stats enables the cluster's metrics.
	Stats bool
	// TLS secures the hosts' connections (those not marked Plaintext).
	TLS offload.Client
	// Breakers are the cluster-wide limits.
	Breakers Breakers
	// Outlier, when set, enables passive outlier detection.
	Outlier *Outlier
	// Subsets, when set, enables subset load balancing.
	Subsets *Subsets
}

// CarriesTunnels says whether the cluster's codec can carry an upgrade's or
// a CONNECT's byte tunnel (stream.Tunneller).
func (c *Cluster) CarriesTunnels() bool {
	t, ok := c.cfg.Codec.(stream.Tunneller)
	return ok && t.CarriesTunnels()
}

// Speaks is the request protocol the cluster carries (its codec's
// stream.Codec.Carries).
func (c *Cluster) Speaks() string { return c.cfg.Carries }

// OutlierStats are the cluster's ejection counters (nil without outlier
// detection).
func (c *Cluster) OutlierStats() *OutlierStats { return c.outlierStats }

// HostConfig is one static host.
type HostConfig struct {
	Metadata  map[string]string
	Address   string
	Weight    uint32
	Plaintext bool   // opts out of the cluster's TLS
	Hostname  string // the DNS name it came from (for TLS SNI), if any
}

// ClusterStats are a cluster's upstream request metrics (Envoy's
// cluster.<name>.upstream_rq_*). Connection counts come from the host pools.
type ClusterStats struct {
	UpstreamRqTotal           stats.Counter
	UpstreamRqXX              [6]stats.Counter // by status class
	UpstreamRqRetry           stats.Counter
	UpstreamRqTimeout         stats.Counter
	UpstreamRqPendingOverflow stats.Counter
	UpstreamRqOverflow        stats.Counter   // max_requests circuit breaker
	UpstreamRqRetryOverflow   stats.Counter   // max_retries or the retry budget
	UpstreamCxOverflow        stats.Counter   // max_connections circuit breaker
	UpstreamRqTime            stats.Histogram // request sent → response complete
}

// Breakers are a cluster's circuit breakers (Envoy's defaults: 1024
// connections, pending and requests, 3 retries in flight) and its optional
// retry budget: retries in flight never exceed BudgetPercent of the
// requests in flight (but MinRetryConcurrency are always allowed).
type Breakers struct {
	MaxConnections, MaxPending, MaxRequests, MaxRetries int
	BudgetPercent                                       float64
	MinRetryConcurrency                                 int
}

// Cluster is a named set of hosts with a load balancer.
type Cluster struct {
	Name    string
	hosts   atomic.Pointer[[]*Host] // replaced whole when the set changes (DNS)
	tr      transport.Transport
	cfg     ClusterConfig
	hostsMu sync.Mutex // serialises host-set changes
	onAdd   []addHook  // under hostsMu
	lbf     LBFactory  // the policy with the cluster's options applied
	lbName  string
	lb      atomic.Pointer[lbState]
	panicAt float64 // healthy share below which all hosts are used
	// Stats is nil when metrics are disabled.
	Stats *ClusterStats

	requests, retries, conns, pending stream.Breaker

	outlier       *Outlier
	outlierStats  *OutlierStats
	subsets       *Subsets
	ejectMu       sync.Mutex
	rebalanceMu   sync.Mutex
	budgetPercent float64
	minRetries    int64
}

// AdmitRequest takes a max_requests slot; ReleaseRequest gives it back.
func (c *Cluster) AdmitRequest() bool { return c.requests.TryAcquire() }
func (c *Cluster) ReleaseRequest()    { c.requests.Release() }

// AdmitRetry takes a retry slot if max_retries and the retry budget allow;
// ReleaseRetry gives it back.
func (c *Cluster) AdmitRetry() bool {
	if c.budgetPercent > 0 {
		allowed := max(int64(float64(c.requests.Count())*c.budgetPercent/100), c.minRetries)
		if c.retries.Count() >= allowed {
			return false
		}
	}
	return c.retries.TryAcquire()
}
func (c *Cluster) ReleaseRetry() { c.retries.Release() }

// Breakers reports what counts against the circuit breakers now.
func (c *Cluster) BreakerCounts() (requests, retries, conns, pending int64) {
	return c.requests.Count(), c.retries.Count(), c.conns.Count(), c.pending.Count()
}

// Choose picks a host, or nil when there is none.
func (c *Cluster) Choose(ctx *LBContext) *Host {
	st := c.lb.Load()
	if c.subsets != nil && ctx != nil && ctx.Subset != "" {
		return c.chooseSubset(st, ctx)
	}
	return st.lb.Choose(ctx)
}

// lbState is the balancer over the hosts eligible now.
type lbState struct {
	lb      LoadBalancer
	subsets map[string]LoadBalancer
	panic   bool   // too few healthy hosts: balancing over all of them
	name    string // the policy's name
}

// PanicThreshold is Envoy's default: below 50% healthy hosts, traffic goes
// to all hosts rather than overloading the few healthy ones.
const PanicThreshold = 0.5

// rebalance rebuilds the balancer over the healthy hosts (or all of them,
// in panic mode). Called when a host's health changes.
func (c *Cluster) rebalance() {
	c.rebalanceMu.Lock() // health checks and outlier detection both call it
	defer c.rebalanceMu.Unlock()
	var healthy []*Host
	hosts := c.Hosts()
	for _, h := range hosts {
		if h.available() {
			healthy = append(healthy, h)
		}
	}
	st := &lbState{name: c.lbName}
	if len(hosts) > 0 && float64(len(healthy))/float64(len(hosts)) < c.panicAt {
		st.lb, st.panic = c.lbf(hosts), true
		st.subsets = c.subsetLBs(hosts)
	} else {
		st.lb = c.lbf(healthy)
		st.subsets = c.subsetLBs(healthy)
	}
	c.lb.Store(st)
}

// Panic reports whether the cluster balances over all hosts because too few
// are healthy.
func (c *Cluster) Panic() bool { return c.lb.Load().panic }

// SetHealthy records a health-check verdict and rebalances on a change.
func (c *Cluster) SetHealthy(h *Host, healthy bool) (changed bool) {
	if h.unhealthy.Swap(!healthy) == !healthy {
		return false
	}
	c.rebalance()
	return true
}

// Hosts returns the cluster's hosts.
func (c *Cluster) Hosts() []*Host {
	if p := c.hosts.Load(); p != nil {
		return *p
	}
	return nil
}

// NewCluster builds a cluster whose pools dial through tr.
func NewCluster(cfg ClusterConfig, tr transport.Transport) (*Cluster, error) {
	name := cfg.LB
	if name == "" {
		name = DefaultLB
	}
	pol, ok := lookupLB(name)
	if !ok {
		return nil, fmt.Errorf("upstream: cluster %q: unknown load balancer %q (have %v)", cfg.Name, name, LBNames())
	}
	f, err := pol.Factory(cfg.LBOptions, "lb_options")
	if err != nil {
		return nil, fmt.Errorf("upstream: cluster %q: %w", cfg.Name, err)
	}
	c := &Cluster{Name: cfg.Name}
	if cfg.Stats {
		c.Stats = &ClusterStats{}
	}
	c.subsets = cfg.Subsets
	if o := cfg.Outlier; o != nil {
		oc := *o
		c.outlier, c.outlierStats = &oc, &OutlierStats{}
	}
	b := cfg.Breakers
	c.requests.Max, c.retries.Max = int64(b.MaxRequests), int64(b.MaxRetries)
	c.conns.Max, c.pending.Max = int64(b.MaxConnections), int64(b.MaxPending)
	c.budgetPercent, c.minRetries = b.BudgetPercent, int64(b.MinRetryConcurrency)
	if c.retries.Max <= 0 && b.BudgetPercent > 0 {
		c.retries.Max = 1 << 30 // the budget alone limits; Breaker counts only with a Max
	}
	if c.requests.Max <= 0 && b.BudgetPercent > 0 {
		c.requests.Max = 1 << 30 // the budget needs the requests in flight counted
	}
	c.tr, c.cfg = tr, cfg
	var hosts []*Host
	for _, hc := range cfg.Hosts {
		hosts = append(hosts, c.newHost(hc))
	}
	c.hosts.Store(&hosts)
	c.lbf, c.panicAt, c.lbName = f, PanicThreshold, name
	c.rebalance()
	return c, nil
}

func (c *Cluster) newHost(hc HostConfig) *Host {
	h := &Host{Address: hc.Address, AddressBytes: []byte(hc.Address), Weight: hc.Weight, Metadata: hc.Metadata, cluster: c, removed: make(chan struct{})}
	ho := stream.HostOptions{ClusterConns: &c.conns, ClusterPending: &c.pending}
	if c.cfg.TLS != nil && !hc.Plaintext {
		h.TLS = c.cfg.TLS
		sni := hc.Address
		if hc.Hostname != "" {
			sni = hc.Hostname // verify the name the address came from
		}
		ho.Wrap = func(conn transport.Conn, _ string) transport.Conn { return h.TLS.Wrap(conn, sni) }
		ho.Secure = true
	}
	mk := func() stream.HostPool { return c.cfg.Codec.NewPool(c.tr, hc.Address, ho) }
	// Per-loop pools unless a connection or pending limit makes the host
	// (or the cluster) one queue.
	h.pool = newHostPools(mk, c.conns.Max <= 0 && c.pending.Max <= 0)
	return h
}

// removedHostGrace is how long a removed host's pool keeps taking streams.
const removedHostGrace = time.Second

// SetHosts replaces the host set (DNS re-resolution): hosts that stay keep
// their pools and state, new ones are added, and removed ones leave the
// balancer at once while their pools drain (after removedHostGrace) —
// requests in flight on them finish, idle connections close. A host whose
// weight, metadata or TLS opt-out changed is replaced by a new one.
func (c *Cluster) SetHosts(want []HostConfig) (added, removed int) {
	c.hostsMu.Lock()
	defer c.hostsMu.Unlock()
	old := map[string]*Host{}
	for _, h := range c.Hosts() {
		old[h.Address] = h
	}
	var next, fresh []*Host
	for _, hc := range want {
		if h, ok := old[hc.Address]; ok && h.same(hc) {
			next = append(next, h)
			delete(old, hc.Address)
			continue
		}
		h := c.newHost(hc)
		next, fresh = append(next, h), append(fresh, h)
	}
	if len(fresh) == 0 && len(old) == 0 {
		return 0, 0
	}
	c.hosts.Store(&next)
	c.rebalance()
	for _, h := range old {
		close(h.removed)
		// A request that picked h just before the swap still opens its
		// stream on h's pool: drain a moment later (a drained pool dials no
		// more), so that request is served.
		time.AfterFunc(removedHostGrace, h.pool.Drain)
	}
	for _, h := range fresh {
		for _, f := range c.onAdd {
			if f.ctx.Err() == nil {
				f.fn(h)
			}
		}
	}
	return len(fresh), len(old)
}

// same reports whether h is what hc describes (apart from its address, which
// the caller matched): a changed weight, metadata or TLS opt-out makes a new
// host, since balancers read those without locks.
func (h *Host) same(hc HostConfig) bool {
	return h.Weight == hc.Weight && maps.Equal(h.Metadata, hc.Metadata) && (h.TLS == nil) == (hc.Plaintext || h.cluster.cfg.TLS == nil)
}

// StartIdleSweep closes pooled connections past their idle timeout until
// ctx ends.
func (c *Cluster) StartIdleSweep(ctx context.Context, timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	every(ctx, max(timeout/2, 10*time.Millisecond), func(now time.Time) {
		for _, h := range c.Hosts() {
			h.pool.SweepIdle(now)
		}
	})
}

// every calls fn with the tick time every period, on one goroutine of its
// own, until ctx ends; fn runs to completion before the next tick is taken.
func every(ctx context.Context, period time.Duration, fn func(now time.Time)) {
	go func() {
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tk.C:
				fn(now)
			}
		}
	}()
}

// Drain winds down every host's pools.
func (c *Cluster) Drain() {
	for _, h := range c.Hosts() {
		h.pool.Drain()
	}
}

// Manager owns the clusters by name. The set is replaced whole (Set, hot
// reload) while requests look clusters up: a lookup sees one set or the
// other, and a request keeps the *Cluster it got until it ends.
type Manager struct {
	clusters atomic.Pointer[map[string]*Cluster]
}

// NewManager returns a manager over clusters.
func NewManager(clusters []*Cluster) *Manager {
	m := &Manager{}
	set := make(map[string]*Cluster, len(clusters))
	for _, c := range clusters {
		set[c.Name] = c
	}
	m.clusters.Store(&set)
	return m
}

// Set replaces the cluster set; the map is the manager's from then on and
// must not be changed.
func (m *Manager) Set(clusters map[string]*Cluster) { m.clusters.Store(&clusters) }

// Map is the current set; it must not be changed (copy it for Set).
func (m *Manager) Map() map[string]*Cluster { return *m.clusters.Load() }

// Clusters lists the clusters (in no particular order).
func (m *Manager) Clusters() []*Cluster {
	set := m.Map()
	out := make([]*Cluster, 0, len(set))
	for _, c := range set {
		out = append(out, c)
	}
	return out
}

// Get returns the named cluster or nil.
func (m *Manager) Get(name string) *Cluster { return (*m.clusters.Load())[name] }

// Drain winds down every cluster.
func (m *Manager) Drain() {
	for _, c := range m.Map() {
		c.Drain()
	}
}
