package router

import (
	"net"
	"strings"
)

// Tunnel holds a route's upgrade and CONNECT settings.
type Tunnel struct {
	// Upgrades override the listener's upgrade settings for this route, by
	// type (case-insensitive; "CONNECT" for CONNECT).
	Upgrades []Upgrade
	// ConnectMatcher: the route matches CONNECT requests (and only those;
	// no other route does), by virtual host and header matchers.
	ConnectMatcher bool
	// Connect, when set, terminates CONNECT here: the proxy opens a TCP
	// connection to the request's authority, if Allow admits it, answers
	// 200 and tunnels. Without it a CONNECT route forwards the CONNECT
	// request to its cluster.
	Connect *Connect
}

// Upgrade enables or disables one upgrade type.
type Upgrade struct {
	Type    string
	Enabled bool
}

// Connect is a CONNECT-terminating route's allow-list.
type Connect struct {
	Allow []AuthorityPattern
}

// AuthorityPattern admits host:port authorities. Host is a name or
// address (case-insensitive), "*.suffix" or "*"; Port a number or "*".
type AuthorityPattern struct {
	Host, Port string
}

// ParseAuthorityPattern reads "host:port" ("[v6]:port" for IPv6).
func ParseAuthorityPattern(s string) (AuthorityPattern, bool) {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" || p == "" {
		return AuthorityPattern{}, false
	}
	if p != "*" {
		if _, ok := ParsePort(p); !ok {
			return AuthorityPattern{}, false
		}
	}
	return AuthorityPattern{Host: strings.ToLower(h), Port: p}, true
}

// ParsePort reads a decimal port 1–65535 (digits only).
func ParsePort(p string) (int, bool) {
	if len(p) == 0 || len(p) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return 0, false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n, n >= 1 && n <= 65535
}

// Allows reports whether host (lower case, no brackets) and port match.
func (c *Connect) Allows(host, port string) bool {
	for _, a := range c.Allow {
		if a.Port != "*" && a.Port != port {
			continue
		}
		switch {
		case a.Host == "*", a.Host == host:
			return true
		case strings.HasPrefix(a.Host, "*.") && strings.HasSuffix(host, a.Host[1:]):
			return true
		}
	}
	return false
}

// UpgradeEnabled is the route's override for typ: found reports whether
// the route says anything about it.
func (r *Route) UpgradeEnabled(typ []byte) (enabled, found bool) {
	return FindUpgrade(r.Upgrades, typ)
}

// FindUpgrade looks typ up in list, case-insensitively.
func FindUpgrade(list []Upgrade, typ []byte) (enabled, found bool) {
	for i := range list {
		if len(list[i].Type) == len(typ) && strings.EqualFold(list[i].Type, string(typ)) {
			return list[i].Enabled, true
		}
	}
	return false, false
}

// connectRoute is the first CONNECT route matching req, or nil.
func (vh *VirtualHost) connectRoute(req *Request) *Route {
	for i := range vh.Routes {
		if r := &vh.Routes[i]; r.ConnectMatcher && r.Matches(req, nil, nil) {
			return r
		}
	}
	return nil
}
