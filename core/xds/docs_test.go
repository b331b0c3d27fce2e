package xds

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

const docPath = "../../docs/xds.md"

// notes say what proxylab does with a supported or warned field, by
// "Message.field" (short message name); rows without a note get a dash.
var notes = map[string]string{
	"Listener.address":                                           "`listeners[].address` (TCP socket_address only)",
	"Listener.filter_chains":                                     "exactly one chain, one network filter",
	"Listener.listener_filters":                                  "`tls_inspector` (implied), `http_inspector` (warned); others NACKed",
	"FilterChain.transport_socket":                               "DownstreamTlsContext → `listeners[].tls`",
	"HttpConnectionManager.codec_type":                           "`http_proxy.codec`: AUTO → auto, HTTP1, HTTP2",
	"HttpConnectionManager.rds":                                  "routes from RDS (via ADS); the listener warms until they arrive",
	"HttpConnectionManager.route_config":                         "inline routes",
	"HttpConnectionManager.http_filters":                         "only the router, last; any other filter is NACKed",
	"HttpConnectionManager.stream_idle_timeout":                  "`http_proxy.stream_idle_timeout`",
	"HttpConnectionManager.request_timeout":                      "`http_proxy.request_timeout`",
	"HttpConnectionManager.request_headers_timeout":              "`http_proxy.header_read_timeout`",
	"HttpConnectionManager.max_request_headers_kb":               "`http_proxy.max_header_bytes`",
	"HttpConnectionManager.common_http_protocol_options":         "`idle_timeout` → `http_proxy.idle_timeout`",
	"TcpProxy.cluster":                                           "`tcp_proxy.cluster`",
	"TcpProxy.idle_timeout":                                      "`tcp_proxy.idle_timeout`",
	"Cluster.type":                                               "STATIC, STRICT_DNS, EDS; others NACKed",
	"Cluster.lb_policy":                                          "ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV → `lb`",
	"Cluster.connect_timeout":                                    "`connect_timeout` (Envoy's 5s default)",
	"Cluster.circuit_breakers":                                   "DEFAULT priority → `circuit_breakers`; HIGH warned",
	"Cluster.outlier_detection":                                  "`outlier_detection`",
	"Cluster.health_checks":                                      "one check → `health_check` (http or tcp)",
	"Cluster.transport_socket":                                   "UpstreamTlsContext → `tls`; no validation context means no verification, as in Envoy (warned)",
	"Cluster.typed_extension_protocol_options":                   "HttpProtocolOptions explicit http2 → `protocol: http2`",
	"Cluster.http2_protocol_options":                             "`protocol: http2`",
	"Cluster.load_assignment":                                    "`hosts` (STATIC, STRICT_DNS)",
	"Cluster.eds_cluster_config":                                 "endpoints from EDS (`service_name` or the cluster's name); the cluster warms until they arrive",
	"LbEndpoint.health_status":                                   "UNHEALTHY, DRAINING, TIMEOUT hosts are left out",
	"LbEndpoint.load_balancing_weight":                           "`hosts[].weight`",
	"LbEndpoint.metadata":                                        "`envoy.lb` string values → `hosts[].metadata`",
	"RouteMatch.safe_regex":                                      "`regex` (RE2, whole path)",
	"RouteMatch.case_sensitive":                                  "false: prefix/path become a case-insensitive regex",
	"RouteMatch.headers":                                         "`headers`; `:method` exact → `methods`",
	"RouteAction.retry_policy":                                   "`retry_policy`; retry_on values outside proxylab's five are NACKed",
	"RouteAction.host_rewrite_literal":                           "`host_rewrite`",
	"RouteAction.weighted_clusters":                              "`weighted_clusters`",
	"StringMatcher.prefix":                                       "anchored RE2",
	"StringMatcher.suffix":                                       "anchored RE2",
	"StringMatcher.contains":                                     "anchored RE2",
	"StringMatcher.ignore_case":                                  "(?i)",
	"HeaderValueOption.append_action":                            "APPEND_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS_OR_ADD",
	"DownstreamTlsContext.require_client_certificate":            "`client_auth: require` (a validation context alone: `request`)",
	"CertificateValidationContext.match_subject_alt_names":       "exact names → `client_sans` (downstream); NACKed upstream",
	"CertificateValidationContext.match_typed_subject_alt_names": "exact names → `client_sans` (downstream); NACKed upstream",
	"CertificateValidationContext.trusted_ca":                    "`client_ca` / cluster `tls.ca_file`",
	"TlsParameters.tls_minimum_protocol_version":                 "TLSv1_2, TLSv1_3; older NACKed",
	"TlsCertificate.certificate_chain":                           "checked with the key (a pair that does not parse is NACKed)",
	"DataSource.filename":                                        "a regular file of at most 1 MiB",
	"DataSource.inline_bytes":                                    "written to a private file, named by content",
	"DataSource.inline_string":                                   "written to a private file, named by content",
	"Secret.tls_certificate":                                     "listener certificates, cluster client certificate",
	"Secret.validation_context":                                  "listener client CA and SANs, cluster CA",
}

var (
	rowRE     = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\| (supported|warned|NACKed) \\|")
	sectionRE = regexp.MustCompile("^### `([a-zA-Z0-9_.]+)`")
)

func short(m protoreflect.FullName) string { return string(m.Name()) }

// render is the generated part of docs/xds.md.
func render() string {
	var b strings.Builder
	for _, msg := range slices.Sorted(maps.Keys(tables)) {
		fmt.Fprintf(&b, "### `%s`\n\n| field | proxylab | what it does |\n|---|---|---|\n", msg)
		t := tables[msg]
		for _, f := range slices.Sorted(maps.Keys(t)) {
			note := notes[short(msg)+"."+f]
			if note == "" {
				note = map[policy]string{supported: "translated", warned: "accepted, counted and logged; not honoured", refused: "the resource is NACKed naming the field"}[t[f]]
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f, t[f], note)
		}
		b.WriteString("\n")
	}
	return b.String()
}

const beginMark, endMark = "<!-- BEGIN GENERATED TABLES (go test ./core/xds -run TestDocsTable, UPDATE_XDS_DOC=1 rewrites) -->\n", "<!-- END GENERATED TABLES -->"

// TestDocsTable: docs/xds.md lists every field the translator handles,
// warns about or refuses, with the same policy, and nothing else.
func TestDocsTable(t *testing.T) {
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, beginMark), strings.Index(doc, endMark)
	if i < 0 || j < i {
		t.Fatal("docs/xds.md lacks the generated-table markers")
	}
	if os.Getenv("UPDATE_XDS_DOC") == "1" {
		doc = doc[:i+len(beginMark)] + "\n" + render() + doc[j:]
		if err := os.WriteFile(docPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	section := ""
	for _, line := range strings.Split(doc, "\n") {
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			section = m[1]
		}
		if m := rowRE.FindStringSubmatch(line); m != nil && section != "" {
			got[section+"."+m[1]] = m[2]
		}
	}
	want := map[string]string{}
	for msg, tab := range tables {
		for f, p := range tab {
			want[string(msg)+"."+f] = p.String()
		}
	}
	for k, p := range want {
		if got[k] != p {
			t.Errorf("docs/xds.md: %s should be listed as %s, is %q", k, p, got[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("docs/xds.md lists %s, which the translator does not handle", k)
		}
	}
}

// TestTablesNameRealFields: every table entry is a field of its message
// (a typo would silently NACK the real field).
func TestTablesNameRealFields(t *testing.T) {
	for msg, tab := range tables {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(msg)
		if err != nil {
			t.Fatal(err)
		}
		fields := d.(protoreflect.MessageDescriptor).Fields()
		for f := range tab {
			if fields.ByName(protoreflect.Name(f)) == nil {
				t.Errorf("%s has no field %q", msg, f)
			}
		}
	}
}
