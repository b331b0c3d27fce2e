package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestConfigNamesNoPlugin: core/config holds the common schema and names no
// transport or engine (DESIGN.md, "A plugin owns its settings"): their
// settings, defaults and checks live in their packages and reach the
// config through Known. Codecs own their option blocks the same way
// (TestNoCodecNames checks the codec names themselves).
func TestConfigNamesNoPlugin(t *testing.T) {
	names := []string{"netpoll", "rawepoll", "sockmap", "dpdk", "gotls", "gm", "tlcp", "enc_cert_file", "enc_key_file"}
	// No codec option block key, option key or field of one (nor the
	// types core/config once had).
	names = append(names, "HTTP2Options", "RPCOptions", "MuxOptions")
	for _, c := range append(known.Codecs, rpcCodecs...) {
		for _, o := range c.Options {
			names = append(names, o.Key)
			v, _ := o.Decode(nil, o.Key)
			typ := reflect.TypeOf(v).Elem()
			for i := 0; i < typ.NumField(); i++ {
				names = append(names, yamlName(typ.Field(i)), typ.Field(i).Name)
			}
		}
	}
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
