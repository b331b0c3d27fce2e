package upstream

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/foundation/registry"

	"gopkg.in/yaml.v3"
)

func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	if src == "" {
		return nil
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

// TestLBOptionsValidation: every policy decodes its own lb_options block,
// refuses unknown fields and out-of-range values with the field's path.
func TestLBOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  LBPolicy
		block   string
		want    any    // decoded options when ok
		wantErr string // substring of the error
	}{
		{"least_request default", LeastRequestPolicy, "", &LeastRequestOptions{ChoiceCount: 2}, ""},
		{"least_request empty", LeastRequestPolicy, "{}", &LeastRequestOptions{ChoiceCount: 2}, ""},
		{"least_request null", LeastRequestPolicy, "~", &LeastRequestOptions{ChoiceCount: 2}, ""},
		{"least_request 5", LeastRequestPolicy, "choice_count: 5", &LeastRequestOptions{ChoiceCount: 5}, ""},
		{"least_request 1", LeastRequestPolicy, "choice_count: 1", nil, "choice_count: must be >= 2, got 1"},
		{"least_request negative", LeastRequestPolicy, "choice_count: -3", nil, "choice_count: must be >= 2"},
		{"least_request not a number", LeastRequestPolicy, "choice_count: two", nil, `choice_count: expected a whole number, got "two"`},
		{"least_request list", LeastRequestPolicy, "choice_count: [2]", nil, "choice_count: expected a whole number"},
		{"least_request unknown", LeastRequestPolicy, "choices: 3", nil, "choices: unknown field (known: choice_count)"},
		{"least_request twice", LeastRequestPolicy, "{choice_count: 3, choice_count: 4}", nil, "choice_count: set twice"},
		{"least_request scalar block", LeastRequestPolicy, "3", nil, ": expected a mapping"},
		{"ring_hash default", RingHashPolicy, "", &RingHashOptions{MaximumRingSize: MaxRingSize, HashFunction: "xx_hash"}, ""},
		{"ring_hash sizes", RingHashPolicy, "{minimum_ring_size: 1024, maximum_ring_size: 4096, hash_function: murmur_hash_2}",
			&RingHashOptions{MinimumRingSize: 1024, MaximumRingSize: 4096, HashFunction: "murmur_hash_2"}, ""},
		{"ring_hash min > max", RingHashPolicy, "{minimum_ring_size: 5000, maximum_ring_size: 4096}", nil, "minimum_ring_size: must be <= maximum_ring_size (4096), got 5000"},
		{"ring_hash max too big", RingHashPolicy, "maximum_ring_size: 8388609", nil, "maximum_ring_size: must be between 1 and 8388608"},
		{"ring_hash max zero", RingHashPolicy, "maximum_ring_size: 0", nil, "maximum_ring_size: must be between 1"},
		{"ring_hash min negative", RingHashPolicy, "minimum_ring_size: -1", nil, "minimum_ring_size: must be >= 0"},
		{"ring_hash bad function", RingHashPolicy, "hash_function: md5", nil, `hash_function: unknown function "md5" (xx_hash, murmur_hash_2)`},
		{"ring_hash unknown", RingHashPolicy, "table_size: 7", nil, "table_size: unknown field (known: minimum_ring_size, maximum_ring_size, hash_function)"},
		{"maglev default", MaglevPolicy, "", &MaglevOptions{TableSize: MaglevTableSize}, ""},
		{"maglev prime", MaglevPolicy, "table_size: 251", &MaglevOptions{TableSize: 251}, ""},
		{"maglev not prime", MaglevPolicy, "table_size: 1000", nil, "table_size: must be a prime between 2 and 5000011, got 1000"},
		{"maglev too big", MaglevPolicy, "table_size: 5000017", nil, "table_size: must be a prime"},
		{"maglev one", MaglevPolicy, "table_size: 1", nil, "table_size: must be a prime"},
		{"no options ok", NoOptions(NewRandom), "{}", nil, ""},
		{"no options refused", NoOptions(NewRandom), "choice_count: 2", nil, "choice_count: unknown field (known: none)"},
		{"two errors", RingHashPolicy, "{maximum_ring_size: 0, hash_function: x}", nil, "hash_function: unknown function"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := tc.policy.Decode(node(t, tc.block), "lb_options")
			if tc.wantErr != "" {
				var all []string
				for _, err := range errs {
					var fe registry.FieldError
					if !errors.As(err, &fe) {
						t.Fatalf("error %T, want registry.FieldError", err)
					}
					all = append(all, err.Error())
				}
				want := "lb_options." + tc.wantErr // every error names its field under the block's path
				if strings.HasPrefix(tc.wantErr, ":") {
					want = "lb_options" + tc.wantErr
				}
				if !strings.Contains(strings.Join(all, "; "), want) {
					t.Fatalf("errors %v, want one containing %q", all, want)
				}
				return
			}
			if len(errs) > 0 || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, errs, tc.want)
			}
		})
	}
}

// TestLBOptionsTakeEffect: the decoded options reach the balancer.
func TestLBOptionsTakeEffect(t *testing.T) {
	build := func(p LBPolicy, block string, hosts []*Host) LoadBalancer {
		f, err := p.Factory(node(t, block), "lb_options")
		if err != nil {
			t.Fatal(err)
		}
		return f(hosts)
	}
	hs := hostsOf(1, 1, 1)
	for _, tc := range []struct {
		policy LBPolicy
		block  string
		want   string
	}{
		{MaglevPolicy, "", "table_size=65537"},
		{MaglevPolicy, "table_size: 7", "table_size=7"},
		{RingHashPolicy, "", "ring_size=480"},
		{RingHashPolicy, "minimum_ring_size: 3000", "ring_size=3000"},
		{RingHashPolicy, "maximum_ring_size: 30", "ring_size=30"},
		{RingHashPolicy, "{maximum_ring_size: 30, hash_function: murmur_hash_2}", "ring_size=30"},
		{LeastRequestPolicy, "", "choice_count=2"},
		{LeastRequestPolicy, "choice_count: 4", "choice_count=4"},
	} {
		lb := build(tc.policy, tc.block, hs)
		if got := lb.(Describer).Describe(); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.block, got, tc.want)
		}
		if tc.block == "" {
			continue
		}
		if k := (&LBContext{Hash: HashKey([]byte("sticky")), HasHash: true}); lb.Choose(k) == nil {
			t.Errorf("%q: no host", tc.block)
		}
	}
	// A 7-slot table over 3 hosts: every slot owned, each host at least 2.
	m := build(MaglevPolicy, "table_size: 7", hs).(*maglev)
	owned := map[*Host]int{}
	for _, h := range m.table {
		owned[h]++
	}
	if len(m.table) != 7 || len(owned) != 3 || owned[hs[0]] < 2 || owned[hs[1]] < 2 || owned[hs[2]] < 2 {
		t.Fatalf("7-slot table: %d slots, owners %v", len(m.table), owned)
	}
	// murmur_hash_2 places the points elsewhere than xx_hash.
	a := build(RingHashPolicy, "", hs).(*ringHash)
	b := build(RingHashPolicy, "hash_function: murmur_hash_2", hs).(*ringHash)
	if a.points[0].hash == b.points[0].hash {
		t.Fatal("hash_function had no effect")
	}
	// Many choices: the one idle host of four is nearly always found.
	busy := hostsOf(1, 1, 1, 1)
	for _, h := range busy[1:] {
		h.ActiveRequests.Store(10)
	}
	lr := build(LeastRequestPolicy, "choice_count: 40", busy)
	for i := 0; i < 1000; i++ {
		// (3/4)^40 ≈ 1e-5 per pick: none expected in 1000.
		if lr.Choose(nil) != busy[0] {
			t.Fatalf("choice_count 40 picked a busy host at pick %d", i)
		}
	}
}

// TestMurmur2KnownValues pins murmur2 to Envoy's murmurHash2_64 (libstdc++
// _Hash_bytes with seed 0xc70f6907; values from g++), so hash_function
// murmur_hash_2 places hosts where Envoy does.
func TestMurmur2KnownValues(t *testing.T) {
	for k, want := range map[string]uint64{
		"": 0x553e93901e462a6e, "a": 0x454ddee488c1ed6b, "abcdefgh": 0x783db3e38db898bb,
		"10.0.0.1:80_0": 0xbd8f6461ecffb28c, "hello world!": 0x5b83cb3a55a9669f,
	} {
		if got := murmur2([]byte(k)); got != want {
			t.Errorf("murmur2(%q) = %#x, want %#x", k, got, want)
		}
	}
}
