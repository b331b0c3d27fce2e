// Package fault is the `fault` http filter (Envoy's HTTP fault injection):
// it delays requests and/or aborts them with an HTTP status or a gRPC
// status, for a percentage of requests, or as request headers ask when
// enabled, with a cap on faults active at once.
//
//	http_filters:
//	  - name: fault
//	    typed_config:
//	      delay: {fixed_delay: 2s, percentage: {numerator: 10, denominator: HUNDRED}}
//	      abort: {http_status: 503, percentage: {numerator: 5}}   # or grpc_status: 14
//	      max_active_faults: 100
//
// A route or virtual host may replace the whole config
// (typed_per_filter_config: {fault: {...}}) or disable it. A delay runs on
// a timer and resumes the request with Stream.Post: nothing blocks the
// loop. The delay comes first, then the abort (Envoy's order).
//
// Header faults (header_abort: {} / header_delay: {}): the request's
// x-envoy-fault-abort-request (an HTTP status), x-envoy-fault-abort-grpc-request
// (a gRPC status) and x-envoy-fault-delay-request (milliseconds) say the
// fault; the percentage still applies (x-envoy-fault-abort-request-percentage
// and x-envoy-fault-delay-request-percentage may lower it, as numerators
// over the configured denominator).
//
// Metrics (per listener): fault_aborts_injected, fault_delays_injected
// (counters), fault_active_faults (gauge).
package fault

import (
	"strconv"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
)

// Name is the filter's name in http_filters.
const Name = "fault"

// Module registers the filter (cmd/proxylab/builtins.go).
var Module = filter.Module{Name: Name, Kinds: filter.HTTP | filter.RPC, Decode: decode, DecodePerRoute: decodePerRoute}

// Config is the filter's typed_config (and a per-route override).
type Config struct {
	Delay *Delay `yaml:"delay"`
	Abort *Abort `yaml:"abort"`
	// MaxActiveFaults caps the faults in progress at once (0: no cap).
	MaxActiveFaults int `yaml:"max_active_faults"`
}

// Delay is Envoy's FaultDelay.
type Delay struct {
	FixedDelay  time.Duration   `yaml:"fixed_delay"`
	HeaderDelay *struct{}       `yaml:"header_delay"`
	Percentage  *filter.Percent `yaml:"percentage"` // absent: 100%
}

// Abort is Envoy's FaultAbort.
type Abort struct {
	HTTPStatus  int             `yaml:"http_status"`
	GRPCStatus  *int            `yaml:"grpc_status"`
	HeaderAbort *struct{}       `yaml:"header_abort"`
	Percentage  *filter.Percent `yaml:"percentage"` // absent: 100%
}

// Validate checks the config (registry.Validator).
func (c *Config) Validate(path string) []error {
	var errs []error
	if c.MaxActiveFaults < 0 {
		errs = append(errs, registry.Errorf(path+".max_active_faults", "must be >= 0"))
	}
	if d := c.Delay; d != nil {
		if d.FixedDelay <= 0 && d.HeaderDelay == nil {
			errs = append(errs, registry.Errorf(path+".delay", "needs fixed_delay (> 0) or header_delay"))
		}
		if d.Percentage != nil {
			errs = append(errs, d.Percentage.Check(path+".delay.percentage")...)
		}
	}
	if a := c.Abort; a != nil {
		n := 0
		if a.HTTPStatus != 0 {
			n++
			if a.HTTPStatus < 200 || a.HTTPStatus > 599 {
				errs = append(errs, registry.Errorf(path+".abort.http_status", "must be 200-599"))
			}
		}
		if a.GRPCStatus != nil {
			n++
			if *a.GRPCStatus < 1 || *a.GRPCStatus > 16 {
				errs = append(errs, registry.Errorf(path+".abort.grpc_status", "must be a gRPC error code 1-16"))
			}
		}
		if a.HeaderAbort != nil {
			n++
		}
		if n != 1 {
			errs = append(errs, registry.Errorf(path+".abort", "needs exactly one of http_status, grpc_status, header_abort"))
		}
		if a.Percentage != nil {
			errs = append(errs, a.Percentage.Check(path+".abort.percentage")...)
		}
	}
	return errs
}

// Factory is the listener's fault filter: its config and its metrics.
type Factory struct {
	cfg            *Config
	aborts, delays stats.Counter
	active         atomic.Int64
	key            atomic.Uint64 // spreads the counters' shards
}

var (
	_ filter.Factory       = (*Factory)(nil)
	_ stats.Collector      = (*Factory)(nil)
	_ filter.DecoderFilter = (*fault)(nil)
)

func decode(raw *yaml.Node, path string) (filter.Factory, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Factory{cfg: c}, nil
}

func decodePerRoute(raw *yaml.Node, path string) (any, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// Collect exports the metrics (stats.Collector).
func (f *Factory) Collect(emit stats.Emit) {
	emit("fault_aborts_injected", "Requests aborted by the fault filter.", stats.CounterKind, float64(f.aborts.Value()))
	emit("fault_delays_injected", "Requests delayed by the fault filter.", stats.CounterKind, float64(f.delays.Value()))
	emit("fault_active_faults", "Faults in progress.", stats.GaugeKind, float64(f.active.Load()))
}

// Stats returns the counters (for tests).
func (f *Factory) Stats() (aborts, delays uint64, active int64) {
	return f.aborts.Value(), f.delays.Value(), f.active.Load()
}

// NewFilter makes the stream's filter.
func (f *Factory) NewFilter(s filter.Stream) filter.Filter {
	return &fault{f: f, s: s, shard: f.key.Add(1)}
}

// fault is one stream's filter; its timer resumes it through Post.
type fault struct {
	filter.PassThrough
	f      *Factory
	s      filter.Stream
	shard  uint64
	timer  *time.Timer
	abort  *filter.LocalReply
	active bool
}

var (
	hdrAbort     = "x-envoy-fault-abort-request"
	hdrAbortGRPC = "x-envoy-fault-abort-grpc-request"
	hdrAbortPct  = "x-envoy-fault-abort-request-percentage"
	hdrDelay     = "x-envoy-fault-delay-request"
	hdrDelayPct  = "x-envoy-fault-delay-request-percentage"
)

func (x *fault) DecodeHeaders(h *protocol.Head, _ bool) filter.Status {
	cfg := x.f.cfg
	if c, ok := x.s.Info().PerRouteConfig().(*Config); ok {
		cfg = c
	}
	delay := x.delay(cfg, h)
	x.abort = x.abortReply(cfg, h)
	if delay <= 0 && x.abort == nil {
		return filter.Continue
	}
	if !x.start(cfg) {
		x.abort = nil
		return filter.Continue
	}
	if delay > 0 {
		x.f.delays.Inc(x.shard)
		x.timer = time.AfterFunc(delay, func() { x.s.Post(x.afterDelay) })
		return filter.Stop
	}
	x.afterDelay()
	return filter.Stop
}

// start takes a slot under max_active_faults.
func (x *fault) start(cfg *Config) bool {
	if n := x.f.active.Add(1); cfg.MaxActiveFaults > 0 && n > int64(cfg.MaxActiveFaults) {
		x.f.active.Add(-1)
		return false
	}
	x.active = true
	return true
}

// afterDelay runs under the session when the delay is over (or at once).
func (x *fault) afterDelay() {
	if r := x.abort; r != nil {
		x.f.aborts.Inc(x.shard)
		x.s.SendLocalReply(*r)
		return
	}
	x.s.ContinueDecoding()
}

func (x *fault) delay(cfg *Config, h *protocol.Head) time.Duration {
	d := cfg.Delay
	if d == nil {
		return 0
	}
	dur := d.FixedDelay
	if d.HeaderDelay != nil {
		ms, ok := atoi(h.Headers.Get(hdrDelay))
		if !ok {
			return 0
		}
		dur = time.Duration(ms) * time.Millisecond
	}
	if dur <= 0 || !hit(d.Percentage, h.Headers.Get(hdrDelayPct)) {
		return 0
	}
	return dur
}

func (x *fault) abortReply(cfg *Config, h *protocol.Head) *filter.LocalReply {
	a := cfg.Abort
	if a == nil {
		return nil
	}
	r := filter.LocalReply{Status: a.HTTPStatus, Body: "fault filter abort", Flags: "FI"}
	if a.GRPCStatus != nil {
		// A gRPC request gets the status; another one a 500.
		r.Status, r.GRPCStatus = 500, *a.GRPCStatus
	}
	if a.HeaderAbort != nil {
		if v, ok := atoi(h.Headers.Get(hdrAbortGRPC)); ok && v >= 1 && v <= 16 {
			r.Status, r.GRPCStatus = 500, v
		} else if v, ok := atoi(h.Headers.Get(hdrAbort)); ok && v >= 200 && v <= 599 {
			r.Status = v
		} else {
			return nil
		}
	}
	if !hit(a.Percentage, h.Headers.Get(hdrAbortPct)) {
		return nil
	}
	return &r
}

// hit draws the percentage; a header may lower the numerator.
func hit(p *filter.Percent, header []byte) bool {
	pc := filter.All
	if p != nil {
		pc = *p
	}
	if n, ok := atoi(header); ok && uint32(n) < pc.Numerator {
		pc.Numerator = uint32(n)
	}
	return pc.Hit()
}

func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n, err := strconv.Atoi(string(b))
	return n, err == nil && n >= 0
}

// OnDestroy stops a pending delay and frees the fault's slot.
func (x *fault) OnDestroy() {
	if x.timer != nil {
		x.timer.Stop()
	}
	if x.active {
		x.active = false
		x.f.active.Add(-1)
	}
}
