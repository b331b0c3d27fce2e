package config

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
}

func (t *Tracing) setDefaults() { t.RandomSampling, t.Format = 100, "w3c" }

func (t *Tracing) validate(p string, add func(string, string, ...any)) {
	if t.RandomSampling < 0 || t.RandomSampling > 100 {
		add(p+".random_sampling", "must be within 0-100 (percent)")
	}
	switch t.Format {
	case "w3c", "b3", "b3multi":
	default:
		add(p+".format", "unknown format %q (w3c, b3, b3multi)", t.Format)
	}
}
