package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// VirtualHost groups routes by Host header.
type VirtualHost struct {
	Name      string   `yaml:"name"`
	Domains   []string `yaml:"domains"`
	Routes    []Route  `yaml:"routes"`
	HeaderOps `yaml:",inline"`
	// TypedPerFilterConfig overrides http filters for the virtual host's
	// routes, by filter name: the filter's own block, or {disabled: true}.
	TypedPerFilterConfig map[string]*yaml.Node     `yaml:"typed_per_filter_config,omitempty"`
	PerFilter            map[string]FilterOverride `yaml:"-"`
}

// Route is match → cluster. The path match is exactly one of Prefix, Path
// or Regex; every other condition given must hold too. First match wins.
type Route struct {
	// Name is shown to filters and logs; optional.
	Name            string         `yaml:"name,omitempty"`
	Prefix          string         `yaml:"prefix,omitempty"`
	Path            string         `yaml:"path,omitempty"`
	Regex           string         `yaml:"regex,omitempty"` // RE2, matched against the whole path
	Methods         []string       `yaml:"methods,omitempty"`
	Headers         []ValueMatcher `yaml:"headers,omitempty"`
	QueryParameters []ValueMatcher `yaml:"query_parameters,omitempty"`
	// Action: exactly one of Cluster, WeightedClusters, ClusterHeader,
	// DirectResponse, Redirect.
	Cluster          string            `yaml:"cluster,omitempty"`
	WeightedClusters []WeightedCluster `yaml:"weighted_clusters,omitempty"`
	ClusterHeader    string            `yaml:"cluster_header,omitempty"`
	DirectResponse   *DirectResponse   `yaml:"direct_response,omitempty"`
	Redirect         *Redirect         `yaml:"redirect,omitempty"`
	Timeout          Duration          `yaml:"timeout"`
	PrefixRewrite    string            `yaml:"prefix_rewrite,omitempty"`
	RegexRewrite     *RegexRewrite     `yaml:"regex_rewrite,omitempty"`
	HostRewrite      string            `yaml:"host_rewrite,omitempty"`
	HeaderOps        `yaml:",inline"`
	// HashPolicy feeds ring_hash and maglev clusters; the first policy
	// that finds a value in the request is used.
	HashPolicy []HashPolicy `yaml:"hash_policy,omitempty"`
	// RetryPolicy retries failed upstream attempts on another host.
	RetryPolicy *RetryPolicy `yaml:"retry_policy,omitempty"`
	// MetadataMatch picks hosts of the cluster's subset with this metadata.
	MetadataMatch map[string]string `yaml:"metadata_match,omitempty"`
	// RequestMirrorPolicies copy requests to shadow clusters, fire and
	// forget: responses are discarded and never affect the client.
	RequestMirrorPolicies []MirrorPolicy `yaml:"request_mirror_policies,omitempty"`
	// Upgrades, connect_matcher and the connect action (tunnel.go).
	RouteTunnel `yaml:",inline"`
	// TypedPerFilterConfig overrides http filters for this route (over
	// its virtual host's), as on VirtualHost.
	TypedPerFilterConfig map[string]*yaml.Node     `yaml:"typed_per_filter_config,omitempty"`
	PerFilter            map[string]FilterOverride `yaml:"-"`
	// IdleTimeout, when set, replaces the listener's stream_idle_timeout
	// for this route (Envoy's route idle_timeout; 0: off).
	IdleTimeout *Duration `yaml:"idle_timeout,omitempty"`
}

// MirrorPolicy copies a share of requests to a cluster.
type MirrorPolicy struct {
	Cluster string `yaml:"cluster"`
	Percent int    `yaml:"percent"` // of requests mirrored, 1–100
}

func (m *MirrorPolicy) setDefaults() { m.Percent = 100 }

// RetryPolicy says which failures are retried and how often.
type RetryPolicy struct {
	// RetryOn: connect-failure (the request was never sent, so it is
	// always safe, bodies included); for body-less requests also reset
	// (upstream closed before any response byte), 5xx, gateway-error (502,
	// 503, 504) and retriable-status-codes (RetriableStatusCodes).
	RetryOn              []string `yaml:"retry_on"`
	NumRetries           int      `yaml:"num_retries"`
	RetriableStatusCodes []int    `yaml:"retriable_status_codes,omitempty"`
	PerTryTimeout        Duration `yaml:"per_try_timeout"`
	// Backoff before retrying after a response: exponential from BaseInterval
	// with full jitter, capped at MaxInterval.
	BaseInterval Duration `yaml:"base_interval"`
	MaxInterval  Duration `yaml:"max_interval"`
}

func (r *RetryPolicy) setDefaults() {
	r.NumRetries = 1
	r.BaseInterval, r.MaxInterval = Duration(25*time.Millisecond), Duration(250*time.Millisecond)
}

// retryConditions are the retry_on values.
var retryConditions = []string{"connect-failure", "reset", "5xx", "gateway-error", "retriable-status-codes"}

// HeaderOps are header changes: removals first, then additions (append:
// false replaces existing values).
type HeaderOps struct {
	RequestHeadersToAdd     []HeaderValue `yaml:"request_headers_to_add,omitempty"`
	RequestHeadersToRemove  []string      `yaml:"request_headers_to_remove,omitempty"`
	ResponseHeadersToAdd    []HeaderValue `yaml:"response_headers_to_add,omitempty"`
	ResponseHeadersToRemove []string      `yaml:"response_headers_to_remove,omitempty"`
}

// HeaderValue is one header to add.
type HeaderValue struct {
	Name   string `yaml:"name"`
	Value  string `yaml:"value"`
	Append bool   `yaml:"append,omitempty"`
}

// WeightedCluster is one share of a traffic split.
type WeightedCluster struct {
	Name   string `yaml:"name"`
	Weight uint32 `yaml:"weight"`
}

// DirectResponse answers from the proxy.
type DirectResponse struct {
	Status int    `yaml:"status"`
	Body   string `yaml:"body,omitempty"`
}

// Redirect answers with a Location header.
type Redirect struct {
	SchemeRedirect string `yaml:"scheme_redirect,omitempty"`
	HostRedirect   string `yaml:"host_redirect,omitempty"`
	PathRedirect   string `yaml:"path_redirect,omitempty"`
	PrefixRewrite  string `yaml:"prefix_rewrite,omitempty"`
	ResponseCode   int    `yaml:"response_code,omitempty"` // 301 (default), 302, 303, 307, 308
	StripQuery     bool   `yaml:"strip_query,omitempty"`
}

// RegexRewrite rewrites the path: Pattern (RE2) → Substitution (\1 groups).
type RegexRewrite struct {
	Pattern      string `yaml:"pattern"`
	Substitution string `yaml:"substitution"`
}

// ValueMatcher matches a header or query parameter: exactly one of Exact,
// Regex (RE2, whole value) or Present (true: present, false: absent);
// Invert negates (headers only).
type ValueMatcher struct {
	Name    string `yaml:"name"`
	Exact   string `yaml:"exact,omitempty"`
	Regex   string `yaml:"regex,omitempty"`
	Present *bool  `yaml:"present,omitempty"`
	Invert  bool   `yaml:"invert,omitempty"`
}

// HashPolicy names one thing to hash: exactly one of the fields.
type HashPolicy struct {
	Header   string `yaml:"header,omitempty"`
	Cookie   string `yaml:"cookie,omitempty"`
	SourceIP bool   `yaml:"source_ip,omitempty"`
}

func (r *Route) setDefaults() { r.Timeout = Duration(15 * time.Second) }
