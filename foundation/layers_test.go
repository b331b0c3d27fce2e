package foundation_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayersPointDown asserts the layer map of DESIGN.md with `go list
// -deps`: foundation imports no other proxylab package; transport/ and
// offload/ import nothing from core/ (or cmd/, bench/); transport/ does not
// import offload/; the layers above the codec registry (proxy, router,
// upstream, config, server, admin) import no codec: codecs reach them
// through core/stream (names, options, metrics).
func TestLayersPointDown(t *testing.T) {
	const mod = "github.com/proxylab/proxylab/"
	cases := []struct {
		pkgs      string
		forbidden []string
	}{
		{"./...", []string{"core/", "transport/", "offload/", "cmd/", "bench/"}},
		{"../transport/...", []string{"core/", "offload/", "cmd/", "bench/"}},
		{"../offload/...", []string{"core/", "cmd/", "bench/"}},
		{"../core/proxy ../core/router ../core/upstream ../core/config ../core/server ../core/admin",
			[]string{"core/stream/http1", "core/stream/http2", "core/stream/rpc", "core/protocol/http1", "core/protocol/http2", "core/protocol/xprotocol", "cmd/", "bench/"}},
	}
	for _, c := range cases {
		out, err := exec.Command("go", append([]string{"list", "-deps", "-test=false"}, strings.Fields(c.pkgs)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", c.pkgs, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ok := strings.CutPrefix(dep, mod)
			if !ok {
				continue
			}
			for _, f := range c.forbidden {
				if strings.HasPrefix(rel, f) {
					t.Errorf("%s depends on %s: dependencies must point down the layer map", c.pkgs, rel)
				}
			}
		}
	}
}
