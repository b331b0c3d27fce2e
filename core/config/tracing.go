package config

import (
	"github.com/proxylab/proxylab/core/accesslog"
	"net"
	"time"
)

// RequestID configures x-request-id on an http_proxy listener. Present
// means on; the fields mirror Envoy's HttpConnectionManager knobs.
type RequestID struct {
	// PreserveExternal keeps a client's x-request-id (Envoy's
	// preserve_external_request_id): set it on a listener behind a trusted
	// edge (internal); unset, the listener is an edge and replaces it.
	PreserveExternal bool `yaml:"preserve_external"`
	// Generate makes an id when the request has none to keep (Envoy's
	// generate_request_id, default true).
	Generate bool `yaml:"generate"`
	// AlwaysSetResponse returns the id on every response (Envoy's
	// always_set_request_id_in_response).
	AlwaysSetResponse bool `yaml:"always_set_response"`
}

func (r *RequestID) setDefaults() { r.Generate = true }

// Tracing configures trace context propagation on an http_proxy listener
// (Envoy's tracing block). Present means on.
type Tracing struct {
	// RandomSampling is the percentage (0-100) of new traces sampled
	// (Envoy's random_sampling); a continued trace keeps its parent's
	// decision.
	RandomSampling float64 `yaml:"random_sampling"`
	// Format is how a new trace is written upstream: w3c (traceparent),
	// b3 (single header) or b3multi (X-B3-*). A continued trace is written
	// in the formats it came in.
	Format string `yaml:"format"`
	// OTLP, when set, exports a span per sampled request and per upstream
	// try to an OpenTelemetry collector.
	OTLP *OTLP `yaml:"otlp,omitempty"`
}

func (t *Tracing) setDefaults() { t.RandomSampling, t.Format = 100, "w3c" }

// OTLP is an OpenTelemetry collector reached over OTLP/gRPC (plaintext).
type OTLP struct {
	// Endpoint is the collector's host:port.
	Endpoint    string `yaml:"endpoint"`
	ServiceName string `yaml:"service_name"`
	// Queue bounds the spans waiting for export (over it: dropped and
	// counted, never blocking a request); Batch is the most sent at once,
	// at least every FlushInterval; Timeout bounds one export call.
	Queue         int      `yaml:"queue"`
	Batch         int      `yaml:"batch"`
	FlushInterval Duration `yaml:"flush_interval"`
	Timeout       Duration `yaml:"timeout"`
}

func (o *OTLP) setDefaults() {
	o.ServiceName, o.Queue, o.Batch = "proxylab", 4096, 512
	o.FlushInterval, o.Timeout = Duration(time.Second), Duration(5*time.Second)
}

func (t *Tracing) validate(p string, add func(string, string, ...any)) {
	if t.RandomSampling < 0 || t.RandomSampling > 100 {
		add(p+".random_sampling", "must be within 0-100 (percent)")
	}
	switch t.Format {
	case "w3c", "b3", "b3multi":
	default:
		add(p+".format", "unknown format %q (w3c, b3, b3multi)", t.Format)
	}
	if o := t.OTLP; o != nil {
		if _, _, err := net.SplitHostPort(o.Endpoint); err != nil {
			add(p+".otlp.endpoint", "want host:port: %v", err)
		}
		if o.Queue <= 0 || o.Batch <= 0 || o.Batch > o.Queue {
			add(p+".otlp", "queue and batch must be > 0, batch <= queue")
		}
		if o.FlushInterval <= 0 || o.Timeout <= 0 {
			add(p+".otlp", "flush_interval and timeout must be > 0")
		}
	}
}

// checkAccessLog validates an access_log block at path p.
func checkAccessLog(al *AccessLog, p string, add func(string, string, ...any)) {
	if al.Path == "" {
		add(p+".path", "required (stdout, stderr or a file)")
	}
	if al.Buffer <= 0 {
		add(p+".buffer", "must be > 0")
	}
	if al.Format != "" {
		if _, err := accesslog.ParseFormat(al.Format); err != nil {
			add(p+".format", "%v", err)
		}
	}
}
