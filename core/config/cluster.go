package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Cluster is a named group of upstream hosts.
type Cluster struct {
	Name string `yaml:"name"`
	// Type: static (hosts are IP:port) or strict_dns (hosts are name:port,
	// re-resolved every DNSRefreshRate; each address is a host).
	Type           string   `yaml:"type"`
	DNSRefreshRate Duration `yaml:"dns_refresh_rate"`
	DNSResolver    string   `yaml:"dns_resolver,omitempty"` // ip:port; empty: the system's
	LB             string   `yaml:"lb"`                     // a registered policy; empty: Known.DefaultLB
	// LBOptions is the policy's own options block, handed raw to the
	// policy's decoder (Known.LBOptions): config names no policy.
	LBOptions                *yaml.Node `yaml:"lb_options,omitempty"`
	ConnectTimeout           Duration   `yaml:"connect_timeout"`
	MaxConnections           int        `yaml:"max_connections"`
	MaxPending               int        `yaml:"max_pending"`
	MaxRequestsPerConnection int        `yaml:"max_requests_per_connection"`
	// IdleTimeout closes pooled upstream connections unused that long.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// TLS, when set, secures connections to the hosts (each may opt out).
	TLS *ClusterTLS `yaml:"tls,omitempty"`
	// HealthCheck, when set, checks every host actively; failing hosts get
	// no traffic (unless fewer than half are healthy: panic mode).
	HealthCheck *HealthCheck `yaml:"health_check,omitempty"`
	// Subsets, when set, balances within host groups a route asks for by
	// metadata_match.
	Subsets *LBSubsets `yaml:"lb_subset_config,omitempty"`
	// OutlierDetection, when set, ejects hosts that keep failing requests.
	OutlierDetection *OutlierDetection `yaml:"outlier_detection,omitempty"`
	// CircuitBreakers are cluster-wide limits (Envoy's defaults apply when
	// the block is absent); overflow is answered with 503 and counted.
	CircuitBreakers CircuitBreakers `yaml:"circuit_breakers"`
	// Protocol spoken to the hosts: http1, http2 (prior knowledge in
	// cleartext, ALPN h2 over TLS), or an RPC protocol (bolt, dubbo);
	// http2 and RPC multiplex requests per connection.
	Protocol string `yaml:"protocol"`
	// Options are the option blocks the codecs own (Known.Codecs), each
	// decoded by its codec.
	Options CodecOptions `yaml:"-"`
	Hosts   []Host       `yaml:"hosts"`
}

// LBSubsets configures subset load balancing.
type LBSubsets struct {
	SubsetSelectors [][]string        `yaml:"subset_selectors"`
	FallbackPolicy  string            `yaml:"fallback_policy"` // no_fallback, any_endpoint, default_subset
	DefaultSubset   map[string]string `yaml:"default_subset,omitempty"`
}

func (l *LBSubsets) setDefaults() { l.FallbackPolicy = "no_fallback" }

// OutlierDetection ejects failing hosts for a growing time.
type OutlierDetection struct {
	Consecutive5xx            int      `yaml:"consecutive_5xx"`
	ConsecutiveConnectFailure int      `yaml:"consecutive_connect_failure"`
	Interval                  Duration `yaml:"interval"`
	BaseEjectionTime          Duration `yaml:"base_ejection_time"`
	MaxEjectionPercent        int      `yaml:"max_ejection_percent"`
}

func (o *OutlierDetection) setDefaults() {
	o.Consecutive5xx, o.ConsecutiveConnectFailure = 5, 5
	o.Interval, o.BaseEjectionTime = Duration(10*time.Second), Duration(30*time.Second)
	o.MaxEjectionPercent = 10
}

// CircuitBreakers limit what a cluster may have in flight.
type CircuitBreakers struct {
	MaxConnections     int          `yaml:"max_connections"`
	MaxPendingRequests int          `yaml:"max_pending_requests"`
	MaxRequests        int          `yaml:"max_requests"`
	MaxRetries         int          `yaml:"max_retries"`
	RetryBudget        *RetryBudget `yaml:"retry_budget,omitempty"`
}

// RetryBudget caps retries in flight at a share of requests in flight.
type RetryBudget struct {
	BudgetPercent       float64 `yaml:"budget_percent"`
	MinRetryConcurrency int     `yaml:"min_retry_concurrency"`
}

func (r *RetryBudget) setDefaults() { r.BudgetPercent, r.MinRetryConcurrency = 20, 3 }

// HealthCheck configures active health checks.
type HealthCheck struct {
	Type               string   `yaml:"type"` // tcp or http
	Path               string   `yaml:"path,omitempty"`
	Host               string   `yaml:"host,omitempty"`
	ExpectedStatuses   []int    `yaml:"expected_statuses,omitempty"`
	Interval           Duration `yaml:"interval"`
	Jitter             Duration `yaml:"jitter"`
	Timeout            Duration `yaml:"timeout"`
	HealthyThreshold   int      `yaml:"healthy_threshold"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"`
}

func (h *HealthCheck) setDefaults() {
	h.Type, h.Path = "tcp", "/"
	h.Interval, h.Timeout = Duration(5*time.Second), Duration(time.Second)
	h.HealthyThreshold, h.UnhealthyThreshold = 2, 3
}

func (c *Cluster) setDefaults() {
	c.Type, c.DNSRefreshRate = "static", Duration(5*time.Second)
	c.IdleTimeout = Duration(time.Hour) // Envoy's default
	// Protocol: Known.DefaultProtocol when unset (Parse), the binary's choice.
	c.ConnectTimeout = Duration(5 * time.Second)
	c.MaxConnections = 1024
	c.MaxPending = 1024
	c.CircuitBreakers = CircuitBreakers{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3}
}

// Host is one static upstream endpoint.
type Host struct {
	Address string `yaml:"address"`
	// Metadata labels the host for subset load balancing.
	Metadata map[string]string `yaml:"metadata,omitempty"`
	Weight   uint32            `yaml:"weight"`
	// Plaintext opts this host out of the cluster's TLS.
	Plaintext bool `yaml:"plaintext,omitempty"`
}

func (h *Host) setDefaults() { h.Weight = 1 }

// ClusterTLS is how a cluster's upstream connections are secured.
type ClusterTLS struct {
	Engine string `yaml:"engine"`
	// SNI to send; empty: the host's address without the port.
	SNI string `yaml:"sni,omitempty"`
	// CAFile verifies the upstream; empty: the system roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// InsecureSkipVerify turns verification off (for tests; logged).
	InsecureSkipVerify bool       `yaml:"insecure_skip_verify,omitempty"`
	ClientCert         *CertFiles `yaml:"client_cert,omitempty"`
	ALPN               []string   `yaml:"alpn,omitempty"`
	MinVersion         string     `yaml:"min_version,omitempty"`
}
