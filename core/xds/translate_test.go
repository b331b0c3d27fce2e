package xds

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/proxylab/proxylab/core/config"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sockAddr(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func routerFilter(t testing.TB) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}
}

// httpListener is a listener with an http_connection_manager using RDS
// route name (or the inline rc when given).
func httpListener(t testing.TB, name, addr string, port uint32, rds string, rc *routev3.RouteConfiguration) *listenerv3.Listener {
	h := &hcmv3.HttpConnectionManager{StatPrefix: name, HttpFilters: []*hcmv3.HttpFilter{routerFilter(t)}}
	if rc != nil {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	} else {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: rds,
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
	}
	return &listenerv3.Listener{Name: name, Address: sockAddr(addr, port), FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}}}}}}
}

func routeCfg(name string, routes ...*routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: routes}}}
}

func prefixRoute(prefix, cluster string) *routev3.Route {
	return &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout: durationpb.New(time.Second),
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
}

func cla(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, _ := strings.Cut(a, ":")
		var p uint32
		for _, c := range port {
			p = p*10 + uint32(c-'0')
		}
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sockAddr(host, p)}}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

// translate runs one resource through the translator.
func translate(t *testing.T, typ string, m proto.Message) (*model, *tr) {
	t.Helper()
	md := newModel()
	a := mustAny(t, m)
	name, err := resourceName(a)
	if err != nil {
		t.Fatal(err)
	}
	return md, md.put(typ, name, m, DirStore{Dir: t.TempDir()})
}

func TestTranslateRoutes(t *testing.T) {
	match := func(m *routev3.RouteMatch) *routev3.Route {
		r := prefixRoute("/", "c")
		r.Match = m
		return r
	}
	action := func(f func(a *routev3.RouteAction)) *routev3.Route {
		r := prefixRoute("/", "c")
		f(r.GetRoute())
		return r
	}
	for _, tc := range []struct {
		name  string
		route *routev3.Route
		check func(r config.Route) bool
		nack  string // field path of the NACK
	}{
		{"prefix", prefixRoute("/api", "c"), func(r config.Route) bool { return r.Prefix == "/api" && r.Cluster == "c" }, ""},
		{"empty prefix matches all", prefixRoute("", "c"), func(r config.Route) bool { return r.Prefix == "/" }, ""},
		{"path", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/x"}}), func(r config.Route) bool { return r.Path == "/x" }, ""},
		{"safe_regex", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+/.*"}}}),
			func(r config.Route) bool { return r.Regex == "/v[0-9]+/.*" }, ""},
		{"case insensitive prefix", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/A.b"}, CaseSensitive: wrapperspb.Bool(false)}),
			func(r config.Route) bool { return r.Regex == `(?i)/A\.b.*` && r.Prefix == "" }, ""},
		{"header exact", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x-v",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "1"}}}}}}),
			func(r config.Route) bool { return len(r.Headers) == 1 && r.Headers[0].Exact == "1" }, ""},
		{"header prefix becomes anchored regex", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x-v", InvertMatch: true,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "a.b"}, IgnoreCase: true}}}}}),
			func(r config.Route) bool { return r.Headers[0].Regex == `(?i)a\.b(?s:.*)` && r.Headers[0].Invert }, ""},
		{"header present", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x-v",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}),
			func(r config.Route) bool { return r.Headers[0].Present != nil && *r.Headers[0].Present }, ""},
		{":method becomes methods", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "POST"}}}}}}),
			func(r config.Route) bool { return len(r.Methods) == 1 && r.Methods[0] == "POST" && len(r.Headers) == 0 }, ""},
		{"header range NACKed", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{}}}}), nil, "virtual_hosts[0].routes[0].match.headers[0].range_match"},
		{"runtime_fraction NACKed", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, RuntimeFraction: &corev3.RuntimeFractionalPercent{}}),
			nil, "virtual_hosts[0].routes[0].match.runtime_fraction"},
		{"grpc NACKed", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}),
			nil, "virtual_hosts[0].routes[0].match.grpc"},
		{"weighted clusters", action(func(a *routev3.RouteAction) {
			a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
				{Name: "a", Weight: wrapperspb.UInt32(3)}, {Name: "b", Weight: wrapperspb.UInt32(1)}}}}
		}), func(r config.Route) bool {
			return len(r.WeightedClusters) == 2 && r.WeightedClusters[0] == config.WeightedCluster{Name: "a", Weight: 3}
		}, ""},
		{"timeout, prefix_rewrite, host rewrite", action(func(a *routev3.RouteAction) {
			a.Timeout = durationpb.New(3 * time.Second)
			a.PrefixRewrite = "/new"
			a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "up.example"}
		}), func(r config.Route) bool {
			return r.Timeout.D() == 3*time.Second && r.PrefixRewrite == "/new" && r.HostRewrite == "up.example"
		}, ""},
		{"default timeout is Envoy's 15s", prefixRoute("/", "c"), func(r config.Route) bool { return r.Timeout.D() == 15*time.Second }, ""},
		{"retry policy", action(func(a *routev3.RouteAction) {
			a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,connect-failure", NumRetries: wrapperspb.UInt32(2), PerTryTimeout: durationpb.New(time.Second)}
		}), func(r config.Route) bool {
			rp := r.RetryPolicy
			return rp != nil && rp.NumRetries == 2 && len(rp.RetryOn) == 2 && rp.PerTryTimeout.D() == time.Second
		}, ""},
		{"retry_on unsupported NACKed", action(func(a *routev3.RouteAction) {
			a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "retriable-4xx"}
		}), nil, "virtual_hosts[0].routes[0].route.retry_policy.retry_on"},
		{"auto_host_rewrite NACKed", action(func(a *routev3.RouteAction) {
			a.HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
		}), nil, "virtual_hosts[0].routes[0].route.auto_host_rewrite"},
		{"redirect", &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
				ResponseCode: routev3.RedirectAction_FOUND}}},
			func(r config.Route) bool {
				return r.Redirect != nil && r.Redirect.SchemeRedirect == "https" && r.Redirect.ResponseCode == 302
			}, ""},
		{"direct_response", &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 418,
				Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "tea"}}}}},
			func(r config.Route) bool {
				return r.DirectResponse != nil && r.DirectResponse.Status == 418 && r.DirectResponse.Body == "tea"
			}, ""},
		{"header ops (append default true)", func() *routev3.Route {
			r := prefixRoute("/", "c")
			r.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", Value: "1"}},
				{Header: &corev3.HeaderValue{Key: "x-b", Value: "2"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}}
			r.ResponseHeadersToRemove = []string{"server"}
			return r
		}(), func(r config.Route) bool {
			h := r.RequestHeadersToAdd
			return len(h) == 2 && h[0].Append && !h[1].Append && r.ResponseHeadersToRemove[0] == "server"
		}, ""},
		{"query parameters", match(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{
			{Name: "a", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "1"}}}},
			{Name: "b", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}),
			func(r config.Route) bool {
				q := r.QueryParameters
				return len(q) == 2 && q[0].Exact == "1" && q[1].Present != nil && *q[1].Present
			}, ""},
		{"hash policy and mirror", action(func(a *routev3.RouteAction) {
			a.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}},
				{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}}
			a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
		}), func(r config.Route) bool {
			return len(r.HashPolicy) == 2 && r.HashPolicy[0].Header == "x-user" && r.HashPolicy[1].SourceIP &&
				len(r.RequestMirrorPolicies) == 1 && r.RequestMirrorPolicies[0] == config.MirrorPolicy{Cluster: "shadow", Percent: 100}
		}, ""},
		{"typed_per_filter_config NACKed", func() *routev3.Route {
			r := prefixRoute("/", "c")
			r.TypedPerFilterConfig = map[string]*anypb.Any{"x": mustAny(t, &routerv3.Router{})}
			return r
		}(), nil, "virtual_hosts[0].routes[0].typed_per_filter_config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, tt := translate(t, RouteType, routeCfg("rc", tc.route))
			if tc.nack != "" {
				if len(tt.errs) == 0 || tt.errs[0].Field != tc.nack || tt.errs[0].Resource != "rc" {
					t.Fatalf("want NACK at %s, got %v", tc.nack, tt.errs)
				}
				return
			}
			if len(tt.errs) > 0 {
				t.Fatalf("unexpected NACK: %v", tt.errs[0])
			}
			r := md.routes["rc"].vhosts[0].Routes[0]
			if !tc.check(r) {
				t.Fatalf("translated route: %+v", r)
			}
		})
	}
}

func TestTranslateClusters(t *testing.T) {
	static := func(f func(c *clusterv3.Cluster)) *clusterv3.Cluster {
		c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: cla("c", "127.0.0.1:81", "127.0.0.1:82")}
		f(c)
		return c
	}
	for _, tc := range []struct {
		name    string
		cluster *clusterv3.Cluster
		check   func(c *cluster) bool
		nack    string
	}{
		{"static hosts, Envoy's 5s connect timeout", static(func(*clusterv3.Cluster) {}), func(c *cluster) bool {
			return len(c.cfg.Hosts) == 2 && c.cfg.Hosts[1].Address == "127.0.0.1:82" && c.cfg.Hosts[0].Weight == 1 && c.cfg.ConnectTimeout.D() == 5*time.Second && c.cfg.Type == "static"
		}, ""},
		{"eds with service name", func() *clusterv3.Cluster {
			c := edsCluster("c")
			c.EdsClusterConfig.ServiceName = "svc"
			return c
		}(), func(c *cluster) bool { return c.eds == "svc" && len(c.cfg.Hosts) == 0 }, ""},
		{"strict_dns", static(func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
			c.DnsRefreshRate = durationpb.New(2 * time.Second)
		}), func(c *cluster) bool { return c.cfg.Type == "strict_dns" && c.cfg.DNSRefreshRate.D() == 2*time.Second }, ""},
		{"lb_policy", static(func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST }),
			func(c *cluster) bool { return c.cfg.LB == "least_request" }, ""},
		{"lb_policy CLUSTER_PROVIDED NACKed", static(func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED }), nil, "lb_policy"},
		{"LOGICAL_DNS NACKed", static(func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
		}), nil, "type"},
		{"circuit breakers", static(func(c *clusterv3.Cluster) {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
				MaxConnections: wrapperspb.UInt32(7), MaxRequests: wrapperspb.UInt32(9), MaxRetries: wrapperspb.UInt32(0)}}}
		}), func(c *cluster) bool {
			b := c.cfg.CircuitBreakers
			return b.MaxConnections == 7 && b.MaxRequests == 9 && b.MaxRetries == 0 && b.MaxPendingRequests == 1024
		}, ""},
		{"outlier detection", static(func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), Interval: durationpb.New(time.Second)}
		}), func(c *cluster) bool {
			o := c.cfg.OutlierDetection
			return o != nil && o.Consecutive5xx == 3 && o.Interval.D() == time.Second && o.BaseEjectionTime.D() == 30*time.Second
		}, ""},
		{"http health check", static(func(c *clusterv3.Cluster) {
			c.HealthChecks = []*corev3.HealthCheck{{Timeout: durationpb.New(time.Second), Interval: durationpb.New(2 * time.Second),
				HealthyThreshold: wrapperspb.UInt32(1), UnhealthyThreshold: wrapperspb.UInt32(2),
				HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{Path: "/hc"}}}}
		}), func(c *cluster) bool {
			h := c.cfg.HealthCheck
			return h != nil && h.Type == "http" && h.Path == "/hc" && h.Interval.D() == 2*time.Second && h.UnhealthyThreshold == 2
		}, ""},
		{"grpc health check NACKed", static(func(c *clusterv3.Cluster) {
			c.HealthChecks = []*corev3.HealthCheck{{HealthChecker: &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{}}}}
		}), nil, "health_checks[0].grpc_health_check"},
		{"http2 via typed protocol options", static(func(c *clusterv3.Cluster) {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &httpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
						MaxConcurrentStreams: wrapperspb.UInt32(50)}}}}})}
		}), func(c *cluster) bool {
			return c.cfg.Protocol == "http2" && c.cfg.Options[h2s.OptionsKey].(*h2s.Options).MaxConcurrentStreams == 50
		}, ""},
		{"endpoint health status and weight", static(func(c *clusterv3.Cluster) {
			c.LoadAssignment.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_UNHEALTHY
			c.LoadAssignment.Endpoints[0].LbEndpoints[1].LoadBalancingWeight = wrapperspb.UInt32(5)
		}), func(c *cluster) bool { return len(c.cfg.Hosts) == 1 && c.cfg.Hosts[0].Weight == 5 }, ""},
		{"upstream TLS without validation: insecure, as Envoy", static(func(c *clusterv3.Cluster) {
			c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
				TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{Sni: "up.example"})}}
		}), func(c *cluster) bool {
			return c.cfg.TLS != nil && c.cfg.TLS.SNI == "up.example" && c.cfg.TLS.InsecureSkipVerify
		}, ""},
		{"upstream SAN verification NACKed", static(func(c *clusterv3.Cluster) {
			c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
				TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
					ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
						MatchSubjectAltNames: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "x"}}}}}}})}}
		}), nil, "transport_socket.typed_config.common_tls_context.validation_context.match_subject_alt_names"},
		{"upstream verify_certificate_hash NACKed", static(func(c *clusterv3.Cluster) {
			c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
				TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
					ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
						VerifyCertificateHash: []string{"ab"}}}}})}}
		}), nil, "transport_socket.typed_config.common_tls_context.validation_context.verify_certificate_hash"},
		{"DRAINING endpoints get no traffic", static(func(c *clusterv3.Cluster) {
			c.LoadAssignment.Endpoints[0].LbEndpoints[1].HealthStatus = corev3.HealthStatus_DRAINING
		}), func(c *cluster) bool { return len(c.cfg.Hosts) == 1 && c.cfg.Hosts[0].Address == "127.0.0.1:81" }, ""},
		{"priority failover NACKed", static(func(c *clusterv3.Cluster) { c.LoadAssignment.Endpoints[0].Priority = 1 }),
			nil, "load_assignment.endpoints[0].priority"},
		{"lb_subset_config NACKed", static(func(c *clusterv3.Cluster) { c.LbSubsetConfig = &clusterv3.Cluster_LbSubsetConfig{} }), nil, "lb_subset_config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, tt := translate(t, ClusterType, tc.cluster)
			if tc.nack != "" {
				if len(tt.errs) == 0 || tt.errs[0].Field != tc.nack {
					t.Fatalf("want NACK at %s, got %v", tc.nack, tt.errs)
				}
				return
			}
			if len(tt.errs) > 0 {
				t.Fatalf("unexpected NACK: %v", tt.errs[0])
			}
			if c := md.clusters["c"]; !tc.check(c) {
				t.Fatalf("translated cluster: %+v", c.cfg)
			}
		})
	}
}

func TestTranslateListeners(t *testing.T) {
	withChain := func(f func(l *listenerv3.Listener)) *listenerv3.Listener {
		l := httpListener(t, "l", "127.0.0.1", 0, "rc", nil)
		f(l)
		return l
	}
	hcmWith := func(f func(h *hcmv3.HttpConnectionManager)) *listenerv3.Listener {
		h := &hcmv3.HttpConnectionManager{HttpFilters: []*hcmv3.HttpFilter{routerFilter(t)},
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "rc"}}}
		f(h)
		return withChain(func(l *listenerv3.Listener) {
			l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}
		})
	}
	for _, tc := range []struct {
		name  string
		l     *listenerv3.Listener
		check func(l *listener) bool
		nack  string
	}{
		{"http with rds", withChain(func(*listenerv3.Listener) {}), func(l *listener) bool {
			return l.rds == "rc" && l.cfg.HTTP != nil && l.cfg.Address == "127.0.0.1:0" && l.cfg.HTTP.Codec == config.CodecAuto
		}, ""},
		{"inline route config", httpListener(t, "l", "127.0.0.1", 0, "", routeCfg("inline", prefixRoute("/", "c"))),
			func(l *listener) bool { return l.inline != nil && l.inline.vhosts[0].Routes[0].Cluster == "c" }, ""},
		{"codec and timeouts", hcmWith(func(h *hcmv3.HttpConnectionManager) {
			h.CodecType = hcmv3.HttpConnectionManager_HTTP2
			h.StreamIdleTimeout = durationpb.New(time.Minute)
			h.RequestTimeout = durationpb.New(10 * time.Second)
			h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(30 * time.Second)}
		}), func(l *listener) bool {
			h := l.cfg.HTTP
			return h.Codec == "http2" && h.StreamIdleTimeout.D() == time.Minute && h.RequestTimeout.D() == 10*time.Second && h.IdleTimeout.D() == 30*time.Second
		}, ""},
		{"tcp_proxy", withChain(func(l *listenerv3.Listener) {
			l.FilterChains[0].Filters[0] = &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{
				TypedConfig: mustAny(t, &tcpv3.TcpProxy{StatPrefix: "t", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}})}}
		}), func(l *listener) bool { return l.cfg.TCP != nil && l.cfg.TCP.Cluster == "c" && l.cfg.HTTP == nil }, ""},
		{"unsupported network filter NACKed", withChain(func(l *listenerv3.Listener) {
			l.FilterChains[0].Filters[0] = &listenerv3.Filter{Name: "envoy.filters.network.redis_proxy", ConfigType: &listenerv3.Filter_TypedConfig{
				TypedConfig: mustAny(t, &routerv3.Router{})}}
		}), nil, "filter_chains[0].filters[0]"},
		{"unsupported http filter NACKed", hcmWith(func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.ext_authz"}}, h.HttpFilters...)
		}), nil, "filter_chains[0].filters[0].typed_config.http_filters[0]"},
		{"normalize_path NACKed", hcmWith(func(h *hcmv3.HttpConnectionManager) { h.NormalizePath = wrapperspb.Bool(true) }),
			nil, "filter_chains[0].filters[0].typed_config.normalize_path"},
		{"two filter chains NACKed", withChain(func(l *listenerv3.Listener) {
			l.FilterChains = append(l.FilterChains, l.FilterChains[0])
		}), nil, "filter_chains"},
		{"filter_chain_match NACKed", withChain(func(l *listenerv3.Listener) {
			l.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"a"}}
		}), nil, "filter_chains[0].filter_chain_match"},
		{"stat_prefix warned, accepted", withChain(func(l *listenerv3.Listener) { l.StatPrefix = "x" }),
			func(l *listener) bool { return l.cfg.HTTP != nil }, ""},
		{"UDP NACKed", withChain(func(l *listenerv3.Listener) {
			l.Address.GetSocketAddress().Protocol = corev3.SocketAddress_UDP
		}), nil, "address.socket_address.protocol"},
		{"downstream TLS via SDS, client cert required", withChain(func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
				TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "cert"}},
					ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ca"}},
					TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3},
				}})}}
		}), func(l *listener) bool {
			return l.tls != nil && l.tls.certSDS[0] == "cert" && l.tls.caSDS == "ca" && l.cfg.TLS.ClientAuth == "require" && l.cfg.TLS.MinVersion == "1.3"
		}, ""},
		{"inline certificate that does not parse NACKed", withChain(func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
				TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{{
					CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}},
					PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "nope"}}}}}})}}
		}), nil, "filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0]"},
		{"TLSv1_0 NACKed", withChain(func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
				TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_0}}})}}
		}), nil, "filter_chains[0].transport_socket.typed_config.common_tls_context.tls_params.tls_minimum_protocol_version"},
		{"require_client_certificate without CA NACKed", withChain(func(l *listenerv3.Listener) {
			l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
				TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true)})}}
		}), nil, "filter_chains[0].transport_socket.typed_config.require_client_certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, tt := translate(t, ListenerType, tc.l)
			if tc.nack != "" {
				if len(tt.errs) == 0 || tt.errs[0].Field != tc.nack || tt.errs[0].Resource != "l" {
					t.Fatalf("want NACK at %s, got %v", tc.nack, tt.errs)
				}
				return
			}
			if len(tt.errs) > 0 {
				t.Fatalf("unexpected NACK: %v", tt.errs[0])
			}
			if l := md.listeners["l"]; !tc.check(l) {
				t.Fatalf("translated listener: %+v", l.cfg)
			}
		})
	}
}

func TestTranslateSecret(t *testing.T) {
	_, tt := translate(t, SecretType, &tlsv3.Secret{Name: "bad", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "not a certificate"}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "not a key"}}}}})
	if len(tt.errs) == 0 || tt.errs[0].Field != "tls_certificate" || !strings.Contains(tt.errs[0].Msg, "does not parse") {
		t.Fatalf("a certificate that does not parse must be NACKed at tls_certificate, got %v", tt.errs)
	}
	_, tt = translate(t, SecretType, &tlsv3.Secret{Name: "ca", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "junk"}}}}})
	if len(tt.errs) == 0 || tt.errs[0].Field != "validation_context.trusted_ca" {
		t.Fatalf("a CA that does not parse must be NACKed, got %v", tt.errs)
	}
}

// TestEndpointsForUnknownCluster: a ClusterLoadAssignment no EDS cluster
// names is NACKed.
func TestEndpointsForUnknownCluster(t *testing.T) {
	c := New(Options{Known: testKnown()})
	m := newModel()
	m.put(ClusterType, "c", edsCluster("c"), nil)
	u := &update{typeURL: EndpointType, version: "1", resources: map[string]*anypb.Any{
		"c": mustAny(t, cla("c", "127.0.0.1:1")), "stray": mustAny(t, cla("stray", "127.0.0.1:2"))}}
	_, msg := c.applyUpdate(m, u)
	if !strings.Contains(msg, `ClusterLoadAssignment "stray": cluster_name: endpoints for a cluster never announced`) {
		t.Fatalf("NACK text: %q", msg)
	}
	delete(u.resources, "stray")
	if _, msg := c.applyUpdate(m, u); msg != "" || len(m.endpoints["c"]) != 1 {
		t.Fatalf("the announced cluster's endpoints: %q %v", msg, m.endpoints)
	}
}

// TestUpstreamSANsBySDSRefused: a validation context from SDS with SAN
// names cannot be honoured upstream: the update is refused, not run
// unverified.
func TestUpstreamSANsBySDSRefused(t *testing.T) {
	m := newModel()
	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: cla("c", "127.0.0.1:1"),
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ca"}}}})}}}
	if tt := m.put(ClusterType, "c", c, nil); len(tt.errs) > 0 {
		t.Fatal(tt.errs[0])
	}
	m.secrets["ca"] = &secret{caFile: "/x", sans: []string{"up.example"}}
	base, _ := config.ParseWith([]byte("listeners: []\n"), testKnown(), config.BuildOptions{Dynamic: true})
	a := m.assemble(base)
	if len(a.errs) != 1 || !strings.Contains(a.errs[0], `Cluster "c": transport_socket: secret "ca": match_subject_alt_names`) {
		t.Fatalf("assembly errors: %v", a.errs)
	}
	if len(a.cfg.Clusters) != 0 {
		t.Fatal("the cluster was assembled without its SAN check")
	}
}
