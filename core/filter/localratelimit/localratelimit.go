// Package localratelimit is the `local_ratelimit` http filter (Envoy's
// local rate limit): token buckets kept in the proxy, per listener, per
// route or virtual host (a typed_per_filter_config override has buckets of
// its own), and per descriptor: one bucket per distinct value of a request
// header, or per client address. A request over the limit gets 429 (a
// gRPC call UNAVAILABLE, an RPC request its codec's error reply).
//
//	http_filters:
//	  - name: local_ratelimit
//	    typed_config:
//	      token_bucket: {max_tokens: 100, tokens_per_fill: 100, fill_interval: 1s}
//	      enable_x_ratelimit_headers: DRAFT_VERSION_03
//	      descriptors:                           # checked instead of token_bucket when they apply
//	        - request_headers: {header_name: x-api-key}
//	          token_bucket: {max_tokens: 10, tokens_per_fill: 10, fill_interval: 1s}
//	        - remote_address: {}
//	          token_bucket: {max_tokens: 20, tokens_per_fill: 20, fill_interval: 1s}
//
// A descriptor applies when the request has its value (the header, the
// client IP); every descriptor that applies must have a token, and the
// config's token_bucket is used only when none applies (Envoy's rule).
// Each descriptor keeps at most max_entries buckets (10000); values beyond
// share one bucket, so a flood of distinct values is limited, not stored,
// until a sweep (at most once per fill interval) drops the full buckets.
//
// filter_enabled / filter_enforced (default_value percentages) default to
// 100% (Envoy's default is 0%; carried-over configs set them anyway).
//
// Metrics (per listener): local_ratelimit_enabled, _enforced, _rate_limited,
// _ok (Envoy's http_local_rate_limit.* counters).
package localratelimit

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
)

// Name is the filter's name in http_filters.
const Name = "local_ratelimit"

// Module registers the filter (cmd/proxylab/builtins.go).
var Module = filter.Module{Name: Name, Kinds: filter.HTTP | filter.RPC, Decode: decode, DecodePerRoute: decodePerRoute}

// Config is the filter's typed_config and a per-route override.
type Config struct {
	StatPrefix     string          `yaml:"stat_prefix"` // accepted for Envoy configs; metrics are per listener
	TokenBucket    *TokenBucket    `yaml:"token_bucket"`
	FilterEnabled  *RuntimePercent `yaml:"filter_enabled"`
	FilterEnforced *RuntimePercent `yaml:"filter_enforced"`
	// EnableXRateLimitHeaders: OFF (default) or DRAFT_VERSION_03 (the
	// x-ratelimit-limit / -remaining / -reset response headers).
	EnableXRateLimitHeaders string       `yaml:"enable_x_ratelimit_headers"`
	Descriptors             []Descriptor `yaml:"descriptors"`
}

// TokenBucket is Envoy's TokenBucket.
type TokenBucket struct {
	MaxTokens     uint32        `yaml:"max_tokens"`
	TokensPerFill *uint32       `yaml:"tokens_per_fill"` // default 1
	FillInterval  time.Duration `yaml:"fill_interval"`
}

// RuntimePercent is Envoy's RuntimeFractionalPercent (runtime_key is
// accepted and ignored: there is no runtime).
type RuntimePercent struct {
	DefaultValue filter.Percent `yaml:"default_value"`
	RuntimeKey   string         `yaml:"runtime_key"`
}

// Descriptor is a bucket per distinct value of one request property.
type Descriptor struct {
	RequestHeaders *struct {
		HeaderName    string `yaml:"header_name"`
		DescriptorKey string `yaml:"descriptor_key"`
	} `yaml:"request_headers"`
	RemoteAddress *struct{}   `yaml:"remote_address"`
	TokenBucket   TokenBucket `yaml:"token_bucket"`
	MaxEntries    int         `yaml:"max_entries"` // 0: 10000
}

// Validate checks the config (registry.Validator).
func (c *Config) Validate(path string) []error {
	var errs []error
	if c.TokenBucket == nil {
		errs = append(errs, registry.Errorf(path+".token_bucket", "required"))
	} else {
		errs = append(errs, c.TokenBucket.check(path+".token_bucket")...)
	}
	for _, p := range []struct {
		v    *RuntimePercent
		name string
	}{{c.FilterEnabled, "filter_enabled"}, {c.FilterEnforced, "filter_enforced"}} {
		if p.v != nil {
			errs = append(errs, p.v.DefaultValue.Check(path+"."+p.name+".default_value")...)
		}
	}
	switch c.EnableXRateLimitHeaders {
	case "", "OFF", "DRAFT_VERSION_03":
	default:
		errs = append(errs, registry.Errorf(path+".enable_x_ratelimit_headers", "unknown value %q (OFF, DRAFT_VERSION_03)", c.EnableXRateLimitHeaders))
	}
	for i, d := range c.Descriptors {
		p := path + ".descriptors[" + strconv.Itoa(i) + "]"
		if (d.RequestHeaders == nil) == (d.RemoteAddress == nil) {
			errs = append(errs, registry.Errorf(p, "needs exactly one of request_headers, remote_address"))
		}
		if d.RequestHeaders != nil && d.RequestHeaders.HeaderName == "" {
			errs = append(errs, registry.Errorf(p+".request_headers.header_name", "required"))
		}
		if d.MaxEntries < 0 {
			errs = append(errs, registry.Errorf(p+".max_entries", "must be >= 0"))
		}
		errs = append(errs, d.TokenBucket.check(p+".token_bucket")...)
	}
	return errs
}

func (t *TokenBucket) check(path string) []error {
	var errs []error
	if t.MaxTokens == 0 {
		errs = append(errs, registry.Errorf(path+".max_tokens", "must be > 0"))
	}
	if t.TokensPerFill != nil && *t.TokensPerFill == 0 {
		errs = append(errs, registry.Errorf(path+".tokens_per_fill", "must be > 0"))
	}
	if t.FillInterval < 50*time.Millisecond {
		errs = append(errs, registry.Errorf(path+".fill_interval", "must be at least 50ms (Envoy's minimum)"))
	}
	return errs
}

func (t *TokenBucket) bucket(now time.Time) *Bucket {
	per := uint32(1)
	if t.TokensPerFill != nil {
		per = *t.TokensPerFill
	}
	return NewBucket(t.MaxTokens, per, t.FillInterval, now)
}

// limiter is a decoded config with its buckets: the listener's, or a
// route's or virtual host's own.
type limiter struct {
	bucket            *Bucket
	enabled, enforced filter.Percent
	headers           bool
	descs             []*descriptor
}

type descriptor struct {
	header  string // "" for remote_address
	tb      TokenBucket
	max     int64
	n       atomic.Int64
	buckets sync.Map // value (string or netip.Addr) → *Bucket
	spill   *Bucket  // shared by values past max
	// At max, full buckets (no different from new ones) are swept, at
	// most once per fill interval, by whichever taker gets sweepMu.
	sweepMu   sync.Mutex
	lastSweep atomic.Int64 // unix nanoseconds
}

func newLimiter(c *Config) *limiter {
	now := time.Now()
	l := &limiter{bucket: c.TokenBucket.bucket(now), enabled: filter.All, enforced: filter.All,
		headers: c.EnableXRateLimitHeaders == "DRAFT_VERSION_03"}
	if c.FilterEnabled != nil {
		l.enabled = c.FilterEnabled.DefaultValue
	}
	if c.FilterEnforced != nil {
		l.enforced = c.FilterEnforced.DefaultValue
	}
	for _, d := range c.Descriptors {
		nd := &descriptor{tb: d.TokenBucket, max: int64(d.MaxEntries), spill: d.TokenBucket.bucket(now)}
		if nd.max == 0 {
			nd.max = 10000
		}
		if d.RequestHeaders != nil {
			nd.header = d.RequestHeaders.HeaderName
		}
		l.descs = append(l.descs, nd)
	}
	return l
}

// get returns the bucket of a value, made on first use (bounded).
func (d *descriptor) get(key any, now time.Time) *Bucket {
	if b, ok := d.buckets.Load(key); ok {
		return b.(*Bucket)
	}
	if d.n.Load() >= d.max && !d.sweep(now) {
		return d.spill
	}
	b, loaded := d.buckets.LoadOrStore(key, d.tb.bucket(now))
	if !loaded {
		d.n.Add(1)
	}
	return b.(*Bucket)
}

// sweep drops the buckets that are full at now; false when it did not
// run (another sweep is running or one ran within the fill interval) or
// freed nothing. A taker still holding a swept bucket takes from it
// unseen: at most the requests in flight at that instant are over-granted.
func (d *descriptor) sweep(now time.Time) bool {
	last := d.lastSweep.Load()
	if now.UnixNano()-last < int64(d.tb.FillInterval) || !d.sweepMu.TryLock() {
		return false
	}
	defer d.sweepMu.Unlock()
	d.lastSweep.Store(now.UnixNano())
	freed := false
	d.buckets.Range(func(k, v any) bool {
		if v.(*Bucket).Full(now) {
			d.buckets.Delete(k)
			d.n.Add(-1)
			freed = true
		}
		return true
	})
	return freed
}

func decode(raw *yaml.Node, path string) (filter.Factory, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Factory{l: newLimiter(c)}, nil
}

func decodePerRoute(raw *yaml.Node, path string) (any, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	return newLimiter(c), nil
}

// Factory is the listener's filter: its limiter and its metrics.
type Factory struct {
	l                                *limiter
	enabled, enforced, limited, okay stats.Counter
	key                              atomic.Uint64
}

var (
	_ filter.Factory       = (*Factory)(nil)
	_ stats.Collector      = (*Factory)(nil)
	_ filter.DecoderFilter = (*rl)(nil)
	_ filter.EncoderFilter = (*rl)(nil)
)

// Collect exports the metrics (stats.Collector).
func (f *Factory) Collect(emit stats.Emit) {
	emit("local_ratelimit_enabled", "Requests the local rate limit was enabled for.", stats.CounterKind, float64(f.enabled.Value()))
	emit("local_ratelimit_enforced", "Requests answered 429 by the local rate limit.", stats.CounterKind, float64(f.enforced.Value()))
	emit("local_ratelimit_rate_limited", "Requests over the local rate limit (enforced or not).", stats.CounterKind, float64(f.limited.Value()))
	emit("local_ratelimit_ok", "Requests under the local rate limit.", stats.CounterKind, float64(f.okay.Value()))
}

// Counts returns enabled, enforced, rate_limited, ok (for tests).
func (f *Factory) Counts() [4]uint64 {
	return [4]uint64{f.enabled.Value(), f.enforced.Value(), f.limited.Value(), f.okay.Value()}
}

var pool = sync.Pool{New: func() any { return new(rl) }}

// NewFilter makes the stream's filter (pooled: no allocation per request).
func (f *Factory) NewFilter(s filter.Stream) filter.Filter {
	x := pool.Get().(*rl)
	x.f, x.s, x.shard = f, s, f.key.Add(1)
	return x
}

// rl is one stream's filter.
type rl struct {
	f     *Factory
	s     filter.Stream
	shard uint64
	// The headers to add to the response (DRAFT_VERSION_03), formatted
	// into buf; set when the request passed.
	hdrs      bool
	limit     uint32
	remaining uint32
	reset     int64
	buf       [48]byte
}

func (x *rl) DecodeHeaders(h *protocol.Head, _ bool) filter.Status {
	l := x.f.l
	if o, ok := x.s.Info().PerRouteConfig().(*limiter); ok {
		l = o
	}
	if !l.enabled.Hit() {
		return filter.Continue
	}
	x.f.enabled.Inc(x.shard)
	now := time.Now()
	b, ok := x.take(l, h, now)
	x.hdrs, x.limit, x.reset = l.headers, b.Max(), b.Reset(now)
	if ok {
		x.f.okay.Inc(x.shard)
		return filter.Continue
	}
	x.f.limited.Inc(x.shard)
	if !l.enforced.Hit() {
		x.hdrs = false
		return filter.Continue
	}
	x.f.enforced.Inc(x.shard)
	r := filter.LocalReply{Status: 429, Body: "local_rate_limited", Flags: "RL"}
	if l.headers {
		r.Headers = &protocol.Headers{}
		x.addHeaders(r.Headers)
		x.hdrs = false // the reply has them
	}
	x.s.SendLocalReply(r)
	return filter.Stop
}

// take takes a token from every descriptor bucket that applies, else from
// the limiter's own bucket; b is the bucket the headers describe.
func (x *rl) take(l *limiter, h *protocol.Head, now time.Time) (b *Bucket, ok bool) {
	ok = true
	for _, d := range l.descs {
		var key any
		if d.header != "" {
			v := h.Headers.Get(d.header)
			if v == nil {
				continue
			}
			key = string(v)
		} else {
			ip, have := clientIP(x.s.Info().RemoteAddr())
			if !have {
				continue
			}
			key = ip
		}
		db := d.get(key, now)
		left, took := db.Take(now)
		if b == nil || !took {
			b, x.remaining = db, left
		}
		ok = ok && took
	}
	if b != nil {
		return b, ok
	}
	x.remaining, ok = l.bucket.Take(now)
	return l.bucket, ok
}

func clientIP(a net.Addr) (netip.Addr, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		return ip.Unmap(), ok
	}
	return netip.Addr{}, false
}

// addHeaders sets the x-ratelimit-* fields (values formatted into x.buf,
// valid until OnDestroy).
func (x *rl) addHeaders(h *protocol.Headers) {
	b := x.buf[:0]
	b = strconv.AppendUint(b, uint64(x.limit), 10)
	n1 := len(b)
	b = strconv.AppendUint(b, uint64(x.remaining), 10)
	n2 := len(b)
	b = strconv.AppendInt(b, x.reset, 10)
	set(h, hdrLimit, b[:n1:n1])
	set(h, hdrRemaining, b[n1:n2:n2])
	set(h, hdrReset, b[n2:])
}

var (
	hdrLimit     = []byte("x-ratelimit-limit")
	hdrRemaining = []byte("x-ratelimit-remaining")
	hdrReset     = []byte("x-ratelimit-reset")
)

// set replaces name's fields without converting the name.
func set(h *protocol.Headers, name, v []byte) {
	h.Del(string(name))
	h.Append(name, v)
}

func (x *rl) DecodeData(*filter.Body, bool) filter.Status    { return filter.Continue }
func (x *rl) DecodeTrailers(*protocol.Headers) filter.Status { return filter.Continue }
func (x *rl) EncodeData(*filter.Body, bool) filter.Status    { return filter.Continue }
func (x *rl) EncodeTrailers(*protocol.Headers) filter.Status { return filter.Continue }

// EncodeHeaders adds the x-ratelimit-* fields to a response that passed.
func (x *rl) EncodeHeaders(h *protocol.Head, _ bool) filter.Status {
	if x.hdrs {
		x.addHeaders(&h.Headers)
	}
	return filter.Continue
}

// OnDestroy returns the filter to the pool.
func (x *rl) OnDestroy() {
	*x = rl{}
	pool.Put(x)
}
