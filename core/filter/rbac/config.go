package rbac

import (
	"fmt"
	"net/netip"
	"sort"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter/internal/match"
	"github.com/proxylab/proxylab/foundation/registry"
)

// Config is the filter's block (Envoy's extensions.filters.http.rbac.v3.RBAC):
// rules decide, shadow_rules are only evaluated, counted and logged.
// Without rules every request passes.
type Config struct {
	Rules       *RulesConfig `yaml:"rules"`
	ShadowRules *RulesConfig `yaml:"shadow_rules"`
}

// PerRoute is a route's override (Envoy's RBACPerRoute): rbac replaces the
// listener's rules and shadow rules; an override without rbac turns the
// filter off for the route.
type PerRoute struct {
	RBAC *Config `yaml:"rbac"`
}

// RulesConfig is Envoy's config.rbac.v3.RBAC: an action and named policies.
type RulesConfig struct {
	Action   string               `yaml:"action"`
	Policies map[string]yaml.Node `yaml:"policies"`
}

// Policy matches when any permission and any principal match.
type Policy struct {
	Permissions []Permission `yaml:"permissions"`
	Principals  []Principal  `yaml:"principals"`
}

// Permission is Envoy's config.rbac.v3.Permission (one field set).
type Permission struct {
	Any             *bool               `yaml:"any"`
	Header          *match.HeaderConfig `yaml:"header"`
	URLPath         *PathConfig         `yaml:"url_path"`
	DestinationPort *uint32             `yaml:"destination_port"`
	DestinationIP   *CIDR               `yaml:"destination_ip"`
	AndRules        *PermissionSet      `yaml:"and_rules"`
	OrRules         *PermissionSet      `yaml:"or_rules"`
	NotRule         *Permission         `yaml:"not_rule"`
}

// PermissionSet is and_rules / or_rules.
type PermissionSet struct {
	Rules []Permission `yaml:"rules"`
}

// Principal is Envoy's config.rbac.v3.Principal (one field set).
type Principal struct {
	Any            *bool               `yaml:"any"`
	SourceIP       *CIDR               `yaml:"source_ip"`
	DirectRemoteIP *CIDR               `yaml:"direct_remote_ip"`
	Authenticated  *Authenticated      `yaml:"authenticated"`
	Header         *match.HeaderConfig `yaml:"header"`
	URLPath        *PathConfig         `yaml:"url_path"`
	AndIDs         *PrincipalSet       `yaml:"and_ids"`
	OrIDs          *PrincipalSet       `yaml:"or_ids"`
	NotID          *Principal          `yaml:"not_id"`
}

// PrincipalSet is and_ids / or_ids.
type PrincipalSet struct {
	IDs []Principal `yaml:"ids"`
}

// CIDR is Envoy's config.core.v3.CidrRange.
type CIDR struct {
	AddressPrefix string  `yaml:"address_prefix"`
	PrefixLen     *uint32 `yaml:"prefix_len"`
}

// Authenticated matches a client certificate; without principal_name any
// verified certificate matches.
type Authenticated struct {
	PrincipalName *match.StringConfig `yaml:"principal_name"`
}

// PathConfig is Envoy's type.matcher.v3.PathMatcher (query excluded).
type PathConfig struct {
	Path *match.StringConfig `yaml:"path"`
}

// compile turns a Config into engines; nil engines for absent blocks.
func compile(c *Config, path string) (rules, shadow *Engine, errs []error) {
	if c.Rules != nil {
		rules, errs = compileRules(c.Rules, path+".rules")
	}
	if c.ShadowRules != nil {
		var e2 []error
		shadow, e2 = compileRules(c.ShadowRules, path+".shadow_rules")
		errs = append(errs, e2...)
	}
	return rules, shadow, errs
}

func compileRules(c *RulesConfig, path string) (*Engine, []error) {
	e := &Engine{}
	switch c.Action {
	case "", "ALLOW":
		e.deny = false
	case "DENY":
		e.deny = true
	default:
		return nil, []error{registry.Errorf(path+".action", "must be ALLOW or DENY, got %q", c.Action)}
	}
	names := make([]string, 0, len(c.Policies))
	for n := range c.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		raw := c.Policies[n]
		pp := path + ".policies." + n
		p, es := registry.Decode[Policy](&raw, pp)
		if len(es) > 0 {
			errs = append(errs, es...)
			continue
		}
		if len(p.Permissions) == 0 {
			errs = append(errs, registry.Errorf(pp+".permissions", "at least one permission is required"))
		}
		if len(p.Principals) == 0 {
			errs = append(errs, registry.Errorf(pp+".principals", "at least one principal is required"))
		}
		cp := policy{name: n}
		cp.perms = node{op: opOr, kids: compilePerms(p.Permissions, pp+".permissions", &errs)}
		cp.ids = node{op: opOr, kids: compileIDs(p.Principals, pp+".principals", &errs)}
		e.policies = append(e.policies, cp)
	}
	return e, errs
}

func compilePerms(ps []Permission, path string, errs *[]error) []node {
	out := make([]node, len(ps))
	for i := range ps {
		out[i] = compilePerm(&ps[i], fmt.Sprintf("%s[%d]", path, i), errs)
	}
	return out
}

func compilePerm(p *Permission, path string, errs *[]error) node {
	var n node
	set := 0
	if p.Any != nil {
		set++
		n = node{op: opAny}
		if !*p.Any {
			*errs = append(*errs, registry.Errorf(path+".any", "must be true"))
		}
	}
	if p.Header != nil {
		set++
		n = compileHeader(p.Header, path+".header", errs)
	}
	if p.URLPath != nil {
		set++
		n = compilePath(p.URLPath, path+".url_path", errs)
	}
	if p.DestinationPort != nil {
		set++
		n = node{op: opDstPort, port: *p.DestinationPort}
		if *p.DestinationPort > 65535 {
			*errs = append(*errs, registry.Errorf(path+".destination_port", "must be at most 65535"))
		}
	}
	if p.DestinationIP != nil {
		set++
		n = node{op: opDstIP, prefix: compileCIDR(p.DestinationIP, path+".destination_ip", errs)}
	}
	if p.AndRules != nil {
		set++
		n = node{op: opAnd, kids: compilePerms(p.AndRules.Rules, path+".and_rules.rules", errs)}
	}
	if p.OrRules != nil {
		set++
		n = node{op: opOr, kids: compilePerms(p.OrRules.Rules, path+".or_rules.rules", errs)}
	}
	if p.NotRule != nil {
		set++
		n = node{op: opNot, kids: []node{compilePerm(p.NotRule, path+".not_rule", errs)}}
	}
	if set != 1 {
		*errs = append(*errs, registry.Errorf(path, "exactly one of any, header, url_path, destination_port, destination_ip, and_rules, or_rules, not_rule is required (%d set)", set))
	}
	return n
}

func compileIDs(ps []Principal, path string, errs *[]error) []node {
	out := make([]node, len(ps))
	for i := range ps {
		out[i] = compileID(&ps[i], fmt.Sprintf("%s[%d]", path, i), errs)
	}
	return out
}

func compileID(p *Principal, path string, errs *[]error) node {
	var n node
	set := 0
	if p.Any != nil {
		set++
		n = node{op: opAny}
		if !*p.Any {
			*errs = append(*errs, registry.Errorf(path+".any", "must be true"))
		}
	}
	if p.SourceIP != nil {
		set++
		n = node{op: opSrcIP, prefix: compileCIDR(p.SourceIP, path+".source_ip", errs)}
	}
	if p.DirectRemoteIP != nil {
		set++
		n = node{op: opSrcIP, prefix: compileCIDR(p.DirectRemoteIP, path+".direct_remote_ip", errs)}
	}
	if p.Authenticated != nil {
		set++
		n = node{op: opAuth}
		if p.Authenticated.PrincipalName != nil {
			s, es := match.CompileString(p.Authenticated.PrincipalName, path+".authenticated.principal_name")
			*errs = append(*errs, es...)
			n.str, n.hasStr = s, true
		}
	}
	if p.Header != nil {
		set++
		n = compileHeader(p.Header, path+".header", errs)
	}
	if p.URLPath != nil {
		set++
		n = compilePath(p.URLPath, path+".url_path", errs)
	}
	if p.AndIDs != nil {
		set++
		n = node{op: opAnd, kids: compileIDs(p.AndIDs.IDs, path+".and_ids.ids", errs)}
	}
	if p.OrIDs != nil {
		set++
		n = node{op: opOr, kids: compileIDs(p.OrIDs.IDs, path+".or_ids.ids", errs)}
	}
	if p.NotID != nil {
		set++
		n = node{op: opNot, kids: []node{compileID(p.NotID, path+".not_id", errs)}}
	}
	if set != 1 {
		*errs = append(*errs, registry.Errorf(path, "exactly one of any, source_ip, direct_remote_ip, authenticated, header, url_path, and_ids, or_ids, not_id is required (%d set)", set))
	}
	return n
}

func compileHeader(h *match.HeaderConfig, path string, errs *[]error) node {
	m, es := match.CompileHeader(h, path)
	*errs = append(*errs, es...)
	return node{op: opHeader, hdr: m}
}

func compilePath(p *PathConfig, path string, errs *[]error) node {
	if p.Path == nil {
		*errs = append(*errs, registry.Errorf(path+".path", "required"))
		return node{op: opPath}
	}
	s, es := match.CompileString(p.Path, path+".path")
	*errs = append(*errs, es...)
	return node{op: opPath, str: s, hasStr: true}
}

func compileCIDR(c *CIDR, path string, errs *[]error) netip.Prefix {
	a, err := netip.ParseAddr(c.AddressPrefix)
	if err != nil {
		*errs = append(*errs, registry.Errorf(path+".address_prefix", "not an IP address: %q", c.AddressPrefix))
		return netip.Prefix{}
	}
	bits := a.BitLen()
	if c.PrefixLen != nil {
		if int(*c.PrefixLen) > a.BitLen() {
			*errs = append(*errs, registry.Errorf(path+".prefix_len", "must be at most %d", a.BitLen()))
			return netip.Prefix{}
		}
		bits = int(*c.PrefixLen)
	}
	p, _ := a.Prefix(bits)
	return p
}
