package ratelimit

import (
	"fmt"
	"time"

	"github.com/proxylab/proxylab/core/filter/internal/match"
	"github.com/proxylab/proxylab/foundation/registry"
)

// Config is the filter's block: Envoy's extensions.filters.http.ratelimit
// .v3.RateLimit, plus the descriptors' actions (Envoy puts them on the
// route as rate_limits; here they sit on the filter, and a route's
// typed_per_filter_config replaces them).
type Config struct {
	Domain           string        `yaml:"domain"`
	RateLimitService *Service      `yaml:"rate_limit_service"`
	Timeout          time.Duration `yaml:"timeout"`
	FailureModeDeny  bool          `yaml:"failure_mode_deny"`
	// RateLimitedStatus is the status of a limited request (429).
	RateLimitedStatus *struct {
		Code int `yaml:"code"`
	} `yaml:"rate_limited_status"`
	RateLimits []RateLimit `yaml:"rate_limits"`
}

// Service is Envoy's RateLimitServiceConfig: grpc_service.google_grpc
// .target_uri names the RLS (host:port, plaintext HTTP/2).
type Service struct {
	GRPCService struct {
		GoogleGRPC *struct {
			TargetURI string `yaml:"target_uri"`
		} `yaml:"google_grpc"`
		EnvoyGRPC *struct {
			ClusterName string `yaml:"cluster_name"`
		} `yaml:"envoy_grpc"`
	} `yaml:"grpc_service"`
}

// PerRoute is Envoy's RateLimitPerRoute subset: rate_limits replace the
// filter's for the route.
type PerRoute struct {
	RateLimits []RateLimit `yaml:"rate_limits"`
}

// RateLimit is Envoy's config.route.v3.RateLimit: its actions make one
// descriptor; if one action cannot produce its entry, no descriptor.
type RateLimit struct {
	Actions []Action `yaml:"actions"`
}

// Action is one entry of a descriptor (exactly one field set).
type Action struct {
	RequestHeaders *struct {
		HeaderName    string `yaml:"header_name"`
		DescriptorKey string `yaml:"descriptor_key"`
		SkipIfAbsent  bool   `yaml:"skip_if_absent"`
	} `yaml:"request_headers"`
	RemoteAddress *struct{} `yaml:"remote_address"`
	GenericKey    *struct {
		DescriptorValue string `yaml:"descriptor_value"`
		DescriptorKey   string `yaml:"descriptor_key"`
	} `yaml:"generic_key"`
	HeaderValueMatch *struct {
		DescriptorKey   string               `yaml:"descriptor_key"`
		DescriptorValue string               `yaml:"descriptor_value"`
		ExpectMatch     *bool                `yaml:"expect_match"`
		Headers         []match.HeaderConfig `yaml:"headers"`
	} `yaml:"header_value_match"`
}

type actionKind uint8

const (
	actRequestHeader actionKind = iota
	actRemoteAddress
	actGeneric
	actHeaderMatch
)

// action is a compiled Action.
type action struct {
	kind        actionKind
	key, value  string // descriptor key; value for generic/header match
	header      string // request_headers: the name
	skipAbsent  bool
	expectMatch bool
	headers     []match.Header
}

type descriptorRule []action

func compileRateLimits(rls []RateLimit, path string) ([]descriptorRule, []error) {
	var errs []error
	out := make([]descriptorRule, 0, len(rls))
	for i, rl := range rls {
		p := fmt.Sprintf("%s[%d].actions", path, i)
		if len(rl.Actions) == 0 {
			errs = append(errs, registry.Errorf(p, "at least one action is required"))
		}
		var d descriptorRule
		for j, a := range rl.Actions {
			ap := fmt.Sprintf("%s[%d]", p, j)
			var c action
			n := 0
			if r := a.RequestHeaders; r != nil {
				n++
				c = action{kind: actRequestHeader, header: r.HeaderName, key: r.DescriptorKey, skipAbsent: r.SkipIfAbsent}
				if r.HeaderName == "" || r.DescriptorKey == "" {
					errs = append(errs, registry.Errorf(ap+".request_headers", "header_name and descriptor_key are required"))
				}
			}
			if a.RemoteAddress != nil {
				n++
				c = action{kind: actRemoteAddress, key: "remote_address"}
			}
			if g := a.GenericKey; g != nil {
				n++
				c = action{kind: actGeneric, key: g.DescriptorKey, value: g.DescriptorValue}
				if c.key == "" {
					c.key = "generic_key"
				}
				if g.DescriptorValue == "" {
					errs = append(errs, registry.Errorf(ap+".generic_key.descriptor_value", "required"))
				}
			}
			if h := a.HeaderValueMatch; h != nil {
				n++
				c = action{kind: actHeaderMatch, key: h.DescriptorKey, value: h.DescriptorValue, expectMatch: h.ExpectMatch == nil || *h.ExpectMatch}
				if c.key == "" {
					c.key = "header_match"
				}
				if h.DescriptorValue == "" {
					errs = append(errs, registry.Errorf(ap+".header_value_match.descriptor_value", "required"))
				}
				for k := range h.Headers {
					m, es := match.CompileHeader(&h.Headers[k], fmt.Sprintf("%s.header_value_match.headers[%d]", ap, k))
					errs = append(errs, es...)
					c.headers = append(c.headers, m)
				}
			}
			if n != 1 {
				errs = append(errs, registry.Errorf(ap, "exactly one of request_headers, remote_address, generic_key, header_value_match is required (%d set)", n))
			}
			d = append(d, c)
		}
		out = append(out, d)
	}
	return out, errs
}

// compiled is the checked config.
type compiled struct {
	cfg     *Config
	target  string
	timeout time.Duration
	status  int
	rules   []descriptorRule
}

func compileConfig(c *Config, path string) (*compiled, []error) {
	var errs []error
	cc := &compiled{cfg: c, timeout: 20 * time.Millisecond, status: 429}
	if c.Domain == "" {
		errs = append(errs, registry.Errorf(path+".domain", "required"))
	}
	switch s := c.RateLimitService; {
	case s == nil:
		errs = append(errs, registry.Errorf(path+".rate_limit_service", "required"))
	case s.GRPCService.EnvoyGRPC != nil:
		errs = append(errs, registry.Errorf(path+".rate_limit_service.grpc_service.envoy_grpc", "not supported: name the service with google_grpc.target_uri (host:port)"))
	case s.GRPCService.GoogleGRPC == nil || s.GRPCService.GoogleGRPC.TargetURI == "":
		errs = append(errs, registry.Errorf(path+".rate_limit_service.grpc_service.google_grpc.target_uri", "required"))
	default:
		cc.target = s.GRPCService.GoogleGRPC.TargetURI
	}
	if c.Timeout < 0 {
		errs = append(errs, registry.Errorf(path+".timeout", "must not be negative"))
	} else if c.Timeout > 0 {
		cc.timeout = c.Timeout
	}
	if c.RateLimitedStatus != nil {
		cc.status = c.RateLimitedStatus.Code
		if cc.status < 400 || cc.status > 599 {
			errs = append(errs, registry.Errorf(path+".rate_limited_status.code", "must be 400-599"))
		}
	}
	var es []error
	cc.rules, es = compileRateLimits(c.RateLimits, path+".rate_limits")
	return cc, append(errs, es...)
}
