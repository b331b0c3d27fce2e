// Package match holds the string and header matchers the filters share
// (rbac, ratelimit, ext_authz), in Envoy's config shapes
// (type.matcher.v3.StringMatcher, config.route.v3.HeaderMatcher). Each is
// decoded and checked at config time and compiled to a value that matches
// without allocating (a multi-valued header is the one exception: its
// values are joined with "," as Envoy does, into a fresh slice).
package match

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
)

// Regex is Envoy's RegexMatcher: an RE2 expression matched against the
// whole value.
type Regex struct {
	Regex string `yaml:"regex"`
}

// StringConfig is Envoy's StringMatcher: exactly one of exact, prefix,
// suffix, contains, safe_regex; ignore_case applies to all but safe_regex.
type StringConfig struct {
	Exact      *string `yaml:"exact"`
	Prefix     *string `yaml:"prefix"`
	Suffix     *string `yaml:"suffix"`
	Contains   *string `yaml:"contains"`
	SafeRegex  *Regex  `yaml:"safe_regex"`
	IgnoreCase bool    `yaml:"ignore_case"`
}

type strKind uint8

const (
	strExact strKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// String is a compiled StringConfig. The zero value matches only "".
type String struct {
	kind strKind
	lit  []byte
	fold bool
	re   *regexp.Regexp
}

// CompileString checks c and compiles it; errors carry paths under path.
func CompileString(c *StringConfig, path string) (String, []error) {
	var m String
	n := 0
	set := func(k strKind, v *string) {
		if v != nil {
			n++
			m.kind, m.lit = k, []byte(*v)
		}
	}
	set(strExact, c.Exact)
	set(strPrefix, c.Prefix)
	set(strSuffix, c.Suffix)
	set(strContains, c.Contains)
	if c.SafeRegex != nil {
		n++
		re, err := regexp.Compile(`^(?:` + c.SafeRegex.Regex + `)$`)
		if err != nil {
			return m, []error{registry.Errorf(path+".safe_regex.regex", "%v", err)}
		}
		m.kind, m.re = strRegex, re
	}
	if n != 1 {
		return m, []error{registry.Errorf(path, "exactly one of exact, prefix, suffix, contains, safe_regex is required (%d set)", n)}
	}
	if c.IgnoreCase && m.kind != strRegex {
		m.fold = true
		m.lit = bytes.ToLower(m.lit)
	}
	return m, nil
}

// Match reports whether v matches.
func (m *String) Match(v []byte) bool {
	switch m.kind {
	case strExact:
		return len(v) == len(m.lit) && m.eq(v)
	case strPrefix:
		return len(v) >= len(m.lit) && m.eq(v[:len(m.lit)])
	case strSuffix:
		return len(v) >= len(m.lit) && m.eq(v[len(v)-len(m.lit):])
	case strContains:
		for i := 0; i+len(m.lit) <= len(v); i++ {
			if m.eq(v[i : i+len(m.lit)]) {
				return true
			}
		}
		return false
	case strRegex:
		return m.re.Match(v)
	}
	return false
}

// eq compares a window of the value of m.lit's length.
func (m *String) eq(w []byte) bool {
	if !m.fold {
		return bytes.Equal(w, m.lit)
	}
	for i, c := range w {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != m.lit[i] {
			return false
		}
	}
	return true
}

// HeaderConfig is Envoy's HeaderMatcher: a name and one of string_match,
// the legacy exact_match / prefix_match / suffix_match / contains_match /
// safe_regex_match, or present_match; invert_match negates the result.
// A header absent from the request matches only present_match: false
// (and, inverted, everything else).
type HeaderConfig struct {
	Name           string        `yaml:"name"`
	StringMatch    *StringConfig `yaml:"string_match"`
	ExactMatch     *string       `yaml:"exact_match"`
	PrefixMatch    *string       `yaml:"prefix_match"`
	SuffixMatch    *string       `yaml:"suffix_match"`
	ContainsMatch  *string       `yaml:"contains_match"`
	SafeRegexMatch *Regex        `yaml:"safe_regex_match"`
	PresentMatch   *bool         `yaml:"present_match"`
	InvertMatch    bool          `yaml:"invert_match"`
}

// Pseudo-headers a matcher reads from the head itself (HTTP/2 names, as
// Envoy exposes them for every protocol).
const (
	pseudoNone uint8 = iota
	pseudoMethod
	pseudoPath
	pseudoAuthority
)

// Header is a compiled HeaderConfig.
type Header struct {
	name    string
	pseudo  uint8
	present *bool
	str     String
	invert  bool
}

// CompileHeader checks c and compiles it; errors carry paths under path.
func CompileHeader(c *HeaderConfig, path string) (Header, []error) {
	h := Header{name: strings.ToLower(c.Name), invert: c.InvertMatch}
	if c.Name == "" {
		return h, []error{registry.Errorf(path+".name", "required")}
	}
	switch h.name {
	case ":method":
		h.pseudo = pseudoMethod
	case ":path":
		h.pseudo = pseudoPath
	case ":authority", "host":
		h.pseudo = pseudoAuthority
	}
	var sc *StringConfig
	n := 0
	if c.StringMatch != nil {
		n++
		sc = c.StringMatch
	}
	for _, l := range []struct {
		v *string
		c StringConfig
	}{{c.ExactMatch, StringConfig{Exact: c.ExactMatch}}, {c.PrefixMatch, StringConfig{Prefix: c.PrefixMatch}},
		{c.SuffixMatch, StringConfig{Suffix: c.SuffixMatch}}, {c.ContainsMatch, StringConfig{Contains: c.ContainsMatch}}} {
		if l.v != nil {
			n++
			sc = &l.c
		}
	}
	if c.SafeRegexMatch != nil {
		n++
		sc = &StringConfig{SafeRegex: c.SafeRegexMatch}
	}
	if c.PresentMatch != nil {
		n++
		h.present = c.PresentMatch
	}
	if n != 1 {
		return h, []error{registry.Errorf(path, "exactly one of string_match, exact_match, prefix_match, suffix_match, contains_match, safe_regex_match, present_match is required (%d set)", n)}
	}
	if sc != nil {
		var errs []error
		if h.str, errs = CompileString(sc, path+".string_match"); len(errs) > 0 {
			return h, errs
		}
	}
	return h, nil
}

// Match reports whether the head's header matches.
func (h *Header) Match(head *protocol.Head) bool {
	v, ok := h.value(head)
	var r bool
	switch {
	case h.present != nil:
		r = ok == *h.present
	case !ok:
		return h.invert
	default:
		r = h.str.Match(v)
	}
	return r != h.invert
}

// value is the header's value (several fields joined with ","), whether
// it is present.
func (h *Header) value(head *protocol.Head) ([]byte, bool) {
	switch h.pseudo {
	case pseudoMethod:
		return head.Method, head.Method != nil
	case pseudoPath:
		return head.Target, head.Target != nil
	case pseudoAuthority:
		if v := head.Headers.Get(":authority"); v != nil {
			return v, true
		}
		v := head.Headers.Get("host")
		return v, v != nil
	}
	return Value(&head.Headers, h.name)
}

// HeadValue is the value of header name (lower case) in the head, with
// :method, :path and :authority (or host) read from the head as Envoy
// exposes them.
func HeadValue(head *protocol.Head, name string) ([]byte, bool) {
	h := Header{name: name}
	switch name {
	case ":method":
		h.pseudo = pseudoMethod
	case ":path":
		h.pseudo = pseudoPath
	case ":authority", "host":
		h.pseudo = pseudoAuthority
	}
	return h.value(head)
}

// Value returns the value of name in hs as Envoy's matchers see it: the
// values of several fields joined with "," (allocating only then).
func Value(hs *protocol.Headers, name string) ([]byte, bool) {
	var first []byte
	found := 0
	for i := range hs.Fields {
		if protocol.EqualFold(hs.Fields[i].Name, name) {
			found++
			if found == 1 {
				first = hs.Fields[i].Value
			}
		}
	}
	if found <= 1 {
		if found == 1 && first == nil {
			first = []byte{}
		}
		return first, found == 1
	}
	var joined []byte
	for i := range hs.Fields {
		if protocol.EqualFold(hs.Fields[i].Name, name) {
			if len(joined) > 0 {
				joined = append(joined, ',')
			}
			joined = append(joined, hs.Fields[i].Value...)
		}
	}
	return joined, true
}

// Name returns the lower-cased header name.
func (h *Header) Name() string { return h.name }

// String describes a matcher for errors and logs.
func (h *Header) String() string { return fmt.Sprintf("header %s", h.name) }
