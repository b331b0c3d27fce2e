// Package config is proxylab's YAML schema: its defaults, its validation
// (every error reported with its path in the file, unknown fields included)
// and the embedded default config that `proxylab run` serves with no file.
package config

import (
	_ "embed"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the embedded default config.
func DefaultYAML() []byte { return slices.Clone(defaultYAML) }

// Config is the whole file.
type Config struct {
	// Transport moves the bytes: a registered transport (the binary's
	// default when unset, Known.DefaultTransport).
	Transport string `yaml:"transport"`
	// Workers for reactor transports; 0 means one per usable CPU.
	Workers int `yaml:"workers"`
	// CPUs pins the process, e.g. "0-1" or "2,4"; empty means no pinning.
	CPUs string `yaml:"cpus"`
	// DrainTimeout bounds a graceful stop (SIGTERM).
	DrainTimeout Duration `yaml:"drain_timeout"`
	// ReusePort binds listening sockets with SO_REUSEPORT, so several
	// processes can share a port (transport.Options.ReusePort).
	ReusePort bool `yaml:"reuse_port"`
	// Plugins are the top-level blocks named after registered transports
	// (each decoded by its transport, which owns its settings): the
	// transport's Options.Config.
	Plugins Blocks `yaml:",inline"`
	// DemoUpstream, when set, starts a small built-in HTTP server there,
	// so the embedded config answers with no other process running.
	DemoUpstream *DemoUpstream `yaml:"demo_upstream,omitempty"`
	// Admin, when set, serves the admin API (metrics, config dump, health).
	Admin     *Admin        `yaml:"admin,omitempty"`
	Stats     Stats         `yaml:"stats"`
	Listeners []Listener    `yaml:"listeners"`
	Routes    []VirtualHost `yaml:"routes"`
	Clusters  []Cluster     `yaml:"clusters"`
}

func (c *Config) setDefaults() {
	c.DrainTimeout = Duration(30 * time.Second)
	c.Stats.Enabled = true
}

// Admin configures the admin HTTP server.
type Admin struct {
	// Address defaults to 127.0.0.1:9901: loopback unless said otherwise.
	Address string `yaml:"address"`
	// Token, when set, is required as "Authorization: Bearer <token>" by
	// every endpoint except /ready. It is never shown in /config_dump.
	Token Secret `yaml:"token,omitempty"`
}

func (a *Admin) setDefaults() { a.Address = "127.0.0.1:9901" }

// Stats switches the hot-path metrics; on by default.
type Stats struct {
	Enabled bool `yaml:"enabled"`
}

// Secret is a string that never leaves the process through a dump.
type Secret string

const redacted = "[redacted]"

func (s Secret) MarshalYAML() (any, error) {
	if s == "" {
		return "", nil
	}
	return redacted, nil
}

func (s Secret) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte(`""`), nil
	}
	return []byte(`"` + redacted + `"`), nil
}

// String redacts, so a Secret printed by mistake does not leak either.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Dump renders the effective config as YAML with secrets redacted.
func (c *Config) Dump() ([]byte, error) { return yaml.Marshal(c) }

// DemoUpstream is the built-in demo HTTP server.
type DemoUpstream struct {
	Address string `yaml:"address"`
}

// Known lists the names registered in this binary, for validation, and
// the decoders of the settings plugins own (core/config names no plugin).
type Known struct {
	Transports []string
	LBs        []string
	// DefaultLB is the policy of a cluster without lb.
	DefaultLB string
	// LBOptions, when set, checks a cluster's lb_options block (at path)
	// with the policy's own decoder; errors are registry.FieldErrors.
	LBOptions func(policy string, raw *yaml.Node, path string) []error
	Engines   []string
	// DefaultTransport and DefaultEngine are used where the file names
	// none.
	DefaultTransport, DefaultEngine string
	// TransportOptions decode the top-level block named after a transport
	// (node nil when the file has none); selected: the config runs it.
	TransportOptions map[string]func(node *yaml.Node, path string, selected bool) (any, []error)
	// EngineCertOptions decode a certificate entry's keys beyond cert_file
	// and key_file (one mapping; nil when there are none), by engine.
	EngineCertOptions map[string]func(node *yaml.Node, path string) (any, []error)
	// ListenerTLSBlocks decode the keys engines add to a listener's tls
	// block, by key; engine is the listener's.
	ListenerTLSBlocks map[string]func(node *yaml.Node, path, engine string) (any, []error)
	// Codecs are the binary's L7 codecs in registration order (a
	// listener's codec, a cluster's protocol); DefaultProtocol is a
	// cluster's protocol when it names none.
	Codecs          []Codec
	DefaultProtocol string
	// HTTPFilter decodes an http_filters entry's typed_config (nil when
	// absent) by the filter registered as name; HTTPFilterOverride a
	// typed_per_filter_config entry (disabled, or the filter's override).
	// Errors are registry.FieldErrors; unknown names are refused there.
	HTTPFilter         func(name string, raw *yaml.Node, path string) (any, []error)
	HTTPFilterOverride func(name string, raw *yaml.Node, path string) (disabled bool, cfg any, errs []error)
	// ListenerFilter decodes a listener_filters entry's typed_config by the
	// module registered as name (unknown names are refused there).
	ListenerFilter func(name string, raw *yaml.Node, path string) (any, []error)
}

// Codec describes a registered L7 codec (the binary's stream.Codec) to
// validation; core/config names none itself.
type Codec struct {
	Name string
	// Carries is the request protocol its streams carry: a route may send
	// a listener's requests to a cluster whose codec carries the same.
	Carries string
	// Options are the option blocks the codec owns.
	Options []CodecOption
}

// codec returns the codec registered as name.
func (k Known) codec(name string) (Codec, bool) {
	for _, c := range k.Codecs {
		if c.Name == name {
			return c, true
		}
	}
	return Codec{}, false
}

// codecNames lists the registered codecs sorted, extra first.
func (k Known) codecNames(extra ...string) []string {
	var names []string
	for _, c := range k.Codecs {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	return append(extra, names...)
}

// Parse decodes and validates a config; the error is an Errors listing every
// problem found.
func Parse(data []byte, known Known) (*Config, error) {
	return ParseWith(data, known, BuildOptions{})
}

// Load reads and parses a file; an empty path means the embedded default.
func Load(path string, known Known) (*Config, error) {
	if path == "" {
		return Parse(defaultYAML, known)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, known)
}

// ParseCPUList parses "0-3,6,8-9" into CPU numbers.
func ParseCPUList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("invalid CPU list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("invalid CPU range %q", part)
			}
		}
		for i := a; i <= b; i++ {
			if !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	return out, nil
}

// ClusterByName returns the cluster named name, or a zero Cluster.
func (c *Config) ClusterByName(name string) Cluster {
	for _, cl := range c.Clusters {
		if cl.Name == name {
			return cl
		}
	}
	return Cluster{}
}
