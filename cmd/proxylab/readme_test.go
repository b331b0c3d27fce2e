package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// docYAML returns the first ```yaml block after heading in a file under
// docs/.
func docYAML(t *testing.T, file, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../docs", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	a := strings.Index(s, heading)
	if a < 0 {
		t.Fatalf("docs/%s has no %q", file, heading)
	}
	start := strings.Index(s[a:], "```yaml\n") + a + len("```yaml\n")
	end := strings.Index(s[start:], "```") + start
	return s[start:end]
}

// validateDoc runs `proxylab validate` on a config taken from the docs.
func validateDoc(t *testing.T, name, block string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "doc.yaml")
	os.WriteFile(path, []byte(block), 0o644)
	if out, err := exec.Command(binPath, "validate", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("%s does not validate:\n%s\n%s", name, out, block)
	}
}

// TestReadmeConfigReferenceValidates keeps the configuration reference
// (docs/configuration.md, linked from the README) honest: the block must
// pass `proxylab validate` once the clusters it only names are defined and
// its certificate paths exist.
func TestReadmeConfigReferenceValidates(t *testing.T) {
	dir := t.TempDir()
	if err := writeCerts(dir, []string{"localhost"}, "ecdsa", time.Hour); err != nil {
		t.Fatal(err)
	}
	block := strings.ReplaceAll(docYAML(t, "configuration.md", "# Configuration reference"), "certs/", dir+"/")
	for _, name := range []string{"shadow", "blue", "green", "postgres"} {
		block += "  - {name: " + name + ", hosts: [{address: \"127.0.0.1:1\"}]}\n"
	}
	validateDoc(t, "docs/configuration.md's reference", block)
}

// TestDocsLBOptionsExampleValidates: the load-balancer options example
// validates with the policies' own decoders.
func TestDocsLBOptionsExampleValidates(t *testing.T) {
	block := "listeners:\n  - {name: l, address: \"127.0.0.1:0\", tcp_proxy: {cluster: api}}\n" +
		docYAML(t, "configuration.md", "## Load-balancer options")
	validateDoc(t, "docs/configuration.md's lb_options example", block)
}
