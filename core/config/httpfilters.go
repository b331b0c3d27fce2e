package config

import (
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// HTTP stream filters (core/filter): a listener's ordered http_filters and
// the per-virtual-host / per-route overrides (Envoy's typed_per_filter_config).
// core/config names no filter: each entry's block is handed raw to the
// filter's own decoder through Known.

// HTTPFilter is one entry of an http_proxy's http_filters.
type HTTPFilter struct {
	// Name is a registered filter (Known.HTTPFilter refuses others).
	Name string `yaml:"name"`
	// TypedConfig is the filter's own block, decoded by the filter (an
	// Envoy "@type" key in it is ignored).
	TypedConfig *yaml.Node `yaml:"typed_config,omitempty"`
	// Factory is what the filter's decoder made of it.
	Factory any `yaml:"-"`
}

// FilterOverride is a decoded typed_per_filter_config entry.
type FilterOverride struct {
	Disabled bool
	Config   any
}

// decodeNamed decodes one `{name, typed_config}` entry at p by the module
// registered as name (dec: the binary's decoders of that kind); nil when the
// entry is refused (no name, listed twice, none of that kind in this
// binary) or its config does not decode, the errors recorded with paths.
func (d *decoder) decodeNamed(p, name string, raw *yaml.Node, seen map[string]bool, dec func(string, *yaml.Node, string) (any, []error), kind string) any {
	switch {
	case name == "":
		d.errs = append(d.errs, FieldError{Path: p + ".name", Msg: "required"})
		return nil
	case seen[name]:
		d.errs = append(d.errs, FieldError{Path: p + ".name", Msg: fmt.Sprintf("filter %q listed twice", name)})
		return nil
	case dec == nil:
		d.errs = append(d.errs, FieldError{Path: p + ".name", Msg: "this binary has no " + kind})
		return nil
	}
	seen[name] = true
	line := 0
	if raw != nil {
		line = raw.Line
	}
	v, errs := dec(name, raw, p)
	d.addPluginErrors(p, line, errs)
	return v
}

// resolveHTTPFilters decodes every http_filters entry and every override by
// the filter that owns it.
func (d *decoder) resolveHTTPFilters(c *Config, k Known) {
	for i := range c.Listeners {
		h := c.Listeners[i].HTTP
		if h == nil {
			continue
		}
		seen := map[string]bool{}
		for j := range h.HTTPFilters {
			f := &h.HTTPFilters[j]
			p := "listeners[" + strconv.Itoa(i) + "].http_proxy.http_filters[" + strconv.Itoa(j) + "]"
			f.Factory = d.decodeNamed(p, f.Name, f.TypedConfig, seen, k.HTTPFilter, "http filters")
		}
	}
	for i := range c.Routes {
		vh := &c.Routes[i]
		p := "routes[" + strconv.Itoa(i) + "]"
		vh.PerFilter = d.overrides(vh.TypedPerFilterConfig, p+".typed_per_filter_config", k)
		for j := range vh.Routes {
			r := &vh.Routes[j]
			r.PerFilter = d.overrides(r.TypedPerFilterConfig, p+".routes["+strconv.Itoa(j)+"].typed_per_filter_config", k)
		}
	}
}

func (d *decoder) overrides(raw map[string]*yaml.Node, path string, k Known) map[string]FilterOverride {
	if len(raw) == 0 {
		return nil
	}
	out := make(map[string]FilterOverride, len(raw))
	for _, name := range sortedNodeKeys(raw) {
		p := join(path, name)
		if k.HTTPFilterOverride == nil {
			d.errs = append(d.errs, FieldError{Path: p, Msg: "this binary has no http filters"})
			continue
		}
		n := raw[name]
		disabled, cfg, errs := k.HTTPFilterOverride(name, n, p)
		line := 0
		if n != nil {
			line = n.Line
		}
		d.addPluginErrors(p, line, errs)
		out[name] = FilterOverride{Disabled: disabled, Config: cfg}
	}
	return out
}

func sortedNodeKeys(m map[string]*yaml.Node) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
