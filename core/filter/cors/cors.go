// Package cors is the `cors` http filter (Envoy's CORS filter): a policy
// per route or virtual host (typed_per_filter_config: {cors: {...}}, or a
// listener-wide default in the filter's typed_config) says which origins
// may call, with which methods and headers.
//
//	routes:
//	  - name: site
//	    typed_per_filter_config:
//	      cors:
//	        allow_origin_string_match: [{exact: "https://app.example.com"}, {suffix: ".example.org"}]
//	        allow_methods: "GET, POST"
//	        allow_headers: "content-type, x-token"
//	        expose_headers: "x-request-id"
//	        max_age: "600"
//	        allow_credentials: true
//
// A preflight (OPTIONS with Origin and Access-Control-Request-Method) from
// an allowed origin is answered by the proxy (200 with the
// access-control-allow-* headers) and never reaches the upstream; an
// actual request from an allowed origin gets access-control-allow-origin
// (and -allow-credentials, -expose-headers) on its response. A request
// from an origin the policy does not allow passes untouched and gets no
// CORS header (the browser then refuses it), as in Envoy.
package cors

import (
	"bytes"
	"regexp"
	"strconv"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
)

// Name is the filter's name in http_filters.
const Name = "cors"

// Module registers the filter (cmd/proxylab/builtins.go).
var Module = filter.Module{Name: Name, Kinds: filter.HTTP, Decode: decode, DecodePerRoute: decodePerRoute}

// Policy is Envoy's CorsPolicy.
type Policy struct {
	AllowOriginStringMatch []StringMatch `yaml:"allow_origin_string_match"`
	AllowMethods           string        `yaml:"allow_methods"`
	AllowHeaders           string        `yaml:"allow_headers"`
	ExposeHeaders          string        `yaml:"expose_headers"`
	MaxAge                 string        `yaml:"max_age"`
	AllowCredentials       bool          `yaml:"allow_credentials"`

	re                               []*regexp.Regexp // compiled safe_regex, by match index
	methods, headers, expose, maxAge []byte           // the values, made once
}

// StringMatch is Envoy's StringMatcher: exactly one of exact, prefix,
// suffix, safe_regex (RE2, the whole origin); ignore_case for the others.
type StringMatch struct {
	Exact      string `yaml:"exact"`
	Prefix     string `yaml:"prefix"`
	Suffix     string `yaml:"suffix"`
	SafeRegex  *Regex `yaml:"safe_regex"`
	IgnoreCase bool   `yaml:"ignore_case"`
}

// Regex is Envoy's RegexMatcher (google_re2 is accepted and implied).
type Regex struct {
	Regex     string    `yaml:"regex"`
	GoogleRE2 yaml.Node `yaml:"google_re2"`
}

// Validate checks the policy and compiles its regexes (registry.Validator).
func (p *Policy) Validate(path string) []error {
	var errs []error
	p.methods, p.headers, p.expose, p.maxAge = []byte(p.AllowMethods), []byte(p.AllowHeaders), []byte(p.ExposeHeaders), []byte(p.MaxAge)
	p.re = make([]*regexp.Regexp, len(p.AllowOriginStringMatch))
	for i, m := range p.AllowOriginStringMatch {
		mp := path + ".allow_origin_string_match[" + strconv.Itoa(i) + "]"
		n := 0
		for _, set := range []bool{m.Exact != "", m.Prefix != "", m.Suffix != "", m.SafeRegex != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, registry.Errorf(mp, "needs exactly one of exact, prefix, suffix, safe_regex"))
			continue
		}
		if m.SafeRegex != nil {
			re, err := regexp.Compile("^(?:" + m.SafeRegex.Regex + ")$")
			if err != nil {
				errs = append(errs, registry.Errorf(mp+".safe_regex.regex", "%v", err))
				continue
			}
			p.re[i] = re
		}
	}
	if p.MaxAge != "" {
		if n, err := strconv.Atoi(p.MaxAge); err != nil || n < 0 {
			errs = append(errs, registry.Errorf(path+".max_age", "expected seconds, got %q", p.MaxAge))
		}
	}
	return errs
}

// allows reports whether origin matches the policy (no allocation).
func (p *Policy) allows(o []byte) bool {
	for i, m := range p.AllowOriginStringMatch {
		switch {
		case p.re[i] != nil:
			if p.re[i].Match(o) {
				return true
			}
		case m.Exact != "":
			if eq(o, m.Exact, m.IgnoreCase) {
				return true
			}
		case m.Prefix != "":
			if len(o) >= len(m.Prefix) && eq(o[:len(m.Prefix)], m.Prefix, m.IgnoreCase) {
				return true
			}
		case m.Suffix != "":
			if len(o) >= len(m.Suffix) && eq(o[len(o)-len(m.Suffix):], m.Suffix, m.IgnoreCase) {
				return true
			}
		}
	}
	return false
}

func eq(a []byte, b string, fold bool) bool {
	if fold {
		return bytes.EqualFold(a, []byte(b))
	}
	return string(a) == b
}

func decode(raw *yaml.Node, path string) (filter.Factory, []error) {
	f := &Factory{}
	if raw == nil {
		return f, nil
	}
	p, errs := registry.Decode[Policy](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	f.def = p
	return f, nil
}

func decodePerRoute(raw *yaml.Node, path string) (any, []error) {
	p, errs := registry.Decode[Policy](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// Factory is the listener's filter; def is its default policy (nil: only
// routes and virtual hosts with a policy get CORS).
type Factory struct{ def *Policy }

var (
	_ filter.Factory       = (*Factory)(nil)
	_ filter.DecoderFilter = (*corsFilter)(nil)
	_ filter.EncoderFilter = (*corsFilter)(nil)
)

var pool = sync.Pool{New: func() any { return new(corsFilter) }}

// NewFilter makes the stream's filter (pooled).
func (f *Factory) NewFilter(s filter.Stream) filter.Filter {
	x := pool.Get().(*corsFilter)
	x.f, x.s = f, s
	return x
}

// corsFilter is one stream's filter. origin is a copy of the allowed
// Origin, for the response.
type corsFilter struct {
	filter.PassThrough
	f      *Factory
	s      filter.Stream
	p      *Policy
	origin []byte
}

var (
	hdrOrigin       = "origin"
	hdrACRM         = "access-control-request-method"
	hdrAllowOrigin  = []byte("access-control-allow-origin")
	hdrAllowMethods = []byte("access-control-allow-methods")
	hdrAllowHeaders = []byte("access-control-allow-headers")
	hdrMaxAge       = []byte("access-control-max-age")
	hdrAllowCreds   = []byte("access-control-allow-credentials")
	hdrExpose       = []byte("access-control-expose-headers")
	valTrue         = []byte("true")
)

func (x *corsFilter) DecodeHeaders(h *protocol.Head, _ bool) filter.Status {
	p := x.f.def
	if o, ok := x.s.Info().PerRouteConfig().(*Policy); ok {
		p = o
	}
	origin := h.Headers.Get(hdrOrigin)
	if p == nil || len(origin) == 0 || !p.allows(origin) {
		return filter.Continue
	}
	x.p, x.origin = p, append(x.origin[:0], origin...)
	if string(h.Method) == "OPTIONS" && h.Headers.Has(hdrACRM) {
		hs := &protocol.Headers{}
		if len(p.methods) > 0 {
			hs.Append(hdrAllowMethods, p.methods)
		}
		if len(p.headers) > 0 {
			hs.Append(hdrAllowHeaders, p.headers)
		}
		if len(p.maxAge) > 0 {
			hs.Append(hdrMaxAge, p.maxAge)
		}
		x.s.SendLocalReply(filter.LocalReply{Status: 200, Headers: hs})
		return filter.Stop
	}
	return filter.Continue
}

// EncodeHeaders marks a response to an allowed origin (a preflight reply
// included: it passes this encoder too).
func (x *corsFilter) EncodeHeaders(h *protocol.Head, _ bool) filter.Status {
	if x.p == nil {
		return filter.Continue
	}
	set(&h.Headers, hdrAllowOrigin, x.origin)
	if x.p.AllowCredentials {
		set(&h.Headers, hdrAllowCreds, valTrue)
	}
	if len(x.p.expose) > 0 {
		set(&h.Headers, hdrExpose, x.p.expose)
	}
	return filter.Continue
}

func set(h *protocol.Headers, name, v []byte) {
	h.Del(string(name))
	h.Append(name, v)
}

// OnDestroy returns the filter to the pool (keeping its origin buffer).
func (x *corsFilter) OnDestroy() {
	x.f, x.s, x.p, x.origin = nil, nil, nil, x.origin[:0]
	pool.Put(x)
}
