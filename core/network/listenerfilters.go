package network

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

// ListenerFilterModule is a configurable listener filter (a listener's
// `listener_filters` entry, e.g. the network rbac): its name and how it
// reads its own block into the filter. The filter is shared by every
// accept of the listener, on every loop at once.
type ListenerFilterModule struct {
	Name   string
	Decode func(raw *yaml.Node, path string) (ListenerFilter, []error)
}

var listenerFilterModules = registry.New[ListenerFilterModule]("listener filter")

// RegisterListenerFilter adds a module; called from cmd/proxylab/builtins.go
// before any config is read (a second module of one name panics).
func RegisterListenerFilter(m ListenerFilterModule) {
	listenerFilterModules.Register(m.Name, m)
}

// DecodeListenerFilter decodes a listener_filters entry of the module
// registered as name (config.Known.ListenerFilter).
func DecodeListenerFilter(name string, raw *yaml.Node, path string) (any, []error) {
	m, ok := listenerFilterModules.Get(name)
	if !ok {
		return nil, []error{registry.Errorf(path+".name", "unknown listener filter %q (known: %s)", name, strings.Join(listenerFilterModules.Names(), ", "))}
	}
	f, errs := m.Decode(raw, path+".typed_config")
	if len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}
