package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/stream"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
	"github.com/proxylab/proxylab/core/stream/rpc"
	"github.com/proxylab/proxylab/transport/sockmap"
)

// known mirrors the binary's built-ins: HTTP codecs only (RPC ones are
// added where a test needs them).
var known = Known{Transports: []string{"netpoll"}, DefaultTransport: "netpoll", DefaultEngine: "gotls", LBs: []string{"random", "round_robin"}, Engines: []string{"gotls"},
	TransportOptions: map[string]func(*yaml.Node, string, bool) (any, []error){"sockmap": sockmap.DecodeOptions},
	Codecs:           []Codec{{Name: "http2", Carries: "http", Options: codecOptions(h2s.Codec{})}, {Name: "http1", Carries: "http"}}, DefaultProtocol: "http1"}

// rpcCodecs are the binary's RPC codecs, as it describes them.
var rpcCodecs = []Codec{{Name: "bolt", Carries: "bolt", Options: codecOptions(rpc.Codec{})}, {Name: "dubbo", Carries: "dubbo", Options: codecOptions(rpc.Codec{})}}

// codecOptions describes a codec's blocks as the binary does.
func codecOptions(c stream.OptionBlocks) []CodecOption {
	var out []CodecOption
	for _, b := range c.OptionBlocks() {
		out = append(out, CodecOption{Key: b.Key, Listener: b.Listener, Decode: b.Decode})
	}
	return out
}

func TestDefaultConfigIsValid(t *testing.T) {
	cfg, err := Load("", known)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listeners[0].Address != "127.0.0.1:8080" || cfg.Listeners[0].HTTP == nil {
		t.Fatalf("default listener: %+v", cfg.Listeners[0])
	}
	// Defaults filled under values the file did not set.
	if h := cfg.Listeners[0].HTTP; h.MaxHeaderBytes != 64<<10 || h.IdleTimeout.D() != 60*time.Second {
		t.Fatalf("http defaults: %+v", h)
	}
	if c := cfg.Clusters[0]; c.MaxConnections != 1024 || c.Hosts[0].Weight != 1 || c.ConnectTimeout.D() != 2*time.Second {
		t.Fatalf("cluster defaults: %+v", c)
	}
}

func TestEveryErrorHasItsPath(t *testing.T) {
	in := `
transport: turbo
cpus: "3-1"
sockmap: {cgroup: relative/dir}
listeners:
  - name: a
    address: 127.0.0.1:80800
    http_proxy:
      virtual_hosts: [nope]
      idle_timeout: soon
  - name: a
    address: 127.0.0.1:9000
    tcp_proxy: {cluster: missing}
    udp: true
routes:
  - name: v
    domains: ["a.*.b"]
    routes:
      - prefix: nope
        cluster: c
      - prefix: /
        path: /x
        cluster: ghost
clusters:
  - name: c
    lb: rr2
    hosts: []
  - name: c
    hosts:
      - address: "not-an-address"
        weight: 0
    max_connections: many
`
	_, err := Parse([]byte(in), known)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	got := err.Error()
	for _, want := range []string{
		`transport: unknown transport "turbo"`,
		`cpus: invalid CPU range "3-1"`,
		`sockmap.cgroup: must be an absolute path to a cgroup v2 directory, got "relative/dir"`,
		`listeners[0].address: invalid port "80800"`,
		`listeners[0].http_proxy.virtual_hosts[0]: unknown virtual host "nope"`,
		`listeners[0].http_proxy.idle_timeout: invalid duration "soon"`,
		`listeners[1].name: duplicate listener name "a"`,
		`listeners[1].tcp_proxy.cluster: unknown cluster "missing"`,
		`listeners[1].udp: unknown field`,
		`routes[0].domains[0]: invalid domain "a.*.b"`,
		`routes[0].routes[0].prefix: must start with /`,
		`routes[0].routes[1]: exactly one of prefix, path, regex or connect_matcher is required`,
		`routes[0].routes[1].cluster: unknown cluster "ghost"`,
		`clusters[0].lb: unknown policy "rr2"`,
		`clusters[0].hosts: at least one host is required`,
		`clusters[1].name: duplicate cluster name "c"`,
		`clusters[1].hosts[0].address: invalid address "not-an-address"`,
		`clusters[1].hosts[0].weight: must be >= 1`,
		`clusters[1].max_connections: expected a whole number, got "many"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q", want)
		}
	}
	// Decode errors carry the line number.
	if !strings.Contains(got, `listeners[1].udp: unknown field (known: name, address, tls, listener_filters, http_proxy, tcp_proxy) (line 14)`) {
		t.Errorf("unknown field error lacks line: %s", got)
	}
}

func TestCPUList(t *testing.T) {
	for in, want := range map[string]string{"0": "[0]", "0-2,5": "[0 1 2 5]", "1,1": "[1]"} {
		got, err := ParseCPUList(in)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("%q → %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "-1", "2-1", "1-x"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEmptyFileNeedsListeners(t *testing.T) {
	_, err := Parse([]byte(""), known)
	if err == nil || !strings.Contains(err.Error(), "listeners: at least one listener is required") {
		t.Fatalf("got %v", err)
	}
}

// FuzzParse: no input panics the decoder, and every rejection carries at
// least one located error.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("listeners: [{name: a, address: '127.0.0.1:1', tcp_proxy: {cluster: c}}]\nclusters: [{name: c, hosts: [{address: '127.0.0.1:2'}]}]"))
	f.Add([]byte("routes: &a [*a]"))
	f.Add([]byte("sockmap: &a {cgroup: *a, splice: [*a]}\nbogus: {}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg, err := Parse(in, known)
		if err == nil {
			if cfg == nil || len(cfg.Listeners) == 0 {
				t.Fatal("accepted a config without listeners")
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error without field errors: %v", err)
		}
	})
}

func TestRouteMatcherValidation(t *testing.T) {
	in := `
listeners: [{name: a, address: "127.0.0.1:1", http_proxy: {}}]
clusters: [{name: c, hosts: [{address: "127.0.0.1:2"}]}]
routes:
  - name: v
    domains: ["*"]
    routes:
      - regex: "^/(unclosed"
        cluster: c
      - prefix: /
        methods: [get]
        headers:
          - {exact: x}
          - {name: a, exact: x, present: true}
          - {name: b, regex: "["}
        query_parameters:
          - {name: q, exact: x, invert: true}
        cluster: c
`
	_, err := Parse([]byte(in), known)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"routes[0].routes[0].regex: error parsing regexp",
		`routes[0].routes[1].methods[0]: method "get" must be upper case`,
		"routes[0].routes[1].headers[0].name: required",
		"routes[0].routes[1].headers[1]: exactly one of exact, regex or present",
		"routes[0].routes[1].headers[2].regex: error parsing regexp",
		"routes[0].routes[1].query_parameters[0].invert: not supported for query parameters",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestTunnelValidation(t *testing.T) {
	in := `
listeners:
  - name: a
    address: "127.0.0.1:1"
    http_proxy:
      upgrade_configs: [{upgrade_type: websocket}, {upgrade_type: WebSocket}, {upgrade_type: connect}, {upgrade_type: "a b"}, {upgrade_type: h2c}, {}]
      tunnel_idle_timeout: 0s
clusters: [{name: c, hosts: [{address: "127.0.0.1:2"}]}]
routes:
  - name: v
    domains: ["*"]
    routes:
      - {prefix: /, connect: {allow: ["*:*"]}}
      - {connect_matcher: {}, connect: {allow: ["nohost", "h:0", "h:x"]}, host_rewrite: h}
      - {connect_matcher: {}, prefix: /, cluster: c}
      - {connect_matcher: {}, connect: {}}
      - {connect_matcher: {}, connect: {allow: ["127.0.0.1:*", "*.example.com:443", "[::1]:22"]}}
      - {connect_matcher: {}, direct_response: {status: 200}}
      - {connect_matcher: {}, cluster: c, regex_rewrite: {pattern: "a", substitution: "b"}}
`
	_, err := Parse([]byte(in), known)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`listeners[0].http_proxy.upgrade_configs[1].upgrade_type: duplicate upgrade type "WebSocket"`,
		`listeners[0].http_proxy.upgrade_configs[2].upgrade_type: the CONNECT method is spelled CONNECT`,
		`listeners[0].http_proxy.upgrade_configs[3].upgrade_type: invalid upgrade type "a b"`,
		`listeners[0].http_proxy.upgrade_configs[4].upgrade_type: h2c is not a tunnel`,
		`listeners[0].http_proxy.upgrade_configs[5].upgrade_type: required`,
		`listeners[0].http_proxy.tunnel_idle_timeout: must be > 0`,
		`routes[0].routes[0].connect: needs connect_matcher: {}`,
		`routes[0].routes[1].connect.allow[0]: invalid pattern "nohost"`,
		`routes[0].routes[1].connect.allow[1]: invalid pattern "h:0"`,
		`routes[0].routes[1].connect.allow[2]: invalid pattern "h:x"`,
		`routes[0].routes[1].connect: a terminated CONNECT has no upstream request`,
		`routes[0].routes[2]: exactly one of prefix, path, regex or connect_matcher is required`,
		`routes[0].routes[3].connect.allow: at least one host:port pattern is required`,
		`routes[0].routes[5].connect_matcher: a CONNECT route needs cluster`,
		`routes[0].routes[6].connect_matcher: a CONNECT request has no path to rewrite`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "routes[0].routes[4]") {
		t.Errorf("valid CONNECT route refused:\n%v", err)
	}
}
