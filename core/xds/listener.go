package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/proxylab/proxylab/core/config"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
)

// listener is a translated Listener and what it waits for.
type listener struct {
	cfg config.Listener
	// rds names the RouteConfiguration of an http_proxy ("" with an
	// inline route_config, then inline is set).
	rds    string
	inline *routeConfig
	// tls is set when the listener's certificates or CA come by SDS.
	tls *tlsRefs
}

var (
	listenerFields = table(&listenerv3.Listener{}, fieldTable{
		"name": supported, "address": supported, "filter_chains": supported, "listener_filters": supported,
		"stat_prefix": warned, "per_connection_buffer_limit_bytes": warned, "metadata": warned, "traffic_direction": warned,
		"drain_type": warned, "tcp_backlog_size": warned, "access_log": warned, "enable_reuse_port": warned,
		"socket_options": refused, "use_original_dst": refused, "transparent": refused, "freebind": refused,
		"default_filter_chain": refused, "additional_addresses": refused, "filter_chain_matcher": refused,
		"api_listener": refused, "internal_listener": refused, "udp_listener_config": refused, "bind_to_port": refused,
		"connection_balance_config": refused, "listener_filters_timeout": warned,
	})
	listenerFilterFields = table(&listenerv3.ListenerFilter{}, fieldTable{"name": supported, "typed_config": supported, "filter_disabled": refused, "config_discovery": refused})
	chainFields          = table(&listenerv3.FilterChain{}, fieldTable{"filters": supported, "transport_socket": supported, "name": warned,
		"metadata": warned, "filter_chain_match": refused, "transport_socket_connect_timeout": refused})
	filterFields = table(&listenerv3.Filter{}, fieldTable{"name": supported, "typed_config": supported, "config_discovery": refused})
	hcmFields    = table(&hcmv3.HttpConnectionManager{}, fieldTable{
		"codec_type": supported, "stat_prefix": warned, "rds": supported, "route_config": supported, "http_filters": supported,
		"common_http_protocol_options": supported, "http2_protocol_options": supported, "stream_idle_timeout": supported,
		"request_timeout": supported, "request_headers_timeout": supported, "max_request_headers_kb": supported,
		"server_name": warned, "generate_request_id": warned, "use_remote_address": warned, "xff_num_trusted_hops": warned,
		"access_log": warned, "tracing": warned, "drain_timeout": warned, "delayed_close_timeout": warned,
		"normalize_path": refused, "merge_slashes": refused, "path_with_escaped_slashes_action": refused,
		"scoped_routes": refused, "upgrade_configs": refused, "local_reply_config": refused, "forward_client_cert_details": refused,
		"strip_matching_host_port": refused, "internal_address_config": refused, "http_protocol_options": refused,
		"skip_xff_append": refused, "via": refused, "add_user_agent": warned, "preserve_external_request_id": warned,
	})
	rdsFields       = table(&hcmv3.Rds{}, fieldTable{"route_config_name": supported, "config_source": supported})
	httpFilterField = table(&hcmv3.HttpFilter{}, fieldTable{"name": supported, "typed_config": supported, "is_optional": refused, "disabled": refused, "config_discovery": refused})
	tcpFields       = table(&tcpv3.TcpProxy{}, fieldTable{"stat_prefix": warned, "cluster": supported, "idle_timeout": supported,
		"weighted_clusters": refused, "access_log": warned, "max_connect_attempts": refused, "hash_policy": refused,
		"tunneling_config": refused, "metadata_match": refused, "on_demand": refused, "max_downstream_connection_duration": refused})
	transportFields = table(&corev3.TransportSocket{}, fieldTable{"name": supported, "typed_config": supported})
	h2Fields        = table(&corev3.Http2ProtocolOptions{}, fieldTable{"max_concurrent_streams": supported,
		"initial_stream_window_size": supported, "initial_connection_window_size": supported, "hpack_table_size": warned,
		"allow_connect": refused, "allow_metadata": refused, "max_outbound_frames": warned, "max_outbound_control_frames": warned,
		"connection_keepalive": refused, "override_stream_error_on_invalid_http_message": refused})
)

// translateListener turns a Listener into a model listener.
func (t *tr) translateListener(l *listenerv3.Listener) *listener {
	t.check("", l, listenerFields)
	out := &listener{}
	out.cfg.Name = l.GetName()
	out.cfg.Address = t.socketAddress("address", l.GetAddress())
	for i, lf := range l.GetListenerFilters() {
		p := idx("listener_filters", i)
		t.check(p, lf, listenerFilterFields)
		switch lf.GetName() {
		case "envoy.filters.listener.tls_inspector":
			// proxylab's TLS listeners read the ClientHello themselves.
		case "envoy.filters.listener.http_inspector":
			t.warns = append(t.warns, Warning{Type: t.typ, Resource: t.name, Field: p})
		default:
			t.fail(p, "unsupported listener filter %q", lf.GetName())
		}
	}
	chains := l.GetFilterChains()
	if len(chains) != 1 {
		t.fail("filter_chains", "exactly one filter chain is supported, got %d", len(chains))
		return out
	}
	fc := chains[0]
	t.check("filter_chains[0]", fc, chainFields)
	if len(fc.GetFilters()) != 1 {
		t.fail("filter_chains[0].filters", "exactly one network filter (http_connection_manager or tcp_proxy) is supported, got %d", len(fc.GetFilters()))
		return out
	}
	f, p := fc.GetFilters()[0], "filter_chains[0].filters[0]"
	t.check(p, f, filterFields)
	var hcm hcmv3.HttpConnectionManager
	var tcp tcpv3.TcpProxy
	switch a := f.GetTypedConfig(); {
	case a.MessageIs(&hcm) && a.UnmarshalTo(&hcm) == nil:
		t.httpProxy(p+".typed_config", &hcm, out)
	case a.MessageIs(&tcp) && a.UnmarshalTo(&tcp) == nil:
		t.tcpProxy(p+".typed_config", &tcp, out)
	default:
		t.fail(p, "unsupported network filter %q (%s)", f.GetName(), a.GetTypeUrl())
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		t.downstreamTransport("filter_chains[0].transport_socket", ts, out)
	}
	return out
}

func (t *tr) httpProxy(p string, h *hcmv3.HttpConnectionManager, out *listener) {
	t.check(p, h, hcmFields)
	hp := &config.HTTPProxy{}
	config.SetDefaults(hp)
	switch h.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		hp.Codec = config.CodecAuto
	case hcmv3.HttpConnectionManager_HTTP1:
		hp.Codec = "http1"
	case hcmv3.HttpConnectionManager_HTTP2:
		hp.Codec = "http2"
	default:
		t.fail(p+".codec_type", "codec %s is not supported (AUTO, HTTP1, HTTP2)", h.GetCodecType())
	}
	if o := h.GetCommonHttpProtocolOptions(); o != nil {
		t.check(p+".common_http_protocol_options", o, cpoFields)
		if o.GetMaxRequestsPerConnection() != nil {
			t.fail(p+".common_http_protocol_options.max_requests_per_connection", "not supported downstream")
		}
		if d := o.GetIdleTimeout(); d != nil {
			hp.IdleTimeout = t.duration(p+".common_http_protocol_options.idle_timeout", d)
		}
	}
	if o := h.GetHttp2ProtocolOptions(); o != nil {
		t.http2(p+".http2_protocol_options", http2Options(&hp.Options), o)
	}
	if d := h.GetStreamIdleTimeout(); d != nil {
		hp.StreamIdleTimeout = t.duration(p+".stream_idle_timeout", d)
	}
	if d := h.GetRequestTimeout(); d != nil {
		hp.RequestTimeout = t.duration(p+".request_timeout", d)
	}
	if d := h.GetRequestHeadersTimeout(); d != nil && d.AsDuration() > 0 {
		hp.HeaderReadTimeout = t.duration(p+".request_headers_timeout", d)
	}
	if kb := h.GetMaxRequestHeadersKb(); kb != nil {
		hp.MaxHeaderBytes = int(kb.GetValue()) << 10
		hp.MaxRequestLine = min(hp.MaxRequestLine, hp.MaxHeaderBytes)
	}
	filters := h.GetHttpFilters()
	for i, hf := range filters {
		fp := idx(p+".http_filters", i)
		t.check(fp, hf, httpFilterField)
		var r routerv3.Router
		isRouter := hf.GetName() == "envoy.filters.http.router" || hf.GetTypedConfig().MessageIs(&r)
		switch {
		case isRouter && i == len(filters)-1:
		case isRouter:
			t.fail(fp, "the router must be the last HTTP filter")
		default:
			t.fail(fp, "unsupported HTTP filter %q", hf.GetName())
		}
	}
	if len(filters) == 0 {
		t.fail(p+".http_filters", "the router filter is required")
	}
	switch {
	case h.GetRds() != nil:
		t.check(p+".rds", h.GetRds(), rdsFields)
		out.rds = h.GetRds().GetRouteConfigName()
		if out.rds == "" {
			t.fail(p+".rds.route_config_name", "required")
		}
	case h.GetRouteConfig() != nil:
		out.inline = t.translateRoutes(p+".route_config", h.GetRouteConfig())
	default:
		t.fail(p, "one of rds or route_config is required")
	}
	out.cfg.HTTP = hp
}

// http2Options is the HTTP/2 codec's block in opts, made with its defaults
// when absent (the codec owns the type; config hands it over).
func http2Options(opts *config.CodecOptions) *h2s.Options {
	if *opts == nil {
		*opts = config.CodecOptions{}
	}
	o, ok := (*opts)[h2s.OptionsKey].(*h2s.Options)
	if !ok {
		o = &h2s.Options{}
		o.SetDefaults()
		(*opts)[h2s.OptionsKey] = o
	}
	return o
}

func (t *tr) http2(p string, dst *h2s.Options, o *corev3.Http2ProtocolOptions) {
	t.check(p, o, h2Fields)
	setU32(&dst.MaxConcurrentStreams, o.GetMaxConcurrentStreams())
	setU32(&dst.InitialStreamWindowSize, o.GetInitialStreamWindowSize())
	setU32(&dst.InitialConnectionWindowSize, o.GetInitialConnectionWindowSize())
}

func (t *tr) tcpProxy(p string, tp *tcpv3.TcpProxy, out *listener) {
	t.check(p, tp, tcpFields)
	c := &config.TCPProxy{}
	config.SetDefaults(c)
	c.Cluster = tp.GetCluster()
	if c.Cluster == "" {
		t.fail(p+".cluster", "required")
	}
	if d := tp.GetIdleTimeout(); d != nil {
		c.IdleTimeout = t.duration(p+".idle_timeout", d)
	}
	out.cfg.TCP = c
}

func (t *tr) downstreamTransport(p string, ts *corev3.TransportSocket, out *listener) {
	t.check(p, ts, transportFields)
	var dt tlsv3.DownstreamTlsContext
	if a := ts.GetTypedConfig(); !a.MessageIs(&dt) || a.UnmarshalTo(&dt) != nil {
		t.fail(p, "unsupported transport socket %q", ts.GetName())
		return
	}
	p += ".typed_config"
	t.check(p, &dt, downTLSFields)
	lt := &config.ListenerTLS{}
	config.SetDefaults(lt)
	var s secret
	refs, alpn, params := t.common(p+".common_tls_context", dt.GetCommonTlsContext(), &lt.Certificates, &s)
	lt.ALPN = alpn
	if params != nil {
		lt.MinVersion = t.version(p+".common_tls_context.tls_params.tls_minimum_protocol_version", params.GetTlsMinimumProtocolVersion())
		lt.MaxVersion = t.version(p+".common_tls_context.tls_params.tls_maximum_protocol_version", params.GetTlsMaximumProtocolVersion())
		lt.CipherSuites, lt.Curves = params.GetCipherSuites(), params.GetEcdhCurves()
	}
	lt.ClientCA, lt.ClientSANs = s.caFile, s.sans
	if lt.ClientCA != "" || refs.caSDS != "" {
		// Envoy asks for a client certificate whenever it can verify one
		// and refuses the handshake without one only when required.
		lt.ClientAuth = "request"
		if dt.GetRequireClientCertificate().GetValue() {
			lt.ClientAuth = "require"
		}
	} else if dt.GetRequireClientCertificate().GetValue() {
		t.fail(p+".require_client_certificate", "needs a validation context to verify clients with")
	}
	if len(refs.certSDS) > 0 || refs.caSDS != "" {
		out.tls = &refs
	}
	out.cfg.TLS = lt
}

// upstreamTransport translates a cluster's transport socket.
func (t *tr) upstreamTransport(p string, cc *config.Cluster, ts *corev3.TransportSocket) *upstreamTLS {
	t.check(p, ts, transportFields)
	if ts.GetName() == "envoy.transport_sockets.raw_buffer" && ts.GetTypedConfig() == nil {
		return nil
	}
	var ut tlsv3.UpstreamTlsContext
	if a := ts.GetTypedConfig(); !a.MessageIs(&ut) || a.UnmarshalTo(&ut) != nil {
		t.fail(p, "unsupported transport socket %q", ts.GetName())
		return nil
	}
	p += ".typed_config"
	t.check(p, &ut, upTLSFields)
	ct := &config.ClusterTLS{SNI: ut.GetSni()}
	var certs []config.CertFiles
	var s secret
	cp := p + ".common_tls_context"
	refs, alpn, params := t.common(cp, ut.GetCommonTlsContext(), &certs, &s)
	ct.ALPN, ct.CAFile = alpn, s.caFile
	if len(s.sans) > 0 {
		t.fail(cp+".validation_context.match_subject_alt_names", "upstream SAN verification is not supported")
	}
	if len(certs) > 1 || len(refs.certSDS) > 1 || len(certs)+len(refs.certSDS) > 1 {
		t.fail(cp+".tls_certificates", "one client certificate at most")
	}
	if len(certs) == 1 {
		ct.ClientCert = &certs[0]
	}
	if params != nil {
		ct.MinVersion = t.version(cp+".tls_params.tls_minimum_protocol_version", params.GetTlsMinimumProtocolVersion())
		if params.GetTlsMaximumProtocolVersion() != tlsv3.TlsParameters_TLS_AUTO || len(params.GetCipherSuites()) > 0 || len(params.GetEcdhCurves()) > 0 {
			t.fail(cp+".tls_params", "upstream: only tls_minimum_protocol_version is supported")
		}
	}
	cc.TLS = ct
	ref := &upstreamTLS{caSDS: refs.caSDS}
	if len(refs.certSDS) == 1 {
		ref.certSDS = refs.certSDS[0]
	}
	if ct.CAFile == "" && ref.caSDS == "" {
		// Envoy verifies nothing without a validation context; so does
		// proxylab, and says so.
		ct.InsecureSkipVerify = true
		t.warns = append(t.warns, Warning{Type: t.typ, Resource: t.name, Field: cp + ".validation_context (absent: upstream not verified)"})
	}
	if ref.certSDS == "" && ref.caSDS == "" {
		return nil
	}
	return ref
}
