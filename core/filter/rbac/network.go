package rbac

import (
	"log/slog"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
)

// NetworkModule is the rbac listener filter (a listener's
// listener_filters, e.g. in front of tcp_proxy): Envoy's network RBAC
// evaluated when a connection is accepted, over the client's address
// (principals source_ip / direct_remote_ip, any) and the listener's
// (permissions destination_port / destination_ip, any), with
// and/or/not. A denied connection is closed before any byte is read or
// any handshake made. Header, path and authenticated matchers need a
// request or a handshake and are refused here.
var NetworkModule = network.ListenerFilterModule{Name: "rbac", Decode: decodeNetwork}

// NetworkFilter is a configured network rbac; shared by every accept.
type NetworkFilter struct {
	rules rules
	Stats Stats
}

var (
	_ network.ListenerFilter = (*NetworkFilter)(nil)
	_ stats.Collector        = (*NetworkFilter)(nil)
)

func decodeNetwork(raw *yaml.Node, path string) (network.ListenerFilter, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	f := &NetworkFilter{}
	if f.rules.enforce, f.rules.shadow, errs = compile(c, path); len(errs) > 0 {
		return nil, errs
	}
	for _, e := range []struct {
		eng  *Engine
		path string
	}{{f.rules.enforce, path + ".rules"}, {f.rules.shadow, path + ".shadow_rules"}} {
		if e.eng == nil {
			continue
		}
		for _, p := range e.eng.policies {
			if n := connectionOnly(&p.perms, &p.ids); n != "" {
				errs = append(errs, registry.Errorf(e.path+".policies."+p.name, "%s cannot be matched on a connection (listener rbac sees addresses and ports only)", n))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}

// connectionOnly names the first matcher of the trees that needs a
// request or a handshake, "" when there is none.
func connectionOnly(ns ...*node) string {
	for _, n := range ns {
		switch n.op {
		case opHeader:
			return "header"
		case opPath:
			return "url_path"
		case opAuth:
			return "authenticated"
		}
		for i := range n.kids {
			if s := connectionOnly(&n.kids[i]); s != "" {
				return s
			}
		}
	}
	return ""
}

// OnAccept implements network.ListenerFilter: nil (close) when denied.
func (f *NetworkFilter) OnAccept(tc transport.Conn) transport.Conn {
	req := Request{Remote: AddrPort(tc.RemoteAddr()), Local: AddrPort(tc.LocalAddr())}
	key := uint64(req.Remote.Port())
	if f.rules.shadow != nil {
		if ok, pol := f.rules.shadow.Allowed(&req); ok {
			f.Stats.ShadowAllowed.Inc(key)
		} else {
			f.Stats.ShadowDenied.Inc(key)
			slog.Debug("rbac: shadow rules deny a connection", "policy", pol, "remote", req.Remote)
		}
	}
	if f.rules.enforce == nil {
		return tc
	}
	if ok, _ := f.rules.enforce.Allowed(&req); ok {
		f.Stats.Allowed.Inc(key)
		return tc
	}
	f.Stats.Denied.Inc(key)
	slog.Debug("rbac: connection denied", "remote", req.Remote, "local", req.Local)
	return nil
}

// Collect implements stats.Collector: proxylab_rbac_network_*_total.
func (f *NetworkFilter) Collect(emit stats.Emit) {
	emit("rbac_network_allowed_total", "Connections the listener rbac allowed.", stats.CounterKind, float64(f.Stats.Allowed.Value()))
	emit("rbac_network_denied_total", "Connections the listener rbac closed at accept.", stats.CounterKind, float64(f.Stats.Denied.Value()))
	emit("rbac_network_shadow_allowed_total", "Connections the listener rbac shadow rules would allow.", stats.CounterKind, float64(f.Stats.ShadowAllowed.Value()))
	emit("rbac_network_shadow_denied_total", "Connections the listener rbac shadow rules would deny.", stats.CounterKind, float64(f.Stats.ShadowDenied.Value()))
}
