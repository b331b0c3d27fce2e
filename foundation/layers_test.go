package foundation_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayersPointDown asserts the layer map of DESIGN.md with `go list
// -deps`: foundation imports no other proxylab package; transport/ and
// offload/ import nothing from core/ (or cmd/, bench/); transport/ does not
// import offload/.
func TestLayersPointDown(t *testing.T) {
	const mod = "github.com/proxylab/proxylab/"
	cases := []struct {
		pkgs      string
		forbidden []string
	}{
		{"./...", []string{"core/", "transport/", "offload/", "cmd/", "bench/"}},
		{"../transport/...", []string{"core/", "offload/", "cmd/", "bench/"}},
		{"../offload/...", []string{"core/", "cmd/", "bench/"}},
	}
	for _, c := range cases {
		out, err := exec.Command("go", "list", "-deps", "-test=false", c.pkgs).CombinedOutput()
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
