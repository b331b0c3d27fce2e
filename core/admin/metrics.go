package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxylab/proxylab/core/server"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
)

// collector turns the server's hot-path counters into Prometheus metrics at
// scrape time; nothing on the request path knows Prometheus exists.
type collector struct{ srv *server.Server }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("proxylab_"+name, help, labels, nil)
}

var (
	dCxTotal    = desc("listener_downstream_cx_total", "Downstream connections accepted.", "listener")
	dCxActive   = desc("listener_downstream_cx_active", "Downstream connections open.", "listener")
	dCxDestroy  = desc("listener_downstream_cx_destroy_total", "Downstream connections closed, by which side closed first.", "listener", "origin")
	dCxRx       = desc("listener_downstream_cx_rx_bytes_total", "Bytes read from downstream connections.", "listener")
	dCxTx       = desc("listener_downstream_cx_tx_bytes_total", "Bytes written to downstream connections.", "listener")
	dFilterFail = desc("http_filter_failures_total", "Downstream HTTP requests ended by an http filter's failure (a panic): 500.", "listener")
	dRqTotal    = desc("http_downstream_rq_total", "Downstream HTTP requests.", "listener")
	dRqActive   = desc("http_downstream_rq_active", "Downstream HTTP requests in flight.", "listener")
	dRqXX       = desc("http_downstream_rq_xx_total", "Downstream HTTP responses by status class.", "listener", "code_class")
	dRqTime     = desc("http_downstream_rq_time_seconds", "Time from a request head to its complete response.", "listener")
	dLocal      = desc("http_local_replies_total", "Responses made by the proxy itself (404, 502, 503, 504 …).", "listener")
	dRqIdleTO   = desc("http_downstream_rq_idle_timeout_total", "Requests ended by the stream idle timeout (408 or reset, flag SI).", "listener")
	dRqTO       = desc("http_downstream_rq_timeout_total", "Requests not received whole within request_timeout (408, flag DT).", "listener")
	dUpgrades   = desc("http_downstream_upgrades_total", "Upgrades and CONNECT tunnels established, by type (websocket, CONNECT, other).", "listener", "type")
	dUpgRefused = desc("http_downstream_upgrades_refused_total", "Upgrades and CONNECTs refused by policy (403).", "listener")
	dTunActive  = desc("http_tunnels_active", "Tunnels (upgraded or CONNECT streams) open.", "listener")
	dTunIdle    = desc("http_tunnel_idle_timeouts_total", "Tunnels closed by the tunnel idle timeout.", "listener")
	dTCPCx      = desc("tcp_upstream_cx_total", "Upstream connections opened by tcp_proxy.", "listener")
	dTCPFail    = desc("tcp_upstream_cx_connect_fail_total", "tcp_proxy upstream connect failures.", "listener")
	dTCPTx      = desc("tcp_upstream_tx_bytes_total", "Bytes tcp_proxy sent upstream.", "listener")
	dTCPRx      = desc("tcp_upstream_rx_bytes_total", "Bytes tcp_proxy received from upstream.", "listener")
	dTCPIdle    = desc("tcp_idle_timeout_total", "tcp_proxy pairs closed by the idle timeout.", "listener")
	dALWritten  = desc("access_log_written_total", "Access log entries written.", "listener")
	dALDropped  = desc("access_log_dropped_total", "Access log entries dropped because the writer fell behind.", "listener")
	dUpRq       = desc("cluster_upstream_rq_total", "Upstream requests.", "cluster")
	dUpRqXX     = desc("cluster_upstream_rq_xx_total", "Upstream responses by status class.", "cluster", "code_class")
	dUpRetry    = desc("cluster_upstream_rq_retry_total", "Upstream request retries.", "cluster")
	dUpTimeout  = desc("cluster_upstream_rq_timeout_total", "Upstream requests that timed out (504).", "cluster")
	dUpOverflow = desc("cluster_upstream_rq_pending_overflow_total", "Requests refused because the pending queue was full (503).", "cluster")
	dUpRqOver   = desc("cluster_upstream_rq_overflow_total", "Requests refused by the max_requests circuit breaker (503).", "cluster")
	dUpRetryOv  = desc("cluster_upstream_rq_retry_overflow_total", "Retries not made because of max_retries or the retry budget.", "cluster")
	dUpCxOver   = desc("cluster_upstream_cx_overflow_total", "Requests refused by the max_connections circuit breaker (503).", "cluster")
	dUpTime     = desc("cluster_upstream_rq_time_seconds", "Time from sending a request upstream to its complete response.", "cluster")
	dUpCx       = desc("cluster_upstream_cx_total", "Upstream connections opened.", "cluster")
	dUpCxFail   = desc("cluster_upstream_cx_connect_fail_total", "Upstream connect failures.", "cluster")
	dUpCxActive = desc("cluster_upstream_cx_active", "Upstream connections open.", "cluster")
	dHostRq     = desc("cluster_host_rq_total", "Requests sent to a host.", "cluster", "host")
	dHostActive = desc("cluster_host_rq_active", "Requests in flight to a host.", "cluster", "host")
	dHostCx     = desc("cluster_host_cx_active", "Connections open to a host.", "cluster", "host")
	dHostFail   = desc("cluster_host_cx_connect_fail_total", "Connect failures to a host.", "cluster", "host")
	dTrAccepts  = desc("transport_accepts_total", "Connections accepted by the transport.", "transport")
	dTrDials    = desc("transport_dials_total", "Outbound connects started.", "transport")
	dTrDialFail = desc("transport_dial_failures_total", "Outbound connects that failed.", "transport")
	dTrReads    = desc("transport_reads_total", "read(2) calls.", "transport")
	dTrEAGAIN   = desc("transport_eagain_reads_total", "read(2) calls that found nothing (EAGAIN).", "transport")
	dTrWrites   = desc("transport_writes_total", "writev(2) calls.", "transport")
	dTrWakeups  = desc("transport_wakeups_total", "Event-loop wakeups (epoll_wait returns).", "transport")
	dTrEvents   = desc("transport_events_total", "Readiness events handled.", "transport")
	dTrLoops    = desc("transport_loops", "Event loops (rawepoll workers).", "transport")
	dHCAttempt  = desc("cluster_health_check_attempt_total", "Active health checks run.", "cluster")
	dHCSuccess  = desc("cluster_health_check_success_total", "Active health checks passed.", "cluster")
	dHCFailure  = desc("cluster_health_check_failure_total", "Active health checks failed.", "cluster")
	dHCEject    = desc("cluster_health_check_ejections_total", "Hosts marked unhealthy by health checks.", "cluster")
	dHCRecover  = desc("cluster_health_check_recoveries_total", "Hosts marked healthy again.", "cluster")
	dHostHealth = desc("cluster_host_healthy", "1 when the host passes health checks (or none are configured).", "cluster", "host")
	dOutEject   = desc("cluster_outlier_detection_ejections_total", "Hosts ejected by outlier detection.", "cluster")
	dOutOver    = desc("cluster_outlier_detection_ejections_overflow_total", "Ejections skipped because of max_ejection_percent.", "cluster")
	dHostEject  = desc("cluster_host_ejected", "1 while outlier detection has the host ejected.", "cluster", "host")
	dPanic      = desc("cluster_lb_panic", "1 when too few hosts are healthy and traffic goes to all of them.", "cluster")
	dBufGets    = desc("buffer_pool_gets_total", "Buffers taken from the pool.")
	dRlAttempts = desc("config_reload_attempts_total", "Config reloads asked for (SIGHUP, POST /reload, file watch, control plane).")
	dRlSuccess  = desc("config_reload_success_total", "Config reloads applied.")
	dRlFailures = desc("config_reload_failures_total", "Config reloads refused (invalid, needs a restart, or could not be applied); the config in force kept serving.")
	dRlLast     = desc("config_last_reload_time_seconds", "When the config in force was applied (Unix time; the start if never reloaded).")
	dCfgInfo    = desc("config_info", "Always 1; hash labels the config in force (as X-Config-Hash on /config_dump).", "hash")
	dBufAllocs  = desc("buffer_pool_allocs_total", "Buffers the pool had to allocate (the rest were reused).")
)

func (collector) Describe(chan<- *prometheus.Desc) {} // unchecked: the label sets follow the config

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h *stats.Histogram, labels ...string) {
	buckets, count, sum := h.Snapshot()
	ch <- prometheus.MustNewConstHistogram(d, count, sum, buckets, labels...)
}

var classes = [...]string{1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.srv.Infos() {
		if st := l.Conn; st != nil {
			counter(ch, dCxTotal, st.CxTotal.Value(), l.Name)
			gauge(ch, dCxActive, float64(st.CxActive.Value()), l.Name)
			counter(ch, dCxDestroy, st.CxDestroyLocal.Value(), l.Name, "local")
			counter(ch, dCxDestroy, st.CxDestroyRemote.Value(), l.Name, "remote")
			counter(ch, dCxRx, st.RxBytes.Value(), l.Name)
			counter(ch, dCxTx, st.TxBytes.Value(), l.Name)
		}
		if st := l.HTTP; st != nil {
			counter(ch, dRqTotal, st.RqTotal.Value(), l.Name)
			gauge(ch, dRqActive, float64(st.RqActive.Value()), l.Name)
			for i := 1; i <= 5; i++ {
				counter(ch, dRqXX, st.RqXX[i].Value(), l.Name, classes[i])
			}
			histogram(ch, dRqTime, &st.RqTime, l.Name)
			counter(ch, dLocal, st.LocalReplies.Value(), l.Name)
			counter(ch, dRqIdleTO, st.RqIdleTimeout.Value(), l.Name)
			counter(ch, dRqTO, st.RqTimeout.Value(), l.Name)
			counter(ch, dFilterFail, st.FilterFailures.Value(), l.Name)
			counter(ch, dUpgrades, st.UpgradesWebSocket.Value(), l.Name, "websocket")
			counter(ch, dUpgrades, st.UpgradesConnect.Value(), l.Name, "CONNECT")
			counter(ch, dUpgrades, st.UpgradesOther.Value(), l.Name, "other")
			counter(ch, dUpgRefused, st.UpgradesRefused.Value(), l.Name)
			gauge(ch, dTunActive, float64(st.TunnelsActive.Value()), l.Name)
			counter(ch, dTunIdle, st.TunnelIdleTimeouts.Value(), l.Name)
		}
		for _, st := range l.Codecs {
			st.Collect(sideEmit(ch, "listener", l.Name))
		}
		for _, f := range l.Filters { // http filters export their own metrics
			if c, ok := f.Factory.(stats.Collector); ok {
				c.Collect(sideEmit(ch, "listener", l.Name))
			}
		}
		for _, f := range l.ListenerFilters { // so do listener filters (network rbac)
			if c, ok := f.(stats.Collector); ok {
				c.Collect(sideEmit(ch, "listener", l.Name))
			}
		}
		if st := l.TCP; st != nil {
			counter(ch, dTCPCx, st.UpstreamCxTotal.Value(), l.Name)
			counter(ch, dTCPFail, st.UpstreamCxConnectFail.Value(), l.Name)
			counter(ch, dTCPTx, st.UpstreamTxBytes.Value(), l.Name)
			counter(ch, dTCPRx, st.UpstreamRxBytes.Value(), l.Name)
			counter(ch, dTCPIdle, st.IdleTimeout.Value(), l.Name)
		}
		if al := l.AccessLog; al != nil {
			counter(ch, dALWritten, al.Written(), l.Name)
			counter(ch, dALDropped, al.Dropped(), l.Name)
		}
	}
	for _, cl := range c.srv.Clusters().Clusters() {
		n := cl.Name
		var cx, fail uint64
		var active int64
		for _, h := range cl.Hosts() {
			ps := h.HTTPPool().Counters()
			cx += ps.ConnectsTotal.Load()
			fail += ps.ConnectFailures.Load()
			active += ps.Active.Load()
			counter(ch, dHostRq, h.RqTotal.Value(), n, h.Address)
			gauge(ch, dHostActive, float64(h.ActiveRequests.Load()), n, h.Address)
			gauge(ch, dHostCx, float64(ps.Active.Load()), n, h.Address)
			counter(ch, dHostFail, ps.ConnectFailures.Load(), n, h.Address)
		}
		for _, h := range cl.Hosts() {
			healthy := 0.0
			if h.Healthy() {
				healthy = 1
			}
			gauge(ch, dHostHealth, healthy, n, h.Address)
			ejected := 0.0
			if h.Ejected() {
				ejected = 1
			}
			gauge(ch, dHostEject, ejected, n, h.Address)
		}
		if os := cl.OutlierStats(); os != nil {
			counter(ch, dOutEject, os.Ejections.Value(), n)
			counter(ch, dOutOver, os.EjectionsOverflow.Value(), n)
		}
		panicking := 0.0
		if cl.Panic() {
			panicking = 1
		}
		gauge(ch, dPanic, panicking, n)
		if st := c.srv.HealthStats()[n]; st != nil {
			counter(ch, dHCAttempt, st.Attempts.Value(), n)
			counter(ch, dHCSuccess, st.Successes.Value(), n)
			counter(ch, dHCFailure, st.Failures.Value(), n)
			counter(ch, dHCEject, st.Ejections.Value(), n)
			counter(ch, dHCRecover, st.Recoveries.Value(), n)
		}
		counter(ch, dUpCx, cx, n)
		counter(ch, dUpCxFail, fail, n)
		gauge(ch, dUpCxActive, float64(active), n)
		if st := cl.Stats; st != nil {
			counter(ch, dUpRq, st.UpstreamRqTotal.Value(), n)
			for i := 1; i <= 5; i++ {
				counter(ch, dUpRqXX, st.UpstreamRqXX[i].Value(), n, classes[i])
			}
			counter(ch, dUpRetry, st.UpstreamRqRetry.Value(), n)
			counter(ch, dUpTimeout, st.UpstreamRqTimeout.Value(), n)
			counter(ch, dUpOverflow, st.UpstreamRqPendingOverflow.Value(), n)
			counter(ch, dUpRqOver, st.UpstreamRqOverflow.Value(), n)
			counter(ch, dUpRetryOv, st.UpstreamRqRetryOverflow.Value(), n)
			counter(ch, dUpCxOver, st.UpstreamCxOverflow.Value(), n)
			histogram(ch, dUpTime, &st.UpstreamRqTime, n)
		}
	}
	for _, l := range c.srv.Infos() {
		if l.TLS != nil {
			l.TLS.Collect(sideEmit(ch, "listener", l.Name))
		}
	}
	for name, st := range c.srv.ClusterTLSStats() {
		st.Collect(sideEmit(ch, "cluster", name))
	}
	for name, st := range c.srv.ClusterCodecStats() {
		st.Collect(sideEmit(ch, "cluster", name))
	}
	tr := c.srv.Transport()
	if r, ok := tr.(transport.StatsReporter); ok {
		s, name := r.Stats(), tr.Name()
		counter(ch, dTrAccepts, s.Accepts, name)
		counter(ch, dTrDials, s.Dials, name)
		counter(ch, dTrDialFail, s.DialFailures, name)
		counter(ch, dTrReads, s.Reads, name)
		counter(ch, dTrEAGAIN, s.EAGAINReads, name)
		counter(ch, dTrWrites, s.Writes, name)
		counter(ch, dTrWakeups, s.Wakeups, name)
		counter(ch, dTrEvents, s.Events, name)
		gauge(ch, dTrLoops, float64(s.Loops), name)
	}
	if pc, ok := tr.(stats.Collector); ok {
		pc.Collect(emitTo(ch))
	}
	rs := c.srv.ReloadStats()
	counter(ch, dRlAttempts, rs.Attempts.Load())
	counter(ch, dRlSuccess, rs.Successes.Load())
	counter(ch, dRlFailures, rs.Failures.Load())
	gauge(ch, dRlLast, float64(rs.LastSuccess.Load())/1e9)
	gauge(ch, dCfgInfo, 1, c.srv.ConfigHash())
	gets, allocs := buffer.PoolStats()
	counter(ch, dBufGets, gets)
	counter(ch, dBufAllocs, allocs)
}

// emitTo turns what plugins report through stats.Collector into Prometheus
// metrics (proxylab_<name>); plugins own their names, help and labels.
func emitTo(ch chan<- prometheus.Metric) stats.Emit {
	return func(name, help string, kind stats.MetricKind, value float64, labels ...stats.Label) {
		names, values := make([]string, len(labels)), make([]string, len(labels))
		for i, l := range labels {
			names[i], values[i] = l.Name, l.Value
		}
		vt := prometheus.CounterValue
		if kind == stats.GaugeKind {
			vt = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(desc(name, help, names...), vt, value, values...)
	}
}

// sideEmit labels a listener's or cluster's plugin metrics with where they
// come from.
func sideEmit(ch chan<- prometheus.Metric, side, name string) stats.Emit {
	return stats.WithLabels(emitTo(ch), stats.Label{Name: "side", Value: side}, stats.Label{Name: "name", Value: name})
}
