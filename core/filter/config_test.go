package filter

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

type testFactory struct{ got *yaml.Node }

func (testFactory) NewFilter(Stream) Filter { return PassThrough{} }

func init() {
	Register(Module{Name: "t_plain", Kinds: HTTP, Decode: func(raw *yaml.Node, path string) (Factory, []error) {
		if raw != nil && len(raw.Content) > 0 && raw.Content[0].Kind == yaml.MappingNode {
			for i := 0; i < len(raw.Content[0].Content); i += 2 {
				if k := raw.Content[0].Content[i].Value; k != "a" {
					return nil, []error{registry.Errorf(path+"."+k, "unknown field")}
				}
			}
		}
		return testFactory{raw}, nil
	}, DecodePerRoute: func(raw *yaml.Node, path string) (any, []error) { return "override", nil }})
	Register(Module{Name: "t_noroute", Kinds: HTTP, Decode: func(*yaml.Node, string) (Factory, []error) { return testFactory{}, nil }})
}

func node(t *testing.T, y string) *yaml.Node {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(y), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

// TestDecodeConfig: names are checked against the registry (listing the
// known ones), Envoy's @type is dropped, paths point into typed_config.
func TestDecodeConfig(t *testing.T) {
	if _, errs := DecodeConfig("nope", nil, "f[0]"); len(errs) != 1 || !strings.Contains(errs[0].Error(), `f[0].name: unknown http filter "nope" (known: t_noroute, t_plain)`) {
		t.Fatalf("%v", errs)
	}
	if _, errs := DecodeConfig("t_plain", node(t, `{"@type": type.googleapis.com/x, a: 1}`), "f[0]"); len(errs) > 0 {
		t.Fatalf("@type not dropped: %v", errs)
	}
	if _, errs := DecodeConfig("t_plain", node(t, `{b: 1}`), "f[0]"); len(errs) != 1 || !strings.Contains(errs[0].Error(), "f[0].typed_config.b") {
		t.Fatalf("%v", errs)
	}
}

// TestDecodeOverride: disabled alone, an override, and the refusals.
func TestDecodeOverride(t *testing.T) {
	for _, tc := range []struct {
		name, y  string
		disabled bool
		cfg      any
		err      string
	}{
		{"t_plain", `{disabled: true}`, true, nil, ""},
		{"t_plain", `{disabled: false}`, false, nil, ""},
		{"t_plain", `{a: 1}`, false, "override", ""},
		{"t_plain", `{disabled: true, a: 1}`, false, nil, "p.disabled: disabled stands alone"},
		{"t_plain", `{disabled: maybe}`, false, nil, "p.disabled: expected true or false"},
		{"t_noroute", `{disabled: true}`, true, nil, ""},
		{"t_noroute", `{a: 1}`, false, nil, `p: filter "t_noroute" takes no per-route config`},
		{"nope", `{}`, false, nil, `p: unknown http filter "nope"`},
	} {
		d, cfg, errs := DecodeOverride(tc.name, node(t, tc.y).Content[0], "p")
		switch {
		case tc.err != "":
			if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.err) {
				t.Errorf("%s %s: %v, want %q", tc.name, tc.y, errs, tc.err)
			}
		case len(errs) > 0 || d != tc.disabled || cfg != tc.cfg:
			t.Errorf("%s %s: %v %v %v", tc.name, tc.y, d, cfg, errs)
		}
	}
}

// TestPercent: denominators, bounds and the draw's extremes.
func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		p   Percent
		err string
	}{
		{Percent{Numerator: 100}, ""}, {Percent{Numerator: 5, Denominator: "MILLION"}, ""},
		{Percent{Numerator: 101}, "over the denominator"}, {Percent{Numerator: 1, Denominator: "TEN"}, "unknown denominator"},
	} {
		errs := tc.p.Check("x")
		if (tc.err == "") != (len(errs) == 0) || tc.err != "" && !strings.Contains(errs[0].Error(), tc.err) {
			t.Errorf("%+v: %v", tc.p, errs)
		}
	}
	for i := 0; i < 100; i++ {
		if !All.Hit() || (Percent{}).Hit() || (Percent{Numerator: 10_000, Denominator: "TEN_THOUSAND"}).Hit() == false {
			t.Fatal("0% or 100% drew the other way")
		}
	}
}
