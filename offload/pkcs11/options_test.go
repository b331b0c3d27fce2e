package pkcs11

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	module := filepath.Join(dir, "module.so")
	pin := filepath.Join(dir, "pin")
	os.WriteFile(module, nil, 0o644)
	os.WriteFile(pin, []byte("1234\n"), 0o600)
	t.Setenv("PKCS11_TEST_PIN", "1234")
	for _, tc := range []struct {
		name, yaml string
		want       []string // error substrings, in order; none: valid
	}{
		{"label and pin file", "{module: @MOD@, token_label: t, key_label: k, pin_file: @PIN@}", nil},
		{"slot, id and pin env", "{module: @MOD@, slot: 0, key_id: '0a:0b', pin_env: PKCS11_TEST_PIN}", nil},
		{"no module", "{token_label: t, key_label: k, pin_file: @PIN@}", []string{"p.module: required"}},
		{"module missing", "{module: /nonexistent.so, token_label: t, key_label: k, pin_file: @PIN@}", []string{"p.module: stat /nonexistent.so"}},
		{"no token", "{module: @MOD@, key_label: k, pin_file: @PIN@}", []string{"p: one of token_label or slot"}},
		{"both token selectors", "{module: @MOD@, token_label: t, slot: 1, key_label: k, pin_file: @PIN@}", []string{"p.slot: token_label and slot both set"}},
		{"negative slot", "{module: @MOD@, slot: -1, key_label: k, pin_file: @PIN@}", []string{"p.slot: must not be negative"}},
		{"no key", "{module: @MOD@, token_label: t, pin_file: @PIN@}", []string{"p: one of key_label or key_id"}},
		{"bad key id", "{module: @MOD@, token_label: t, key_id: zz, pin_file: @PIN@}", []string{"p.key_id: want hex digits"}},
		{"inline pin", "{module: @MOD@, token_label: t, key_label: k, pin: '1234'}", []string{"p.pin: a PIN is never taken", "p: one of pin_file or pin_env"}},
		{"unset pin env", "{module: @MOD@, token_label: t, key_label: k, pin_env: PKCS11_NO_SUCH}", []string{"p.pin_env: environment variable PKCS11_NO_SUCH is not set"}},
		{"both pins", "{module: @MOD@, token_label: t, key_label: k, pin_file: @PIN@, pin_env: PKCS11_TEST_PIN}", []string{"p.pin_env: pin_file and pin_env both set"}},
		{"one session", "{module: @MOD@, token_label: t, key_label: k, pin_file: @PIN@, max_sessions: 1}", []string{"p.max_sessions"}},
		{"unknown field", "{module: @MOD@, token_label: t, key_label: k, pin_file: @PIN@, serial: x}", []string{"p.serial"}},
	} {
		var n yaml.Node
		src := strings.NewReplacer("@MOD@", module, "@PIN@", pin).Replace(tc.yaml)
		if err := yaml.Unmarshal([]byte(src), &n); err != nil {
			t.Fatal(err)
		}
		_, errs := registry.Decode[Options](&n, "p")
		if len(errs) != len(tc.want) {
			t.Errorf("%s: errors %v, want %d", tc.name, errs, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(errs[i].Error(), w) {
				t.Errorf("%s: error %q, want %q", tc.name, errs[i], w)
			}
		}
	}
}

func TestPinSources(t *testing.T) {
	dir := t.TempDir()
	pin := filepath.Join(dir, "pin")
	os.WriteFile(pin, []byte("5678\r\n"), 0o600)
	t.Setenv("PKCS11_TEST_PIN", "1234")
	for _, tc := range []struct {
		o    Options
		want string
	}{{Options{PinFile: pin}, "5678"}, {Options{PinEnv: "PKCS11_TEST_PIN"}, "1234"}} {
		if got, err := tc.o.pin(); err != nil || got != tc.want {
			t.Errorf("%+v: %q %v, want %q", tc.o, got, err, tc.want)
		}
	}
	if _, err := (&Options{PinEnv: "PKCS11_NO_SUCH"}).pin(); err == nil {
		t.Error("an unset pin_env gave a PIN")
	}
}
