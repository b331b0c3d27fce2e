// Package router matches a request to a route: virtual hosts by Host, then
// routes in config order, first match wins.
package router

import (
	"bytes"
	"strings"
	"time"
)

// Route is one match → action rule.
type Route struct {
	// Match: Prefix ("/" matches everything) or Path (exact).
	Prefix string
	Path   string
	// Action.
	Cluster string
	Timeout time.Duration // upstream response timeout; 0: none
	// PrefixRewrite replaces the matched Prefix when forwarding.
	PrefixRewrite string
	// HashPolicy makes the request hash for consistent load balancers; the
	// first policy that finds a value is used.
	HashPolicy []HashPolicy
}

// HashPolicy says what to hash: a header, a cookie, or the client's IP.
type HashPolicy struct {
	Header   string
	Cookie   string
	SourceIP bool
}

// Matches reports whether path (without query) matches the route.
func (r *Route) Matches(path []byte) bool {
	if r.Path != "" {
		return string(path) == r.Path
	}
	return bytes.HasPrefix(path, []byte(r.Prefix))
}

// VirtualHost groups routes by domain.
type VirtualHost struct {
	Name    string
	Domains []string // exact, "*.suffix", "prefix.*" or "*"
	Routes  []Route
}

// Router selects a virtual host, then a route.
type Router struct {
	exact    map[string]*VirtualHost
	suffix   []domainVH // "*.example.com", longest first
	prefix   []domainVH // "api.*", longest first
	catchAll *VirtualHost
}

type domainVH struct {
	pattern string
	vh      *VirtualHost
}

// New builds a router; domains are matched case-insensitively.
func New(vhosts []VirtualHost) *Router {
	r := &Router{exact: map[string]*VirtualHost{}}
	for i := range vhosts {
		vh := &vhosts[i]
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				r.catchAll = vh
			case strings.HasPrefix(d, "*"):
				r.suffix = append(r.suffix, domainVH{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				r.prefix = append(r.prefix, domainVH{d[:len(d)-1], vh})
			default:
				r.exact[d] = vh
			}
		}
	}
	longestFirst := func(s []domainVH) {
		for i := 1; i < len(s); i++ {
			for j := i; j > 0 && len(s[j].pattern) > len(s[j-1].pattern); j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
	}
	longestFirst(r.suffix)
	longestFirst(r.prefix)
	return r
}

// VirtualHost returns the virtual host for a Host header value, trying it
// with its port first and then without.
func (r *Router) VirtualHost(host []byte) *VirtualHost {
	if vh := r.matchDomain(host); vh != nil {
		return vh
	}
	if i := bytes.LastIndexByte(host, ':'); i > 0 && !bytes.HasSuffix(host, []byte("]")) {
		if vh := r.matchDomain(host[:i]); vh != nil {
			return vh
		}
	}
	return r.catchAll
}

func (r *Router) matchDomain(host []byte) *VirtualHost {
	var lower [256]byte
	if len(host) > len(lower) {
		return nil
	}
	h := lower[:len(host)]
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h[i] = c
	}
	if vh, ok := r.exact[string(h)]; ok {
		return vh
	}
	for _, d := range r.suffix {
		if len(h) > len(d.pattern) && bytes.HasSuffix(h, []byte(d.pattern)) {
			return d.vh
		}
	}
	for _, d := range r.prefix {
		if len(h) > len(d.pattern) && bytes.HasPrefix(h, []byte(d.pattern)) {
			return d.vh
		}
	}
	return nil
}

// Route finds the route for host and request target, or nil.
func (r *Router) Route(host, target []byte) *Route {
	vh := r.VirtualHost(host)
	if vh == nil {
		return nil
	}
	path := target
	if i := bytes.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	for i := range vh.Routes {
		if vh.Routes[i].Matches(path) {
			return &vh.Routes[i]
		}
	}
	return nil
}
