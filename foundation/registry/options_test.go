package registry

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type testOpts struct {
	Name   string   `yaml:"name"`
	Count  int      `yaml:"count"`
	On     *bool    `yaml:"on"`
	List   []string `yaml:"list"`
	Nested struct {
		Port int `yaml:"port"`
	} `yaml:"nested"`
	Items []struct {
		File string `yaml:"file"`
	} `yaml:"items"`
}

func (o *testOpts) SetDefaults() { o.Count = 7 }

func (o *testOpts) Validate(path string) []error {
	if o.Count > 100 {
		return []error{Errorf(path+".count", "must be <= 100, got %d", o.Count)}
	}
	return nil
}

func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return n.Content[0]
}

func TestDecodeOptions(t *testing.T) {
	cases := []struct {
		name, src string
		want      string // the value, or every error joined by "|"
	}{
		{"defaults", "", "{ 7 <nil> [] {0} []}"},
		{"values", "name: a\ncount: 3\non: false\nlist: [x, y]\nnested: {port: 80}\nitems: [{file: f}]", "{a 3 false [x y] {80} [{f}]}"},
		{"unknown", "nme: a", "p.nme: unknown field (known: name, count, on, list, nested, items) (line 1)"},
		{"nested unknown", "nested: {prt: 1}", "p.nested.prt: unknown field (known: port) (line 1)"},
		{"list item unknown", "items:\n- {fil: f}", "p.items[0].fil: unknown field (known: file) (line 2)"},
		{"bad int", "count: many", `p.count: expected a whole number, got "many" (line 1)`},
		{"bad pointer", "on: maybe", `p.on: expected a boolean (true/false), got "maybe" (line 1)`},
		{"bad list", "list: x", "p.list: expected a list (line 1)"},
		{"twice", "count: 1\ncount: 2", "p.count: set twice (line 2)"},
		{"not a mapping", "[1]", "p: expected a mapping (line 1)"},
		{"validate", "count: 101", "p.count: must be <= 100, got 101"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n *yaml.Node
			if c.src != "" {
				n = node(t, c.src)
			}
			v, errs := Decode[testOpts](n, "p")
			var got string
			if len(errs) > 0 {
				var s []string
				for _, e := range errs {
					if _, ok := e.(FieldError); !ok {
						t.Errorf("%T is not a FieldError", e)
					}
					s = append(s, e.Error())
				}
				got = strings.Join(s, "|")
			} else {
				on := "<nil>"
				if v.On != nil {
					on = fmt.Sprint(*v.On)
				}
				got = fmt.Sprintf("{%s %d %s %v %v %v}", v.Name, v.Count, on, v.List, v.Nested, v.Items)
			}
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

type durOpts struct {
	Every Duration `yaml:"every"`
	Count int      `yaml:"count"`
}

func (o *durOpts) SetDefaults() { o.Every = Duration(15 * time.Second) }

func (o *durOpts) Validate(path string) []error {
	if o.Count < 0 {
		return []error{Errorf(path+".count", "must be >= 0")}
	}
	return nil
}

// TestDecodeFields: durations decode with core/config's messages, and
// DecodeFields gives the value (failed fields keep their defaults) without
// validating it.
func TestDecodeFields(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      string // the value, then the errors
	}{
		{"default", "", "15s"},
		{"value", "every: 250ms", "250ms"},
		{"zero", "every: 0s", "0s"},
		{"not validated", "count: -1", "15s"},
		{"bad", "every: soon", `15s|p.every: invalid duration "soon" (use e.g. 500ms, 5s, 1m) (line 1)`},
		{"negative", "every: -1s", `15s|p.every: invalid duration "-1s" (use e.g. 500ms, 5s, 1m) (line 1)`},
		{"not a scalar", "every: [1]", `15s|p.every: expected a duration like "5s" (line 1)`},
		{"with a good field", "{every: x, count: 2}", `15s|p.every: invalid duration "x" (use e.g. 500ms, 5s, 1m) (line 1)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var n *yaml.Node
			if c.src != "" {
				n = node(t, c.src)
			}
			v, errs := DecodeFields[durOpts](n, "p")
			s := []string{v.Every.D().String()}
			for _, e := range errs {
				s = append(s, e.Error())
			}
			if got := strings.Join(s, "|"); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
			if _, errs := Decode[durOpts](n, "p"); c.name == "not validated" && len(errs) != 1 {
				t.Errorf("Decode validates: %v", errs)
			}
			out, err := yaml.Marshal(v)
			if err != nil || !strings.Contains(string(out), "every: "+v.Every.D().String()) {
				t.Errorf("marshal: %s %v", out, err)
			}
		})
	}
}
