package extauthz

import (
	"fmt"
	"net/url"
	"time"

	"github.com/proxylab/proxylab/core/filter/internal/match"
	"github.com/proxylab/proxylab/foundation/registry"
)

// Config is the filter's block, Envoy's extensions.filters.http.ext_authz.v3
// .ExtAuthz: exactly one of grpc_service and http_service.
type Config struct {
	GRPCService      *GRPCService    `yaml:"grpc_service"`
	HTTPService      *HTTPService    `yaml:"http_service"`
	FailureModeAllow bool            `yaml:"failure_mode_allow"`
	WithRequestBody  *BufferSettings `yaml:"with_request_body"`
	// StatusOnError is the status answered when the check fails
	// (unreachable, timeout) and failure_mode_allow is false; 403 as Envoy.
	StatusOnError *HTTPStatus `yaml:"status_on_error"`
	// ClearRouteCache re-routes after the server changed headers.
	ClearRouteCache bool `yaml:"clear_route_cache"`
}

// HTTPStatus is Envoy's type.v3.HttpStatus.
type HTTPStatus struct {
	Code int `yaml:"code"`
}

// GRPCService is where the Authorization service runs: google_grpc's
// target_uri (a host:port dialled with plaintext HTTP/2). envoy_grpc (a
// cluster) is refused: a filter cannot reach proxylab's clusters.
type GRPCService struct {
	GoogleGRPC *struct {
		TargetURI string `yaml:"target_uri"`
	} `yaml:"google_grpc"`
	EnvoyGRPC *struct {
		ClusterName string `yaml:"cluster_name"`
	} `yaml:"envoy_grpc"`
	// Timeout bounds each check (200ms as Envoy).
	Timeout time.Duration `yaml:"timeout"`
}

// HTTPService is Envoy's HttpService: the check is a request to
// server_uri.uri + path_prefix + the original path.
type HTTPService struct {
	ServerURI struct {
		URI     string        `yaml:"uri"`
		Cluster string        `yaml:"cluster"`
		Timeout time.Duration `yaml:"timeout"`
	} `yaml:"server_uri"`
	PathPrefix           string `yaml:"path_prefix"`
	AuthorizationRequest *struct {
		AllowedHeaders *ListMatcher `yaml:"allowed_headers"`
	} `yaml:"authorization_request"`
	AuthorizationResponse *struct {
		AllowedUpstreamHeaders *ListMatcher `yaml:"allowed_upstream_headers"`
		AllowedClientHeaders   *ListMatcher `yaml:"allowed_client_headers"`
	} `yaml:"authorization_response"`
}

// ListMatcher is Envoy's type.matcher.v3.ListStringMatcher.
type ListMatcher struct {
	Patterns []match.StringConfig `yaml:"patterns"`
}

// BufferSettings: the request body (up to max_request_bytes) is sent with
// the check; a longer body gets 413 unless allow_partial_message sends its
// first max_request_bytes.
type BufferSettings struct {
	MaxRequestBytes     uint32 `yaml:"max_request_bytes"`
	AllowPartialMessage bool   `yaml:"allow_partial_message"`
}

// PerRoute is Envoy's ExtAuthzPerRoute: disabled, or context extensions
// sent with the route's checks.
type PerRoute struct {
	Disabled      bool `yaml:"disabled"`
	CheckSettings *struct {
		ContextExtensions map[string]string `yaml:"context_extensions"`
	} `yaml:"check_settings"`
}

// compiled is the checked config the filter runs with.
type compiled struct {
	cfg           *Config
	timeout       time.Duration
	target        string // gRPC host:port
	httpBase      string // HTTP scheme://host:port + path_prefix
	allowedReq    []match.String
	allowedUp     []match.String
	allowedClient []match.String // nil: every header but Host
	statusOnError int
	maxBody       int
}

func compileConfig(c *Config, path string) (*compiled, []error) {
	var errs []error
	cc := &compiled{cfg: c, statusOnError: 403, timeout: 200 * time.Millisecond}
	if c.StatusOnError != nil {
		cc.statusOnError = c.StatusOnError.Code
		if cc.statusOnError < 200 || cc.statusOnError > 599 {
			errs = append(errs, registry.Errorf(path+".status_on_error.code", "must be an HTTP status (200-599)"))
		}
	}
	if c.WithRequestBody != nil {
		cc.maxBody = int(c.WithRequestBody.MaxRequestBytes)
		if cc.maxBody == 0 {
			errs = append(errs, registry.Errorf(path+".with_request_body.max_request_bytes", "required (> 0)"))
		}
	}
	switch {
	case (c.GRPCService == nil) == (c.HTTPService == nil):
		errs = append(errs, registry.Errorf(path, "exactly one of grpc_service, http_service is required"))
	case c.GRPCService != nil:
		g, p := c.GRPCService, path+".grpc_service"
		if g.Timeout < 0 {
			errs = append(errs, registry.Errorf(p+".timeout", "must not be negative"))
		} else if g.Timeout > 0 {
			cc.timeout = g.Timeout
		}
		switch {
		case g.EnvoyGRPC != nil:
			errs = append(errs, registry.Errorf(p+".envoy_grpc", "not supported: name the server with google_grpc.target_uri (host:port)"))
		case g.GoogleGRPC == nil || g.GoogleGRPC.TargetURI == "":
			errs = append(errs, registry.Errorf(p+".google_grpc.target_uri", "required"))
		default:
			cc.target = g.GoogleGRPC.TargetURI
		}
	default:
		h, p := c.HTTPService, path+".http_service"
		if h.ServerURI.Timeout < 0 {
			errs = append(errs, registry.Errorf(p+".server_uri.timeout", "must not be negative"))
		} else if h.ServerURI.Timeout > 0 {
			cc.timeout = h.ServerURI.Timeout
		}
		u, err := url.Parse(h.ServerURI.URI)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, registry.Errorf(p+".server_uri.uri", "must be an http:// or https:// URL with a host, got %q", h.ServerURI.URI))
		} else {
			cc.httpBase = u.Scheme + "://" + u.Host + h.PathPrefix
		}
		if h.AuthorizationRequest != nil {
			cc.allowedReq = compileList(h.AuthorizationRequest.AllowedHeaders, p+".authorization_request.allowed_headers", &errs)
		}
		if r := h.AuthorizationResponse; r != nil {
			cc.allowedUp = compileList(r.AllowedUpstreamHeaders, p+".authorization_response.allowed_upstream_headers", &errs)
			cc.allowedClient = compileList(r.AllowedClientHeaders, p+".authorization_response.allowed_client_headers", &errs)
		}
	}
	return cc, errs
}

func compileList(l *ListMatcher, path string, errs *[]error) []match.String {
	if l == nil {
		return nil
	}
	out := make([]match.String, 0, len(l.Patterns))
	for i := range l.Patterns {
		m, es := match.CompileString(&l.Patterns[i], fmt.Sprintf("%s.patterns[%d]", path, i))
		*errs = append(*errs, es...)
		out = append(out, m)
	}
	return out
}

// anyMatch reports whether a header name matches one of ms.
func anyMatch(ms []match.String, name []byte) bool {
	for i := range ms {
		if ms[i].Match(name) {
			return true
		}
	}
	return false
}
