package registry

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem in a plugin's options block, located by its
// path in the config file (e.g. dpdk.queues) and line (0: unknown).
type FieldError struct {
	Path string
	Line int
	Msg  string
}

func (e FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", e.Path, e.Msg, e.Line)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Errorf makes a FieldError; plugins use it for their own checks.
func Errorf(path, format string, args ...any) error {
	return FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Defaulter is implemented by options types that fill their defaults
// before the file's values are decoded over them.
type Defaulter interface{ SetDefaults() }

// Validator is implemented by options types that check themselves after
// decoding; errors carry paths under path.
type Validator interface{ Validate(path string) []error }

// Decode decodes a plugin's options block into a new T: defaults first
// (*T's SetDefaults, if any), then node's fields over them, then *T's
// Validate (if any). Unknown fields are refused; every error is a
// FieldError with its path under path. A nil node gives the defaults
// (validated too). T is usually a struct with yaml tags.
func Decode[T any](node *yaml.Node, path string) (*T, []error) {
	v, errs := DecodeFields[T](node, path)
	if len(errs) > 0 {
		return nil, errs
	}
	if c, ok := any(v).(Validator); ok {
		if errs = c.Validate(path); len(errs) > 0 {
			return nil, errs
		}
	}
	return v, nil
}

// DecodeFields is Decode without Validate, for blocks checked later or only
// where they apply: the value (never nil; a field that failed keeps its
// default) and the decoding errors.
func DecodeFields[T any](node *yaml.Node, path string) (*T, []error) {
	v := new(T)
	if d, ok := any(v).(Defaulter); ok {
		d.SetDefaults()
	}
	var errs []error
	if node != nil {
		decodeValue(node, reflect.ValueOf(v).Elem(), path, &errs)
	}
	return v, errs
}

// DecodeBlock is DecodeFields as an untyped decoder (a *T), for the
// registries that keep decoders of several types.
func DecodeBlock[T any](node *yaml.Node, path string) (any, []error) {
	v, errs := DecodeFields[T](node, path)
	return v, errs
}

// Duration is a time.Duration written as "1.5s", "250ms", "2m"; negative
// ones are refused.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

var durationType = reflect.TypeOf(Duration(0))

// decodeDuration sets v from a "5s"-style scalar.
func decodeDuration(n *yaml.Node, v reflect.Value, path string, errs *[]error) {
	var s string
	if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
		fail(errs, path, n, "expected a duration like \"5s\"")
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur < 0 {
		fail(errs, path, n, "invalid duration %q (use e.g. 500ms, 5s, 1m)", s)
		return
	}
	v.SetInt(int64(dur))
}

func fail(errs *[]error, path string, n *yaml.Node, format string, args ...any) {
	*errs = append(*errs, FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// decodeValue decodes n into v field by field, so each error names its
// field: structs are walked, everything else is left to yaml.
func decodeValue(n *yaml.Node, v reflect.Value, path string, errs *[]error) {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case v.Type() == durationType:
		decodeDuration(n, v, path, errs)
	case v.Kind() == reflect.Pointer:
		if n.Tag == "!!null" {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		decodeValue(n, v.Elem(), path, errs)
	case v.Kind() == reflect.Struct:
		decodeStruct(n, v, path, errs)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			fail(errs, path, n, "expected a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			decodeValue(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), errs)
		}
		v.Set(s)
	case v.Kind() == reflect.Map || v.Kind() == reflect.Interface:
		if err := n.Decode(v.Addr().Interface()); err != nil {
			fail(errs, path, n, "%v", err)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			fail(errs, path, n, "expected a %s", kindName(v.Kind()))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			fail(errs, path, n, "expected a %s, got %q", kindName(v.Kind()), n.Value)
		}
	}
}

// kindName words a scalar kind as core/config's messages do.
func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "whole number"
	case reflect.Bool:
		return "boolean (true/false)"
	case reflect.String:
		return "string"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return k.String()
}

func decodeStruct(n *yaml.Node, v reflect.Value, path string, errs *[]error) {
	if n.Kind != yaml.MappingNode {
		fail(errs, path, n, "expected a mapping")
		return
	}
	t := v.Type()
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		fpath := path + "." + key.Value
		if seen[key.Value] {
			fail(errs, fpath, key, "set twice")
			continue
		}
		seen[key.Value] = true
		idx := -1
		var names []string
		for f := 0; f < t.NumField(); f++ {
			name := fieldName(t.Field(f))
			if name == "" {
				continue
			}
			names = append(names, name)
			if name == key.Value {
				idx = f
			}
		}
		if idx < 0 {
			fail(errs, fpath, key, "unknown field (known: %s)", strings.Join(names, ", "))
			continue
		}
		decodeValue(val, v.Field(idx), fpath, errs)
	}
}

// fieldName is a field's yaml key, "" for fields yaml does not see.
func fieldName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}
