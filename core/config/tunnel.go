package config

import (
	"fmt"
	"strings"

	"github.com/proxylab/proxylab/core/router"
)

// HTTPTunnels are a listener's upgrade and CONNECT settings (Envoy's
// upgrade_configs on the HTTP connection manager).
type HTTPTunnels struct {
	// UpgradeConfigs lists the upgrade types the listener allows (e.g.
	// websocket; CONNECT for the CONNECT method); enabled: false lists a
	// type off by default so routes can turn it on. A listed non-CONNECT
	// type also makes HTTP/2 advertise extended CONNECT (RFC 8441).
	UpgradeConfigs []UpgradeConfig `yaml:"upgrade_configs,omitempty"`
	// TunnelIdleTimeout closes a tunnel (upgraded or CONNECT stream) in
	// both directions after no byte either way for that long.
	TunnelIdleTimeout Duration `yaml:"tunnel_idle_timeout"`
}

// UpgradeConfig enables or disables one upgrade type.
type UpgradeConfig struct {
	UpgradeType string `yaml:"upgrade_type"`
	Enabled     *bool  `yaml:"enabled,omitempty"` // default true
}

// On reports whether the type is enabled.
func (u UpgradeConfig) On() bool { return u.Enabled == nil || *u.Enabled }

// RouteTunnel are a route's upgrade and CONNECT settings.
type RouteTunnel struct {
	// UpgradeConfigs override the listener's, type by type.
	UpgradeConfigs []UpgradeConfig `yaml:"upgrade_configs,omitempty"`
	// ConnectMatcher ({}) makes the route match CONNECT requests, which
	// no other route matches; it replaces prefix, path and regex.
	ConnectMatcher *ConnectMatcher `yaml:"connect_matcher,omitempty"`
	// Connect, an action for a connect_matcher route, terminates CONNECT
	// here: a TCP connection is opened to the request's authority when the
	// allow-list admits it (else 403), then 200 and a tunnel. A
	// connect_matcher route with a cluster instead forwards the CONNECT
	// request to the cluster (CONNECT must be enabled in upgrade_configs).
	Connect *ConnectConfig `yaml:"connect,omitempty"`
}

// ConnectMatcher has no fields (Envoy's connect_matcher: {}).
type ConnectMatcher struct{}

// ConnectConfig is a CONNECT-terminating route's allow-list.
type ConnectConfig struct {
	// Allow lists "host:port" patterns: host a name or address, "*.suffix"
	// or "*"; port a number or "*" (IPv6 as "[::1]:443").
	Allow []string `yaml:"allow"`
}

func checkUpgrades(us []UpgradeConfig, p string, add func(string, string, ...any)) {
	seen := map[string]bool{}
	for i, u := range us {
		up := fmt.Sprintf("%s.upgrade_configs[%d].upgrade_type", p, i)
		t := strings.ToLower(u.UpgradeType)
		switch {
		case u.UpgradeType == "":
			add(up, "required (e.g. websocket, CONNECT)")
		case !isToken(u.UpgradeType):
			add(up, "invalid upgrade type %q (an HTTP token)", u.UpgradeType)
		case t == "connect" && u.UpgradeType != "CONNECT":
			add(up, "the CONNECT method is spelled CONNECT")
		case t == "h2c":
			add(up, "h2c is not a tunnel: HTTP/2 is served on the same port (prior knowledge or ALPN)")
		case seen[t]:
			add(up, "duplicate upgrade type %q", u.UpgradeType)
		}
		seen[t] = true
	}
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return s != ""
}

func (t HTTPTunnels) validate(p string, add func(string, string, ...any)) {
	checkUpgrades(t.UpgradeConfigs, p, add)
	if t.TunnelIdleTimeout <= 0 {
		add(p+".tunnel_idle_timeout", "must be > 0")
	}
}

// validate checks a route's tunnel settings; the path and action counts
// include connect_matcher and connect (see Config.validate).
func (t RouteTunnel) validate(r *Route, rp string, add func(string, string, ...any)) {
	checkUpgrades(t.UpgradeConfigs, rp, add)
	if t.ConnectMatcher != nil && (r.DirectResponse != nil || r.Redirect != nil) {
		add(rp+".connect_matcher", "a CONNECT route needs cluster, weighted_clusters, cluster_header or connect")
	}
	if t.ConnectMatcher != nil && (r.PrefixRewrite != "" || r.RegexRewrite != nil) {
		add(rp+".connect_matcher", "a CONNECT request has no path to rewrite")
	}
	c := t.Connect
	if c == nil {
		return
	}
	if t.ConnectMatcher == nil {
		add(rp+".connect", "needs connect_matcher: {} (only CONNECT requests can be terminated)")
	}
	if len(c.Allow) == 0 {
		add(rp+".connect.allow", "at least one host:port pattern is required")
	}
	for i, a := range c.Allow {
		if _, ok := router.ParseAuthorityPattern(a); !ok {
			add(fmt.Sprintf("%s.connect.allow[%d]", rp, i), "invalid pattern %q (host:port, either may be *)", a)
		}
	}
	if r.PrefixRewrite != "" || r.RegexRewrite != nil || r.HostRewrite != "" || len(r.RequestMirrorPolicies) > 0 || r.RetryPolicy != nil {
		add(rp+".connect", "a terminated CONNECT has no upstream request: rewrites, mirrors and retries do not apply")
	}
}

// pathMatchers counts the route's path matchers, connect_matcher included.
func (t RouteTunnel) pathMatchers() int {
	if t.ConnectMatcher != nil {
		return 1
	}
	return 0
}
