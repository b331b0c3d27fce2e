// Package admin is the admin HTTP server: Prometheus metrics, a config dump,
// cluster and listener state, readiness for load balancers, live log level,
// and runtime profiles. It runs on its own listener (loopback by default),
// beside the traffic path, on Go's net/http.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/server"
)

// Server is a running admin API.
type Server struct {
	srv     *server.Server
	level   *slog.LevelVar
	reg     *prometheus.Registry
	http    *http.Server
	ln      net.Listener
	token   string
	failing atomic.Bool // /healthcheck/fail was called
	started atomic.Bool // all listeners accept
	reload  atomic.Pointer[func() (string, error)]
	dumps   []dumpSection // extra /config_dump sections (extra.go)
}

// SetReload makes POST /reload call f: its text answers 200, its error 400
// (the config in force is kept). Without it POST /reload answers 501.
func (a *Server) SetReload(f func() (string, error)) { a.reload.Store(&f) }

// New binds the admin address. level is the process log level /logging
// changes.
func New(cfg *config.Admin, srv *server.Server, level *slog.LevelVar) (*Server, error) {
	return NewOn(cfg, srv, level, nil)
}

// NewOn is New serving on ln (one inherited in a hot upgrade) when it is
// not nil; the admin server owns it.
func NewOn(cfg *config.Admin, srv *server.Server, level *slog.LevelVar, ln net.Listener) (*Server, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Address); err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
	}
	a := &Server{srv: srv, level: level, ln: ln, token: string(cfg.Token), reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collector{srv}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /stats", a.stats)
	mux.HandleFunc("GET /config_dump", a.configDump)
	mux.HandleFunc("GET /clusters", a.clusters)
	mux.HandleFunc("GET /listeners", a.listeners)
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("POST /healthcheck/fail", func(w http.ResponseWriter, r *http.Request) {
		a.failing.Store(true)
		fmt.Fprintln(w, "OK: /ready now answers 503")
	})
	mux.HandleFunc("POST /healthcheck/ok", func(w http.ResponseWriter, r *http.Request) {
		a.failing.Store(false)
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("POST /logging", a.logging)
	mux.HandleFunc("POST /reload", a.reloadConfig)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", a.index)
	a.http = &http.Server{Handler: a.auth(mux), ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// Addr is the bound address.
func (a *Server) Addr() net.Addr { return a.ln.Addr() }

// Start serves; call it once the traffic listeners accept (then /ready is 200).
func (a *Server) Start() {
	a.started.Store(true)
	go a.http.Serve(a.ln)
}

// Close stops serving.
func (a *Server) Close() error { return a.http.Close() }

// auth requires the bearer token, when one is configured, everywhere but
// /ready (load balancers probe it without credentials).
func (a *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.token != "" && r.URL.Path != "/ready" {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="proxylab admin"`)
				http.Error(w, "admin: a valid bearer token is required", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (a *Server) index(w http.ResponseWriter, r *http.Request) {
	fmt.Fprint(w, `proxylab admin
  GET  /stats/prometheus     metrics, Prometheus text format
  GET  /stats[?format=json]  the same, readable (histograms as count, sum, p50/p90/p99)
  GET  /config_dump          the effective config, secrets redacted
  GET  /clusters[?format=json]
  GET  /listeners[?format=json]
  GET  /ready                200 when serving, 503 when starting or after /healthcheck/fail
  POST /healthcheck/fail     make /ready answer 503 (drain from a load balancer)
  POST /healthcheck/ok
  POST /logging?level=debug  change the log level (debug, info, warn, error)
  POST /reload               re-read and apply the config file (400 with the errors if refused)
  GET  /debug/pprof/         runtime profiles
`)
}

func (a *Server) ready(w http.ResponseWriter, r *http.Request) {
	switch {
	case !a.started.Load():
		http.Error(w, "NOT READY: starting", http.StatusServiceUnavailable)
	case a.failing.Load():
		http.Error(w, "NOT READY: /healthcheck/fail", http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "LIVE")
	}
}

func (a *Server) logging(w http.ResponseWriter, r *http.Request) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(r.URL.Query().Get("level"))); err != nil {
		http.Error(w, "admin: level must be debug, info, warn or error", http.StatusBadRequest)
		return
	}
	a.level.Set(lvl)
	slog.Info("admin: log level changed", "level", lvl.String())
	fmt.Fprintf(w, "level: %s\n", lvl)
}

func (a *Server) reloadConfig(w http.ResponseWriter, r *http.Request) {
	f := a.reload.Load()
	if f == nil {
		http.Error(w, "admin: this process cannot reload", http.StatusNotImplemented)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	text, err := (*f)()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "reload refused, the config in force keeps serving:\n%s\n", err)
		return
	}
	fmt.Fprintln(w, text)
}

func (a *Server) configDump(w http.ResponseWriter, r *http.Request) {
	out, err := a.srv.Config().Dump()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Config-Hash", a.srv.ConfigHash())
	w.Write(out)
	a.writeDumps(w)
}

// statLine is one readable metric value.
type statLine struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

func (a *Server) stats(w http.ResponseWriter, r *http.Request) {
	families, err := a.reg.Gather()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var lines []statLine
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			add := func(suffix string, v float64) {
				lines = append(lines, statLine{Name: f.GetName() + suffix, Labels: labels, Value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add("", m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add("", m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				add("_count", float64(h.GetSampleCount()))
				add("_sum", h.GetSampleSum())
				if h.GetSampleCount() > 0 { // no quantile of nothing (and no NaN in JSON)
					for _, q := range []float64{0.5, 0.9, 0.99} {
						add(fmt.Sprintf("_p%g", q*100), quantile(h, q))
					}
				}
			case dto.MetricType_SUMMARY:
				add("_count", float64(m.GetSummary().GetSampleCount()))
				add("_sum", m.GetSummary().GetSampleSum())
			case dto.MetricType_UNTYPED:
				add("", m.GetUntyped().GetValue())
			}
		}
	}
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"stats": lines})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, l := range lines {
		fmt.Fprintf(w, "%s%s: %v\n", l.Name, labelString(l.Labels), l.Value)
	}
}

func labelString(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, labels[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// quantile is the upper bound of the bucket holding the q-quantile.
func quantile(h *dto.Histogram, q float64) float64 {
	n := h.GetSampleCount()
	if n == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(n)))
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() >= rank {
			return b.GetUpperBound()
		}
	}
	return math.Inf(1)
}

// ClusterHost is one host as /clusters shows it.
type ClusterHost struct {
	Address         string `json:"address"`
	Weight          uint32 `json:"weight"`
	Health          string `json:"health"`
	ActiveRequests  int64  `json:"active_requests"`
	Requests        uint64 `json:"requests"`
	ActiveConns     int64  `json:"active_connections"`
	IdleConns       int    `json:"idle_connections"`
	ConnectFailures uint64 `json:"connect_failures"`
	OutlierEjected  bool   `json:"outlier_ejected"`
}

// ClusterState is one cluster as /clusters shows it.
type ClusterState struct {
	Name string `json:"name"`
	// LB is the policy and the settings it runs with, e.g. "maglev
	// table_size=65537".
	LB    string        `json:"lb"`
	Hosts []ClusterHost `json:"hosts"`
}

func (a *Server) clusters(w http.ResponseWriter, r *http.Request) {
	var out []ClusterState
	for _, cl := range a.srv.Clusters().Clusters() {
		cs := ClusterState{Name: cl.Name, LB: cl.LBInfo()}
		for _, h := range cl.Hosts() {
			ps := h.HTTPPool().Counters()
			health := "healthy"
			if !h.Healthy() {
				health = "/failed_active_hc" // Envoy's flag
			}
			cs.Hosts = append(cs.Hosts, ClusterHost{
				Address: h.Address, Weight: h.Weight,
				Health:         health,
				ActiveRequests: h.ActiveRequests.Load(), Requests: h.RqTotal.Value(),
				ActiveConns: ps.Active.Load(), IdleConns: h.HTTPPool().Idle(), ConnectFailures: ps.ConnectFailures.Load(),
				OutlierEjected: h.Ejected(),
			})
		}
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"clusters": out})
		return
	}
	for _, cs := range out {
		fmt.Fprintf(w, "%s::lb::%s\n", cs.Name, cs.LB)
		for _, h := range cs.Hosts {
			p := cs.Name + "::" + h.Address + "::"
			fmt.Fprintf(w, "%shealth_flags::%s\n%sweight::%d\n%srq_active::%d\n%srq_total::%d\n%scx_active::%d\n%scx_idle::%d\n%scx_connect_fail::%d\n%soutlier_ejected::%v\n",
				p, h.Health, p, h.Weight, p, h.ActiveRequests, p, h.Requests, p, h.ActiveConns, p, h.IdleConns, p, h.ConnectFailures, p, h.OutlierEjected)
		}
	}
}

// ListenerState is one listener as /listeners shows it.
type ListenerState struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Filter   string `json:"filter"`
	Active   int    `json:"active_connections"`
	Accepted uint64 `json:"accepted_connections"`
}

func (a *Server) listeners(w http.ResponseWriter, r *http.Request) {
	var out []ListenerState
	for _, l := range a.srv.Infos() {
		out = append(out, ListenerState{Name: l.Name, Address: l.Listener.Addr().String(), Filter: l.Filter,
			Active: l.Listener.Active(), Accepted: l.Listener.Accepted()})
	}
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"listeners": out})
		return
	}
	for _, l := range out {
		fmt.Fprintf(w, "%s::%s::%s::active=%d::accepted=%d\n", l.Name, l.Address, l.Filter, l.Active, l.Accepted)
	}
}
