// Package server builds a running proxy from a config: clusters, routers,
// listeners with their filter chains, all over one transport.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/proxylab/proxylab/core/accesslog"
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/proxy"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/transport"
)

// Server is a built proxy. Apply (apply.go) replaces parts of it while it
// runs: mu guards the fields it replaces (cfg, listeners, infos and the
// stats maps, which are copied on write, never changed in place).
type Server struct {
	mu         sync.RWMutex
	cfg        *config.Config
	tr         transport.Transport
	clusters   *upstream.Manager
	listeners  []*network.Listener
	infos      []*ListenerInfo
	demo       *http.Server
	log        *slog.Logger
	timers     *timer.Wheel
	clusterTLS map[string]*offload.Stats
	// codecStats are the clusters' codec metrics (codecs that count).
	codecStats map[string]stats.Collector
	health     map[string]*upstream.HealthStats
	stopHealth context.CancelFunc
	live       liveState // apply.go
}

// HealthStats are the health-check counters of clusters that check, by name.
func (s *Server) HealthStats() map[string]*upstream.HealthStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.health
}

// ListenerInfo is what the admin API shows of a listener.
type ListenerInfo struct {
	Name     string
	Filter   string // "http_proxy" or "tcp_proxy"
	Listener *network.Listener
	// Stats are nil when metrics are disabled; HTTP or TCP by filter.
	Conn *network.ListenerStats
	HTTP *proxy.HTTPStats
	TCP  *proxy.TCPStats
	TLS  *offload.Stats // nil without TLS
	// Codecs are the metrics of an http_proxy listener's codecs (those
	// that count), one per registered codec.
	Codecs    []stats.Collector
	Engine    string
	AccessLog *accesslog.Logger
	// Filters is an http_proxy listener's http_filters chain.
	Filters []proxy.FilterSpec
	// ListenerFilters are the listener's configured listener_filters.
	ListenerFilters []network.ListenerFilter
	secure          offload.Server
	beside          []offload.Server
	router          *router.Router // an http_proxy listener's, Set on a route change
	filters         []network.ListenerFilter
}

// ClusterCodecStats are the metrics of the clusters' codecs (those that
// count), by cluster name.
func (s *Server) ClusterCodecStats() map[string]stats.Collector {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.codecStats
}

// ClusterTLSStats are the handshake counts of clusters with TLS, by name.
func (s *Server) ClusterTLSStats() map[string]*offload.Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.clusterTLS
}

// New builds everything the config describes and binds the listeners (so a
// port conflict fails here), without accepting yet.
func New(cfg *config.Config, tr transport.Transport, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, tr: tr, log: log, timers: timer.New(10 * time.Millisecond), clusterTLS: map[string]*offload.Stats{}, codecStats: map[string]stats.Collector{}, health: map[string]*upstream.HealthStats{}}
	s.live.stats.started()
	var clusters []*upstream.Cluster
	for _, cc := range cfg.Clusters {
		c, err := s.buildCluster(cc)
		if err != nil {
			return nil, err
		}
		clusters = append(clusters, c)
	}
	s.clusters = upstream.NewManager(clusters)

	for _, lc := range cfg.Listeners {
		info := &ListenerInfo{Name: lc.Name}
		filters, chain, err := s.listenerParts(lc, info)
		if err != nil {
			s.Close()
			return nil, err
		}
		l, err := network.NewListener(lc.Name, tr, lc.Address, filters, chain)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("server: listener %q: %w", lc.Name, err)
		}
		l.Stats = info.Conn
		info.Listener, info.filters = l, filters
		s.listeners = append(s.listeners, l)
		s.infos = append(s.infos, info)
	}
	return s, nil
}

// buildCluster builds cc's cluster (not started: see startCluster),
// recording its codec's and TLS stats in s's maps.
func (s *Server) buildCluster(cc config.Cluster) (*upstream.Cluster, error) {
	codec, cli, err := s.clusterCodec(cc)
	if err != nil {
		return nil, err
	}
	var secure offload.Client
	if t := cc.TLS; t != nil {
		eng, err := offload.New(t.Engine)
		if err != nil {
			return nil, fmt.Errorf("server: cluster %q: %w", cc.Name, err)
		}
		st := &offload.Stats{}
		s.clusterTLS[cc.Name] = st
		alpn := t.ALPN
		if len(alpn) == 0 {
			alpn = cli.ALPN()
		}
		occ := &offload.ClientConfig{SNI: t.SNI, CAFile: t.CAFile, Insecure: t.InsecureSkipVerify, ALPN: alpn, MinVersion: t.MinVersion, Stats: st,
			HandshakeTimeout: cc.ConnectTimeout.D()}
		if c := t.ClientCert; c != nil {
			occ.Cert = &offload.CertFiles{CertFile: c.CertFile, KeyFile: c.KeyFile, Options: c.EngineOptions}
		}
		if secure, err = eng.NewClient(occ); err != nil {
			return nil, fmt.Errorf("server: cluster %q: %w", cc.Name, err)
		}
	}
	ucfg := upstream.ClusterConfig{
		Name:      cc.Name,
		LB:        cc.LB,
		LBOptions: cc.LBOptions,
		Stats:     s.cfg.Stats.Enabled,
		TLS:       secure,
		Breakers: upstream.Breakers{
			MaxConnections: cc.CircuitBreakers.MaxConnections, MaxPending: cc.CircuitBreakers.MaxPendingRequests,
			MaxRequests: cc.CircuitBreakers.MaxRequests, MaxRetries: cc.CircuitBreakers.MaxRetries,
		},
		Codec:   cli,
		Carries: codec.Carries(),
	}
	if sc := cc.Subsets; sc != nil {
		ucfg.Subsets = &upstream.Subsets{Selectors: sc.SubsetSelectors, Fallback: sc.FallbackPolicy, Default: sc.DefaultSubset}
	}
	if od := cc.OutlierDetection; od != nil {
		ucfg.Outlier = &upstream.Outlier{Consecutive5xx: od.Consecutive5xx, ConsecutiveConnectFailure: od.ConsecutiveConnectFailure,
			Interval: od.Interval.D(), BaseEjectionTime: od.BaseEjectionTime.D(), MaxEjectionPercent: od.MaxEjectionPercent}
	}
	if rb := cc.CircuitBreakers.RetryBudget; rb != nil {
		ucfg.Breakers.BudgetPercent, ucfg.Breakers.MinRetryConcurrency = rb.BudgetPercent, rb.MinRetryConcurrency
	}
	for _, h := range cc.Hosts {
		if cc.Type == "strict_dns" {
			continue // resolved at Start
		}
		ucfg.Hosts = append(ucfg.Hosts, upstream.HostConfig{Address: h.Address, Weight: h.Weight, Plaintext: h.Plaintext, Metadata: h.Metadata})
	}
	c, err := upstream.NewCluster(ucfg, s.tr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// listenerParts builds lc's listener filters and chain (nothing bound),
// filling info's stats; stats already in info are kept (reload).
func (s *Server) listenerParts(lc config.Listener, info *ListenerInfo) ([]network.ListenerFilter, network.ChainFactory, error) {
	if s.cfg.Stats.Enabled && info.Conn == nil {
		info.Conn = &network.ListenerStats{}
	}
	chain, err := s.chainFor(lc, info)
	if err != nil {
		return nil, nil, err
	}
	filters := listenerFilters(lc, info) // before TLS: a refused connection costs no handshake
	if t := lc.TLS; t != nil {
		alpn := t.ALPN
		if len(alpn) == 0 && lc.HTTP != nil {
			alpn = listenerALPN(lc.HTTP.Codec) // what the codec speaks (RFC 7301)
		}
		f, err := s.tlsFilter(lc.Name, t, alpn, info)
		if err != nil {
			return nil, nil, err
		}
		filters = append(filters, f)
	}
	return filters, chain, nil
}

func (s *Server) tlsFilter(name string, t *config.ListenerTLS, alpn []string, info *ListenerInfo) (network.ListenerFilter, error) {
	eng, err := offload.New(t.Engine)
	if err != nil {
		return nil, fmt.Errorf("server: listener %q: %w", name, err)
	}
	sc := &offload.ServerConfig{
		ALPN: alpn, MinVersion: t.MinVersion, MaxVersion: t.MaxVersion, CipherSuites: t.CipherSuites, Curves: t.Curves,
		ClientAuth: t.ClientAuth, ClientCA: t.ClientCA, ClientSANs: t.ClientSANs,
		SessionTicketKeyFile: t.SessionTicketKeyFile, TicketRotation: t.TicketRotation.D(),
		ReloadInterval: t.ReloadInterval.D(), HandshakeTimeout: t.HandshakeTimeout.D(),
		Stats: &offload.Stats{},
	}
	for _, c := range t.Certificates {
		sc.Certificates = append(sc.Certificates, offload.CertFiles{CertFile: c.CertFile, KeyFile: c.KeyFile, Options: c.EngineOptions})
	}
	srv, err := eng.NewServer(sc)
	if err != nil {
		return nil, fmt.Errorf("server: listener %q: %w", name, err)
	}
	info.TLS, info.Engine, info.secure = sc.Stats, eng.Name(), srv
	f := &network.TLSInspector{Server: srv, Inspect: t.Inspector}
	// Blocks engines added to the tls block that serve beside the
	// listener's engine (gm's tlcp), in key order; they share its stats.
	for _, key := range slices.Sorted(maps.Keys(t.Blocks)) {
		b, ok := t.Blocks[key].(offload.Beside)
		if !ok {
			continue
		}
		bs, err := b.NewServer(sc)
		if err != nil {
			return nil, fmt.Errorf("server: listener %q: %s: %w", name, key, err)
		}
		f.Beside = append(f.Beside, bs)
		info.beside = append(info.beside, bs)
	}
	return f, nil
}

// Infos describes the listeners for the admin API.
func (s *Server) Infos() []*ListenerInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.infos
}

// Clusters is the cluster manager.
func (s *Server) Clusters() *upstream.Manager { return s.clusters }

// Transport is the transport the server runs on.
func (s *Server) Transport() transport.Transport { return s.tr }

// Config is the effective config.
func (s *Server) Config() *config.Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cfg
}

func (s *Server) chainFor(lc config.Listener, info *ListenerInfo) (network.ChainFactory, error) {
	if h := lc.HTTP; h != nil {
		specs, _ := httpFilters(h)
		hc := &proxy.HTTPConfig{
			Router:   s.routerFor(h),
			Clusters: s.clusters,
			Server: stream.ServerOptions{
				MaxRequestLine: h.MaxRequestLine, MaxHeaderBytes: h.MaxHeaderBytes, MaxHeaders: h.MaxHeaders,
				HeaderTimeout:         h.HeaderReadTimeout.D(),
				IdleTimeout:           h.IdleTimeout.D(),
				HighWatermark:         h.HighWatermark,
				Linger:                2 * time.Second,
				Timers:                s.timers,
				Blocks:                h.Options,
				EnableConnectProtocol: extendedConnect(h),
			},
			MaxRequestBuffer: h.MaxRequestBuffer,
			StreamIdle:       h.StreamIdleTimeout.D(),
			RequestTimeout:   h.RequestTimeout.D(),
			HeaderOps:        headerOps(h.HeaderOps),
			Log:              s.log,
			Tunnels: proxy.TunnelConfig{Upgrades: upgrades(h.UpgradeConfigs), IdleTimeout: h.TunnelIdleTimeout.D(),
				Transport: s.tr, ConnectTimeout: 5 * time.Second},
		}
		hc.SetFilters(specs, h.PerRequestBufferLimit)
		info.Filters = specs
		var err error
		if hc.Codecs, hc.Servers, hc.Detect, err = listenerCodecs(h, &hc.Server, info); err != nil {
			return nil, fmt.Errorf("server: listener %q: %w", lc.Name, err)
		}
		info.Filter, info.router = "http_proxy", hc.Router
		if s.cfg.Stats.Enabled {
			if info.HTTP == nil {
				info.HTTP = &proxy.HTTPStats{}
			}
			hc.Stats = info.HTTP
		}
		if al := h.AccessLog; al != nil && info.AccessLog != nil {
			hc.AccessLog = info.AccessLog // the running one, kept by a reload
		} else if al != nil {
			format := al.Format
			if format == "" {
				format = accesslog.DefaultFormat
			}
			f, err := accesslog.ParseFormat(format)
			if err != nil {
				return nil, fmt.Errorf("server: listener %q: %w", lc.Name, err)
			}
			lg, err := accesslog.Open(al.Path, f, al.Buffer)
			if err != nil {
				return nil, fmt.Errorf("server: listener %q: %w", lc.Name, err)
			}
			hc.AccessLog, info.AccessLog = lg, lg
		}
		return func() ([]network.ReadFilter, []network.WriteFilter) {
			return []network.ReadFilter{proxy.NewHTTPFilter(hc)}, nil
		}, nil
	}
	t := lc.TCP
	cl := s.lookupCluster(t.Cluster)
	tc := &proxy.TCPConfig{
		Cluster:         cl,
		Transport:       s.tr,
		ConnectTimeout:  s.connectTimeout(t.Cluster),
		ConnectAttempts: min(len(cl.Hosts()), 3),
		HighWatermark:   t.HighWatermark,
		IdleTimeout:     t.IdleTimeout.D(),
		Timers:          s.timers,
	}
	info.Filter = "tcp_proxy"
	if s.cfg.Stats.Enabled {
		if info.TCP == nil {
			info.TCP = &proxy.TCPStats{}
		}
		tc.Stats = info.TCP
	}
	return func() ([]network.ReadFilter, []network.WriteFilter) {
		return []network.ReadFilter{proxy.NewTCPFilter(tc)}, nil
	}, nil
}

// envoySubstitution turns Envoy's \1-style group references into Go's ${1}
// (and a literal $ into $$).
func envoySubstitution(sub string) string {
	var b strings.Builder
	for i := 0; i < len(sub); i++ {
		switch c := sub[i]; {
		case c == '$':
			b.WriteString("$$")
		case c == '\\' && i+1 < len(sub) && sub[i+1] >= '0' && sub[i+1] <= '9':
			b.WriteString("${")
			b.WriteByte(sub[i+1])
			b.WriteString("}")
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func headerOps(h config.HeaderOps) router.HeaderOps {
	conv := func(vs []config.HeaderValue) []router.HeaderValue {
		var out []router.HeaderValue
		for _, v := range vs {
			out = append(out, router.HeaderValue{Name: v.Name, Value: []byte(v.Value), Append: v.Append})
		}
		return out
	}
	return router.HeaderOps{RequestAdd: conv(h.RequestHeadersToAdd), RequestRemove: h.RequestHeadersToRemove,
		ResponseAdd: conv(h.ResponseHeadersToAdd), ResponseRemove: h.ResponseHeadersToRemove}
}

// valueMatcher converts a validated config matcher (nil for a presence test).
func valueMatcher(m config.ValueMatcher) *router.StringMatcher {
	switch {
	case m.Regex != "":
		return &router.StringMatcher{Regex: regexp.MustCompile(m.Regex)}
	case m.Present == nil:
		return &router.StringMatcher{Exact: m.Exact}
	}
	return nil
}

func (s *Server) connectTimeout(cluster string) time.Duration {
	for _, c := range s.cfg.Clusters {
		if c.Name == cluster {
			return c.ConnectTimeout.D()
		}
	}
	return 5 * time.Second
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Start starts the demo upstream (if configured) and begins accepting.
func (s *Server) Start() error {
	if d := s.cfg.DemoUpstream; d != nil {
		ln, err := net.Listen("tcp", d.Address)
		if err != nil {
			return fmt.Errorf("server: demo upstream: %w", err)
		}
		s.demo = &http.Server{Handler: http.HandlerFunc(demoHandler), ReadHeaderTimeout: 10 * time.Second}
		go s.demo.Serve(ln)
		s.log.Info("demo upstream ready", "address", ln.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.stopHealth = cancel
	s.live.root = ctx
	for _, cc := range s.cfg.Clusters {
		s.startCluster(cc, s.clusters.Get(cc.Name), s.health)
	}
	s.mu.Unlock()
	for _, l := range s.listeners {
		l.Start()
		s.log.Info("listener ready", "name", l.Name, "address", l.Addr().String())
	}
	return nil
}

func demoHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "hello from the proxylab demo upstream: %s %s (via %s)\n", r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"))
}

// Listeners returns the running listeners.
func (s *Server) Listeners() []*network.Listener {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.listeners
}

// Drain stops accepting, lets in-flight requests finish, and returns when
// every connection is closed or ctx ends (then the rest are cut).
func (s *Server) Drain(ctx context.Context) error {
	s.stopApplying()
	listeners := s.Listeners()
	waits := make([]<-chan struct{}, 0, len(listeners))
	for _, l := range listeners {
		waits = append(waits, l.Drain())
	}
	var err error
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			err = errors.New("server: drain timeout, closing remaining connections")
		}
		if err != nil {
			break
		}
	}
	s.Close()
	return err
}

// Close stops everything at once.
func (s *Server) Close() {
	if s.stopHealth != nil {
		s.stopHealth()
	}
	s.stopApplying()
	s.mu.RLock()
	listeners, infos := s.listeners, s.infos
	s.mu.RUnlock()
	for _, l := range listeners {
		l.Close()
	}
	for _, info := range infos {
		closeInfo(info)
	}
	s.closeRetired()
	if s.clusters != nil {
		s.clusters.Drain()
	}
	if s.demo != nil {
		s.demo.Close()
	}
}
