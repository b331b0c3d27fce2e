// Package extauthz is Envoy's ext_authz filter: each request is checked
// with an external authorization server (the gRPC Authorization/Check
// service of envoy.service.auth.v3, or a plain HTTP server) before it goes
// on. The check is asynchronous: DecodeHeaders (or DecodeData when the body
// is sent along) returns Stop and starts the call on its own goroutine; the
// answer comes back through Stream.Post and resumes (ContinueDecoding) or
// answers locally. The loop never waits.
//
// OK: the server's headers are set on (or appended to, or removed from) the
// request held by the chain (filter.HeadStore) and its response headers are
// added to the response. Denied: the server's status (403 by default),
// headers and body go to the client. Error (unreachable, timeout, a broken
// answer): allowed when failure_mode_allow, else status_on_error (403).
package extauthz

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
)

// Module is the filter's registration (cmd/proxylab/builtins.go).
var Module = filter.Module{Name: "ext_authz", Kinds: filter.HTTP, Decode: decode, DecodePerRoute: decodePerRoute}

// Stats are the filter's counters.
type Stats struct {
	OK, Denied, Error, FailureModeAllowed stats.Counter
}

// Factory is a configured ext_authz filter. Its client (gRPC connection or
// HTTP transport) is made on the first check and closed by Close.
type Factory struct {
	c      *compiled
	Stats  Stats
	once   sync.Once
	client checker
	mu     sync.Mutex
	closed bool
}

// checker is one variant's client. check runs on its own goroutine and may
// block until ctx ends.
type checker interface {
	check(ctx context.Context, req *checkRequest) result
	close()
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

func decodePerRoute(raw *yaml.Node, path string) (any, []error) {
	return registry.Decode[PerRoute](raw, path)
}

// Collect implements stats.Collector.
func (f *Factory) Collect(emit stats.Emit) {
	emit("ext_authz_ok_total", "Requests the authorization server allowed.", stats.CounterKind, float64(f.Stats.OK.Value()))
	emit("ext_authz_denied_total", "Requests the authorization server denied.", stats.CounterKind, float64(f.Stats.Denied.Value()))
	emit("ext_authz_error_total", "Checks that failed (unreachable, timeout, bad answer).", stats.CounterKind, float64(f.Stats.Error.Value()))
	emit("ext_authz_failure_mode_allowed_total", "Failed checks let through by failure_mode_allow.", stats.CounterKind, float64(f.Stats.FailureModeAllowed.Value()))
}

// Close releases the client (the config that made f was replaced).
func (f *Factory) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.client != nil {
		f.client.close()
	}
	return nil
}

func (f *Factory) checker() checker {
	f.once.Do(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.c.target != "" {
			f.client = newGRPCChecker(f.c)
		} else {
			f.client = newHTTPChecker(f.c)
		}
		if f.closed {
			f.client.close()
		}
	})
	return f.client
}

// NewFilter implements filter.Factory. A stream is allocated per request:
// the check allocates its request anyway, and the goroutine's answer may
// outlive the stream (Post drops it then).
func (f *Factory) NewFilter(s filter.Stream) filter.Filter {
	return &stream{f: f, s: s}
}

// stream is one request's check. Fields are touched only under the
// session, except req (built before the goroutine starts, read by it).
type stream struct {
	f       *Factory
	s       filter.Stream
	req     *checkRequest
	cancel  context.CancelFunc
	respAdd []header // the server's response_headers_to_add (OK)
	body    []byte
	waiting bool
}

func (st *stream) OnDestroy() {
	if st.cancel != nil {
		st.cancel()
	}
}

func (st *stream) DecodeHeaders(h *protocol.Head, end bool) filter.Status {
	info := st.s.Info()
	var ext map[string]string
	if pr, ok := info.PerRouteConfig().(*PerRoute); ok && pr != nil {
		if pr.Disabled {
			return filter.Continue
		}
		if pr.CheckSettings != nil {
			ext = pr.CheckSettings.ContextExtensions
		}
	}
	st.req = newCheckRequest(h, info, ext)
	if st.f.c.maxBody > 0 && !end {
		return filter.StopAndBuffer
	}
	st.start()
	return filter.Stop
}

// DecodeData is called with the whole body buffered so far while
// with_request_body holds it.
func (st *stream) DecodeData(b *filter.Body, end bool) filter.Status {
	if st.req == nil || st.waiting || st.f.c.maxBody == 0 {
		return filter.Continue
	}
	max := st.f.c.maxBody
	if len(b.Bytes) < max && !end {
		return filter.StopAndBuffer
	}
	if len(b.Bytes) > max && !st.f.c.cfg.WithRequestBody.AllowPartialMessage {
		st.s.SendLocalReply(filter.LocalReply{Status: 413, Body: "Payload Too Large"})
		return filter.Stop
	}
	st.req.body = append([]byte(nil), b.Bytes[:min(len(b.Bytes), max)]...)
	st.start()
	return filter.Stop
}

func (st *stream) DecodeTrailers(*protocol.Headers) filter.Status {
	if st.req != nil && !st.waiting && st.f.c.maxBody > 0 {
		st.start() // the body (if any) ended before the trailers
		return filter.Stop
	}
	return filter.Continue
}

// start runs the check on its own goroutine; the answer is applied under
// the session by finish.
func (st *stream) start() {
	st.waiting = true
	ctx, cancel := context.WithTimeout(context.Background(), st.f.c.timeout)
	st.cancel = cancel
	req, c, s := st.req, st.f.checker(), st.s
	go func() {
		r := c.check(ctx, req)
		cancel()
		s.Post(func() { st.finish(r) })
	}()
}

// finish applies a check's result under the session.
func (st *stream) finish(r result) {
	st.waiting = false
	f, key := st.f, uint64(len(st.req.path))
	switch r.kind {
	case resultOK:
		f.Stats.OK.Inc(key)
		st.applyOK(&r)
		st.s.ContinueDecoding()
	case resultDenied:
		f.Stats.Denied.Inc(key)
		st.s.SendLocalReply(filter.LocalReply{Status: r.status, Body: r.body, Headers: toHeaders(r.clientHeaders), Flags: "UAEX"})
	default:
		f.Stats.Error.Inc(key)
		slog.Debug("ext_authz: check failed", "err", r.err, "path", st.req.path)
		if f.c.cfg.FailureModeAllow {
			f.Stats.FailureModeAllowed.Inc(key)
			st.s.ContinueDecoding()
			return
		}
		st.s.SendLocalReply(filter.LocalReply{Status: f.c.statusOnError, Body: "ext_authz: authorization check failed", Flags: "UAEX"})
	}
}

// applyOK changes the held request head as the server asked.
func (st *stream) applyOK(r *result) {
	st.respAdd = r.responseHeaders
	if len(r.upstreamSet)+len(r.upstreamAppend)+len(r.upstreamRemove) == 0 {
		return
	}
	hs, ok := st.s.(filter.HeadStore)
	var h *protocol.Head
	if ok {
		h = hs.RequestHead()
	}
	if h == nil {
		slog.Warn("ext_authz: the chain does not expose the held request head; headers from the authorization server dropped")
		return
	}
	for _, n := range r.upstreamRemove {
		if !strings.HasPrefix(n, ":") && !strings.EqualFold(n, "host") {
			h.Headers.Del(n)
		}
	}
	for _, x := range r.upstreamSet {
		h.Headers.Set(x.name, []byte(x.value))
	}
	for _, x := range r.upstreamAppend {
		h.Headers.Add(x.name, []byte(x.value))
	}
	if st.f.c.cfg.ClearRouteCache {
		st.s.ClearRouteCache()
	}
}

func (st *stream) EncodeHeaders(h *protocol.Head, end bool) filter.Status {
	for _, x := range st.respAdd {
		h.Headers.Add(x.name, []byte(x.value))
	}
	return filter.Continue
}

func (st *stream) EncodeData(*filter.Body, bool) filter.Status    { return filter.Continue }
func (st *stream) EncodeTrailers(*protocol.Headers) filter.Status { return filter.Continue }

type header struct{ name, value string }

func toHeaders(hs []header) *protocol.Headers {
	if len(hs) == 0 {
		return nil
	}
	out := &protocol.Headers{}
	for _, h := range hs {
		out.Add(h.name, []byte(h.value))
	}
	return out
}

type resultKind uint8

const (
	resultError resultKind = iota
	resultOK
	resultDenied
)

// result is a check's answer in either variant's terms.
type result struct {
	kind            resultKind
	upstreamSet     []header // OK: set on the request (replacing)
	upstreamAppend  []header // OK: appended to the request
	upstreamRemove  []string // OK: removed from the request
	responseHeaders []header // OK: added to the response
	status          int      // denied
	body            string   // denied
	clientHeaders   []header // denied
	err             error    // error
}
