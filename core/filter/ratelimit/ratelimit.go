// Package ratelimit is Envoy's global rate limit filter: each request's
// descriptors (built by the configured actions from its headers, its
// client address and constants) are sent to a rate limit service (Envoy's
// envoy.service.ratelimit.v3 RateLimitService/ShouldRateLimit over gRPC);
// OVER_LIMIT answers 429 with x-envoy-ratelimited (gRPC: UNAVAILABLE).
// The call is asynchronous: DecodeHeaders returns Stop and the answer
// resumes the stream through Stream.Post. A request producing no
// descriptor is not checked. When the service fails (unreachable,
// timeout) the request passes, or gets 500 with failure_mode_deny.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/filter/internal/match"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
)

// Module is the filter's registration (cmd/proxylab/builtins.go).
var Module = filter.Module{Name: "ratelimit", Kinds: filter.HTTP | filter.RPC, Decode: decode, DecodePerRoute: decodePerRoute}

// Stats are the filter's counters.
type Stats struct {
	OK, OverLimit, Error, FailureModeAllowed stats.Counter
}

// Factory is a configured filter; its gRPC client is made on first use
// and closed by Close.
type Factory struct {
	c      *compiled
	Stats  Stats
	once   sync.Once
	mu     sync.Mutex
	conn   *grpc.ClientConn
	client rlsv3.RateLimitServiceClient
	err    error
	closed bool
}

var (
	_ filter.Factory       = (*Factory)(nil)
	_ filter.DecoderFilter = (*stream)(nil)
	_ filter.EncoderFilter = (*stream)(nil)
	_ stats.Collector      = (*Factory)(nil)
)

func decode(raw *yaml.Node, path string) (filter.Factory, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	cc, errs := compileConfig(c, path)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Factory{c: cc}, nil
}

// perRoute is a route's compiled rate_limits.
type perRoute struct{ rules []descriptorRule }

func decodePerRoute(raw *yaml.Node, path string) (any, []error) {
	c, errs := registry.Decode[PerRoute](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	rules, errs := compileRateLimits(c.RateLimits, path+".rate_limits")
	if len(errs) > 0 {
		return nil, errs
	}
	return &perRoute{rules: rules}, nil
}

// Collect implements stats.Collector.
func (f *Factory) Collect(emit stats.Emit) {
	emit("ratelimit_ok_total", "Requests the rate limit service let through.", stats.CounterKind, float64(f.Stats.OK.Value()))
	emit("ratelimit_over_limit_total", "Requests the rate limit service limited (429).", stats.CounterKind, float64(f.Stats.OverLimit.Value()))
	emit("ratelimit_error_total", "Rate limit calls that failed (unreachable, timeout).", stats.CounterKind, float64(f.Stats.Error.Value()))
	emit("ratelimit_failure_mode_allowed_total", "Failed rate limit calls let through (failure_mode_deny false).", stats.CounterKind, float64(f.Stats.FailureModeAllowed.Value()))
}

// Close releases the gRPC client (the config that made f was replaced).
func (f *Factory) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.conn != nil {
		return f.conn.Close()
	}
	return nil
}

func (f *Factory) rls() (rlsv3.RateLimitServiceClient, error) {
	f.once.Do(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.closed {
			f.err = fmt.Errorf("ratelimit: filter closed")
			return
		}
		f.conn, f.err = grpc.NewClient(f.c.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if f.err == nil {
			f.client = rlsv3.NewRateLimitServiceClient(f.conn)
		}
	})
	return f.client, f.err
}

// NewFilter implements filter.Factory; a stream is allocated per request
// (the call allocates its request anyway).
func (f *Factory) NewFilter(s filter.Stream) filter.Filter { return &stream{f: f, s: s} }

// stream is one request's call. Its fields are touched under the session.
type stream struct {
	f       *Factory
	s       filter.Stream
	cancel  context.CancelFunc
	respAdd []*corev3.HeaderValue
}

func (st *stream) OnDestroy() {
	if st.cancel != nil {
		st.cancel()
	}
}

func (st *stream) DecodeHeaders(h *protocol.Head, end bool) filter.Status {
	rules := st.f.c.rules
	if pr, ok := st.s.Info().PerRouteConfig().(*perRoute); ok && pr != nil {
		rules = pr.rules
	}
	descs := st.descriptors(h, rules)
	if len(descs) == 0 {
		return filter.Continue
	}
	client, err := st.f.rls()
	if err != nil { // no client: fail now, without a call
		return st.failed(err)
	}
	req := &rlsv3.RateLimitRequest{Domain: st.f.c.cfg.Domain, Descriptors: descs}
	ctx, cancel := context.WithTimeout(context.Background(), st.f.c.timeout)
	st.cancel = cancel
	s := st.s
	go func() {
		resp, err := client.ShouldRateLimit(ctx, req)
		cancel()
		s.Post(func() { st.finish(resp, err) })
	}()
	return filter.Stop
}

// descriptors builds one descriptor per rule whose every action produced
// its entry (Envoy's rule), copying the values out of the head.
func (st *stream) descriptors(h *protocol.Head, rules []descriptorRule) []*rlcommon.RateLimitDescriptor {
	var out []*rlcommon.RateLimitDescriptor
	for _, r := range rules {
		d := &rlcommon.RateLimitDescriptor{}
		ok := true
		for i := range r {
			a := &r[i]
			switch a.kind {
			case actRequestHeader:
				v, present := match.HeadValue(h, strings.ToLower(a.header))
				if !present {
					ok = false
					if a.skipAbsent {
						ok = true
						continue
					}
				}
				d.Entries = append(d.Entries, &rlcommon.RateLimitDescriptor_Entry{Key: a.key, Value: string(v)})
			case actRemoteAddress:
				ap := addrOf(st.s.Info())
				if ap == "" {
					ok = false
				}
				d.Entries = append(d.Entries, &rlcommon.RateLimitDescriptor_Entry{Key: a.key, Value: ap})
			case actGeneric:
				d.Entries = append(d.Entries, &rlcommon.RateLimitDescriptor_Entry{Key: a.key, Value: a.value})
			case actHeaderMatch:
				all := true
				for j := range a.headers {
					if !a.headers[j].Match(h) {
						all = false
						break
					}
				}
				if all != a.expectMatch {
					ok = false
				}
				d.Entries = append(d.Entries, &rlcommon.RateLimitDescriptor_Entry{Key: a.key, Value: a.value})
			}
			if !ok {
				break
			}
		}
		if ok && len(d.Entries) > 0 {
			out = append(out, d)
		}
	}
	return out
}

func addrOf(info filter.Info) string {
	a := info.RemoteAddr()
	if a == nil {
		return ""
	}
	s := a.String()
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = strings.Trim(s[:i], "[]")
	}
	return s
}

// finish applies the service's answer under the session.
func (st *stream) finish(resp *rlsv3.RateLimitResponse, err error) {
	f := st.f
	key := uint64(len(f.c.rules))
	if err == nil && resp.GetOverallCode() == rlsv3.RateLimitResponse_UNKNOWN {
		err = fmt.Errorf("ratelimit: the service answered UNKNOWN")
	}
	if err != nil {
		if st.failed(err) == filter.Continue {
			st.s.ContinueDecoding()
		}
		return
	}
	st.respAdd = validHeaders(resp.GetResponseHeadersToAdd())
	if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
		f.Stats.OverLimit.Inc(key)
		hs := &protocol.Headers{}
		hs.Add("x-envoy-ratelimited", []byte("true"))
		st.s.SendLocalReply(filter.LocalReply{Status: f.c.status, Headers: hs, Flags: "RL"})
		return
	}
	f.Stats.OK.Inc(key)
	if add := validHeaders(resp.GetRequestHeadersToAdd()); len(add) > 0 {
		if hs, ok := st.s.(filter.HeadStore); ok && hs.RequestHead() != nil {
			h := hs.RequestHead()
			for _, x := range add {
				h.Headers.Set(strings.ToLower(x.GetKey()), []byte(x.GetValue()))
			}
		}
	}
	st.s.ContinueDecoding()
}

// failed counts a failed call and answers 500 (failure_mode_deny, Stop)
// or lets the request pass (Continue).
func (st *stream) failed(err error) filter.Status {
	f, key := st.f, uint64(len(st.f.c.rules))
	f.Stats.Error.Inc(key)
	slog.Debug("ratelimit: call failed", "err", err)
	if f.c.cfg.FailureModeDeny {
		st.s.SendLocalReply(filter.LocalReply{Status: 500, Body: "rate limit service unavailable", Flags: "RLSE"})
		return filter.Stop
	}
	f.Stats.FailureModeAllowed.Inc(key)
	return filter.Continue
}

// validHeaders keeps the service's headers that can be written as they are
// and do not touch framing.
func validHeaders(hs []*corev3.HeaderValue) []*corev3.HeaderValue {
	out := hs[:0:0]
	for _, h := range hs {
		k := strings.ToLower(h.GetKey())
		switch k {
		case "", "content-length", "transfer-encoding", "connection", "host", "te", "upgrade", "keep-alive", "proxy-connection":
			continue
		}
		if strings.ContainsAny(k, " \t\r\n:\x00") || strings.ContainsAny(h.GetValue(), "\r\n\x00") {
			continue
		}
		out = append(out, h)
	}
	return out
}

func (st *stream) DecodeData(*filter.Body, bool) filter.Status    { return filter.Continue }
func (st *stream) DecodeTrailers(*protocol.Headers) filter.Status { return filter.Continue }

// EncodeHeaders adds the service's response_headers_to_add (e.g. its
// x-ratelimit-* headers) to an allowed request's response.
func (st *stream) EncodeHeaders(h *protocol.Head, end bool) filter.Status {
	for _, x := range st.respAdd {
		h.Headers.Add(strings.ToLower(x.GetKey()), []byte(x.GetValue()))
	}
	return filter.Continue
}
func (st *stream) EncodeData(*filter.Body, bool) filter.Status    { return filter.Continue }
func (st *stream) EncodeTrailers(*protocol.Headers) filter.Status { return filter.Continue }
