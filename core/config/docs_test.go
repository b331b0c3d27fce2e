package config_test

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/config"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
	"github.com/proxylab/proxylab/core/stream/rpc"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/offload/gm"
	"github.com/proxylab/proxylab/offload/gotls"
	"github.com/proxylab/proxylab/transport/dpdk"
	"github.com/proxylab/proxylab/transport/sockmap"
	"gopkg.in/yaml.v3"
)

// pluginBlocks are the keys plugins own inside core/config's mappings (a
// config.Blocks field), with the types they decode: a transport's top-level
// block, the TLCP block of a listener's tls. Keep in step with the built-ins.
var pluginBlocks = map[string]reflect.Type{
	"sockmap":  reflect.TypeOf(sockmap.Options{}),
	"dpdk":     reflect.TypeOf(dpdk.Options{}),
	"tlcp":     reflect.TypeOf(gm.TLCP{}),
	"tls13_sm": reflect.TypeOf(gm.TLS13SM{}),
}

// codecBlocks are the option blocks codecs own in clusters and http_proxy
// blocks (a config.CodecOptions field), with the types they decode. Keep in
// step with the built-ins.
var codecBlocks = map[string]reflect.Type{
	h2s.OptionsKey: reflect.TypeOf(h2s.Options{}),
	rpc.OptionsKey: reflect.TypeOf(rpc.Options{}),
}

var codecOptionsType = reflect.TypeOf(config.CodecOptions(nil))

// pluginInline are types whose keys a plugin adds directly to a mapping of
// core/config's (an engine's keys in a certificate entry).
var pluginInline = []reflect.Type{reflect.TypeOf(gm.CertOptions{}), reflect.TypeOf(gotls.CertOptions{})}

// schemaKey is one yaml key of the config schema and where it sits.
type schemaKey struct{ key, path string }

func yamlKey(f reflect.StructField) (name string, inline bool) {
	tag := f.Tag.Get("yaml")
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, strings.Contains(opts, "inline")
}

var nodeType = reflect.TypeOf(yaml.Node{})

// walkSchema lists every yaml key reachable from t.
func walkSchema(t reflect.Type, path string, seen map[reflect.Type]bool, out *[]schemaKey) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == nodeType || seen[t] {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, inline := yamlKey(f)
		if name == "-" {
			continue
		}
		if inline {
			walkSchema(f.Type, path, seen, out) // a Blocks map: nothing to walk
			continue
		}
		*out = append(*out, schemaKey{name, path + "." + name})
		walkSchema(f.Type, path+"."+name, seen, out)
	}
}

func readReference(t *testing.T) string {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfigReferenceCoversSchema: every yaml key of the config structs is
// written in docs/configuration.md — as `key:` in an example or as `key`
// in the text — so a new field cannot ship undocumented.
func TestConfigReferenceCoversSchema(t *testing.T) {
	doc := readReference(t)
	var keys []schemaKey
	walkSchema(reflect.TypeOf(config.Config{}), "", map[reflect.Type]bool{}, &keys)
	for name, t := range pluginBlocks {
		keys = append(keys, schemaKey{name, "(plugin) " + name})
		walkSchema(t, "(plugin) "+name, map[reflect.Type]bool{}, &keys)
	}
	for _, t := range pluginInline {
		walkSchema(t, "(plugin) "+t.String(), map[reflect.Type]bool{}, &keys)
	}
	for name, t := range codecBlocks {
		keys = append(keys, schemaKey{name, "(codec) " + name})
		walkSchema(t, "(codec) "+name, map[reflect.Type]bool{}, &keys)
	}
	if len(keys) < 100 {
		t.Fatalf("walked only %d keys: the walk is broken", len(keys))
	}
	missing := map[string][]string{}
	for _, k := range keys {
		re := regexp.MustCompile(`(^|[\s{,\[-])` + regexp.QuoteMeta(k.key) + `:|` + "`" + regexp.QuoteMeta(k.key) + "`")
		if !re.MatchString(doc) {
			missing[k.key] = append(missing[k.key], k.path)
		}
	}
	var names []string
	for k := range missing {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Errorf("config key %q (%s) is not in docs/configuration.md", k, strings.Join(missing[k], ", "))
	}
}

// lbOptionKeys are the keys policies accept in lb_options (they own them).
func lbOptionKeys() map[string]bool {
	out := map[string]bool{}
	for _, v := range []any{upstream.LeastRequestOptions{}, upstream.RingHashOptions{}, upstream.MaglevOptions{}} {
		t := reflect.TypeOf(v)
		for i := 0; i < t.NumField(); i++ {
			name, _ := yamlKey(t.Field(i))
			out[name] = true
		}
	}
	return out
}

// checkNode reports keys in n that t does not have.
func checkNode(t *testing.T, n *yaml.Node, typ reflect.Type, path string, lbKeys map[string]bool) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ == nodeType && strings.Contains(path, "typed_"):
		// An http filter's block: the filter checks it (its own docs test).
	case typ == nodeType: // lb_options: the policies' keys
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if !lbKeys[n.Content[i].Value] {
					t.Errorf("docs/configuration.md line %d: %s.%s is no policy's option", n.Content[i].Line, path, n.Content[i].Value)
				}
			}
		}
	case typ.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			checkNode(t, item, typ.Elem(), path+"[]", lbKeys)
		}
	case typ.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			checkNode(t, n.Content[i], typ.Elem(), path+".*", lbKeys)
		}
	case typ.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			f, ok := fieldFor(typ, key)
			if ct, isCodec := codecBlocks[key]; !ok && isCodec && hasCodecOptions(typ) {
				checkNode(t, n.Content[i+1], ct, path+"."+key, lbKeys)
				continue
			}
			if !ok && hasBlocks(typ) {
				if pt, isPlugin := pluginBlocks[key]; isPlugin {
					checkNode(t, n.Content[i+1], pt, path+"."+key, lbKeys)
					continue
				}
				for _, pt := range pluginInline {
					if f, ok = fieldFor(pt, key); ok {
						break
					}
				}
			}
			if !ok {
				t.Errorf("docs/configuration.md line %d: %s.%s is not a config key", n.Content[i].Line, path, key)
				continue
			}
			checkNode(t, n.Content[i+1], f.Type, path+"."+key, lbKeys)
		}
	}
}

// hasBlocks reports whether t hands unknown keys to plugins.
func hasBlocks(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if _, inline := yamlKey(t.Field(i)); inline && t.Field(i).Type.Kind() == reflect.Map {
			return true
		}
	}
	return false
}

// hasCodecOptions reports whether t holds codecs' option blocks.
func hasCodecOptions(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Type == codecOptionsType {
			return true
		}
	}
	return false
}

func fieldFor(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, inline := yamlKey(f)
		if inline {
			if f.Type.Kind() != reflect.Struct {
				continue // plugins' keys: see hasBlocks
			}
			if sub, ok := fieldFor(f.Type, key); ok {
				return sub, true
			}
			continue
		}
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// TestConfigReferenceHasNoStaleKeys: every key in the yaml examples of
// docs/configuration.md exists in the schema (or, inside lb_options, in a
// policy's options), so a renamed or removed field cannot linger there.
func TestConfigReferenceHasNoStaleKeys(t *testing.T) {
	doc := readReference(t)
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("no yaml blocks in docs/configuration.md")
	}
	lbKeys := lbOptionKeys()
	for _, b := range blocks {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(b[1]), &n); err != nil {
			t.Fatalf("docs/configuration.md: a yaml block does not parse: %v", err)
		}
		if len(n.Content) > 0 {
			checkNode(t, n.Content[0], reflect.TypeOf(config.Config{}), "", lbKeys)
		}
	}
}
