package server

import (
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/router"
)

// upgrades turns upgrade_configs into the router's form.
func upgrades(us []config.UpgradeConfig) []router.Upgrade {
	var out []router.Upgrade
	for _, u := range us {
		out = append(out, router.Upgrade{Type: u.UpgradeType, Enabled: u.On()})
	}
	return out
}

// routeTunnel is a route's upgrade and CONNECT settings (validated at load).
func routeTunnel(t config.RouteTunnel) router.Tunnel {
	rt := router.Tunnel{Upgrades: upgrades(t.UpgradeConfigs), ConnectMatcher: t.ConnectMatcher != nil}
	if c := t.Connect; c != nil {
		rt.Connect = &router.Connect{}
		for _, a := range c.Allow {
			p, _ := router.ParseAuthorityPattern(a)
			rt.Connect.Allow = append(rt.Connect.Allow, p)
		}
	}
	return rt
}

// extendedConnect: HTTP/2 advertises RFC 8441 extended CONNECT when the
// listener lists an upgrade other than CONNECT (routes may enable it).
func extendedConnect(h *config.HTTPProxy) bool {
	for _, u := range h.UpgradeConfigs {
		if u.UpgradeType != "CONNECT" {
			return true
		}
	}
	return false
}
