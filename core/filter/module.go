package filter

import (
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

// Kinds says which requests a filter supports.
type Kinds uint8

const (
	// HTTP: HTTP/1.1, HTTP/2 and gRPC requests.
	HTTP Kinds = 1 << iota
	// RPC: requests of the RPC codecs (bolt, dubbo).
	RPC
)

// Module is what a filter package registers: its name in `http_filters`,
// the requests it supports, and how it reads its own config. The filter owns
// its config (names, defaults, rules); the config layer hands over the raw
// YAML. Errors are registry.FieldErrors with paths under path.
type Module struct {
	// Name is the `name:` of an http_filters entry (Envoy's names where
	// one exists: "fault", "local_ratelimit", "ratelimit", "rbac",
	// "ext_authz", "cors", "compressor").
	Name  string
	Kinds Kinds
	// Decode reads the entry's config block (nil when absent) into a
	// Factory with its defaults filled and its rules checked.
	Decode func(raw *yaml.Node, path string) (Factory, []error)
	// DecodePerRoute reads a per-route or per-virtual-host override
	// (Envoy's typed_per_filter_config); what it returns is
	// Info.PerRouteConfig. nil: the filter takes no override (a route may
	// still disable it).
	DecodePerRoute func(raw *yaml.Node, path string) (any, []error)
}

var modules = registry.New[Module]("http filter")

// Register adds a filter module; called from cmd/proxylab/builtins.go before
// any config is read (a second module of one name panics: a build error).
func Register(m Module) {
	if m.Decode == nil {
		panic("filter: Register " + m.Name + " without Decode")
	}
	modules.Register(m.Name, m)
}

// Lookup returns the module registered as name.
func Lookup(name string) (Module, bool) { return modules.Get(name) }

// Names lists the registered filters, sorted.
func Names() []string { return modules.Names() }
