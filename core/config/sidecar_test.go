package config

import (
	"strings"
	"testing"
)

func TestProxyProtocolValidation(t *testing.T) {
	tests := []struct {
		name, listener, cluster, want string
	}{
		{name: "ok", listener: "{trusted_sources: [10.0.0.0/8, '::1/128']}", cluster: "", want: ""},
		{name: "no trusted", listener: "{version: 1}", want: "listeners[0].proxy_protocol.trusted_sources: required"},
		{name: "bad prefix", listener: "{trusted_sources: [10.0.0.1]}", want: "listeners[0].proxy_protocol.trusted_sources[0]:"},
		{name: "bad version", listener: "{version: 3, trusted_sources: [10.0.0.0/8]}", want: "listeners[0].proxy_protocol.version: must be 1, 2 or 0"},
		{name: "zero timeout", listener: "{timeout: 0s, trusted_sources: [10.0.0.0/8]}", want: "listeners[0].proxy_protocol.timeout: must be > 0"},
		{name: "cluster version", cluster: "{version: 0}", want: "clusters[1].proxy_protocol.version: must be 1 or 2"},
		{name: "cluster used by http", cluster: "{version: 1}", want: "", listener: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := "listeners:\n  - name: a\n    address: 127.0.0.1:1\n    http_proxy: {}\n"
			if tt.listener != "" {
				in += "    proxy_protocol: " + tt.listener + "\n"
			}
			in += "  - {name: t, address: 127.0.0.1:2, tcp_proxy: {cluster: pp}}\n"
			in += "routes: [{name: v, domains: ['*'], routes: [{prefix: /, cluster: c}]}]\n"
			in += "clusters:\n  - {name: c, hosts: [{address: 127.0.0.1:3}]}\n  - name: pp\n    hosts: [{address: 127.0.0.1:4}]\n"
			if tt.cluster != "" {
				in += "    proxy_protocol: " + tt.cluster + "\n"
			}
			_, err := Parse([]byte(in), known)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// A cluster HTTP routes use may not send PROXY headers.
	in := `
listeners: [{name: a, address: 127.0.0.1:1, http_proxy: {}}]
routes: [{name: v, domains: ['*'], routes: [{prefix: /, cluster: c}, {prefix: /m, cluster: d, request_mirror_policies: [{cluster: c}]}]}]
clusters:
  - {name: c, proxy_protocol: {version: 2}, hosts: [{address: 127.0.0.1:3}]}
  - {name: d, hosts: [{address: 127.0.0.1:3}]}
`
	_, err := Parse([]byte(in), known)
	if err == nil || !strings.Contains(err.Error(), `clusters[0].proxy_protocol: cluster "c" is used by HTTP route routes[0].routes[0]`) ||
		!strings.Contains(err.Error(), "routes[0].routes[1]") {
		t.Fatalf("err = %v", err)
	}
}

func TestOriginalDstValidation(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ok", `
listeners:
  - {name: o, address: 0.0.0.0:15001, original_dst: true, tcp_proxy: {cluster: pt}}
  - {name: i, address: 0.0.0.0:15006, original_dst: true, transparent: true, tcp_proxy: {cluster: pt}}
clusters: [{name: pt, type: original_dst, max_hosts: 10}]`, ""},
		{"hosts", `
listeners: [{name: o, address: 0.0.0.0:15001, original_dst: true, tcp_proxy: {cluster: pt}}]
clusters: [{name: pt, type: original_dst, hosts: [{address: 127.0.0.1:1}]}]`, "clusters[0].hosts: an original_dst cluster has no hosts"},
		{"max_hosts", `
listeners: [{name: o, address: 0.0.0.0:15001, original_dst: true, tcp_proxy: {cluster: pt}}]
clusters: [{name: pt, type: original_dst, max_hosts: -1}]`, "clusters[0].max_hosts: must be >= 0"},
		{"listener without original_dst", `
listeners: [{name: o, address: 0.0.0.0:15001, tcp_proxy: {cluster: pt}}]
clusters: [{name: pt, type: original_dst}]`, `listeners[0].tcp_proxy.cluster: original_dst cluster "pt" needs original_dst: true`},
		{"transparent alone", `
listeners: [{name: o, address: 0.0.0.0:15001, transparent: true, tcp_proxy: {cluster: c}}]
clusters: [{name: c, hosts: [{address: 127.0.0.1:1}]}]`, "listeners[0].transparent: needs original_dst: true"},
		{"http route", `
listeners: [{name: h, address: 0.0.0.0:80, http_proxy: {}}]
routes: [{name: v, domains: ['*'], routes: [{prefix: /, cluster: pt}]}]
clusters: [{name: pt, type: original_dst}]`, `routes[0].routes[0]: original_dst cluster "pt" serves tcp_proxy only`},
		{"unknown type", `
listeners: [{name: o, address: 0.0.0.0:15001, tcp_proxy: {cluster: c}}]
clusters: [{name: c, type: eds, hosts: [{address: 127.0.0.1:1}]}]`, `clusters[0].type: unknown type "eds" (static, strict_dns, original_dst)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), known)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
