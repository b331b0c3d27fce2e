package config

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/stream/rpc"
	"github.com/proxylab/proxylab/foundation/registry"
)

// TestNoCodecNames: core/config names no codec; the binary's registry
// tells it the names (Known.Codecs). String literals (not struct tags) of
// the non-test sources must not be a codec's name. The same holds for the
// layers above the codecs (and the registry itself): they ask a codec what
// it can do (e.g. stream.Tunneller) instead of comparing its name.
func TestNoCodecNames(t *testing.T) {
	for _, dir := range []string{".", "../proxy", "../router", "../upstream", "../server", "../admin", "../stream", "../stream/pool", "../network"} {
		if bad := codecLiterals(t, dir); len(bad) > 0 {
			t.Errorf("codec names in %s:\n%s", dir, strings.Join(bad, "\n"))
		}
	}
}

// codecLiterals lists the codec-name string literals of dir's non-test Go
// files as file:line: name.
func codecLiterals(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		tags := map[*ast.BasicLit]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			if fl, ok := n.(*ast.Field); ok && fl.Tag != nil {
				tags[fl.Tag] = true
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING || tags[lit] {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			switch strings.ToLower(v) {
			case "http1", "http2", "bolt", "dubbo":
				bad = append(bad, fset.Position(lit.Pos()).String()+": "+v)
			}
			return true
		})
	}
	return bad
}

// TestCodecsFromOutside: a codec the config package never heard of is a
// valid listener codec and cluster protocol once the binary reports it;
// its option blocks are validated only where it is spoken, and names it
// does not know are refused with the list it was given.
func TestCodecsFromOutside(t *testing.T) {
	k := known
	k.Codecs = append([]Codec{{Name: "thrift", Carries: "thrift", Options: codecOptions(rpc.Codec{})}}, known.Codecs...)
	doc := func(codec, protocol, extra string) []byte {
		return []byte(`
listeners:
  - {name: l, address: "127.0.0.1:9000", http_proxy: {codec: ` + codec + `}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: c}]}
clusters:
  - {name: c, protocol: ` + protocol + `, hosts: [{address: "127.0.0.1:1"}]` + extra + `}
`)
	}
	for _, tc := range []struct {
		name, codec, protocol, extra string
		want                         string // "" means valid
	}{
		{"registered elsewhere", "thrift", "thrift", "", ""},
		{"auto carries it", "auto", "thrift", "", ""},
		{"its option block is checked", "thrift", "thrift", ", rpc_protocol_options: {max_in_flight: 0}",
			"clusters[0].rpc_protocol_options: max_in_flight must be >= 1 and heartbeat_interval >= 0"},
		{"another codec's block is not", "auto", "http1", ", rpc_protocol_options: {max_in_flight: 0}", ""},
		{"unknown listener codec", "thrift2", "thrift", "",
			`listeners[0].http_proxy.codec: unknown codec "thrift2" (auto, http1, http2, thrift)`},
		{"unknown cluster protocol", "auto", "h3", "",
			`clusters[0].protocol: unknown protocol "h3" (http1, http2, thrift)`},
		{"carries decides routes", "http2", "thrift", "",
			`routes[0].routes[0].cluster: cluster "c" speaks thrift, listener "l" codec http2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(doc(tc.codec, tc.protocol, tc.extra), k)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 || es[0].Error() != tc.want {
				t.Fatalf("errors:\n%v\nwant exactly %q", err, tc.want)
			}
		})
	}
	// A cluster naming no protocol gets the binary's default.
	cfg, err := Parse([]byte(`{listeners: [{name: l, address: "127.0.0.1:9000", tcp_proxy: {cluster: c}}], clusters: [{name: c, hosts: [{address: "127.0.0.1:1"}]}]}`), k)
	if err != nil || cfg.Clusters[0].Protocol != k.DefaultProtocol {
		t.Fatalf("default protocol: %v %+v", err, cfg)
	}
}

// thriftOptions is an option block of a codec core/config never heard of.
type thriftOptions struct {
	MaxFrames int `yaml:"max_frames"`
}

func (o *thriftOptions) SetDefaults() { o.MaxFrames = 8 }
func (o *thriftOptions) Validate(p string) []error {
	if o.MaxFrames < 1 {
		return []error{registry.Errorf(p+".max_frames", "must be >= 1")}
	}
	return nil
}

// TestCodecOwnsOptions: a codec's option blocks are decoded by the codec
// (defaults, unknown keys refused with their paths), checked where they
// apply (a cluster block on the codec's clusters, a listener block on every
// http_proxy), listed among the known keys and dumped in place.
func TestCodecOwnsOptions(t *testing.T) {
	k := known
	k.Codecs = append([]Codec{{Name: "thrift", Carries: "thrift", Options: []CodecOption{
		{Key: "thrift_options", Decode: registry.DecodeBlock[thriftOptions]},
		{Key: "thrift_server", Listener: true, Decode: registry.DecodeBlock[thriftOptions]},
	}}}, known.Codecs...)
	doc := func(listener, cluster string) []byte {
		return []byte(`
listeners:
  - {name: l, address: "127.0.0.1:9000", http_proxy: {codec: auto` + listener + `}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: c}]}
clusters:
  - {name: c, hosts: [{address: "127.0.0.1:1"}]` + cluster + `}
`)
	}
	for _, tc := range []struct {
		name, listener, cluster string
		want                    string // "" means valid
	}{
		{"defaults", "", ", protocol: thrift", ""},
		{"unknown key in the block", "", ", protocol: thrift, thrift_options: {frames: 1}",
			"clusters[0].thrift_options.frames: unknown field (known: max_frames) (line 7)"},
		{"bad type", "", ", thrift_options: {max_frames: many}",
			`clusters[0].thrift_options.max_frames: expected a whole number, got "many" (line 7)`},
		{"checked on its clusters", "", ", protocol: thrift, thrift_options: {max_frames: 0}",
			"clusters[0].thrift_options.max_frames: must be >= 1"},
		{"not on others'", "", ", protocol: http1, thrift_options: {max_frames: 0}", ""},
		{"listener block checked on every listener", ", thrift_server: {max_frames: 0}", "",
			"listeners[0].http_proxy.thrift_server.max_frames: must be >= 1"},
		{"a listener block is no cluster key", "", ", thrift_server: {}",
			"clusters[0].thrift_server: unknown field (known: name, type, dns_refresh_rate, dns_resolver, lb, lb_options, connect_timeout, max_connections, max_pending, max_requests_per_connection, idle_timeout, tls, health_check, lb_subset_config, outlier_detection, circuit_breakers, protocol, http2_protocol_options, thrift_options, hosts) (line 7)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(doc(tc.listener, tc.cluster), k)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if o, ok := cfg.Clusters[0].Options["thrift_options"].(*thriftOptions); !ok || (tc.cluster == ", protocol: thrift" && o.MaxFrames != 8) {
					t.Fatalf("cluster block: %#v", cfg.Clusters[0].Options)
				}
				if _, ok := cfg.Listeners[0].HTTP.Options["thrift_server"].(*thriftOptions); !ok {
					t.Fatalf("listener block: %#v", cfg.Listeners[0].HTTP.Options)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 || es[0].Error() != tc.want {
				t.Fatalf("errors:\n%v\nwant exactly %q", err, tc.want)
			}
		})
	}
	// The dump shows the blocks with their defaults where the file would
	// have them: after protocol, after codec.
	cfg, err := Parse(doc("", ", protocol: thrift"), k)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Dump()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"protocol: thrift\n      http2_protocol_options:", "reset_burst: 400\n      thrift_options:\n        max_frames: 8\n      hosts:", "reset_burst: 400\n        thrift_server:\n            max_frames: 8\n        tunnel_idle_timeout:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dump lacks %q:\n%s", want, out)
		}
	}
}
