// Package lbfirst is an example load-balancing policy: every request goes
// to the first eligible host (the cluster hands a policy only the healthy
// hosts, or all of them in panic mode), or to the one `skip` places after
// it. An active/standby pair in two lines of config:
//
//	clusters:
//	  - name: db
//	    lb: first
//	    lb_options: {skip: 0}
//	    health_check: {type: tcp}
//	    hosts: [{address: 10.0.0.1:5432}, {address: 10.0.0.2:5432}]
//
// Registered with one line in cmd/proxylab/builtins.go:
//
//	upstream.RegisterLBPolicy(lbfirst.Name, lbfirst.Policy)
package lbfirst

import (
	"strconv"

	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/registry"
)

// Name is the policy's name in a cluster's `lb`.
const Name = "first"

// Options are the policy's lb_options: the block's fields are the yaml
// tags; registry.Decode (through upstream.Options) refuses unknown fields,
// checks types, fills SetDefaults (none needed here: zero is the default)
// and runs Validate.
type Options struct {
	// Skip passes over that many eligible hosts (modulo their number).
	Skip int `yaml:"skip"`
}

// Validate checks the decoded options; errors carry their path.
func (o *Options) Validate(path string) []error {
	if o.Skip < 0 {
		return []error{registry.Errorf(path+".skip", "must be >= 0, got %d", o.Skip)}
	}
	return nil
}

// Policy is what the binary registers: the options type and the builder
// called whenever the eligible hosts change.
var Policy = upstream.Options(build)

func build(hosts []*upstream.Host, o *Options) upstream.LoadBalancer {
	b := &first{skip: o.Skip}
	if len(hosts) > 0 {
		b.host = hosts[o.Skip%len(hosts)]
	}
	return b
}

// first is immutable once built, so Choose is safe for concurrent use
// without a lock: the cluster builds a new one when its hosts change.
type first struct {
	host *upstream.Host // nil when there is no host
	skip int
}

func (f *first) Choose(*upstream.LBContext) *upstream.Host { return f.host }

// Describe is what the admin API's /clusters shows (upstream.Describer).
func (f *first) Describe() string { return "skip=" + strconv.Itoa(f.skip) }
