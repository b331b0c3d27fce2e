package config

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

// TestLBOptionsHandedToThePolicy: config names no policy; it fills the
// binary's default, hands each cluster's raw lb_options block to the
// policy's decoder and reports the decoder's errors under the block's path.
func TestLBOptionsHandedToThePolicy(t *testing.T) {
	type call struct {
		policy string
		block  string
	}
	var calls []call
	k := known
	k.LBs = []string{"round_robin", "least_request"}
	k.DefaultLB = "round_robin"
	k.LBOptions = func(policy string, raw *yaml.Node, path string) []error {
		var b []byte
		if raw != nil {
			b, _ = yaml.Marshal(raw)
		}
		calls = append(calls, call{policy, strings.TrimSpace(string(b))})
		if policy == "least_request" && raw != nil {
			return []error{registry.FieldError{Path: path + ".choice_count", Line: raw.Line, Msg: "must be >= 2"}}
		}
		return nil
	}
	in := `
listeners:
  - {name: l, address: "127.0.0.1:0", tcp_proxy: {cluster: a}}
clusters:
  - {name: a, hosts: [{address: "127.0.0.1:1"}]}
  - {name: b, lb: least_request, hosts: [{address: "127.0.0.1:1"}]}
  - name: c
    lb: least_request
    lb_options: {choice_count: 1}
    hosts: [{address: "127.0.0.1:1"}]
`
	_, err := Parse([]byte(in), k)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Path != "clusters[2].lb_options.choice_count" || es[0].Msg != "must be >= 2" || es[0].Line != 9 {
		t.Fatalf("errors: %v", err)
	}
	want := []call{{"round_robin", ""}, {"least_request", ""}, {"least_request", "{choice_count: 1}"}}
	if len(calls) != len(want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, calls[i], want[i])
		}
	}

	// Valid: the default policy is filled in and the block is kept raw for
	// the upstream layer (and dumped as written).
	cfg, err := Parse([]byte(strings.Replace(in, "least_request\n    lb_options: {choice_count: 1}", "round_robin\n    lb_options: {}", 1)), k)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clusters[0].LB != "round_robin" || cfg.Clusters[0].LBOptions != nil || cfg.Clusters[2].LBOptions == nil {
		t.Fatalf("clusters: %+v", cfg.Clusters)
	}
	dump, err := cfg.Dump()
	if err != nil || !strings.Contains(string(dump), "lb_options: {}") || strings.Count(string(dump), "lb_options") != 1 {
		t.Fatalf("dump (%v):\n%s", err, dump)
	}
}
