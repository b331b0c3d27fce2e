package xds

import (
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/proxylab/proxylab/core/config"
)

// cluster is a translated Cluster: the model entry plus what it waits for.
type cluster struct {
	cfg config.Cluster
	// eds is the ClusterLoadAssignment name the hosts come from ("" when
	// the hosts are in the resource).
	eds string
	// tls holds the SDS names the upstream TLS waits for.
	tls *upstreamTLS
}

// upstreamTLS are a cluster's SDS references, resolved at assembly.
type upstreamTLS struct{ certSDS, caSDS string }

var (
	clusterFields = table(&clusterv3.Cluster{}, fieldTable{
		"name": supported, "type": supported, "eds_cluster_config": supported, "connect_timeout": supported,
		"lb_policy": supported, "load_assignment": supported, "health_checks": supported,
		"max_requests_per_connection": supported, "circuit_breakers": supported, "outlier_detection": supported,
		"transport_socket": supported, "typed_extension_protocol_options": supported,
		"http2_protocol_options": supported, "common_http_protocol_options": supported, "dns_refresh_rate": supported,
		"alt_stat_name": warned, "per_connection_buffer_limit_bytes": warned, "dns_lookup_family": warned,
		"metadata": warned, "upstream_connection_options": warned, "respect_dns_ttl": warned,
		"cleanup_interval": warned, "track_cluster_stats": warned, "wait_for_warm_on_init": warned,
		"common_lb_config": refused, "lb_subset_config": refused, "cluster_type": refused,
		"load_balancing_policy": refused, "ring_hash_lb_config": refused, "maglev_lb_config": refused,
		"least_request_lb_config": refused, "upstream_bind_config": refused, "filters": refused,
	})
	edsConfigFields = table(&clusterv3.Cluster_EdsClusterConfig{}, fieldTable{"eds_config": supported, "service_name": supported})
	breakersFields  = table(&clusterv3.CircuitBreakers{}, fieldTable{"thresholds": supported, "per_host_thresholds": refused})
	thresholdFields = table(&clusterv3.CircuitBreakers_Thresholds{}, fieldTable{
		"priority": supported, "max_connections": supported, "max_pending_requests": supported,
		"max_requests": supported, "max_retries": supported, "retry_budget": supported, "track_remaining": warned,
		"max_connection_pools": refused,
	})
	budgetFields  = table(&clusterv3.CircuitBreakers_Thresholds_RetryBudget{}, fieldTable{"budget_percent": supported, "min_retry_concurrency": supported})
	outlierFields = table(&clusterv3.OutlierDetection{}, fieldTable{
		"consecutive_5xx": supported, "interval": supported, "base_ejection_time": supported,
		"max_ejection_percent": supported, "consecutive_local_origin_failure": supported,
		"enforcing_consecutive_5xx": warned, "consecutive_gateway_failure": refused, "success_rate_minimum_hosts": refused,
		"split_external_local_origin_errors": refused, "failure_percentage_threshold": refused,
	})
	hcFields = table(&corev3.HealthCheck{}, fieldTable{
		"timeout": supported, "interval": supported, "interval_jitter": supported, "healthy_threshold": supported,
		"unhealthy_threshold": supported, "http_health_check": supported, "tcp_health_check": supported,
		"no_traffic_interval": warned, "event_log_path": warned, "reuse_connection": warned,
		"grpc_health_check": refused, "custom_health_check": refused, "initial_jitter": warned,
	})
	httpHCFields = table(&corev3.HealthCheck_HttpHealthCheck{}, fieldTable{
		"path": supported, "host": supported, "expected_statuses": supported,
		"request_headers_to_add": refused, "codec_client_type": refused, "send": refused, "receive": refused,
	})
	cpoFields = table(&corev3.HttpProtocolOptions{}, fieldTable{
		"idle_timeout": supported, "max_requests_per_connection": supported,
		"headers_with_underscores_action": refused, "max_connection_duration": refused, "max_headers_count": refused,
	})
	upHTTPFields = table(&httpv3.HttpProtocolOptions{}, fieldTable{
		"explicit_http_config": supported, "common_http_protocol_options": supported,
		"use_downstream_protocol_config": refused, "auto_config": refused, "http_filters": refused,
	})
	claFields = table(&endpointv3.ClusterLoadAssignment{}, fieldTable{
		"cluster_name": supported, "endpoints": supported, "policy": warned, "named_endpoints": refused,
	})
	localityFields = table(&endpointv3.LocalityLbEndpoints{}, fieldTable{
		"lb_endpoints": supported, "locality": warned, "load_balancing_weight": warned, "priority": refused,
		"metadata": warned,
	})
	lbEndpointFields = table(&endpointv3.LbEndpoint{}, fieldTable{
		"endpoint": supported, "health_status": supported, "load_balancing_weight": supported, "metadata": supported,
	})
	endpointFields = table(&endpointv3.Endpoint{}, fieldTable{"address": supported, "hostname": warned, "health_check_config": refused})
	addrFields     = table(&corev3.SocketAddress{}, fieldTable{"address": supported, "port_value": supported, "protocol": supported,
		"named_port": refused, "resolver_name": refused, "ipv4_compat": warned})
)

var lbNames = map[clusterv3.Cluster_LbPolicy]string{
	clusterv3.Cluster_ROUND_ROBIN: "round_robin", clusterv3.Cluster_LEAST_REQUEST: "least_request",
	clusterv3.Cluster_RANDOM: "random", clusterv3.Cluster_RING_HASH: "ring_hash", clusterv3.Cluster_MAGLEV: "maglev",
}

// translateCluster turns a Cluster into a model cluster.
func (t *tr) translateCluster(c *clusterv3.Cluster) *cluster {
	t.check("", c, clusterFields)
	out := &cluster{}
	cc := &out.cfg
	config.SetDefaults(cc)
	cc.Name = c.GetName()
	cc.ConnectTimeout = config.Duration(5 * time.Second) // Envoy's default
	if d := c.GetConnectTimeout(); d != nil {
		cc.ConnectTimeout = t.duration("connect_timeout", d)
	}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
		cc.Type = "static"
	case clusterv3.Cluster_STRICT_DNS:
		cc.Type = "strict_dns"
	case clusterv3.Cluster_EDS:
		cc.Type = "static"
		t.check("eds_cluster_config", c.GetEdsClusterConfig(), edsConfigFields)
		out.eds = c.GetEdsClusterConfig().GetServiceName()
		if out.eds == "" {
			out.eds = c.GetName()
		}
		if c.GetLoadAssignment() != nil {
			t.fail("load_assignment", "an EDS cluster takes its endpoints from EDS")
		}
	default:
		t.fail("type", "discovery type %s is not supported (STATIC, STRICT_DNS, EDS)", c.GetType())
	}
	if d := c.GetDnsRefreshRate(); d != nil {
		cc.DNSRefreshRate = t.duration("dns_refresh_rate", d)
	}
	if name, ok := lbNames[c.GetLbPolicy()]; ok {
		cc.LB = name
	} else {
		t.fail("lb_policy", "policy %s is not supported", c.GetLbPolicy())
	}
	if la := c.GetLoadAssignment(); la != nil {
		cc.Hosts = t.translateCLA("load_assignment", la)
	}
	if n := c.GetMaxRequestsPerConnection(); n != nil {
		cc.MaxRequestsPerConnection = int(n.GetValue())
	}
	t.breakers(cc, c.GetCircuitBreakers())
	t.outlier(cc, c.GetOutlierDetection())
	t.healthChecks(cc, c.GetHealthChecks())
	if c.GetHttp2ProtocolOptions() != nil {
		cc.Protocol = "http2"
		t.http2("http2_protocol_options", http2Options(&cc.Options), c.GetHttp2ProtocolOptions())
	}
	t.commonHTTP("common_http_protocol_options", cc, c.GetCommonHttpProtocolOptions())
	for name, a := range c.GetTypedExtensionProtocolOptions() {
		p := "typed_extension_protocol_options[" + name + "]"
		var po httpv3.HttpProtocolOptions
		if a.MessageIs(&po) && a.UnmarshalTo(&po) == nil {
			t.upstreamHTTP(p, cc, &po)
			continue
		}
		t.fail(p, "unsupported protocol options %s", a.GetTypeUrl())
	}
	if ts := c.GetTransportSocket(); ts != nil {
		out.tls = t.upstreamTransport("transport_socket", cc, ts)
	}
	return out
}

func (t *tr) duration(path string, d *durationpb.Duration) config.Duration {
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		t.fail(path, "invalid duration")
		return 0
	}
	return config.Duration(d.AsDuration())
}

func (t *tr) breakers(cc *config.Cluster, cb *clusterv3.CircuitBreakers) {
	if cb == nil {
		return
	}
	t.check("circuit_breakers", cb, breakersFields)
	for i, th := range cb.GetThresholds() {
		p := idx("circuit_breakers.thresholds", i)
		t.check(p, th, thresholdFields)
		if th.GetPriority() != corev3.RoutingPriority_DEFAULT {
			t.warns = append(t.warns, Warning{Type: t.typ, Resource: t.name, Field: p + ".priority"})
			continue // proxylab has one priority: the HIGH limits never apply
		}
		b := &cc.CircuitBreakers
		setU32(&b.MaxConnections, th.GetMaxConnections())
		setU32(&b.MaxPendingRequests, th.GetMaxPendingRequests())
		setU32(&b.MaxRequests, th.GetMaxRequests())
		setU32(&b.MaxRetries, th.GetMaxRetries())
		if rb := th.GetRetryBudget(); rb != nil {
			t.check(p+".retry_budget", rb, budgetFields)
			b.RetryBudget = &config.RetryBudget{}
			config.SetDefaults(b.RetryBudget)
			if v := rb.GetBudgetPercent(); v != nil {
				b.RetryBudget.BudgetPercent = v.GetValue()
			}
			if v := rb.GetMinRetryConcurrency(); v != nil {
				b.RetryBudget.MinRetryConcurrency = int(v.GetValue())
			}
		}
	}
	cc.MaxConnections, cc.MaxPending = cc.CircuitBreakers.MaxConnections, cc.CircuitBreakers.MaxPendingRequests
}

// setU32 sets *dst when the wrapper is present.
func setU32(dst *int, v *wrapperspb.UInt32Value) {
	if v != nil {
		*dst = int(v.GetValue())
	}
}

func (t *tr) outlier(cc *config.Cluster, od *clusterv3.OutlierDetection) {
	if od == nil {
		return
	}
	t.check("outlier_detection", od, outlierFields)
	o := &config.OutlierDetection{}
	config.SetDefaults(o)
	o.MaxEjectionPercent = 10 // Envoy's default
	setU32(&o.Consecutive5xx, od.GetConsecutive_5Xx())
	setU32(&o.ConsecutiveConnectFailure, od.GetConsecutiveLocalOriginFailure())
	setU32(&o.MaxEjectionPercent, od.GetMaxEjectionPercent())
	if d := od.GetInterval(); d != nil {
		o.Interval = t.duration("outlier_detection.interval", d)
	}
	if d := od.GetBaseEjectionTime(); d != nil {
		o.BaseEjectionTime = t.duration("outlier_detection.base_ejection_time", d)
	}
	cc.OutlierDetection = o
}

func (t *tr) healthChecks(cc *config.Cluster, hcs []*corev3.HealthCheck) {
	if len(hcs) > 1 {
		t.fail("health_checks", "proxylab runs one health check per cluster, got %d", len(hcs))
		return
	}
	if len(hcs) == 0 {
		return
	}
	hc, p := hcs[0], "health_checks[0]"
	t.check(p, hc, hcFields)
	h := &config.HealthCheck{}
	config.SetDefaults(h)
	if d := hc.GetTimeout(); d != nil {
		h.Timeout = t.duration(p+".timeout", d)
	}
	if d := hc.GetInterval(); d != nil {
		h.Interval = t.duration(p+".interval", d)
	}
	if d := hc.GetIntervalJitter(); d != nil {
		h.Jitter = t.duration(p+".interval_jitter", d)
	}
	setU32(&h.HealthyThreshold, hc.GetHealthyThreshold())
	setU32(&h.UnhealthyThreshold, hc.GetUnhealthyThreshold())
	switch {
	case hc.GetHttpHealthCheck() != nil:
		hh := hc.GetHttpHealthCheck()
		t.check(p+".http_health_check", hh, httpHCFields)
		h.Type, h.Path, h.Host = "http", hh.GetPath(), hh.GetHost()
		for i, r := range hh.GetExpectedStatuses() {
			if r.GetEnd()-r.GetStart() > 1000 || r.GetEnd() <= r.GetStart() {
				t.fail(idx(p+".http_health_check.expected_statuses", i), "range [%d, %d) is empty or too wide", r.GetStart(), r.GetEnd())
				continue
			}
			for s := r.GetStart(); s < r.GetEnd(); s++ {
				h.ExpectedStatuses = append(h.ExpectedStatuses, int(s))
			}
		}
	case hc.GetTcpHealthCheck() != nil:
		tc := hc.GetTcpHealthCheck()
		if tc.GetSend() != nil || len(tc.GetReceive()) > 0 {
			t.fail(p+".tcp_health_check", "send/receive payloads are not supported (connect-only checks)")
		}
		h.Type = "tcp"
	default:
		t.fail(p, "one of http_health_check or tcp_health_check is required")
	}
	cc.HealthCheck = h
}

func (t *tr) commonHTTP(p string, cc *config.Cluster, o *corev3.HttpProtocolOptions) {
	if o == nil {
		return
	}
	t.check(p, o, cpoFields)
	if d := o.GetIdleTimeout(); d != nil {
		cc.IdleTimeout = t.duration(p+".idle_timeout", d)
	}
	setU32(&cc.MaxRequestsPerConnection, o.GetMaxRequestsPerConnection())
}

func (t *tr) upstreamHTTP(p string, cc *config.Cluster, po *httpv3.HttpProtocolOptions) {
	t.check(p, po, upHTTPFields)
	t.commonHTTP(p+".common_http_protocol_options", cc, po.GetCommonHttpProtocolOptions())
	if e := po.GetExplicitHttpConfig(); e != nil {
		switch {
		case e.GetHttp2ProtocolOptions() != nil:
			cc.Protocol = "http2"
			t.http2(p+".explicit_http_config.http2_protocol_options", http2Options(&cc.Options), e.GetHttp2ProtocolOptions())
		case e.GetHttpProtocolOptions() != nil:
			cc.Protocol = "http1"
		default:
			t.fail(p+".explicit_http_config", "only http_protocol_options and http2_protocol_options are supported")
		}
	}
}

// translateCLA turns endpoints into hosts. Hosts marked UNHEALTHY,
// DRAINING or TIMEOUT get no traffic, as in Envoy (they are left out).
func (t *tr) translateCLA(p string, la *endpointv3.ClusterLoadAssignment) []config.Host {
	t.check(p, la, claFields)
	var hosts []config.Host
	for i, loc := range la.GetEndpoints() {
		lp := idx(join(p, "endpoints"), i)
		t.check(lp, loc, localityFields)
		for j, lbe := range loc.GetLbEndpoints() {
			ep := idx(lp+".lb_endpoints", j)
			t.check(ep, lbe, lbEndpointFields)
			switch lbe.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				continue
			}
			e := lbe.GetEndpoint()
			t.check(ep+".endpoint", e, endpointFields)
			h := config.Host{}
			config.SetDefaults(&h)
			h.Address = t.socketAddress(ep+".endpoint.address", e.GetAddress())
			setU32w(&h.Weight, lbe.GetLoadBalancingWeight())
			if md := lbe.GetMetadata().GetFilterMetadata()["envoy.lb"]; md != nil {
				h.Metadata = map[string]string{}
				for k, v := range md.GetFields() {
					h.Metadata[k] = v.GetStringValue()
				}
			}
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func setU32w(dst *uint32, v *wrapperspb.UInt32Value) {
	if v != nil {
		*dst = v.GetValue()
	}
}

// socketAddress is an Address as host:port (TCP only).
func (t *tr) socketAddress(p string, a *corev3.Address) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		t.fail(p, "a socket_address is required (pipes and internal addresses are not supported)")
		return ""
	}
	t.check(p+".socket_address", sa, addrFields)
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		t.fail(p+".socket_address.protocol", "only TCP is supported")
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
}
