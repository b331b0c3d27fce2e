// Package router matches a request to a route: virtual hosts by Host, then
// routes in config order, first match wins.
package router

import (
	"bytes"
	"regexp"
	"sort"
	"sync/atomic"

	"github.com/proxylab/proxylab/core/protocol"
	"strings"
	"time"
)

// Route is one match → action rule.
type Route struct {
	// Name is the route's name (config `name`; may be empty).
	Name string
	// Path match: Prefix ("/" matches everything), Path (exact) or Regex
	// (RE2, matched against the whole path).
	Prefix string
	Path   string
	Regex  *regexp.Regexp
	// Further conditions, all of which must hold.
	Headers []HeaderMatcher
	Query   []QueryMatcher
	Methods []string
	// Action: exactly one of Cluster, WeightedClusters, ClusterHeader,
	// Direct, Redirect.
	Cluster          string
	WeightedClusters []WeightedCluster
	ClusterHeader    string
	Direct           *DirectResponse
	Redirect         *Redirect
	// Rewrites on the way upstream.
	HostRewrite  string
	RegexRewrite *RegexRewrite
	// Header changes, applied after the virtual host's and the listener's.
	HeaderOps HeaderOps
	Timeout   time.Duration // upstream response timeout; 0: none
	// IdleTimeout, when IdleSet, replaces the listener's stream idle
	// timeout for this route's requests (0: off).
	IdleTimeout time.Duration
	IdleSet     bool
	// PrefixRewrite replaces the matched Prefix when forwarding.
	PrefixRewrite string
	// HashPolicy makes the request hash for consistent load balancers; the
	// first policy that finds a value is used.
	HashPolicy []HashPolicy
	// Subset asks subset load balancing for hosts with this metadata
	// (upstream.SubsetKey form).
	Subset string
	// Mirrors receive fire-and-forget copies of the requests.
	Mirrors []Mirror
	// Retry: which failures are retried on another host, how many times.
	RetryOn              RetryOn
	NumRetries           int
	RetriableStatusCodes []int
	// PerTryTimeout bounds each attempt (0: only Timeout, for the whole).
	PerTryTimeout time.Duration
	// BackoffBase and BackoffMax shape the wait before a retry after a
	// response: exponential with full jitter.
	BackoffBase, BackoffMax time.Duration
	// Upgrades and CONNECT (connect.go).
	Tunnel
	// Filters are the route's overrides of the listener's http_filters,
	// by the filter's index in that chain (shorter, or nil, when the
	// route overrides none past its length).
	Filters []FilterOverride
}

// FilterOverride is a route's or virtual host's typed_per_filter_config
// entry for one filter of the listener's chain.
type FilterOverride struct {
	// Set: the entry exists (the route's wins over its virtual host's).
	Set bool
	// Disabled switches the filter off for the route's requests.
	Disabled bool
	// Config is what the filter's Module.DecodePerRoute returned.
	Config any
}

// FilterOverrideOf returns the override of the listener's idx-th filter for
// a request routed to r in vh (either may be nil): the route's, else the
// virtual host's; zero when neither has one.
func FilterOverrideOf(r *Route, vh *VirtualHost, idx int) FilterOverride {
	if r != nil && idx < len(r.Filters) && r.Filters[idx].Set {
		return r.Filters[idx]
	}
	if vh != nil && idx < len(vh.Filters) && vh.Filters[idx].Set {
		return vh.Filters[idx]
	}
	return FilterOverride{}
}

// RetryOn is a set of retriable failures.
type RetryOn uint8

const (
	RetryConnectFailure RetryOn = 1 << iota
	RetryReset
	Retry5xx                  // any 5xx response
	RetryGatewayError         // 502, 503, 504
	RetryRetriableStatusCodes // the codes in RetriableStatusCodes
)

// RetriesStatus reports whether a response status is retriable under the
// route's policy.
func (r *Route) RetriesStatus(status int) bool {
	switch {
	case r.RetryOn&Retry5xx != 0 && status >= 500:
		return true
	case r.RetryOn&RetryGatewayError != 0 && (status == 502 || status == 503 || status == 504):
		return true
	case r.RetryOn&RetryRetriableStatusCodes != 0:
		for _, c := range r.RetriableStatusCodes {
			if c == status {
				return true
			}
		}
	}
	return false
}

// Mirror copies a share of the route's requests to a shadow cluster.
type Mirror struct {
	Cluster string
	Percent int // 1–100
}

// WeightedCluster is one share of a split.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// PickCluster returns the route's target cluster for this request: the
// fixed one, a weighted pick (r in [0, total weight)), or a header's value.
func (r *Route) PickCluster(n uint32, header func(string) []byte) string {
	switch {
	case len(r.WeightedClusters) > 0:
		for _, wc := range r.WeightedClusters {
			if n < wc.Weight {
				return wc.Name
			}
			n -= wc.Weight
		}
		return r.WeightedClusters[len(r.WeightedClusters)-1].Name
	case r.ClusterHeader != "":
		return string(header(r.ClusterHeader))
	}
	return r.Cluster
}

// TotalWeight is the sum of the weighted clusters' weights.
func (r *Route) TotalWeight() uint32 {
	var t uint32
	for _, wc := range r.WeightedClusters {
		t += wc.Weight
	}
	return t
}

// DirectResponse answers from the proxy itself.
type DirectResponse struct {
	Status int
	Body   []byte
}

// Redirect answers with a Location built from the request.
type Redirect struct {
	Scheme, Host, Path, PrefixRewrite string
	Code                              int // 301 (default), 302, 303, 307, 308
	StripQuery                        bool
}

// RegexRewrite replaces Pattern in the path with Substitution (\1 groups).
type RegexRewrite struct {
	Pattern      *regexp.Regexp
	Substitution string
}

// HeaderValue is one header to add; Append false replaces existing values.
type HeaderValue struct {
	Name   string
	Value  []byte
	Append bool
}

// HeaderOps are header changes for one direction pair.
type HeaderOps struct {
	RequestAdd     []HeaderValue
	RequestRemove  []string
	ResponseAdd    []HeaderValue
	ResponseRemove []string
}

// Apply runs remove-then-add on hs for one direction.
func Apply(hs *protocol.Headers, remove []string, add []HeaderValue) {
	for _, name := range remove {
		hs.Del(name)
	}
	for _, hv := range add {
		if !hv.Append {
			hs.Del(hv.Name)
		}
		hs.Add(hv.Name, hv.Value)
	}
}

// HashPolicy says what to hash: a header, a cookie, or the client's IP.
type HashPolicy struct {
	Header   string
	Cookie   string
	SourceIP bool
}

// StringMatcher matches a value exactly or by regex (RE2, whole value).
type StringMatcher struct {
	Exact string
	Regex *regexp.Regexp
}

func (m *StringMatcher) match(v []byte) bool {
	if m.Regex != nil {
		return m.Regex.Match(v)
	}
	return string(v) == m.Exact
}

// HeaderMatcher matches one request header: its value (Value), or only
// whether it is present (Present true) or absent (Present false). Invert
// negates the result. RPC protocols route on their service/method headers
// through the same matchers.
type HeaderMatcher struct {
	Name    string
	Value   *StringMatcher
	Present *bool
	Invert  bool
}

// QueryMatcher matches one query parameter, like a HeaderMatcher.
type QueryMatcher struct {
	Name    string
	Value   *StringMatcher
	Present *bool
}

// Request is what routing looks at.
type Request struct {
	Method  []byte
	Target  []byte // path with query
	Headers *protocol.Headers
}

// matchPath reports whether path (without query) matches.
func (r *Route) matchPath(path []byte) bool {
	switch {
	case r.Regex != nil:
		return r.Regex.Match(path)
	case r.Path != "":
		return string(path) == r.Path
	}
	return bytes.HasPrefix(path, []byte(r.Prefix))
}

// Matches reports whether req matches every condition of the route.
func (r *Route) Matches(req *Request, path, query []byte) bool {
	if r.ConnectMatcher != (string(req.Method) == "CONNECT") {
		return false // CONNECT matches connect_matcher routes only
	}
	if !r.ConnectMatcher && !r.matchPath(path) {
		return false
	}
	if len(r.Methods) > 0 {
		ok := false
		for _, m := range r.Methods {
			if string(req.Method) == m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range r.Headers {
		h := &r.Headers[i]
		var v []byte
		if req.Headers != nil {
			v = req.Headers.Get(h.Name)
		}
		var ok bool
		switch {
		case h.Present != nil:
			ok = (v != nil) == *h.Present
		default:
			ok = v != nil && h.Value.match(v)
		}
		if ok == h.Invert {
			return false
		}
	}
	for i := range r.Query {
		q := &r.Query[i]
		v, found := queryParam(query, q.Name)
		var ok bool
		switch {
		case q.Present != nil:
			ok = found == *q.Present
		default:
			ok = found && q.Value.match(v)
		}
		if !ok {
			return false
		}
	}
	return true
}

// queryParam finds name in a raw query string (no decoding: routes match
// the bytes as sent, like Envoy's default).
func queryParam(q []byte, name string) ([]byte, bool) {
	for len(q) > 0 {
		var part []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			part, q = q[:i], q[i+1:]
		} else {
			part, q = q, nil
		}
		k, v, _ := bytes.Cut(part, []byte("="))
		if string(k) == name {
			return v, true
		}
	}
	return nil, false
}

// VirtualHost groups routes by domain.
type VirtualHost struct {
	Name      string
	Domains   []string // exact, "*.suffix", "prefix.*" or "*"
	Routes    []Route
	HeaderOps HeaderOps // applied to every route's requests and responses
	// Filters are the virtual host's http_filters overrides (Route.Filters).
	Filters []FilterOverride

	idx *routeIndex
}

// routeIndex finds the first matching route without trying them all: routes
// that match on the path alone are looked up by prefix (one map lookup per
// distinct prefix length) or exact path; the others (regex, headers, query,
// method) are tried in order, but only those before the best indexed match,
// so the first match in config order still wins.
type routeIndex struct {
	prefixLens []int          // distinct lengths, ascending
	prefix     map[string]int // prefix → first route index using it
	exact      map[string]int
	others     []int // indices needing a full check, ascending
}

func buildIndex(routes []Route) *routeIndex {
	x := &routeIndex{prefix: map[string]int{}, exact: map[string]int{}}
	lens := map[int]bool{}
	for i := range routes {
		r := &routes[i]
		plain := r.Regex == nil && len(r.Headers) == 0 && len(r.Query) == 0 && len(r.Methods) == 0
		switch {
		case r.ConnectMatcher: // found by connectRoute
		case !plain:
			x.others = append(x.others, i)
		case r.Path != "":
			if _, dup := x.exact[r.Path]; !dup {
				x.exact[r.Path] = i
			}
		default:
			if _, dup := x.prefix[r.Prefix]; !dup {
				x.prefix[r.Prefix] = i
				lens[len(r.Prefix)] = true
			}
		}
	}
	for l := range lens {
		x.prefixLens = append(x.prefixLens, l)
	}
	sort.Ints(x.prefixLens)
	return x
}

// Router selects a virtual host, then a route. Its table can be replaced
// whole while requests are being routed (Set): each lookup uses the table
// in force when it starts.
type Router struct {
	cur atomic.Pointer[table]
}

// table is one immutable set of virtual hosts.
type table struct {
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
	r := &Router{}
	r.cur.Store(newTable(vhosts))
	return r
}

// Set makes r route with the table from has now, from the next lookup on
// (hot reload); later Sets of from do not reach r.
func (r *Router) Set(from *Router) { r.cur.Store(from.cur.Load()) }

func newTable(vhosts []VirtualHost) *table {
	r := &table{exact: map[string]*VirtualHost{}}
	for i := range vhosts {
		vh := &vhosts[i]
		vh.idx = buildIndex(vh.Routes)
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
func (r *Router) VirtualHost(host []byte) *VirtualHost { return r.cur.Load().virtualHost(host) }

func (r *table) virtualHost(host []byte) *VirtualHost {
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

func (r *table) matchDomain(host []byte) *VirtualHost {
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

// Route finds the first route of the request's virtual host that matches.
func (r *Router) Route(host []byte, req *Request) *Route {
	rt, _ := r.RouteVH(host, req)
	return rt
}

// RouteVH is Route that also returns the virtual host.
func (r *Router) RouteVH(host []byte, req *Request) (*Route, *VirtualHost) {
	vh := r.cur.Load().virtualHost(host)
	if vh == nil {
		return nil, nil
	}
	if string(req.Method) == "CONNECT" {
		return vh.connectRoute(req), vh
	}
	path, query := req.Target, []byte(nil)
	if i := bytes.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	x := vh.idx
	best := len(vh.Routes)
	for _, l := range x.prefixLens {
		if l > len(path) {
			break
		}
		if i, ok := x.prefix[string(path[:l])]; ok && i < best {
			best = i
		}
	}
	if i, ok := x.exact[string(path)]; ok && i < best {
		best = i
	}
	for _, i := range x.others {
		if i >= best {
			break
		}
		if vh.Routes[i].Matches(req, path, query) {
			best = i
			break
		}
	}
	if best == len(vh.Routes) {
		return nil, vh
	}
	return &vh.Routes[best], vh
}
