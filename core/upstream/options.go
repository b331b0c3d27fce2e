package upstream

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// OptionError is one problem in a policy's options block, located by the
// field path inside the block (e.g. "choice_count"); the config layer
// prefixes the block's own path.
type OptionError struct {
	Field string // "" for the block itself
	Line  int    // 1-based line in the file, 0 when unknown
	Msg   string
}

func (e OptionError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// OptionErrors is every problem found in one options block.
type OptionErrors []OptionError

func (es OptionErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return "upstream: lb_options: " + strings.Join(s, "; ")
}

// decodeOptions decodes raw over dst (a pointer to a struct holding the
// defaults): fields by their yaml tags, unknown and repeated fields refused,
// scalars checked by type. A nil or null raw leaves dst as it is.
//
// It is deliberately small (flat structs of scalars, nested structs): a
// generic typed-options decoder shared with transports and engines
// replaces it later.
func decodeOptions(raw *yaml.Node, dst any) OptionErrors {
	var es OptionErrors
	if raw == nil {
		return nil
	}
	n := raw
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	decodeStructOpts(n, reflect.ValueOf(dst).Elem(), "", &es)
	return es
}

func decodeStructOpts(n *yaml.Node, v reflect.Value, path string, es *OptionErrors) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		*es = append(*es, OptionError{Field: path, Line: n.Line, Msg: "expected a mapping"})
		return
	}
	t := v.Type()
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		fpath := key.Value
		if path != "" {
			fpath = path + "." + key.Value
		}
		if seen[key.Value] {
			*es = append(*es, OptionError{Field: fpath, Line: key.Line, Msg: "set twice"})
			continue
		}
		seen[key.Value] = true
		idx := -1
		var names []string
		for j := 0; j < t.NumField(); j++ {
			name := optionName(t.Field(j))
			if name == "" {
				continue
			}
			names = append(names, name)
			if name == key.Value {
				idx = j
			}
		}
		if idx < 0 {
			known := "none"
			if len(names) > 0 {
				known = strings.Join(names, ", ")
			}
			*es = append(*es, OptionError{Field: fpath, Line: key.Line, Msg: fmt.Sprintf("unknown field (known: %s)", known)})
			continue
		}
		f := v.Field(idx)
		if f.Kind() == reflect.Struct {
			decodeStructOpts(val, f, fpath, es)
			continue
		}
		if val.Kind != yaml.ScalarNode || val.Decode(f.Addr().Interface()) != nil {
			*es = append(*es, OptionError{Field: fpath, Line: val.Line, Msg: fmt.Sprintf("expected a %s, got %q", kindWord(f.Kind()), val.Value)})
		}
	}
}

func optionName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func kindWord(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "whole number"
	case reflect.Bool:
		return "boolean (true/false)"
	case reflect.Float64:
		return "number"
	}
	return k.String()
}
