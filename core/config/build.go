package config

import (
	"fmt"
	"os"
	"reflect"
	"strconv"

	"gopkg.in/yaml.v3"
)

// This file is the entry for configs built in Go rather than decoded from
// YAML (the xDS translator, an Envoy bootstrap): the same defaults, the same
// plugin resolution and the same validation as Parse, so there is one
// validation path whatever the source.

// SetDefaults fills v (a pointer to a config struct: *Cluster, *Route,
// *HTTPProxy …) with the defaults the YAML decoder applies when the
// struct's mapping appears in a file; a builder then sets the fields it has
// over them, as the file's values are decoded over the defaults. A type
// without defaults is left as it is.
func SetDefaults(v any) {
	if d, ok := v.(defaulter); ok {
		d.setDefaults()
	}
}

// ParseWith is Parse with options: a file that runs under a control plane
// may leave listeners and hosts to it.
func ParseWith(data []byte, known Known, opts BuildOptions) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{{Path: "(file)", Msg: err.Error()}}
	}
	cfg := &Config{}
	cfg.setDefaults()
	d := &decoder{k: known}
	if root.Kind != 0 {
		d.decode(&root, reflect.ValueOf(cfg).Elem(), "")
	}
	for i := range cfg.Clusters {
		if cfg.Clusters[i].Protocol == "" {
			cfg.Clusters[i].Protocol = known.DefaultProtocol
		}
	}
	d.resolve(cfg, known)
	es := cfg.validate(known)
	if opts.Dynamic {
		es = dropDynamic(cfg, es)
	}
	d.errs = append(d.errs, es...)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return cfg, nil
}

// LoadWith is Load with options (ParseWith).
func LoadWith(path string, known Known, opts BuildOptions) (*Config, error) {
	if path == "" {
		return ParseWith(defaultYAML, known, opts)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseWith(data, known, opts)
}

// BuildOptions says what a built config may lack.
type BuildOptions struct {
	// Dynamic allows what a control plane fills in later: no listener yet
	// and clusters without hosts (endpoints still to come, or none: such a
	// cluster answers 503 like Envoy's empty cluster).
	Dynamic bool
}

// Build finishes a config built in Go: a cluster's protocol and LB default,
// the transport and engine defaults, the plugins' blocks (decoded from
// nothing when absent, so their defaults apply; values a plugin already
// decoded, e.g. of a base config Parse returned, are kept), then the whole
// validation. The error is an Errors with the same field paths Parse
// reports.
func Build(cfg *Config, known Known, opts BuildOptions) error {
	for i := range cfg.Clusters {
		if cfg.Clusters[i].Protocol == "" {
			cfg.Clusters[i].Protocol = known.DefaultProtocol
		}
	}
	d := &decoder{k: known}
	d.resolveBuilt(cfg, known)
	es := cfg.validate(known)
	if opts.Dynamic {
		es = dropDynamic(cfg, es)
	}
	d.errs = append(d.errs, es...)
	if len(d.errs) > 0 {
		return d.errs
	}
	return nil
}

// dropDynamic removes the errors a dynamic config is allowed: no listener,
// a cluster without hosts.
func dropDynamic(cfg *Config, es Errors) Errors {
	skip := map[string]bool{}
	if len(cfg.Listeners) == 0 {
		skip["listeners"] = true
	}
	for i, c := range cfg.Clusters {
		if len(c.Hosts) == 0 {
			skip["clusters["+strconv.Itoa(i)+"].hosts"] = true
		}
	}
	out := es[:0]
	for _, e := range es {
		if !skip[e.Path] {
			out = append(out, e)
		}
	}
	return out
}

// resolveBuilt is resolve for a built config: only what is not decoded
// yet is handed to its plugin.
func (d *decoder) resolveBuilt(c *Config, k Known) {
	if c.Transport == "" {
		c.Transport = k.DefaultTransport
	}
	if c.Plugins == nil {
		c.Plugins = Blocks{}
	}
	for n, dec := range k.TransportOptions {
		if v, ok := c.Plugins[n]; ok {
			if _, raw := v.(*Block); !raw {
				continue // decoded already
			}
		}
		var node *yaml.Node
		if b, ok := c.Plugins[n].(*Block); ok {
			node = b.Value
		}
		val, errs := dec(node, n, c.Transport == n)
		d.addPluginErrors(n, 0, errs)
		if val != nil {
			c.Plugins[n] = val
		} else {
			delete(c.Plugins, n)
		}
	}
	for i := range c.Listeners {
		t := c.Listeners[i].TLS
		if t == nil {
			continue
		}
		if t.Engine == "" {
			t.Engine = k.DefaultEngine
		}
		p := "listeners[" + strconv.Itoa(i) + "].tls"
		for j := range t.Certificates {
			if t.Certificates[j].EngineOptions == nil {
				d.resolveCert(&t.Certificates[j], t.Engine, p+".certificates["+strconv.Itoa(j)+"]", k)
			}
		}
	}
	for i := range c.Listeners {
		if h := c.Listeners[i].HTTP; h != nil {
			d.defaultCodecOptions(reflect.ValueOf(h).Elem(), "listeners["+strconv.Itoa(i)+"].http_proxy")
		}
	}
	for i := range c.Clusters {
		d.defaultCodecOptions(reflect.ValueOf(&c.Clusters[i]).Elem(), "clusters["+strconv.Itoa(i)+"]")
		t := c.Clusters[i].TLS
		if t != nil && t.Engine == "" {
			t.Engine = k.DefaultEngine
		}
		if t != nil && t.ClientCert != nil && t.ClientCert.EngineOptions == nil {
			d.resolveCert(t.ClientCert, t.Engine, "clusters["+strconv.Itoa(i)+"].tls.client_cert", k)
		}
	}
}
