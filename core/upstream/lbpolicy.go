package upstream

import (
	"fmt"

	"gopkg.in/yaml.v3"
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
	// checked. Errors are OptionErrors naming fields inside the block.
	Decode func(raw *yaml.Node) (any, error)
	// New builds a balancer over a fixed host set with options from Decode.
	// It is called again whenever the eligible hosts change.
	New func(hosts []*Host, opts any) LoadBalancer
}

// Factory decodes raw and returns the policy's builder with the options
// applied.
func (p LBPolicy) Factory(raw *yaml.Node) (LBFactory, error) {
	opts, err := p.Decode(raw)
	if err != nil {
		return nil, err
	}
	return func(hosts []*Host) LoadBalancer { return p.New(hosts, opts) }, nil
}

// NoOptions is a policy that takes no options: any lb_options field is
// refused as unknown.
func NoOptions(f LBFactory) LBPolicy {
	return Options(struct{}{}, nil, func(hosts []*Host, _ struct{}) LoadBalancer { return f(hosts) })
}

// Options builds a policy from a typed options struct: defaults is the
// value an absent block or field gets, the block's fields are T's yaml tags
// (unknown ones refused), validate (optional) checks the decoded value and
// build makes a balancer with it.
func Options[T any](defaults T, validate func(*T) OptionErrors, build func(hosts []*Host, opts T) LoadBalancer) LBPolicy {
	return LBPolicy{
		Decode: func(raw *yaml.Node) (any, error) {
			o := defaults
			if es := decodeOptions(raw, &o); len(es) > 0 {
				return nil, es
			}
			if validate != nil {
				if es := validate(&o); len(es) > 0 {
					return nil, es
				}
			}
			return o, nil
		},
		New: func(hosts []*Host, opts any) LoadBalancer { return build(hosts, opts.(T)) },
	}
}

// DecodeLBOptions checks a cluster's lb_options block against the named
// policy's options; the error is OptionErrors when the block is at fault.
// The binary uses it to validate a config before anything starts.
func DecodeLBOptions(policy string, raw *yaml.Node) error {
	if policy == "" {
		policy = DefaultLB
	}
	p, ok := lookupLB(policy)
	if !ok {
		return fmt.Errorf("upstream: unknown load balancer %q", policy)
	}
	_, err := p.Decode(raw)
	return err
}

// Describer is implemented by balancers that report the settings they run
// with (e.g. "table_size=65537"), for the admin API.
type Describer interface{ Describe() string }

// LBInfo is the cluster's policy name and, when the current balancer
// describes itself, its settings: "maglev table_size=65537".
func (c *Cluster) LBInfo() string {
	if d, ok := c.lb.Load().lb.(Describer); ok {
		return c.lbName + " " + d.Describe()
	}
	return c.lbName
}

// LeastRequestOptions are least_request's lb_options (Envoy's
// least_request_lb_config).
type LeastRequestOptions struct {
	// ChoiceCount is how many random hosts are compared per pick.
	ChoiceCount int `yaml:"choice_count"`
}

// LeastRequestPolicy is least_request with its options.
var LeastRequestPolicy = Options(LeastRequestOptions{ChoiceCount: 2},
	func(o *LeastRequestOptions) OptionErrors {
		if o.ChoiceCount < 2 {
			return OptionErrors{{Field: "choice_count", Msg: fmt.Sprintf("must be >= 2, got %d", o.ChoiceCount)}}
		}
		return nil
	},
	func(hosts []*Host, o LeastRequestOptions) LoadBalancer { return newLeastRequest(hosts, o.ChoiceCount) })

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

// RingHashPolicy is ring_hash with its options.
var RingHashPolicy = Options(RingHashOptions{MaximumRingSize: MaxRingSize, HashFunction: "xx_hash"},
	func(o *RingHashOptions) OptionErrors {
		var es OptionErrors
		if o.MinimumRingSize < 0 {
			es = append(es, OptionError{Field: "minimum_ring_size", Msg: fmt.Sprintf("must be >= 0, got %d", o.MinimumRingSize)})
		}
		if o.MaximumRingSize < 1 || o.MaximumRingSize > MaxRingSize {
			es = append(es, OptionError{Field: "maximum_ring_size", Msg: fmt.Sprintf("must be between 1 and %d, got %d", MaxRingSize, o.MaximumRingSize)})
		} else if o.MinimumRingSize > o.MaximumRingSize {
			es = append(es, OptionError{Field: "minimum_ring_size", Msg: fmt.Sprintf("must be <= maximum_ring_size (%d), got %d", o.MaximumRingSize, o.MinimumRingSize)})
		}
		if o.HashFunction != "xx_hash" && o.HashFunction != "murmur_hash_2" {
			es = append(es, OptionError{Field: "hash_function", Msg: fmt.Sprintf("unknown function %q (xx_hash, murmur_hash_2)", o.HashFunction)})
		}
		return es
	},
	func(hosts []*Host, o RingHashOptions) LoadBalancer { return newRingHash(hosts, o) })

// MaglevOptions are maglev's lb_options (Envoy's maglev_lb_config).
type MaglevOptions struct {
	// TableSize is the lookup table's slots: a prime, larger tables
	// balance finer and cost more memory and rebuild time.
	TableSize int `yaml:"table_size"`
}

// MaxMaglevTableSize is the largest table allowed (Envoy's bound).
const MaxMaglevTableSize = 5000011

// MaglevPolicy is maglev with its options.
var MaglevPolicy = Options(MaglevOptions{TableSize: MaglevTableSize},
	func(o *MaglevOptions) OptionErrors {
		if o.TableSize < 2 || o.TableSize > MaxMaglevTableSize || !isPrime(o.TableSize) {
			return OptionErrors{{Field: "table_size", Msg: fmt.Sprintf("must be a prime between 2 and %d, got %d", MaxMaglevTableSize, o.TableSize)}}
		}
		return nil
	},
	func(hosts []*Host, o MaglevOptions) LoadBalancer { return newMaglev(hosts, uint64(o.TableSize)) })

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
