package config

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

// Blocks hold the keys of a mapping that core/config does not know itself
// and hands to the plugins that own them: a transport's top-level block
// (named after it), an engine's keys in a tls block or certificate entry.
// While decoding each value is a *Block; a plugin's decoded value may
// replace it (Dump shows that value, defaults included).
type Blocks map[string]any

// Block is one key as found in the file, not yet decoded.
type Block struct {
	Key, Value *yaml.Node
	Path       string
}

// MarshalYAML dumps the block as written.
func (b *Block) MarshalYAML() (any, error) { return b.Value, nil }

var blocksType = reflect.TypeOf(Blocks(nil))

// blocksField is the index of t's Blocks field, -1 when it has none.
func blocksField(t reflect.Type) int {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Type == blocksType {
			return i
		}
	}
	return -1
}

// keep records an unknown key in v's Blocks; false when v has none.
func keep(v reflect.Value, key, val *yaml.Node, path string) bool {
	i := blocksField(v.Type())
	if i < 0 {
		return false
	}
	f := v.Field(i)
	if f.IsNil() {
		f.Set(reflect.MakeMap(blocksType))
	}
	f.SetMapIndex(reflect.ValueOf(key.Value), reflect.ValueOf(&Block{Key: key, Value: val, Path: path}))
	return true
}

// addPluginErrors records a plugin's errors, located under path.
func (d *decoder) addPluginErrors(path string, line int, errs []error) {
	for _, err := range errs {
		var fe registry.FieldError
		if errors.As(err, &fe) {
			d.errs = append(d.errs, FieldError{Path: fe.Path, Line: fe.Line, Msg: fe.Msg})
		} else {
			d.errs = append(d.errs, FieldError{Path: path, Line: line, Msg: err.Error()})
		}
	}
}

// unknown refuses a key no plugin claimed, listing what is known there.
func (d *decoder) unknown(b *Block, owner reflect.Type, plugins []string) {
	known := append(d.fieldNames(owner), plugins...)
	d.fail(b.Path, b.Key, "unknown field (known: %s)", strings.Join(known, ", "))
}

// resolveTop decodes the top-level blocks named after registered
// transports, each by its plugin (the defaults when the file has none),
// and refuses any other unknown key.
func (d *decoder) resolveTop(c *Config, k Known) {
	names := make([]string, 0, len(k.TransportOptions))
	for n := range k.TransportOptions {
		names = append(names, n)
	}
	slices.Sort(names)
	found := c.Plugins
	c.Plugins = Blocks{}
	for key, v := range found {
		if _, ok := k.TransportOptions[key]; !ok {
			d.unknown(v.(*Block), reflect.TypeOf(*c), names)
		}
	}
	for _, n := range names {
		var node *yaml.Node
		line := 0
		if b, ok := found[n].(*Block); ok {
			node, line = b.Value, b.Key.Line
		}
		val, errs := k.TransportOptions[n](node, n, c.Transport == n)
		d.addPluginErrors(n, line, errs)
		if val != nil {
			c.Plugins[n] = val
		}
	}
}

// resolveCert hands a certificate entry's unknown keys (as one mapping,
// nil when there are none) to its engine's decoder; without one they are
// refused.
func (d *decoder) resolveCert(c *CertFiles, engine, path string, k Known) {
	dec := k.EngineCertOptions[engine]
	if dec == nil {
		for _, v := range c.Extra {
			d.unknown(v.(*Block), reflect.TypeOf(*c), nil)
		}
		return
	}
	var node *yaml.Node
	if len(c.Extra) > 0 {
		node = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, key := range sortedKeys(c.Extra) {
			b := c.Extra[key].(*Block)
			node.Content = append(node.Content, b.Key, b.Value)
			node.Line = b.Key.Line
		}
	}
	val, errs := dec(node, path)
	d.addPluginErrors(path, 0, withCertKeys(errs, path))
	c.EngineOptions = val
}

// withCertKeys names the entry's own keys (cert_file, key_file) beside the
// engine's in an "unknown field" error about the entry itself: the user
// wrote one mapping, and the list should say all it may hold.
func withCertKeys(errs []error, path string) []error {
	const unknown = "unknown field (known: "
	for i, err := range errs {
		var fe registry.FieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(fe.Msg, unknown) || strings.Contains(strings.TrimPrefix(fe.Path, path+"."), ".") {
			continue
		}
		fe.Msg = unknown + "cert_file, key_file, " + strings.TrimPrefix(fe.Msg, unknown)
		errs[i] = fe
	}
	return errs
}

// resolveListenerTLS hands the unknown keys of a listener's tls block to
// the engines that added them.
func (d *decoder) resolveListenerTLS(t *ListenerTLS, path string, k Known) {
	var names []string
	for n := range k.ListenerTLSBlocks {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, key := range sortedKeys(t.Blocks) {
		b := t.Blocks[key].(*Block)
		dec := k.ListenerTLSBlocks[key]
		if dec == nil {
			d.unknown(b, reflect.TypeOf(*t), names)
			delete(t.Blocks, key)
			continue
		}
		if b.Value.Tag == "!!null" {
			delete(t.Blocks, key)
			continue
		}
		val, errs := dec(b.Value, b.Path, t.Engine)
		d.addPluginErrors(b.Path, b.Key.Line, errs)
		t.Blocks[key] = val
	}
}

func sortedKeys(b Blocks) []string {
	keys := make([]string, 0, len(b))
	for k := range b {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// resolve runs the plugins' decoders over what they own.
func (d *decoder) resolve(c *Config, k Known) {
	if c.Transport == "" {
		c.Transport = k.DefaultTransport
	}
	d.resolveTop(c, k)
	d.resolveHTTPFilters(c, k)
	d.resolveListenerFilters(c, k)
	for i := range c.Listeners {
		t := c.Listeners[i].TLS
		if t == nil {
			continue
		}
		if t.Engine == "" {
			t.Engine = k.DefaultEngine
		}
		p := "listeners[" + strconv.Itoa(i) + "].tls"
		d.resolveListenerTLS(t, p, k)
		for j := range t.Certificates {
			d.resolveCert(&t.Certificates[j], t.Engine, p+".certificates["+strconv.Itoa(j)+"]", k)
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
		if t != nil && t.ClientCert != nil {
			d.resolveCert(t.ClientCert, t.Engine, "clusters["+strconv.Itoa(i)+"].tls.client_cert", k)
		}
	}
}
