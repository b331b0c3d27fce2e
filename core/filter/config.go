package filter

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

// DecodeConfig decodes an http_filters entry of the filter registered as
// name (config.Known.HTTPFilter): its Factory, or errors under path.
func DecodeConfig(name string, raw *yaml.Node, path string) (any, []error) {
	m, ok := Lookup(name)
	if !ok {
		return nil, []error{unknown(name, path+".name")}
	}
	f, errs := m.Decode(stripType(raw), path+".typed_config")
	if len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}

// DecodeOverride decodes a typed_per_filter_config entry for name
// (config.Known.HTTPFilterOverride): `disabled: true` alone switches the
// filter off; anything else is the filter's override (Module.DecodePerRoute).
func DecodeOverride(name string, raw *yaml.Node, path string) (disabled bool, cfg any, errs []error) {
	m, ok := Lookup(name)
	if !ok {
		return false, nil, []error{unknown(name, path)}
	}
	raw = stripType(raw)
	if raw != nil && raw.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(raw.Content); i += 2 {
			if raw.Content[i].Value != "disabled" {
				continue
			}
			if len(raw.Content) != 2 {
				return false, nil, []error{registry.FieldError{Path: path + ".disabled", Line: raw.Content[i].Line,
					Msg: "disabled stands alone (an override either disables the filter or configures it)"}}
			}
			if err := raw.Content[i+1].Decode(&disabled); err != nil {
				return false, nil, []error{registry.FieldError{Path: path + ".disabled", Line: raw.Content[i].Line, Msg: "expected true or false"}}
			}
			return disabled, nil, nil
		}
	}
	if m.DecodePerRoute == nil {
		return false, nil, []error{registry.Errorf(path, "filter %q takes no per-route config (only disabled: true)", name)}
	}
	cfg, errs = m.DecodePerRoute(raw, path)
	return false, cfg, errs
}

func unknown(name, path string) error {
	return registry.Errorf(path, "unknown http filter %q (known: %s)", name, strings.Join(Names(), ", "))
}

// stripType drops an Envoy "@type" key so configs carried over from Envoy
// decode (the filter is known by its name).
func stripType(raw *yaml.Node) *yaml.Node {
	if raw == nil {
		return nil
	}
	n := raw
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return raw
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "@type" {
			c := *n
			c.Content = append(append([]*yaml.Node(nil), n.Content[:i]...), n.Content[i+2:]...)
			return &c
		}
	}
	return raw
}
