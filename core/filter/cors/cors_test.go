package cors

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

func policy(t testing.TB, y string) (*Policy, []error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(y), &n); err != nil {
		t.Fatal(err)
	}
	return registry.Decode[Policy](&n, "cors")
}

// TestOriginMatch: each matcher kind, case rules, and near misses.
func TestOriginMatch(t *testing.T) {
	p, errs := policy(t, `allow_origin_string_match:
  - {exact: "https://a.example"}
  - {prefix: "https://pre.", ignore_case: true}
  - {suffix: ".trusted.org"}
  - {safe_regex: {regex: "https://[0-9]+\\.num\\.test"}}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://a.example", true},
		{"https://A.example", false},
		{"https://a.example.evil", false},
		{"HTTPS://PRE.x", true},
		{"https://x.trusted.org", true},
		{"https://trusted.org.evil", false},
		{"https://42.num.test", true},
		{"https://42.num.test.evil", false}, // the regex matches the whole origin
		{"xhttps://42.num.test", false},
		{"", false},
	} {
		if got := p.allows([]byte(tc.origin)); got != tc.ok {
			t.Errorf("%q: %v, want %v", tc.origin, got, tc.ok)
		}
	}
}

// TestPolicyValidate: bad policies are refused with their field paths.
func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct{ y, want string }{
		{`allow_origin_string_match: [{exact: a, prefix: b}]`, "cors.allow_origin_string_match[0]: needs exactly one"},
		{`allow_origin_string_match: [{}]`, "cors.allow_origin_string_match[0]: needs exactly one"},
		{`allow_origin_string_match: [{safe_regex: {regex: "("}}]`, "cors.allow_origin_string_match[0].safe_regex.regex"},
		{`max_age: soon`, "cors.max_age: expected seconds"},
		{`allow_origins: ["*"]`, "cors.allow_origins: unknown field"},
	} {
		_, errs := policy(t, tc.y)
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.y, errs, tc.want)
		}
	}
}

// FuzzOriginMatch: the matcher never panics and a suffix or exact match
// is what it says.
func FuzzOriginMatch(f *testing.F) {
	p, errs := policy(f, `allow_origin_string_match: [{exact: "https://a"}, {suffix: ".b"}, {prefix: "c", ignore_case: true}, {safe_regex: {regex: "d+"}}]`)
	if len(errs) > 0 {
		f.Fatal(errs)
	}
	f.Add("https://a")
	f.Add("x.b")
	f.Add("Cz")
	f.Add("ddd")
	f.Fuzz(func(t *testing.T, o string) {
		got := p.allows([]byte(o))
		want := o == "https://a" || strings.HasSuffix(o, ".b") || len(o) >= 1 && (o[0] == 'c' || o[0] == 'C') ||
			(len(o) > 0 && strings.Trim(o, "d") == "")
		if got != want {
			t.Fatalf("%q: %v, want %v", o, got, want)
		}
	})
}
