package lbfirst

import (
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/upstream"
	"gopkg.in/yaml.v3"
)

func TestOptionsAndChoice(t *testing.T) {
	hosts := []*upstream.Host{{Address: "10.0.0.1:80"}, {Address: "10.0.0.2:80"}, {Address: "10.0.0.3:80"}}
	for _, tc := range []struct {
		block   string
		want    string // chosen host, when valid
		wantErr string
	}{
		{"", "10.0.0.1:80", ""},
		{"{}", "10.0.0.1:80", ""},
		{"skip: 1", "10.0.0.2:80", ""},
		{"skip: 4", "10.0.0.2:80", ""},
		{"skip: -1", "", "lb_options.skip: must be >= 0, got -1"},
		{"skip: one", "", `lb_options.skip: expected a whole number, got "one"`},
		{"step: 1", "", "lb_options.step: unknown field (known: skip)"},
	} {
		var raw *yaml.Node
		if tc.block != "" {
			raw = &yaml.Node{}
			if err := yaml.Unmarshal([]byte(tc.block), raw); err != nil {
				t.Fatal(err)
			}
		}
		f, err := Policy.Factory(raw, "lb_options")
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.block, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.block, err)
		}
		lb := f(hosts)
		for i := 0; i < 3; i++ {
			if h := lb.Choose(nil); h.Address != tc.want {
				t.Fatalf("%q: chose %s, want %s", tc.block, h.Address, tc.want)
			}
		}
	}
	if f, _ := Policy.Factory(nil, "lb_options"); f(nil).Choose(nil) != nil {
		t.Fatal("no hosts: want nil")
	}
}
