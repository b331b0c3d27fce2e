package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/proxylab/proxylab/foundation/registry"
	"gopkg.in/yaml.v3"
)

// FieldError is one problem in a config file, located by field path.
type FieldError struct {
	Path string // e.g. clusters[2].lb
	Line int    // 1-based line in the file, 0 when unknown
	Msg  string
}

func (e FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", e.Path, e.Msg, e.Line)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Errors is every problem found in one config.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return "config: " + strings.Join(lines, "\nconfig: ")
}

// defaulter is implemented by config structs that fill their defaults before
// the file's values are decoded over them.
type defaulter interface{ setDefaults() }

var (
	durationType = reflect.TypeOf(Duration(0))
	nodeType     = reflect.TypeOf(yaml.Node{})
)

// Duration is a time.Duration written as "1.5s", "250ms", "2m" (the one
// type plugins' option blocks use too).
type Duration = registry.Duration

type decoder struct {
	k    Known
	errs Errors
}

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	if path == "" {
		path = "(top)"
	}
	d.errs = append(d.errs, FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode sets v from n, recording every error under path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() == reflect.Pointer {
		if n.Tag == "!!null" {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if v.CanAddr() {
		if df, ok := v.Addr().Interface().(defaulter); ok && n.Kind == yaml.MappingNode {
			df.setDefaults()
		}
	}
	switch {
	case v.Type() == nodeType: // handed raw to a plugin's own decoder
		v.Set(reflect.ValueOf(*n))
	case v.Type() == durationType:
		var s string
		if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
			d.fail(path, n, "expected a duration like \"5s\"")
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil || dur < 0 {
			d.fail(path, n, "invalid duration %q (use e.g. 500ms, 5s, 1m)", s)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "expected a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case v.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n, "expected a mapping")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := reflect.New(v.Type().Key()).Elem()
			d.decode(n.Content[i], k, path)
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(n.Content[i+1], e, join(path, n.Content[i].Value))
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "expected a %s", kindName(v.Kind()))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(path, n, "expected a %s, got %q", kindName(v.Kind()), n.Value)
		}
	}
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return "whole number"
	case reflect.Bool:
		return "boolean (true/false)"
	case reflect.String:
		return "string"
	case reflect.Float64:
		return "number"
	}
	return k.String()
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping")
		return
	}
	t := v.Type()
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		fpath := join(path, key.Value)
		if seen[key.Value] {
			d.fail(fpath, key, "set twice")
			continue
		}
		seen[key.Value] = true
		idx := fieldIndex(t, key.Value)
		if idx == nil && keep(v, key, val, fpath) {
			continue // a plugin's: resolved once the whole file is read
		}
		if idx == nil && d.decodeCodecOption(v, key, val, fpath) {
			continue // a codec's
		}
		if idx == nil {
			d.fail(fpath, key, "unknown field (known: %s)", strings.Join(d.fieldNames(t), ", "))
			continue
		}
		d.decode(val, v.FieldByIndex(idx), fpath)
	}
}

func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func inline(f reflect.StructField) bool {
	_, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return f.Type.Kind() == reflect.Struct && strings.Contains(opts, "inline")
}

// fieldIndex finds key among t's fields, looking into `yaml:",inline"`
// structs; nil when there is none.
func fieldIndex(t reflect.Type, key string) []int {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Type == blocksType {
			continue
		}
		if inline(f) {
			if sub := fieldIndex(f.Type, key); sub != nil {
				return append([]int{i}, sub...)
			}
			continue
		}
		if yamlName(f) == key && key != "-" {
			return []int{i}
		}
	}
	return nil
}

// fieldNames lists t's keys, the codecs' blocks in their field's place.
func (d *decoder) fieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		switch {
		case f.Type == codecOptionsType:
			out = append(out, d.k.codecKeys(t)...)
		case !f.IsExported() || yamlName(f) == "-" || f.Type == blocksType:
		case inline(f):
			out = append(out, d.fieldNames(f.Type)...)
		default:
			out = append(out, yamlName(f))
		}
	}
	return out
}
