package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadmeConfigReferenceValidates keeps the README's configuration
// reference honest: the block must pass `proxylab validate` once the
// clusters it only names are defined and its certificate paths exist.
func TestReadmeConfigReferenceValidates(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	a := strings.Index(s, "## Configuration reference")
	b := strings.Index(s[a:], "```yaml\n") + a + len("```yaml\n")
	e := strings.Index(s[b:], "```") + b
	dir := t.TempDir()
	if err := writeCerts(dir, []string{"localhost"}, "ecdsa", time.Hour); err != nil {
		t.Fatal(err)
	}
	block := strings.ReplaceAll(s[b:e], "certs/", dir+"/")
	for _, name := range []string{"shadow", "blue", "green", "postgres"} {
		block += "  - {name: " + name + ", hosts: [{address: \"127.0.0.1:1\"}]}\n"
	}
	path := filepath.Join(dir, "reference.yaml")
	os.WriteFile(path, []byte(block), 0o644)
	if out, err := exec.Command(binPath, "validate", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("the README's configuration reference does not validate:\n%s", out)
	}
}
