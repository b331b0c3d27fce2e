// Package rbac is Envoy's RBAC filter: allow or deny a request by policies
// over who sends it (principals: source address, mTLS identity, headers)
// and what it asks for (permissions: path, method and other headers,
// destination port), with AND/OR/NOT. shadow_rules are evaluated and
// counted only. A denied request gets 403 "RBAC: access denied" (gRPC:
// PERMISSION_DENIED). The matcher is compiled when the config is read;
// evaluating it allocates nothing.
//
// The same engine serves connections (Engine with a Request without head)
// for a network-level use over tcp_proxy.
package rbac

import (
	"log/slog"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
)

// Module is the filter's registration (cmd/proxylab/builtins.go).
var Module = filter.Module{
	Name:           "rbac",
	Kinds:          filter.HTTP | filter.RPC,
	Decode:         decode,
	DecodePerRoute: decodePerRoute,
}

// Stats are the filter's counters (per configured filter).
type Stats struct {
	Allowed, Denied             stats.Counter
	ShadowAllowed, ShadowDenied stats.Counter
}

// Collect implements stats.Collector: proxylab_rbac_*_total.
func (s *Stats) Collect(emit stats.Emit) {
	emit("rbac_allowed_total", "Requests the RBAC filter allowed.", stats.CounterKind, float64(s.Allowed.Value()))
	emit("rbac_denied_total", "Requests the RBAC filter denied (403).", stats.CounterKind, float64(s.Denied.Value()))
	emit("rbac_shadow_allowed_total", "Requests the RBAC shadow rules would allow.", stats.CounterKind, float64(s.ShadowAllowed.Value()))
	emit("rbac_shadow_denied_total", "Requests the RBAC shadow rules would deny.", stats.CounterKind, float64(s.ShadowDenied.Value()))
}

// rules is one compiled Config: the listener's or a route's.
type rules struct {
	enforce, shadow *Engine // nil: absent
}

// Factory is a configured rbac filter; read-only after Decode.
type Factory struct {
	rules rules
	Stats Stats
	pool  sync.Pool // *stream
}

var (
	_ filter.Factory       = (*Factory)(nil)
	_ filter.DecoderFilter = (*stream)(nil)
	_ stats.Collector      = (*Factory)(nil)
)

// Collect implements stats.Collector.
func (f *Factory) Collect(emit stats.Emit) { f.Stats.Collect(emit) }

func decode(raw *yaml.Node, path string) (filter.Factory, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	f := &Factory{}
	if f.rules.enforce, f.rules.shadow, errs = compile(c, path); len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}

func decodePerRoute(raw *yaml.Node, path string) (any, []error) {
	c, errs := registry.Decode[PerRoute](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	r := &rules{}
	if c.RBAC != nil {
		if r.enforce, r.shadow, errs = compile(c.RBAC, path+".rbac"); len(errs) > 0 {
			return nil, errs
		}
	}
	return r, nil
}

// stream is one request's filter; pooled, returned at OnDestroy.
type stream struct {
	filter.PassThrough
	f *Factory
	s filter.Stream
}

// NewFilter implements filter.Factory.
func (f *Factory) NewFilter(s filter.Stream) filter.Filter {
	st, _ := f.pool.Get().(*stream)
	if st == nil {
		st = &stream{f: f}
	}
	st.s = s
	return st
}

func (st *stream) OnDestroy() {
	f := st.f
	st.s = nil
	f.pool.Put(st)
}

// DecodeHeaders decides on the head: the route's rules when it overrides
// them, else the listener's.
func (st *stream) DecodeHeaders(h *protocol.Head, end bool) filter.Status {
	info := st.s.Info()
	r := &st.f.rules
	if pr, ok := info.PerRouteConfig().(*rules); ok && pr != nil {
		r = pr
	}
	if r.enforce == nil && r.shadow == nil {
		return filter.Continue
	}
	req := Request{Head: h, Remote: AddrPort(info.RemoteAddr()), Local: AddrPort(info.LocalAddr()), Cert: info.PeerCertificate()}
	key := uint64(req.Remote.Port())
	if r.shadow != nil {
		ok, pol := r.shadow.Allowed(&req)
		if ok {
			st.f.Stats.ShadowAllowed.Inc(key)
		} else {
			st.f.Stats.ShadowDenied.Inc(key)
			slog.Debug("rbac: shadow rules deny", "policy", pol, "remote", req.Remote)
		}
	}
	if r.enforce == nil {
		return filter.Continue
	}
	if ok, _ := r.enforce.Allowed(&req); ok {
		st.f.Stats.Allowed.Inc(key)
		return filter.Continue
	}
	st.f.Stats.Denied.Inc(key)
	st.s.SendLocalReply(filter.LocalReply{Status: 403, Body: "RBAC: access denied", GRPCStatus: 7, Flags: "RBAC"})
	return filter.Stop
}
