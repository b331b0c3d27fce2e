package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConfigNamesNoPlugin: core/config holds the common schema and names no
// transport or engine (DESIGN.md, "A plugin owns its settings"): their
// settings, defaults and checks live in their packages and reach the
// config through Known. Codec names are checked once the L7 codec registry
// takes them out too.
func TestConfigNamesNoPlugin(t *testing.T) {
	names := []string{"netpoll", "rawepoll", "sockmap", "dpdk", "gotls", "gm", "tlcp", "enc_cert_file", "enc_key_file"}
	word := regexp.MustCompile(`(?i)\b(` + strings.Join(names, "|") + `)\b`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := word.FindString(line); m != "" {
				t.Errorf("%s:%d names the plugin %q: %s", f, i+1, m, strings.TrimSpace(line))
			}
		}
	}
}
