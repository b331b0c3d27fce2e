// Package addheader is an example http stream filter: it adds a configured
// header to every response of a listener; a route or virtual host may set
// another value (typed_per_filter_config) or switch it off (disabled).
//
//	http_filters:
//	  - name: addheader
//	    typed_config: {name: x-served-by, value: edge-1}
//	routes:
//	  - name: site
//	    domains: ["*"]
//	    routes:
//	      - {prefix: /special, cluster: api, typed_per_filter_config: {addheader: {value: special}}}
//	      - {prefix: /quiet, cluster: api, typed_per_filter_config: {addheader: {disabled: true}}}
//
// Registered with one line in cmd/proxylab/builtins.go:
//
//	filter.Register(addheader.Module)
//
// It counts the responses it marked, exported as
// proxylab_addheader_responses{side="listener",name=<listener>}.
package addheader

import (
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
)

// Name is the filter's name in http_filters.
const Name = "addheader"

// Module is what the binary registers: the name, the requests it supports
// (HTTP only: an RPC response has no headers to add to), and its decoders.
var Module = filter.Module{Name: Name, Kinds: filter.HTTP, Decode: Decode, DecodePerRoute: DecodePerRoute}

// Config is the typed_config block.
type Config struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// SetDefaults fills the defaults (registry.Defaulter).
func (c *Config) SetDefaults() { c.Name = "x-proxy" }

// Validate checks the block (registry.Validator); errors carry paths.
func (c *Config) Validate(path string) []error {
	if c.Value == "" {
		return []error{registry.Errorf(path+".value", "required")}
	}
	return nil
}

// Override is a route's or virtual host's typed_per_filter_config entry.
type Override struct {
	Value string `yaml:"value"`
}

// Decode makes the listener's Factory from its block.
func Decode(raw *yaml.Node, path string) (filter.Factory, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Factory{name: []byte(c.Name), value: []byte(c.Value)}, nil
}

// DecodePerRoute reads an override; what it returns is
// filter.Info.PerRouteConfig for the route's requests.
func DecodePerRoute(raw *yaml.Node, path string) (any, []error) {
	o, errs := registry.Decode[Override](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	return []byte(o.Value), nil
}

// Factory is shared by every stream of the listener (read-only but for
// its counter, which is safe for concurrent use).
type Factory struct {
	name, value []byte
	marked      stats.Counter
}

var (
	_ filter.Factory       = (*Factory)(nil)
	_ stats.Collector      = (*Factory)(nil)
	_ filter.EncoderFilter = (*addHeader)(nil)
)

// NewFilter makes one stream's filter.
func (f *Factory) NewFilter(s filter.Stream) filter.Filter { return &addHeader{f: f, s: s} }

// Collect exports the filter's metric (stats.Collector).
func (f *Factory) Collect(emit stats.Emit) {
	emit("addheader_responses", "Responses the addheader filter marked.", stats.CounterKind, float64(f.marked.Value()))
}

// addHeader is an encoder filter; PassThrough supplies what it does not
// override.
type addHeader struct {
	filter.PassThrough
	f *Factory
	s filter.Stream
}

// EncodeHeaders adds the header to the response head (the upstream's, or
// a local reply made by the router or by a filter after this one).
func (x *addHeader) EncodeHeaders(h *protocol.Head, _ bool) filter.Status {
	v := x.f.value
	if o, ok := x.s.Info().PerRouteConfig().([]byte); ok {
		v = o
	}
	h.Headers.Del(string(x.f.name))
	h.Headers.Append(x.f.name, v)
	x.f.marked.Inc(0)
	return filter.Continue
}
