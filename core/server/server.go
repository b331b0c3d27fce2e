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

// Server is a built proxy.
type Server struct {
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
}

// HealthStats are the health-check counters of clusters that check, by name.
func (s *Server) HealthStats() map[string]*upstream.HealthStats { return s.health }

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
	secure    offload.Server
	beside    []offload.Server
}

// ClusterCodecStats are the metrics of the clusters' codecs (those that
// count), by cluster name.
func (s *Server) ClusterCodecStats() map[string]stats.Collector { return s.codecStats }

// ClusterTLSStats are the handshake counts of clusters with TLS, by name.
func (s *Server) ClusterTLSStats() map[string]*offload.Stats { return s.clusterTLS }

// New builds everything the config describes and binds the listeners (so a
// port conflict fails here), without accepting yet.
func New(cfg *config.Config, tr transport.Transport, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, tr: tr, log: log, timers: timer.New(10 * time.Millisecond), clusterTLS: map[string]*offload.Stats{}, codecStats: map[string]stats.Collector{}, health: map[string]*upstream.HealthStats{}}
	var clusters []*upstream.Cluster
	for _, cc := range cfg.Clusters {
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
			Stats:     cfg.Stats.Enabled,
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
		c, err := upstream.NewCluster(ucfg, tr)
		if err != nil {
			return nil, err
		}
		clusters = append(clusters, c)
	}
	s.clusters = upstream.NewManager(clusters)

	for _, lc := range cfg.Listeners {
		info := &ListenerInfo{Name: lc.Name}
		if cfg.Stats.Enabled {
			info.Conn = &network.ListenerStats{}
		}
		chain, err := s.chainFor(lc, info)
		if err != nil {
			s.Close()
			return nil, err
		}
		var filters []network.ListenerFilter
		if t := lc.TLS; t != nil {
			alpn := t.ALPN
			if len(alpn) == 0 && lc.HTTP != nil {
				alpn = listenerALPN(lc.HTTP.Codec) // what the codec speaks (RFC 7301)
			}
			f, err := s.tlsFilter(lc.Name, t, alpn, info)
			if err != nil {
				s.Close()
				return nil, err
			}
			filters = append(filters, f)
		}
		l, err := network.NewListener(lc.Name, tr, lc.Address, filters, chain)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("server: listener %q: %w", lc.Name, err)
		}
		l.Stats = info.Conn
		info.Listener = l
		s.listeners = append(s.listeners, l)
		s.infos = append(s.infos, info)
	}
	return s, nil
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
func (s *Server) Infos() []*ListenerInfo { return s.infos }

// Clusters is the cluster manager.
func (s *Server) Clusters() *upstream.Manager { return s.clusters }

// Transport is the transport the server runs on.
func (s *Server) Transport() transport.Transport { return s.tr }

// Config is the effective config.
func (s *Server) Config() *config.Config { return s.cfg }

func (s *Server) chainFor(lc config.Listener, info *ListenerInfo) (network.ChainFactory, error) {
	if h := lc.HTTP; h != nil {
		var vhosts []router.VirtualHost
		for _, vh := range s.cfg.Routes {
			if len(h.VirtualHosts) > 0 && !contains(h.VirtualHosts, vh.Name) {
				continue
			}
			rv := router.VirtualHost{Name: vh.Name, Domains: vh.Domains, HeaderOps: headerOps(vh.HeaderOps)}
			for _, r := range vh.Routes {
				rr := router.Route{Prefix: r.Prefix, Path: r.Path, Methods: r.Methods, Cluster: r.Cluster, Timeout: r.Timeout.D(),
					PrefixRewrite: r.PrefixRewrite, ClusterHeader: r.ClusterHeader, HostRewrite: r.HostRewrite, HeaderOps: headerOps(r.HeaderOps),
					Tunnel: routeTunnel(r.RouteTunnel)}
				if r.IdleTimeout != nil {
					rr.IdleTimeout, rr.IdleSet = r.IdleTimeout.D(), true
				}
				for _, m := range r.RequestMirrorPolicies {
					rr.Mirrors = append(rr.Mirrors, router.Mirror{Cluster: m.Cluster, Percent: m.Percent})
				}
				if len(r.MetadataMatch) > 0 {
					rr.Subset = upstream.SubsetKey(r.MetadataMatch)
				}
				for _, wc := range r.WeightedClusters {
					rr.WeightedClusters = append(rr.WeightedClusters, router.WeightedCluster{Name: wc.Name, Weight: wc.Weight})
				}
				if d := r.DirectResponse; d != nil {
					rr.Direct = &router.DirectResponse{Status: d.Status, Body: []byte(d.Body)}
				}
				if rd := r.Redirect; rd != nil {
					rr.Redirect = &router.Redirect{Scheme: rd.SchemeRedirect, Host: rd.HostRedirect, Path: rd.PathRedirect,
						PrefixRewrite: rd.PrefixRewrite, Code: rd.ResponseCode, StripQuery: rd.StripQuery}
				}
				if rw := r.RegexRewrite; rw != nil {
					rr.RegexRewrite = &router.RegexRewrite{Pattern: regexp.MustCompile(rw.Pattern), Substitution: envoySubstitution(rw.Substitution)}
				}
				if rp := r.RetryPolicy; rp != nil {
					rr.NumRetries, rr.RetriableStatusCodes = rp.NumRetries, rp.RetriableStatusCodes
					rr.PerTryTimeout, rr.BackoffBase, rr.BackoffMax = rp.PerTryTimeout.D(), rp.BaseInterval.D(), rp.MaxInterval.D()
					for _, on := range rp.RetryOn {
						rr.RetryOn |= map[string]router.RetryOn{"connect-failure": router.RetryConnectFailure, "reset": router.RetryReset,
							"5xx": router.Retry5xx, "gateway-error": router.RetryGatewayError, "retriable-status-codes": router.RetryRetriableStatusCodes}[on]
					}
				}
				if r.Regex != "" {
					rr.Regex = regexp.MustCompile(r.Regex) // validated at load
				}
				for _, m := range r.Headers {
					rr.Headers = append(rr.Headers, router.HeaderMatcher{Name: m.Name, Value: valueMatcher(m), Present: m.Present, Invert: m.Invert})
				}
				for _, m := range r.QueryParameters {
					rr.Query = append(rr.Query, router.QueryMatcher{Name: m.Name, Value: valueMatcher(m), Present: m.Present})
				}
				for _, hp := range r.HashPolicy {
					rr.HashPolicy = append(rr.HashPolicy, router.HashPolicy{Header: hp.Header, Cookie: hp.Cookie, SourceIP: hp.SourceIP})
				}
				rv.Routes = append(rv.Routes, rr)
			}
			vhosts = append(vhosts, rv)
		}
		hc := &proxy.HTTPConfig{
			Router:   router.New(vhosts),
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
		var err error
		if hc.Codecs, hc.Servers, hc.Detect, err = listenerCodecs(h, &hc.Server, info); err != nil {
			return nil, fmt.Errorf("server: listener %q: %w", lc.Name, err)
		}
		info.Filter = "http_proxy"
		if s.cfg.Stats.Enabled {
			hc.Stats = &proxy.HTTPStats{}
			info.HTTP = hc.Stats
		}
		if al := h.AccessLog; al != nil {
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
	cl := s.clusters.Get(t.Cluster)
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
		tc.Stats = &proxy.TCPStats{}
		info.TCP = tc.Stats
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
	s.stopHealth = cancel
	for _, cc := range s.cfg.Clusters {
		s.clusters.Get(cc.Name).StartIdleSweep(ctx, cc.IdleTimeout.D())
		if cc.Type == "strict_dns" {
			d := upstream.DNS{Refresh: cc.DNSRefreshRate.D(), Resolver: cc.DNSResolver}
			for _, h := range cc.Hosts {
				d.Targets = append(d.Targets, upstream.HostConfig{Address: h.Address, Weight: h.Weight, Plaintext: h.Plaintext, Metadata: h.Metadata})
			}
			s.clusters.Get(cc.Name).StartDNS(ctx, d, 5*time.Second)
		}
		if cc.OutlierDetection != nil {
			s.clusters.Get(cc.Name).StartOutlierDetection(ctx)
		}
		if hc := cc.HealthCheck; hc != nil {
			st := &upstream.HealthStats{}
			s.health[cc.Name] = st
			s.clusters.Get(cc.Name).StartHealthChecks(ctx, upstream.HealthCheck{
				Type: hc.Type, Path: hc.Path, Host: hc.Host, ExpectedStatuses: hc.ExpectedStatuses,
				Interval: hc.Interval.D(), Jitter: hc.Jitter.D(), Timeout: hc.Timeout.D(),
				HealthyThreshold: hc.HealthyThreshold, UnhealthyThreshold: hc.UnhealthyThreshold,
			}, st)
		}
	}
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
func (s *Server) Listeners() []*network.Listener { return s.listeners }

// Drain stops accepting, lets in-flight requests finish, and returns when
// every connection is closed or ctx ends (then the rest are cut).
func (s *Server) Drain(ctx context.Context) error {
	waits := make([]<-chan struct{}, 0, len(s.listeners))
	for _, l := range s.listeners {
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
	for _, l := range s.listeners {
		l.Close()
	}
	for _, info := range s.infos {
		if info.AccessLog != nil {
			info.AccessLog.Close()
		}
		if info.secure != nil {
			info.secure.Close()
		}
		for _, b := range info.beside {
			b.Close()
		}
	}
	if s.clusters != nil {
		s.clusters.Drain()
	}
	if s.demo != nil {
		s.demo.Close()
	}
}
