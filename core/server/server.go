// Package server builds a running proxy from a config: clusters, routers,
// listeners with their filter chains, all over one transport.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/proxy"
	"github.com/proxylab/proxylab/core/router"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	"github.com/proxylab/proxylab/core/timer"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/transport"
)

// Server is a built proxy.
type Server struct {
	cfg       *config.Config
	tr        transport.Transport
	clusters  *upstream.Manager
	listeners []*network.Listener
	demo      *http.Server
	log       *slog.Logger
	timers    *timer.Wheel

	HTTPStats proxy.HTTPStats
	TCPStats  proxy.TCPStats
}

// New builds everything the config describes and binds the listeners (so a
// port conflict fails here), without accepting yet.
func New(cfg *config.Config, tr transport.Transport, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, tr: tr, log: log, timers: timer.New(10 * time.Millisecond)}
	var clusters []*upstream.Cluster
	for _, cc := range cfg.Clusters {
		ucfg := upstream.ClusterConfig{
			Name: cc.Name,
			LB:   cc.LB,
			HTTP1: h1s.ClientSettings{
				Limits:             h1.DefaultLimits,
				ConnectTimeout:     cc.ConnectTimeout.D(),
				MaxConnections:     cc.MaxConnections,
				MaxPending:         cc.MaxPending,
				MaxRequestsPerConn: cc.MaxRequestsPerConnection,
				HighWatermark:      256 << 10,
			},
		}
		for _, h := range cc.Hosts {
			ucfg.Hosts = append(ucfg.Hosts, upstream.HostConfig{Address: h.Address, Weight: h.Weight})
		}
		c, err := upstream.NewCluster(ucfg, tr)
		if err != nil {
			return nil, err
		}
		clusters = append(clusters, c)
	}
	s.clusters = upstream.NewManager(clusters)

	for _, lc := range cfg.Listeners {
		chain, err := s.chainFor(lc)
		if err != nil {
			s.Close()
			return nil, err
		}
		l, err := network.NewListener(lc.Name, tr, lc.Address, nil, chain)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("server: listener %q: %w", lc.Name, err)
		}
		s.listeners = append(s.listeners, l)
	}
	return s, nil
}

func (s *Server) chainFor(lc config.Listener) (network.ChainFactory, error) {
	if h := lc.HTTP; h != nil {
		var vhosts []router.VirtualHost
		for _, vh := range s.cfg.Routes {
			if len(h.VirtualHosts) > 0 && !contains(h.VirtualHosts, vh.Name) {
				continue
			}
			rv := router.VirtualHost{Name: vh.Name, Domains: vh.Domains}
			for _, r := range vh.Routes {
				rv.Routes = append(rv.Routes, router.Route{Prefix: r.Prefix, Path: r.Path, Cluster: r.Cluster, Timeout: r.Timeout.D(), PrefixRewrite: r.PrefixRewrite})
			}
			vhosts = append(vhosts, rv)
		}
		hc := &proxy.HTTPConfig{
			Router:   router.New(vhosts),
			Clusters: s.clusters,
			Server: h1s.ServerSettings{
				Limits:        h1.Limits{MaxRequestLine: h.MaxRequestLine, MaxHeaderBytes: h.MaxHeaderBytes, MaxHeaders: h.MaxHeaders},
				HeaderTimeout: h.HeaderReadTimeout.D(),
				IdleTimeout:   h.IdleTimeout.D(),
				HighWatermark: h.HighWatermark,
				Linger:        2 * time.Second,
				Timers:        s.timers,
			},
			Scheme:           "http",
			MaxRequestBuffer: h.MaxRequestBuffer,
			Stats:            &s.HTTPStats,
			Log:              s.log,
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
		Stats:           &s.TCPStats,
	}
	return func() ([]network.ReadFilter, []network.WriteFilter) {
		return []network.ReadFilter{proxy.NewTCPFilter(tc)}, nil
	}, nil
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
	for _, l := range s.listeners {
		l.Close()
	}
	if s.clusters != nil {
		s.clusters.Drain()
	}
	if s.demo != nil {
		s.demo.Close()
	}
}
