package config

import (
	"strconv"

	"gopkg.in/yaml.v3"
)

// ListenerFilter is one entry of a listener's listener_filters: a
// registered listener filter (network.RegisterListenerFilter) run on each
// accepted connection before its network filter (e.g. rbac over the
// client's and the listener's addresses).
type ListenerFilter struct {
	Name        string     `yaml:"name"`
	TypedConfig *yaml.Node `yaml:"typed_config,omitempty"`
	// Filter is what the module's decoder made of it.
	Filter any `yaml:"-"`
}

// resolveListenerFilters decodes every listener_filters entry by its module.
func (d *decoder) resolveListenerFilters(c *Config, k Known) {
	for i := range c.Listeners {
		seen := map[string]bool{}
		for j := range c.Listeners[i].ListenerFilters {
			f := &c.Listeners[i].ListenerFilters[j]
			p := "listeners[" + strconv.Itoa(i) + "].listener_filters[" + strconv.Itoa(j) + "]"
			f.Filter = d.decodeNamed(p, f.Name, f.TypedConfig, seen, k.ListenerFilter, "listener filters")
		}
	}
}
