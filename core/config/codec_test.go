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
)

// TestNoCodecNames: core/config names no codec; the binary's registry
// tells it the names (Known.Codecs). String literals (not struct tags) of
// the non-test sources must not be a codec's name.
func TestNoCodecNames(t *testing.T) {
	if bad := codecLiterals(t, "."); len(bad) > 0 {
		t.Fatalf("codec names in core/config:\n%s", strings.Join(bad, "\n"))
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
	k.Codecs = append([]Codec{{Name: "thrift", Carries: "thrift", Options: []string{"rpc_protocol_options"}}}, known.Codecs...)
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
