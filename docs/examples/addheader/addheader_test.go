package addheader

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDecode: defaults, and errors with their paths.
func TestDecode(t *testing.T) {
	for _, tc := range []struct{ y, want string }{
		{`{value: v}`, ""},
		{`{name: x-a}`, "addheader.value: required"},
		{`{value: v, colour: red}`, "addheader.colour: unknown field"},
	} {
		var n yaml.Node
		yaml.Unmarshal([]byte(tc.y), &n)
		f, errs := Decode(&n, "addheader")
		switch {
		case tc.want == "" && (len(errs) > 0 || string(f.(*Factory).name) != "x-proxy"):
			t.Errorf("%s: %v", tc.y, errs)
		case tc.want != "" && (len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.y, errs, tc.want)
		}
	}
}
