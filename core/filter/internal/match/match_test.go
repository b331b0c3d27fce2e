package match

import (
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

func sp(s string) *string { return &s }

func TestString(t *testing.T) {
	cases := []struct {
		cfg  StringConfig
		in   string
		want bool
	}{
		{StringConfig{Exact: sp("abc")}, "abc", true},
		{StringConfig{Exact: sp("abc")}, "abcd", false},
		{StringConfig{Exact: sp("ABC"), IgnoreCase: true}, "aBc", true},
		{StringConfig{Prefix: sp("/api")}, "/api/x", true},
		{StringConfig{Prefix: sp("/api")}, "/ap", false},
		{StringConfig{Suffix: sp(".org")}, "a.org", true},
		{StringConfig{Suffix: sp(".ORG"), IgnoreCase: true}, "a.Org", true},
		{StringConfig{Contains: sp("mid")}, "amidb", true},
		{StringConfig{Contains: sp("mid")}, "mi", false},
		{StringConfig{Contains: sp("")}, "", true},
		{StringConfig{SafeRegex: &Regex{Regex: "a+b"}}, "aab", true},
		{StringConfig{SafeRegex: &Regex{Regex: "a+b"}}, "xaab", false}, // whole value
		{StringConfig{SafeRegex: &Regex{Regex: "a|b"}}, "ab", false},   // alternation anchored as a whole
	}
	for _, tc := range cases {
		m, errs := CompileString(&tc.cfg, "p")
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if got := m.Match([]byte(tc.in)); got != tc.want {
			t.Errorf("%+v on %q: %v, want %v", tc.cfg, tc.in, got, tc.want)
		}
	}
	for _, bad := range []StringConfig{{}, {Exact: sp("a"), Prefix: sp("b")}, {SafeRegex: &Regex{Regex: "("}}} {
		if _, errs := CompileString(&bad, "p"); len(errs) == 0 {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestHeader(t *testing.T) {
	h := &protocol.Head{Method: []byte("GET"), Target: []byte("/x?y")}
	h.Headers.Add("Host", []byte("example.com"))
	h.Headers.Add("X-A", []byte("1"))
	h.Headers.Add("x-a", []byte("2"))
	h.Headers.Add("x-empty", nil)
	yes, no := true, false
	cases := []struct {
		cfg  HeaderConfig
		want bool
	}{
		{HeaderConfig{Name: ":method", ExactMatch: sp("GET")}, true},
		{HeaderConfig{Name: ":path", PrefixMatch: sp("/x")}, true},
		{HeaderConfig{Name: ":authority", StringMatch: &StringConfig{Exact: sp("example.com")}}, true},
		{HeaderConfig{Name: "x-a", ExactMatch: sp("1,2")}, true}, // repeated: joined
		{HeaderConfig{Name: "x-a", ExactMatch: sp("1")}, false},
		{HeaderConfig{Name: "x-a", ExactMatch: sp("1"), InvertMatch: true}, true},
		{HeaderConfig{Name: "x-missing", ExactMatch: sp("1"), InvertMatch: true}, true},
		{HeaderConfig{Name: "x-missing", ExactMatch: sp("1")}, false},
		{HeaderConfig{Name: "x-missing", PresentMatch: &no}, true},
		{HeaderConfig{Name: "x-empty", PresentMatch: &yes}, true},
		{HeaderConfig{Name: "x-empty", ExactMatch: sp("")}, true},
		{HeaderConfig{Name: "X-A", SafeRegexMatch: &Regex{Regex: `\d,\d`}}, true},
		{HeaderConfig{Name: "x-a", ContainsMatch: sp(",")}, true},
		{HeaderConfig{Name: "x-a", SuffixMatch: sp("2")}, true},
	}
	for _, tc := range cases {
		m, errs := CompileHeader(&tc.cfg, "p")
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if got := m.Match(h); got != tc.want {
			t.Errorf("%s: %v, want %v", m.Name(), got, tc.want)
		}
	}
	for _, bad := range []HeaderConfig{{ExactMatch: sp("x")}, {Name: "a"}, {Name: "a", ExactMatch: sp("x"), PresentMatch: &yes}} {
		_, errs := CompileHeader(&bad, "p")
		if len(errs) == 0 || !strings.HasPrefix(errs[0].Error(), "p") {
			t.Errorf("%+v: %v", bad, errs)
		}
	}
}
