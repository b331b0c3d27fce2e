package config

import (
	"reflect"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

// CodecOption is an option block a codec owns (its type, defaults and
// checks live in the codec's package): a cluster's key, checked on the
// clusters speaking the codec, or with Listener a key of an http_proxy
// block, checked on every http_proxy listener (each builds every codec's
// server side). Decode gives the block with its defaults and the file's
// fields (node nil: the defaults) and the decoding errors; the value checks
// itself by implementing registry.Validator.
type CodecOption struct {
	Key      string
	Listener bool
	Decode   func(node *yaml.Node, path string) (any, []error)
}

// CodecOptions are the codec option blocks of a cluster or an http_proxy
// block by key, as their codecs decoded them (defaults where the file has
// none). The keys sit where this field is, in the schema's key list and in
// the dump.
type CodecOptions map[string]any

var (
	codecOptionsType = reflect.TypeOf(CodecOptions(nil))
	clusterType      = reflect.TypeOf(Cluster{})
	httpProxyType    = reflect.TypeOf(HTTPProxy{})
)

// codecOptions are the blocks codecs own in t's mappings (clusters or
// http_proxy), by key; the first codec declaring a key decodes it.
func (k Known) codecOptions(t reflect.Type) map[string]CodecOption {
	if t != clusterType && t != httpProxyType {
		return nil
	}
	out := map[string]CodecOption{}
	for _, c := range k.Codecs {
		for _, o := range c.Options {
			if _, dup := out[o.Key]; !dup && o.Listener == (t == httpProxyType) {
				out[o.Key] = o
			}
		}
	}
	return out
}

// codecKeys are the keys of codecOptions(t), sorted.
func (k Known) codecKeys(t reflect.Type) []string {
	var keys []string
	for key := range k.codecOptions(t) {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

// codecOptionsField is the index of t's CodecOptions field, -1 if none.
func codecOptionsField(t reflect.Type) int {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Type == codecOptionsType {
			return i
		}
	}
	return -1
}

// decodeCodecOption decodes key of v (a cluster or http_proxy mapping) by
// the codec owning it, in file order with the other fields; false when no
// codec owns key there.
func (d *decoder) decodeCodecOption(v reflect.Value, key, val *yaml.Node, path string) bool {
	o, ok := d.k.codecOptions(v.Type())[key.Value]
	if !ok {
		return false
	}
	out, errs := o.Decode(val, path)
	d.addPluginErrors(path, key.Line, errs)
	setCodecOption(v, key.Value, out)
	return true
}

func setCodecOption(v reflect.Value, key string, val any) {
	f := v.Field(codecOptionsField(v.Type()))
	if val == nil {
		return
	}
	if f.IsNil() {
		f.Set(reflect.MakeMap(codecOptionsType))
	}
	f.SetMapIndex(reflect.ValueOf(key), reflect.ValueOf(val))
}

// defaultCodecOptions gives v (a cluster or http_proxy) every codec block
// the file left out, with its defaults.
func (d *decoder) defaultCodecOptions(v reflect.Value, path string) {
	opts := v.Field(codecOptionsField(v.Type())).Interface().(CodecOptions)
	for _, key := range d.k.codecKeys(v.Type()) {
		if _, ok := opts[key]; ok {
			continue
		}
		val, errs := d.k.codecOptions(v.Type())[key].Decode(nil, join(path, key))
		d.addPluginErrors(join(path, key), 0, errs)
		setCodecOption(v, key, val)
	}
}

// validateCodecOptions checks the blocks keys of opts at p.
func validateCodecOptions(opts CodecOptions, keys []string, p string, v *checker) {
	for _, key := range keys {
		if c, ok := opts[key].(registry.Validator); ok {
			v.addPlugin(p+"."+key, c.Validate(p+"."+key))
		}
	}
}

// marshalWithCodecOptions renders v (a cluster or http_proxy without its
// methods) as a mapping with the codec blocks placed after the key before
// the CodecOptions field, as the file would have them.
func marshalWithCodecOptions(v any, opts CodecOptions) (any, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	t := reflect.TypeOf(v)
	after := ""
	for i := codecOptionsField(t) - 1; i >= 0 && after == ""; i-- {
		if f := t.Field(i); f.IsExported() && !inline(f) {
			after = yamlName(f)
		}
	}
	at := len(n.Content)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == after {
			at = i + 2
		}
	}
	var add []*yaml.Node
	keys := make([]string, 0, len(opts))
	for key := range opts {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		var val yaml.Node
		if err := val.Encode(opts[key]); err != nil {
			return nil, err
		}
		add = append(add, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, &val)
	}
	n.Content = slices.Insert(n.Content, at, add...)
	return &n, nil
}

// MarshalYAML dumps the cluster with its codec blocks in place.
func (c Cluster) MarshalYAML() (any, error) {
	type plain Cluster
	return marshalWithCodecOptions(plain(c), c.Options)
}

// MarshalYAML dumps the http_proxy block with its codec blocks in place.
func (h HTTPProxy) MarshalYAML() (any, error) {
	type plain HTTPProxy
	return marshalWithCodecOptions(plain(h), h.Options)
}
