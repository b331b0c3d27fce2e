package upstream

import (
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
)

// DefaultLB is the policy of a cluster that names none.
const DefaultLB = "round_robin"

// LBPolicy is what a load-balancing policy registers: how to read its
// options and how to build balancers with them. The policy owns its options
// (their names, defaults and rules); the config layer only hands over the
// cluster's raw lb_options block.
type LBPolicy struct {
	// Decode reads the lb_options block (nil when absent) into the
	// policy's typed options, with its defaults filled and its rules
	// checked. Errors are registry.FieldErrors with paths under path.
	Decode func(raw *yaml.Node, path string) (any, []error)
	// New builds a balancer over a fixed host set with options from Decode.
	// It is called again whenever the eligible hosts change.
	New func(hosts []*Host, opts any) LoadBalancer
}

// Factory decodes raw (errors under path) and returns the policy's builder
// with the options applied.
func (p LBPolicy) Factory(raw *yaml.Node, path string) (LBFactory, error) {
	opts, errs := p.Decode(raw, path)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return func(hosts []*Host) LoadBalancer { return p.New(hosts, opts) }, nil
}

func isNull(n *yaml.Node) bool {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// NoOptions is a policy that takes no options: any lb_options field is
// refused as unknown.
func NoOptions(f LBFactory) LBPolicy {
	return LBPolicy{
		Decode: func(raw *yaml.Node, path string) (any, []error) {
			if isNull(raw) {
				return nil, nil
			}
			n := raw
			if n.Kind == yaml.DocumentNode {
				n = n.Content[0]
			}
			if n.Kind != yaml.MappingNode {
				return nil, []error{registry.FieldError{Path: path, Line: n.Line, Msg: "expected a mapping"}}
			}
			var errs []error
			for i := 0; i+1 < len(n.Content); i += 2 {
				errs = append(errs, registry.FieldError{Path: path + "." + n.Content[i].Value, Line: n.Content[i].Line, Msg: "unknown field (known: none)"})
			}
			return nil, errs
		},
		New: func(hosts []*Host, _ any) LoadBalancer { return f(hosts) },
	}
}

// Options builds a policy from a typed options struct T, decoded by
// registry.Decode: the block's fields are T's yaml tags (unknown ones
// refused), *T's SetDefaults fills the defaults and its Validate(path)
// checks the result, when T has them; build makes a balancer with it.
func Options[T any](build func(hosts []*Host, opts *T) LoadBalancer) LBPolicy {
	return LBPolicy{
		Decode: func(raw *yaml.Node, path string) (any, []error) {
			if isNull(raw) {
				raw = nil
			}
			o, errs := registry.Decode[T](raw, path)
			if errs != nil {
				return nil, errs
			}
			return o, nil
		},
		New: func(hosts []*Host, opts any) LoadBalancer { return build(hosts, opts.(*T)) },
	}
}

// DecodeLBOptions checks a cluster's lb_options block (at path) against the
// named policy's options; the binary hands it to config validation
// (config.Known.LBOptions).
func DecodeLBOptions(policy string, raw *yaml.Node, path string) []error {
	if policy == "" {
		policy = DefaultLB
	}
	p, ok := lookupLB(policy)
	if !ok {
		return []error{registry.Errorf(path, "unknown load balancer %q", policy)}
	}
	_, errs := p.Decode(raw, path)
	return errs
}

// Describer is implemented by balancers that report the settings they run
// with (e.g. "table_size=65537"), for the admin API.
type Describer interface{ Describe() string }

// LBInfo is the cluster's policy name and, when the current balancer
// describes itself, its settings: "maglev table_size=65537".
func (c *Cluster) LBInfo() string {
	st := c.lb.Load()
	if d, ok := st.lb.(Describer); ok {
		return st.name + " " + d.Describe()
	}
	return st.name
}

// LeastRequestOptions are least_request's lb_options (Envoy's
// least_request_lb_config).
type LeastRequestOptions struct {
	// ChoiceCount is how many random hosts are compared per pick.
	ChoiceCount int `yaml:"choice_count"`
}

func (o *LeastRequestOptions) SetDefaults() { o.ChoiceCount = 2 }

func (o *LeastRequestOptions) Validate(path string) []error {
	if o.ChoiceCount < 2 {
		return []error{registry.Errorf(path+".choice_count", "must be >= 2, got %d", o.ChoiceCount)}
	}
	return nil
}

// LeastRequestPolicy is least_request with its options.
var LeastRequestPolicy = Options(func(hosts []*Host, o *LeastRequestOptions) LoadBalancer {
	return newLeastRequest(hosts, o.ChoiceCount)
})

// RingHashOptions are ring_hash's lb_options (Envoy's ring_hash_lb_config).
type RingHashOptions struct {
	// MinimumRingSize and MaximumRingSize bound the ring's points: the
	// 160 points per unit of weight are scaled up or down to fit. Scaling
	// ties every host's points to the others', so a host leaving then
	// moves some of the other hosts' keys too. 0: no lower bound.
	MinimumRingSize int `yaml:"minimum_ring_size"`
	MaximumRingSize int `yaml:"maximum_ring_size"`
	// HashFunction places the hosts' points: xx_hash or murmur_hash_2.
	HashFunction string `yaml:"hash_function"`
}

// MaxRingSize is the largest ring allowed (Envoy's bound).
const MaxRingSize = 8 << 20

func (o *RingHashOptions) SetDefaults() { o.MaximumRingSize, o.HashFunction = MaxRingSize, "xx_hash" }

func (o *RingHashOptions) Validate(path string) []error {
	var errs []error
	if o.MinimumRingSize < 0 {
		errs = append(errs, registry.Errorf(path+".minimum_ring_size", "must be >= 0, got %d", o.MinimumRingSize))
	}
	if o.MaximumRingSize < 1 || o.MaximumRingSize > MaxRingSize {
		errs = append(errs, registry.Errorf(path+".maximum_ring_size", "must be between 1 and %d, got %d", MaxRingSize, o.MaximumRingSize))
	} else if o.MinimumRingSize > o.MaximumRingSize {
		errs = append(errs, registry.Errorf(path+".minimum_ring_size", "must be <= maximum_ring_size (%d), got %d", o.MaximumRingSize, o.MinimumRingSize))
	}
	if o.HashFunction != "xx_hash" && o.HashFunction != "murmur_hash_2" {
		errs = append(errs, registry.Errorf(path+".hash_function", "unknown function %q (xx_hash, murmur_hash_2)", o.HashFunction))
	}
	return errs
}

// RingHashPolicy is ring_hash with its options.
var RingHashPolicy = Options(func(hosts []*Host, o *RingHashOptions) LoadBalancer { return newRingHash(hosts, *o) })

// MaglevOptions are maglev's lb_options (Envoy's maglev_lb_config).
type MaglevOptions struct {
	// TableSize is the lookup table's slots: a prime, larger tables
	// balance finer and cost more memory and rebuild time.
	TableSize int `yaml:"table_size"`
}

// MaxMaglevTableSize is the largest table allowed (Envoy's bound).
const MaxMaglevTableSize = 5000011

func (o *MaglevOptions) SetDefaults() { o.TableSize = MaglevTableSize }

func (o *MaglevOptions) Validate(path string) []error {
	if o.TableSize < 2 || o.TableSize > MaxMaglevTableSize || !isPrime(o.TableSize) {
		return []error{registry.Errorf(path+".table_size", "must be a prime between 2 and %d, got %d", MaxMaglevTableSize, o.TableSize)}
	}
	return nil
}

// MaglevPolicy is maglev with its options.
var MaglevPolicy = Options(func(hosts []*Host, o *MaglevOptions) LoadBalancer {
	return newMaglev(hosts, uint64(o.TableSize))
})

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
