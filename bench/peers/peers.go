// Package peers generates, from one scenario, the configuration each system
// under test needs — proxylab, haproxy, nginx, Envoy, MOSN — so they are compared
// doing the same thing: same listener, same upstream, same keep-alive and
// worker count. Envoy and MOSN are not installable on the development
// machine; their generators are covered by golden files.
package peers

import (
	"fmt"
	"sort"
	"strings"
)

// Scenario is the part of a benchmark scenario the peers' configs depend on.
type Scenario struct {
	// Protocol: "http1", "tcp", "http2" (h2c from the client, HTTP/1.1 to
	// the upstream), "grpc" (h2c both sides, to a gRPC upstream), or an
	// RPC protocol ("bolt", "dubbo") — proxied as such by proxylab, as TCP
	// by the peers (haproxy mode tcp, nginx stream: the baseline the issue
	// names).
	Protocol  string
	Listen    string // host:port the proxy listens on
	Upstreams []string
	Workers   int // proxy worker threads/processes; 1 by default
	// MaxConns bounds connections (the file-descriptor limit here is
	// 20,000, so haproxy's maxconn must stay well under half of it).
	MaxConns int
	// Admin, for proxylab only, is where its admin API listens (used to
	// take CPU profiles); empty means no admin API.
	Admin string
	// TLS, when set, terminates TLS on the listener (ALPN h2 for http2 and
	// grpc, http/1.1 otherwise).
	TLS *TLSFiles
}

// TLSFiles are a server certificate and key (PEM), the two in one file for
// haproxy, and proxylab's crypto engine.
type TLSFiles struct {
	Cert, Key, Combined string
	Engine              string // proxylab's engine; empty: gotls
}

// l4 reports whether the peers forward the protocol as bytes.
func (s Scenario) l4() bool {
	return s.Protocol == "tcp" || s.Protocol == "bolt" || s.Protocol == "dubbo"
}

// alpn is the protocol the client negotiates.
func (s Scenario) alpn() string {
	if s.Protocol == "http2" || s.Protocol == "grpc" {
		return "h2"
	}
	return "http/1.1"
}

func (s Scenario) workers() int { return max(s.Workers, 1) }

func (s Scenario) maxConns() int {
	if s.MaxConns <= 0 {
		return 8000
	}
	return s.MaxConns
}

// Generator renders one system's config file.
type Generator func(Scenario) (string, error)

// Generators are the systems with config generators, by name.
var Generators = map[string]Generator{
	"proxylab": Proxylab,
	"haproxy":  HAProxy,
	"nginx":    Nginx,
	"envoy":    Envoy,
	"mosn":     MOSN,
}

// Names lists the generators, sorted.
func Names() []string {
	out := make([]string, 0, len(Generators))
	for n := range Generators {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func check(s Scenario) error {
	switch s.Protocol {
	case "http1", "tcp", "http2", "grpc", "bolt", "dubbo":
	default:
		return fmt.Errorf("peers: unknown protocol %q (http1, tcp, http2, grpc, bolt, dubbo)", s.Protocol)
	}
	if s.Listen == "" || len(s.Upstreams) == 0 {
		return fmt.Errorf("peers: a listen address and at least one upstream are required")
	}
	return nil
}

func splitHostPort(a string) (string, string) {
	i := strings.LastIndexByte(a, ':')
	return a[:i], a[i+1:]
}

// Proxylab renders a proxylab config.
func Proxylab(s Scenario) (string, error) {
	if err := check(s); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "workers: %d\nlisteners:\n", s.Workers)
	tls := ""
	if t := s.TLS; t != nil {
		engine := t.Engine
		if engine == "" {
			engine = "gotls"
		}
		tls = fmt.Sprintf(", tls: {engine: %s, certificates: [{cert_file: %q, key_file: %q}]}", engine, t.Cert, t.Key)
	}
	if s.Protocol == "tcp" {
		fmt.Fprintf(&b, "  - {name: bench, address: %q%s, tcp_proxy: {cluster: upstream}}\n", s.Listen, tls)
	} else {
		fmt.Fprintf(&b, "  - {name: bench, address: %q%s, http_proxy: {}}\nroutes:\n  - {name: all, domains: [\"*\"], routes: [{prefix: /, cluster: upstream}]}\n", s.Listen, tls)
	}
	b.WriteString("clusters:\n  - name: upstream\n")
	if s.Protocol == "bolt" || s.Protocol == "dubbo" {
		fmt.Fprintf(&b, "    protocol: %s\n", s.Protocol)
	}
	if s.Protocol == "grpc" {
		b.WriteString("    protocol: http2\n")
	}
	b.WriteString("    hosts:\n")
	for _, u := range s.Upstreams {
		fmt.Fprintf(&b, "      - {address: %q}\n", u)
	}
	if s.Admin != "" {
		fmt.Fprintf(&b, "admin: {address: %q}\n", s.Admin)
	}
	return b.String(), nil
}

// HAProxy renders an haproxy.cfg: keep-alive both sides, connection reuse.
func HAProxy(s Scenario) (string, error) {
	if err := check(s); err != nil {
		return "", err
	}
	mode := "http"
	if s.l4() {
		mode = "tcp"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global\n  nbthread %d\n  maxconn %d\n\ndefaults\n  mode %s\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n", s.workers(), s.maxConns(), mode)
	if mode == "http" {
		b.WriteString("  option http-keep-alive\n")
	}
	bindProto, serverProto := "", ""
	if s.Protocol == "http2" || s.Protocol == "grpc" {
		bindProto = " proto h2"
	}
	if t := s.TLS; t != nil {
		bindProto = fmt.Sprintf(" ssl crt %s alpn %s", t.Combined, s.alpn())
	}
	if s.Protocol == "grpc" {
		serverProto = " proto h2"
	}
	fmt.Fprintf(&b, "\nfrontend bench\n  bind %s%s\n  default_backend upstream\n\nbackend upstream\n", s.Listen, bindProto)
	if mode == "http" {
		b.WriteString("  http-reuse always\n")
	}
	for i, u := range s.Upstreams {
		fmt.Fprintf(&b, "  server up%d %s%s\n", i, u, serverProto)
	}
	return b.String(), nil
}

// Nginx renders an nginx.conf (http or stream), without daemonizing.
func Nginx(s Scenario) (string, error) {
	if err := check(s); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "worker_processes %d;\ndaemon off;\nerror_log stderr crit;\n", s.workers())
	if s.l4() {
		b.WriteString("load_module modules/ngx_stream_module.so;\n")
	}
	fmt.Fprintf(&b, "events { worker_connections %d; }\n", s.maxConns())
	block := "http"
	if s.l4() {
		block = "stream"
	}
	fmt.Fprintf(&b, "%s {\n", block)
	if block == "http" {
		b.WriteString("  access_log off;\n  keepalive_requests 1000000;\n")
	}
	b.WriteString("  upstream upstream {\n")
	for _, u := range s.Upstreams {
		fmt.Fprintf(&b, "    server %s;\n", u)
	}
	if block == "http" {
		b.WriteString("    keepalive 256;\n")
	}
	b.WriteString("  }\n")
	listen, tlsConf := s.Listen, ""
	if t := s.TLS; t != nil {
		listen += " ssl"
		tlsConf = fmt.Sprintf("    ssl_certificate %s;\n    ssl_certificate_key %s;\n", t.Cert, t.Key)
	}
	switch s.Protocol {
	case "http1":
		fmt.Fprintf(&b, "  server {\n    listen %s;\n%s    location / {\n      proxy_pass http://upstream;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }\n  }\n", listen, tlsConf)
	case "http2":
		fmt.Fprintf(&b, "  server {\n    listen %s http2;\n%s    http2_max_requests 1000000;\n    location / {\n      proxy_pass http://upstream;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }\n  }\n", listen, tlsConf)
	case "grpc":
		fmt.Fprintf(&b, "  server {\n    listen %s http2;\n%s    http2_max_requests 1000000;\n    location / {\n      grpc_pass grpc://upstream;\n    }\n  }\n", listen, tlsConf)
	default:
		fmt.Fprintf(&b, "  server {\n    listen %s;\n%s    proxy_pass upstream;\n  }\n", listen, tlsConf)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// Envoy renders a static envoy.yaml (v3 API): an HTTP connection manager or
// a tcp_proxy in front of a STATIC cluster.
func Envoy(s Scenario) (string, error) {
	if err := check(s); err != nil {
		return "", err
	}
	host, port := splitHostPort(s.Listen)
	var b strings.Builder
	b.WriteString("static_resources:\n  listeners:\n  - name: bench\n    address:\n      socket_address:\n")
	fmt.Fprintf(&b, "        address: %s\n        port_value: %s\n", host, port)
	b.WriteString("    filter_chains:\n    - filters:\n")
	if s.l4() {
		b.WriteString("      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n")
		b.WriteString("          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n")
		b.WriteString("          stat_prefix: bench\n          cluster: upstream\n")
	} else {
		b.WriteString("      - name: envoy.filters.network.http_connection_manager\n        typed_config:\n")
		b.WriteString("          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n")
		b.WriteString("          stat_prefix: bench\n          route_config:\n            virtual_hosts:\n            - name: all\n              domains: [\"*\"]\n")
		b.WriteString("              routes:\n              - match: {prefix: \"/\"}\n                route: {cluster: upstream}\n")
		b.WriteString("          http_filters:\n          - name: envoy.filters.http.router\n            typed_config:\n")
		b.WriteString("              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n")
	}
	if t := s.TLS; t != nil {
		b.WriteString("      transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n")
		b.WriteString("          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n")
		fmt.Fprintf(&b, "          common_tls_context:\n            alpn_protocols: [%s]\n            tls_certificates:\n", s.alpn())
		fmt.Fprintf(&b, "            - certificate_chain: {filename: %s}\n              private_key: {filename: %s}\n", t.Cert, t.Key)
	}
	b.WriteString("  clusters:\n  - name: upstream\n    type: STATIC\n    connect_timeout: 5s\n")
	if s.Protocol == "grpc" {
		b.WriteString("    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n")
		b.WriteString("        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n")
		b.WriteString("        explicit_http_config:\n          http2_protocol_options: {}\n")
	}
	b.WriteString("    load_assignment:\n      cluster_name: upstream\n      endpoints:\n      - lb_endpoints:\n")
	for _, u := range s.Upstreams {
		h, p := splitHostPort(u)
		fmt.Fprintf(&b, "        - endpoint:\n            address:\n              socket_address: {address: %s, port_value: %s}\n", h, p)
	}
	fmt.Fprintf(&b, "    circuit_breakers:\n      thresholds:\n      - {max_connections: %d, max_pending_requests: %d, max_requests: %d}\n", s.maxConns(), s.maxConns(), s.maxConns())
	return b.String(), nil
}
