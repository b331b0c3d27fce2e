// Package config is proxylab's YAML schema: its defaults, its validation
// (every error reported with its path in the file, unknown fields included)
// and the embedded default config that `proxylab run` serves with no file.
package config

import (
	_ "embed"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/accesslog"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the embedded default config.
func DefaultYAML() []byte { return slices.Clone(defaultYAML) }

// Config is the whole file.
type Config struct {
	// Transport moves the bytes: netpoll (default) or another registered one.
	Transport string `yaml:"transport"`
	// Workers for reactor transports; 0 means one per usable CPU.
	Workers int `yaml:"workers"`
	// CPUs pins the process, e.g. "0-1" or "2,4"; empty means no pinning.
	CPUs string `yaml:"cpus"`
	// DrainTimeout bounds a graceful stop (SIGTERM).
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Sockmap configures the eBPF transport (used when transport is
	// sockmap).
	Sockmap Sockmap `yaml:"sockmap"`
	// DPDK configures the kernel-bypass transport (used when transport is
	// dpdk).
	DPDK DPDK `yaml:"dpdk"`
	// DemoUpstream, when set, starts a small built-in HTTP server there,
	// so the embedded config answers with no other process running.
	DemoUpstream *DemoUpstream `yaml:"demo_upstream,omitempty"`
	// Admin, when set, serves the admin API (metrics, config dump, health).
	Admin     *Admin        `yaml:"admin,omitempty"`
	Stats     Stats         `yaml:"stats"`
	Listeners []Listener    `yaml:"listeners"`
	Routes    []VirtualHost `yaml:"routes"`
	Clusters  []Cluster     `yaml:"clusters"`
}

func (c *Config) setDefaults() {
	c.Transport = "netpoll"
	c.DrainTimeout = Duration(30 * time.Second)
	c.Stats.Enabled = true
	c.Sockmap.setDefaults() // so the dump shows it when the file has no sockmap block
}

// Admin configures the admin HTTP server.
type Admin struct {
	// Address defaults to 127.0.0.1:9901: loopback unless said otherwise.
	Address string `yaml:"address"`
	// Token, when set, is required as "Authorization: Bearer <token>" by
	// every endpoint except /ready. It is never shown in /config_dump.
	Token Secret `yaml:"token,omitempty"`
}

func (a *Admin) setDefaults() { a.Address = "127.0.0.1:9901" }

// Stats switches the hot-path metrics; on by default.
type Stats struct {
	Enabled bool `yaml:"enabled"`
}

// Secret is a string that never leaves the process through a dump.
type Secret string

const redacted = "[redacted]"

func (s Secret) MarshalYAML() (any, error) {
	if s == "" {
		return "", nil
	}
	return redacted, nil
}

func (s Secret) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte(`""`), nil
	}
	return []byte(`"` + redacted + `"`), nil
}

// String redacts, so a Secret printed by mistake does not leak either.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Dump renders the effective config as YAML with secrets redacted.
func (c *Config) Dump() ([]byte, error) { return yaml.Marshal(c) }

// Sockmap configures the eBPF transport.
type Sockmap struct {
	// Cgroup is the cgroup v2 directory whose same-host sockets are
	// accelerated; empty means the proxy's own cgroup. A directory that
	// does not exist is created and the proxy joins it.
	Cgroup string `yaml:"cgroup"`
	// Splice joins tcp_proxy pairs in the kernel (default true).
	Splice *bool `yaml:"splice"`
}

func (s *Sockmap) setDefaults() { s.Splice = new(bool); *s.Splice = true }

// DPDK configures the kernel-bypass transport.
type DPDK struct {
	// EAL is DPDK's EAL command line, e.g. [--no-huge, --no-pci, -m, "256",
	// --vdev, "net_af_packet0,iface=veth0"].
	EAL []string `yaml:"eal"`
	// Port is the ethdev the stack runs on (a vdev name or PCI address).
	Port string `yaml:"port"`
	// Address is the userspace stack's IPv4 address with prefix; Gateway
	// the next hop for other destinations (optional).
	Address string `yaml:"address"`
	Gateway string `yaml:"gateway"`
	// Queues is the rx/tx queue pairs to use, each polled by its own lcore
	// (RSS spreads flows over them when the NIC has it). 0 or 1: one.
	Queues int `yaml:"queues"`
}

// DemoUpstream is the built-in demo HTTP server.
type DemoUpstream struct {
	Address string `yaml:"address"`
}

// Listener is one bound address with its network filter.
type Listener struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// TLS, when set, secures the listener's connections.
	TLS *ListenerTLS `yaml:"tls,omitempty"`
	// Exactly one of the network filters.
	HTTP *HTTPProxy `yaml:"http_proxy,omitempty"`
	TCP  *TCPProxy  `yaml:"tcp_proxy,omitempty"`
}

// CertFiles is one PEM certificate chain and its key.
type CertFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// EncCertFile and EncKeyFile are the encryption certificate and key
	// TLCP needs besides the signing pair (engine gm).
	EncCertFile string `yaml:"enc_cert_file,omitempty"`
	EncKeyFile  string `yaml:"enc_key_file,omitempty"`
}

// ListenerTLS is a listener's TLS settings.
type ListenerTLS struct {
	// Engine secures the connections: gotls (crypto/tls) by default.
	Engine string `yaml:"engine"`
	// Certificates: the first is the default, the others chosen by SNI
	// against the names in them (exact or wildcard).
	Certificates []CertFiles `yaml:"certificates"`
	// TLCP, when set, makes the port also serve TLCP (GB/T 38636) clients
	// with the gm engine, told apart from TLS ones by the ClientHello's
	// record version.
	TLCP *ListenerTLCP `yaml:"tlcp,omitempty"`
	// ALPN protocols offered; empty means what the listener's codec
	// speaks (h2 and http/1.1 for codec auto).
	ALPN         []string `yaml:"alpn,omitempty"`
	MinVersion   string   `yaml:"min_version,omitempty"`
	MaxVersion   string   `yaml:"max_version,omitempty"`
	CipherSuites []string `yaml:"cipher_suites,omitempty"`
	Curves       []string `yaml:"curves,omitempty"`
	// ClientAuth: none, request, or require (verified against ClientCA).
	ClientAuth string   `yaml:"client_auth"`
	ClientCA   string   `yaml:"client_ca,omitempty"`
	ClientSANs []string `yaml:"client_sans,omitempty"`
	// SessionTicketKeyFile shares ticket keys between instances (lines of
	// 64 hex digits, the first encrypts); otherwise keys are random and
	// rotate every TicketRotation.
	SessionTicketKeyFile string   `yaml:"session_ticket_key_file,omitempty"`
	TicketRotation       Duration `yaml:"ticket_rotation"`
	ReloadInterval       Duration `yaml:"reload_interval"`
	HandshakeTimeout     Duration `yaml:"handshake_timeout"`
	// Inspector serves TLS and plaintext clients on the same port.
	Inspector bool `yaml:"inspector"`
}

func (t *ListenerTLS) setDefaults() {
	t.Engine = "gotls"
	t.ClientAuth = "none"
	t.TicketRotation = Duration(time.Hour)
	t.ReloadInterval = Duration(5 * time.Second)
	t.HandshakeTimeout = Duration(10 * time.Second)
}

// ListenerTLCP is the TLCP side of a listener that serves TLS and TLCP.
type ListenerTLCP struct {
	// Certificates: signing and encryption pairs (cert_file, key_file,
	// enc_cert_file, enc_key_file); the first serves.
	Certificates []CertFiles `yaml:"certificates"`
	ClientAuth   string      `yaml:"client_auth"` // none or require
	ClientCA     string      `yaml:"client_ca,omitempty"`
}

func (t *ListenerTLCP) setDefaults() { t.ClientAuth = "none" }

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

func (t *ClusterTLS) setDefaults() { t.Engine = "gotls" }

// HTTPProxy configures the http_proxy filter.
type HTTPProxy struct {
	// VirtualHosts names entries of the top-level routes; empty means all.
	VirtualHosts      []string `yaml:"virtual_hosts,omitempty"`
	HeaderReadTimeout Duration `yaml:"header_read_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxRequestLine    int      `yaml:"max_request_line"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	MaxHeaders        int      `yaml:"max_headers"`
	// MaxRequestBuffer bounds body bytes held while the upstream connects.
	MaxRequestBuffer int `yaml:"max_request_buffer"`
	// HighWatermark is the per-connection write queue size that pauses the
	// other side.
	HighWatermark int `yaml:"high_watermark"`
	// StreamIdleTimeout ends a request with no bytes either way for that
	// long (Envoy's stream_idle_timeout, 5m by default; 0: off): 408 flag
	// SI before the response started, a reset after.
	StreamIdleTimeout Duration `yaml:"stream_idle_timeout"`
	// RequestTimeout bounds receiving the whole request from its head on
	// (Envoy's request_timeout; 0, the default: off): 408 flag DT. It stops
	// once the response starts.
	RequestTimeout Duration `yaml:"request_timeout"`
	// AccessLog, when set, writes one line per request.
	AccessLog *AccessLog `yaml:"access_log,omitempty"`
	// Codec: auto (HTTP/1.1, HTTP/2 by h2c preface or ALPN h2, or an RPC
	// protocol by its first bytes), http1, http2 (Envoy's codec_type), or
	// an RPC protocol's name (bolt, dubbo).
	Codec string `yaml:"codec"` // CodecAuto or a Known codec's name
	// HTTP2 tunes downstream HTTP/2 connections.
	HTTP2 HTTP2Options `yaml:"http2_protocol_options"`
	// Header changes for every request and response of the listener.
	HeaderOps `yaml:",inline"`
	// Upgrades (WebSocket), CONNECT, tunnel idle timeout (tunnel.go).
	HTTPTunnels `yaml:",inline"`
}

// AccessLog configures a listener's request log.
type AccessLog struct {
	// Path is "stdout", "stderr" or a file (appended to).
	Path string `yaml:"path"`
	// Format uses Envoy command operators; empty means Envoy's default.
	Format string `yaml:"format,omitempty"`
	// Buffer is how many entries may wait for the writer before new ones
	// are dropped (and counted).
	Buffer int `yaml:"buffer"`
}

func (a *AccessLog) setDefaults() { a.Buffer = 4096 }

// HTTP2Options tune HTTP/2 connections (Envoy's http2_protocol_options).
type HTTP2Options struct {
	MaxConcurrentStreams        int `yaml:"max_concurrent_streams"`
	InitialStreamWindowSize     int `yaml:"initial_stream_window_size"`
	InitialConnectionWindowSize int `yaml:"initial_connection_window_size"`
	MaxHeaderListSize           int `yaml:"max_header_list_size"`
	// MaxResetsPerSecond and ResetBurst bound streams a client may cancel
	// (rapid-reset protection): beyond them the connection is closed with
	// ENHANCE_YOUR_CALM.
	MaxResetsPerSecond int `yaml:"max_resets_per_second"`
	ResetBurst         int `yaml:"reset_burst"`
}

// RPCOptions tune the connections of an RPC cluster.
type RPCOptions struct {
	// MaxInFlight bounds requests in flight on one connection; beyond it
	// another connection is opened.
	MaxInFlight int `yaml:"max_in_flight"`
	// HeartbeatInterval probes connections quiet that long; one probe
	// unanswered for another interval closes the connection. 0: off.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
}

// validateOptions checks the option blocks the cluster's codec reads.
func (c *Cluster) validateOptions(blocks []string, p string, add func(path, format string, args ...any)) {
	for _, b := range blocks {
		switch b {
		case "http2_protocol_options":
			c.HTTP2.validate(p+"."+b, add)
		case "rpc_protocol_options":
			if c.RPC.MaxInFlight < 1 || c.RPC.HeartbeatInterval < 0 {
				add(p+"."+b, "max_in_flight must be >= 1 and heartbeat_interval >= 0")
			}
		}
	}
}

func (o *RPCOptions) setDefaults() {
	o.MaxInFlight = 1024
	o.HeartbeatInterval = Duration(15 * time.Second)
}

func (o *HTTP2Options) setDefaults() {
	o.MaxConcurrentStreams = 128
	o.InitialStreamWindowSize = 256 << 10
	o.InitialConnectionWindowSize = 4 << 20
	o.MaxHeaderListSize = 64 << 10
	o.MaxResetsPerSecond, o.ResetBurst = 100, 400
}

func (o *HTTP2Options) validate(p string, add func(path, format string, args ...any)) {
	if o.MaxConcurrentStreams < 1 || o.MaxConcurrentStreams > 1<<31-1 {
		add(p+".max_concurrent_streams", "must be 1–2147483647")
	}
	// RFC 9113 §6.5.2 / §6.9.2: windows are 65535 … 2^31-1.
	if o.InitialStreamWindowSize < 65535 || o.InitialStreamWindowSize > 1<<31-1 {
		add(p+".initial_stream_window_size", "must be 65535–2147483647")
	}
	if o.InitialConnectionWindowSize < 65535 || o.InitialConnectionWindowSize > 1<<31-1 {
		add(p+".initial_connection_window_size", "must be 65535–2147483647")
	}
	if o.MaxHeaderListSize < 1024 {
		add(p+".max_header_list_size", "must be >= 1024")
	}
	if o.MaxResetsPerSecond < 1 || o.ResetBurst < 1 {
		add(p, "max_resets_per_second and reset_burst must be >= 1")
	}
}

func (h *HTTPProxy) setDefaults() {
	h.Codec = CodecAuto
	h.HTTP2.setDefaults()
	h.HeaderReadTimeout = Duration(10 * time.Second)
	h.IdleTimeout = Duration(60 * time.Second)
	h.StreamIdleTimeout = Duration(5 * time.Minute)
	h.MaxRequestLine = 8 << 10
	h.MaxHeaderBytes = 64 << 10
	h.MaxHeaders = 100
	h.MaxRequestBuffer = 64 << 10
	h.HighWatermark = 256 << 10
	h.TunnelIdleTimeout = Duration(time.Hour)
}

// TCPProxy configures the tcp_proxy filter.
type TCPProxy struct {
	Cluster       string `yaml:"cluster"`
	HighWatermark int    `yaml:"high_watermark"`
	// IdleTimeout closes both sides of a pair with no bytes either way for
	// that long (Envoy's tcp_proxy idle_timeout, 1h by default; 0: off).
	IdleTimeout Duration `yaml:"idle_timeout"`
}

func (t *TCPProxy) setDefaults() { t.HighWatermark, t.IdleTimeout = 256<<10, Duration(time.Hour) }

// VirtualHost groups routes by Host header.
type VirtualHost struct {
	Name      string   `yaml:"name"`
	Domains   []string `yaml:"domains"`
	Routes    []Route  `yaml:"routes"`
	HeaderOps `yaml:",inline"`
}

// Route is match → cluster. The path match is exactly one of Prefix, Path
// or Regex; every other condition given must hold too. First match wins.
type Route struct {
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

// Cluster is a named group of upstream hosts.
type Cluster struct {
	Name string `yaml:"name"`
	// Type: static (hosts are IP:port) or strict_dns (hosts are name:port,
	// re-resolved every DNSRefreshRate; each address is a host).
	Type                     string   `yaml:"type"`
	DNSRefreshRate           Duration `yaml:"dns_refresh_rate"`
	DNSResolver              string   `yaml:"dns_resolver,omitempty"` // ip:port; empty: the system's
	LB                       string   `yaml:"lb"`
	ConnectTimeout           Duration `yaml:"connect_timeout"`
	MaxConnections           int      `yaml:"max_connections"`
	MaxPending               int      `yaml:"max_pending"`
	MaxRequestsPerConnection int      `yaml:"max_requests_per_connection"`
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
	Protocol string       `yaml:"protocol"`
	HTTP2    HTTP2Options `yaml:"http2_protocol_options"`
	RPC      RPCOptions   `yaml:"rpc_protocol_options"`
	Hosts    []Host       `yaml:"hosts"`
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
	c.LB = "round_robin"
	// Protocol: Known.DefaultProtocol when unset (Parse), the binary's choice.
	c.HTTP2.setDefaults()
	c.RPC.setDefaults()
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

// Known lists the names registered in this binary, for validation.
type Known struct {
	Transports []string
	LBs        []string
	Engines    []string
	// Codecs are the binary's L7 codecs in registration order (a
	// listener's codec, a cluster's protocol); DefaultProtocol is a
	// cluster's protocol when it names none.
	Codecs          []Codec
	DefaultProtocol string
}

// Codec describes a registered L7 codec (the binary's stream.Codec) to
// validation; core/config names none itself.
type Codec struct {
	Name string
	// Carries is the request protocol its streams carry: a route may send
	// a listener's requests to a cluster whose codec carries the same.
	Carries string
	// Options are the cluster option blocks (YAML keys) the codec reads;
	// they are validated on the clusters speaking it.
	Options []string
}

// codec returns the codec registered as name.
func (k Known) codec(name string) (Codec, bool) {
	for _, c := range k.Codecs {
		if c.Name == name {
			return c, true
		}
	}
	return Codec{}, false
}

// codecNames lists the registered codecs sorted, extra first.
func (k Known) codecNames(extra ...string) []string {
	var names []string
	for _, c := range k.Codecs {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	return append(extra, names...)
}

// Parse decodes and validates a config; the error is an Errors listing every
// problem found.
func Parse(data []byte, known Known) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{{Path: "(file)", Msg: err.Error()}}
	}
	cfg := &Config{}
	cfg.setDefaults()
	d := &decoder{}
	if root.Kind != 0 {
		d.decode(&root, reflect.ValueOf(cfg).Elem(), "")
	}
	for i := range cfg.Clusters {
		if cfg.Clusters[i].Protocol == "" {
			cfg.Clusters[i].Protocol = known.DefaultProtocol
		}
	}
	d.errs = append(d.errs, cfg.validate(known)...)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return cfg, nil
}

// Load reads and parses a file; an empty path means the embedded default.
func Load(path string, known Known) (*Config, error) {
	if path == "" {
		return Parse(defaultYAML, known)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, known)
}

func (c *Config) validate(k Known) Errors {
	var es Errors
	add := func(path, format string, args ...any) {
		es = append(es, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if !slices.Contains(k.Transports, c.Transport) {
		add("transport", "unknown transport %q (available: %s)", c.Transport, strings.Join(k.Transports, ", "))
	}
	if c.Workers < 0 {
		add("workers", "must be >= 0")
	}
	if c.Transport == "dpdk" {
		if c.DPDK.Port == "" {
			add("dpdk.port", "required with transport dpdk (e.g. net_af_packet0)")
		}
		if p, err := netip.ParsePrefix(c.DPDK.Address); err != nil || !p.Addr().Is4() {
			add("dpdk.address", "want an IPv4 address with prefix, e.g. 10.0.0.2/24, got %q", c.DPDK.Address)
		}
		if c.DPDK.Gateway != "" {
			if a, err := netip.ParseAddr(c.DPDK.Gateway); err != nil || !a.Is4() {
				add("dpdk.gateway", "want an IPv4 address, got %q", c.DPDK.Gateway)
			}
		}
		if c.DPDK.Queues < 0 || c.DPDK.Queues > 64 {
			add("dpdk.queues", "must be between 0 and 64, got %d", c.DPDK.Queues)
		}
	}
	if c.Sockmap.Cgroup != "" && !filepath.IsAbs(c.Sockmap.Cgroup) {
		add("sockmap.cgroup", "must be an absolute path to a cgroup v2 directory, got %q", c.Sockmap.Cgroup)
	}
	if c.CPUs != "" {
		if _, err := ParseCPUList(c.CPUs); err != nil {
			add("cpus", "%v", err)
		}
	}
	if c.DemoUpstream != nil {
		checkAddr(c.DemoUpstream.Address, "demo_upstream.address", add)
	}
	if c.Admin != nil {
		checkAddr(c.Admin.Address, "admin.address", add)
	}

	clusters := map[string]bool{}
	for i, cl := range c.Clusters {
		p := fmt.Sprintf("clusters[%d]", i)
		switch {
		case cl.Name == "":
			add(p+".name", "required")
		case clusters[cl.Name]:
			add(p+".name", "duplicate cluster name %q", cl.Name)
		}
		clusters[cl.Name] = true
		if !slices.Contains(k.LBs, cl.LB) {
			add(p+".lb", "unknown policy %q (available: %s)", cl.LB, strings.Join(k.LBs, ", "))
		}
		if cl.ConnectTimeout <= 0 {
			add(p+".connect_timeout", "must be > 0")
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"max_connections", cl.MaxConnections}, {"max_pending", cl.MaxPending}, {"max_requests_per_connection", cl.MaxRequestsPerConnection}} {
			if f.v < 0 {
				add(p+"."+f.name, "must be >= 0 (0 means unlimited)")
			}
		}
		if len(cl.Hosts) == 0 {
			add(p+".hosts", "at least one host is required")
		}
		if sc := cl.Subsets; sc != nil {
			sp := p + ".lb_subset_config"
			if len(sc.SubsetSelectors) == 0 {
				add(sp+".subset_selectors", "at least one selector (a list of metadata keys) is required")
			}
			switch sc.FallbackPolicy {
			case "no_fallback", "any_endpoint":
			case "default_subset":
				if len(sc.DefaultSubset) == 0 {
					add(sp+".default_subset", "required with fallback_policy default_subset")
				}
			default:
				add(sp+".fallback_policy", "unknown policy %q (no_fallback, any_endpoint, default_subset)", sc.FallbackPolicy)
			}
		}
		if od := cl.OutlierDetection; od != nil {
			op := p + ".outlier_detection"
			if od.Interval <= 0 || od.BaseEjectionTime <= 0 {
				add(op, "interval and base_ejection_time must be > 0")
			}
			if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
				add(op+".max_ejection_percent", "must be 0–100")
			}
			if od.Consecutive5xx < 0 || od.ConsecutiveConnectFailure < 0 {
				add(op, "consecutive counts must be >= 0 (0 disables)")
			}
		}
		cb := cl.CircuitBreakers
		for _, f := range []struct {
			name string
			v    int
		}{{"max_connections", cb.MaxConnections}, {"max_pending_requests", cb.MaxPendingRequests}, {"max_requests", cb.MaxRequests}, {"max_retries", cb.MaxRetries}} {
			if f.v < 0 {
				add(p+".circuit_breakers."+f.name, "must be >= 0 (0 means unlimited)")
			}
		}
		if rb := cb.RetryBudget; rb != nil && (rb.BudgetPercent <= 0 || rb.BudgetPercent > 100 || rb.MinRetryConcurrency < 0) {
			add(p+".circuit_breakers.retry_budget", "budget_percent must be in (0, 100], min_retry_concurrency >= 0")
		}
		if hc := cl.HealthCheck; hc != nil {
			hp := p + ".health_check"
			if hc.Type != "tcp" && hc.Type != "http" {
				add(hp+".type", "unknown type %q (tcp, http)", hc.Type)
			}
			if hc.Interval <= 0 || hc.Timeout <= 0 {
				add(hp, "interval and timeout must be > 0")
			}
			if hc.HealthyThreshold < 1 || hc.UnhealthyThreshold < 1 {
				add(hp, "healthy_threshold and unhealthy_threshold must be >= 1")
			}
			if hc.Type == "http" && !strings.HasPrefix(hc.Path, "/") {
				add(hp+".path", "must start with /")
			}
		}
		if t := cl.TLS; t != nil {
			if !slices.Contains(k.Engines, t.Engine) {
				add(p+".tls.engine", "unknown engine %q (available: %s)", t.Engine, strings.Join(k.Engines, ", "))
			}
			if t.CAFile != "" {
				checkFile(t.CAFile, p+".tls.ca_file", add)
			}
			if c := t.ClientCert; c != nil {
				checkFile(c.CertFile, p+".tls.client_cert.cert_file", add)
				checkFile(c.KeyFile, p+".tls.client_cert.key_file", add)
				checkEncPair(t.Engine, *c, p+".tls.client_cert", add)
			}
		}
		if codec, ok := k.codec(cl.Protocol); !ok {
			add(p+".protocol", "unknown protocol %q (%s)", cl.Protocol, strings.Join(k.codecNames(), ", "))
		} else {
			cl.validateOptions(codec.Options, p, add)
		}
		switch cl.Type {
		case "static", "strict_dns":
		default:
			add(p+".type", "unknown type %q (static, strict_dns)", cl.Type)
		}
		if cl.Type == "strict_dns" && cl.DNSRefreshRate <= 0 {
			add(p+".dns_refresh_rate", "must be > 0")
		}
		if cl.DNSResolver != "" {
			checkAddr(cl.DNSResolver, p+".dns_resolver", add)
		}
		for j, h := range cl.Hosts {
			hp := fmt.Sprintf("%s.hosts[%d]", p, j)
			if cl.Type == "strict_dns" {
				if _, port, err := net.SplitHostPort(h.Address); err != nil || port == "" {
					add(hp+".address", "invalid address %q: want name:port", h.Address)
				}
			} else {
				checkAddr(h.Address, hp+".address", add)
			}
			if h.Weight == 0 {
				add(hp+".weight", "must be >= 1")
			}
		}
	}

	vhosts := map[string]bool{}
	for i, vh := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		switch {
		case vh.Name == "":
			add(p+".name", "required")
		case vhosts[vh.Name]:
			add(p+".name", "duplicate virtual host name %q", vh.Name)
		}
		vhosts[vh.Name] = true
		checkHeaderOps(vh.HeaderOps, p, add)
		if len(vh.Domains) == 0 {
			add(p+".domains", "at least one domain is required (\"*\" matches any)")
		}
		for j, d := range vh.Domains {
			if d == "" || (strings.Count(d, "*") > 0 && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")) || strings.Count(d, "*") > 1 {
				add(fmt.Sprintf("%s.domains[%d]", p, j), "invalid domain %q (exact, *.suffix, prefix.* or *)", d)
			}
		}
		for j, r := range vh.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, j)
			nPath := r.pathMatchers()
			for _, v := range []string{r.Prefix, r.Path, r.Regex} {
				if v != "" {
					nPath++
				}
			}
			if r.Regex != "" {
				if _, err := regexp.Compile(r.Regex); err != nil {
					add(rp+".regex", "%v", err)
				}
			}
			for j, m := range r.Methods {
				if m == "" || strings.ToUpper(m) != m {
					add(fmt.Sprintf("%s.methods[%d]", rp, j), "method %q must be upper case, e.g. GET", m)
				}
			}
			checkMatchers(r.Headers, rp+".headers", true, add)
			checkMatchers(r.QueryParameters, rp+".query_parameters", false, add)
			switch {
			case nPath != 1:
				add(rp, "exactly one of prefix, path, regex or connect_matcher is required")
			case r.Prefix != "" && !strings.HasPrefix(r.Prefix, "/"):
				add(rp+".prefix", "must start with /")
			case r.Path != "" && !strings.HasPrefix(r.Path, "/"):
				add(rp+".path", "must start with /")
			}
			if r.PrefixRewrite != "" && r.Prefix == "" {
				add(rp+".prefix_rewrite", "needs prefix")
			}
			for j, m := range r.RequestMirrorPolicies {
				mp := fmt.Sprintf("%s.request_mirror_policies[%d]", rp, j)
				if !clusters[m.Cluster] {
					add(mp+".cluster", "unknown cluster %q", m.Cluster)
				}
				if m.Percent < 1 || m.Percent > 100 {
					add(mp+".percent", "must be 1–100")
				}
			}
			if rp2 := r.RetryPolicy; rp2 != nil {
				for j, on := range rp2.RetryOn {
					if !slices.Contains(retryConditions, on) {
						add(fmt.Sprintf("%s.retry_policy.retry_on[%d]", rp, j), "unknown condition %q (%s)", on, strings.Join(retryConditions, ", "))
					}
				}
				if slices.Contains(rp2.RetryOn, "retriable-status-codes") && len(rp2.RetriableStatusCodes) == 0 {
					add(rp+".retry_policy.retriable_status_codes", "required with retriable-status-codes")
				}
				if rp2.BaseInterval <= 0 || rp2.MaxInterval < rp2.BaseInterval {
					add(rp+".retry_policy", "base_interval must be > 0 and max_interval >= base_interval")
				}
				if rp2.NumRetries < 0 || rp2.NumRetries > 10 {
					add(rp+".retry_policy.num_retries", "must be between 0 and 10")
				}
			}
			for h, hp := range r.HashPolicy {
				n := 0
				for _, set := range []bool{hp.Header != "", hp.Cookie != "", hp.SourceIP} {
					if set {
						n++
					}
				}
				if n != 1 {
					add(fmt.Sprintf("%s.hash_policy[%d]", rp, h), "exactly one of header, cookie or source_ip")
				}
			}
			nAct := 0
			for _, set := range []bool{r.Cluster != "", len(r.WeightedClusters) > 0, r.ClusterHeader != "", r.DirectResponse != nil, r.Redirect != nil, r.Connect != nil} {
				if set {
					nAct++
				}
			}
			if nAct != 1 {
				add(rp, "exactly one of cluster, weighted_clusters, cluster_header, direct_response, redirect or connect is required")
			}
			r.RouteTunnel.validate(&r, rp, add)
			if r.Cluster != "" && !clusters[r.Cluster] {
				add(rp+".cluster", "unknown cluster %q", r.Cluster)
			}
			for j, wc := range r.WeightedClusters {
				wp := fmt.Sprintf("%s.weighted_clusters[%d]", rp, j)
				if !clusters[wc.Name] {
					add(wp+".name", "unknown cluster %q", wc.Name)
				}
				if wc.Weight == 0 {
					add(wp+".weight", "must be >= 1")
				}
			}
			if d := r.DirectResponse; d != nil && (d.Status < 200 || d.Status > 599) {
				add(rp+".direct_response.status", "must be 200–599")
			}
			if rd := r.Redirect; rd != nil {
				switch rd.ResponseCode {
				case 0, 301, 302, 303, 307, 308:
				default:
					add(rp+".redirect.response_code", "must be 301, 302, 303, 307 or 308")
				}
				if rd.PathRedirect != "" && rd.PrefixRewrite != "" {
					add(rp+".redirect", "path_redirect and prefix_rewrite exclude each other")
				}
			}
			if rr := r.RegexRewrite; rr != nil {
				if _, err := regexp.Compile(rr.Pattern); err != nil {
					add(rp+".regex_rewrite.pattern", "%v", err)
				}
			}
			checkHeaderOps(r.HeaderOps, rp, add)
		}
	}

	if len(c.Listeners) == 0 {
		add("listeners", "at least one listener is required")
	}
	names, addrs := map[string]bool{}, map[string]bool{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		switch {
		case l.Name == "":
			add(p+".name", "required")
		case names[l.Name]:
			add(p+".name", "duplicate listener name %q", l.Name)
		}
		names[l.Name] = true
		if checkAddr(l.Address, p+".address", add) && addrs[l.Address] {
			add(p+".address", "%s is used by another listener", l.Address)
		}
		addrs[l.Address] = true
		if (l.HTTP == nil) == (l.TCP == nil) {
			add(p, "exactly one of http_proxy or tcp_proxy is required")
		}
		if t := l.TLS; t != nil {
			tp := p + ".tls"
			if !slices.Contains(k.Engines, t.Engine) {
				add(tp+".engine", "unknown engine %q (available: %s)", t.Engine, strings.Join(k.Engines, ", "))
			}
			if len(t.Certificates) == 0 {
				add(tp+".certificates", "at least one certificate is required")
			}
			for j, c := range t.Certificates {
				checkFile(c.CertFile, fmt.Sprintf("%s.certificates[%d].cert_file", tp, j), add)
				checkFile(c.KeyFile, fmt.Sprintf("%s.certificates[%d].key_file", tp, j), add)
				checkEncPair(t.Engine, c, fmt.Sprintf("%s.certificates[%d]", tp, j), add)
			}
			switch t.ClientAuth {
			case "none", "request":
			case "require":
				if t.ClientCA == "" {
					add(tp+".client_ca", "required when client_auth is require")
				}
			default:
				add(tp+".client_auth", "unknown policy %q (none, request, require)", t.ClientAuth)
			}
			if t.ClientCA != "" {
				checkFile(t.ClientCA, tp+".client_ca", add)
			}
			if g := t.TLCP; g != nil {
				gp := tp + ".tlcp"
				if t.Engine == "gm" {
					add(gp, "the listener's engine is already gm; tlcp adds TLCP beside another engine's TLS")
				}
				if !slices.Contains(k.Engines, "gm") {
					add(gp, "needs the gm engine, which this binary lacks")
				}
				if len(g.Certificates) == 0 {
					add(gp+".certificates", "at least one certificate is required")
				}
				for j, c := range g.Certificates {
					checkFile(c.CertFile, fmt.Sprintf("%s.certificates[%d].cert_file", gp, j), add)
					checkFile(c.KeyFile, fmt.Sprintf("%s.certificates[%d].key_file", gp, j), add)
					checkEncPair("gm", c, fmt.Sprintf("%s.certificates[%d]", gp, j), add)
				}
				switch g.ClientAuth {
				case "none":
				case "require":
					if g.ClientCA == "" {
						add(gp+".client_ca", "required when client_auth is require")
					}
				default:
					add(gp+".client_auth", "unknown policy %q (none, require)", g.ClientAuth)
				}
			}
			for _, v := range []struct{ name, v string }{{"min_version", t.MinVersion}, {"max_version", t.MaxVersion}} {
				if v.v != "" && v.v != "1.2" && v.v != "1.3" {
					add(tp+"."+v.name, "must be 1.2 or 1.3")
				}
			}
		}
		if h := l.HTTP; h != nil {
			hp := p + ".http_proxy"
			h.HTTPTunnels.validate(hp, add)
			for j, v := range h.VirtualHosts {
				if !vhosts[v] {
					add(fmt.Sprintf("%s.virtual_hosts[%d]", hp, j), "unknown virtual host %q", v)
				}
			}
			if len(c.Routes) == 0 {
				add(hp, "no routes are configured (top-level routes)")
			}
			for _, f := range []struct {
				name string
				v    int
			}{{"max_request_line", h.MaxRequestLine}, {"max_header_bytes", h.MaxHeaderBytes}, {"max_headers", h.MaxHeaders}, {"max_request_buffer", h.MaxRequestBuffer}, {"high_watermark", h.HighWatermark}} {
				if f.v <= 0 {
					add(hp+"."+f.name, "must be > 0")
				}
			}
			if h.StreamIdleTimeout < 0 || h.RequestTimeout < 0 {
				add(hp, "stream_idle_timeout and request_timeout must be >= 0 (0: off)")
			}
			if h.MaxRequestLine > h.MaxHeaderBytes {
				add(hp+".max_request_line", "must not exceed max_header_bytes")
			}
			checkHeaderOps(h.HeaderOps, hp, add)
			if _, ok := k.codec(h.Codec); !ok && h.Codec != CodecAuto {
				add(hp+".codec", "unknown codec %q (%s)", h.Codec, strings.Join(k.codecNames(CodecAuto), ", "))
			}
			h.HTTP2.validate(hp+".http2_protocol_options", add)
			if al := h.AccessLog; al != nil {
				if al.Path == "" {
					add(hp+".access_log.path", "required (stdout, stderr or a file)")
				}
				if al.Buffer <= 0 {
					add(hp+".access_log.buffer", "must be > 0")
				}
				if al.Format != "" {
					if _, err := accesslog.ParseFormat(al.Format); err != nil {
						add(hp+".access_log.format", "%v", err)
					}
				}
			}
		}
		if t := l.TCP; t != nil {
			tp := p + ".tcp_proxy"
			if t.Cluster == "" {
				add(tp+".cluster", "required")
			} else if !clusters[t.Cluster] {
				add(tp+".cluster", "unknown cluster %q", t.Cluster)
			}
			if t.HighWatermark <= 0 {
				add(tp+".high_watermark", "must be > 0")
			}
			if t.IdleTimeout < 0 {
				add(tp+".idle_timeout", "must be >= 0 (0: off)")
			}
		}
	}
	c.checkRouteProtocols(k, add)
	return es
}

func checkHeaderOps(h HeaderOps, path string, add func(string, string, ...any)) {
	for _, l := range []struct {
		name string
		vs   []HeaderValue
	}{{"request_headers_to_add", h.RequestHeadersToAdd}, {"response_headers_to_add", h.ResponseHeadersToAdd}} {
		for i, hv := range l.vs {
			if hv.Name == "" || strings.ContainsAny(hv.Name, " :\r\n") {
				add(fmt.Sprintf("%s.%s[%d].name", path, l.name, i), "invalid header name %q", hv.Name)
			}
			if strings.ContainsAny(hv.Value, "\r\n\x00") {
				add(fmt.Sprintf("%s.%s[%d].value", path, l.name, i), "control characters are not allowed")
			}
		}
	}
}

func checkMatchers(ms []ValueMatcher, path string, invertOK bool, add func(string, string, ...any)) {
	for i, m := range ms {
		p := fmt.Sprintf("%s[%d]", path, i)
		if m.Name == "" {
			add(p+".name", "required")
		}
		n := 0
		if m.Exact != "" {
			n++
		}
		if m.Regex != "" {
			n++
			if _, err := regexp.Compile(m.Regex); err != nil {
				add(p+".regex", "%v", err)
			}
		}
		if m.Present != nil {
			n++
		}
		if n != 1 {
			add(p, "exactly one of exact, regex or present")
		}
		if m.Invert && !invertOK {
			add(p+".invert", "not supported for query parameters")
		}
	}
}

func checkFile(name, path string, add func(string, string, ...any)) {
	if name == "" {
		add(path, "required")
		return
	}
	if _, err := os.Stat(name); err != nil {
		add(path, "%v", err)
	}
}

func checkAddr(a, path string, add func(string, string, ...any)) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		add(path, "invalid address %q: want host:port", a)
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add(path, "invalid port %q", port)
		return false
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		add(path, "host %q must be an IP address or localhost", host)
		return false
	}
	return true
}

// ParseCPUList parses "0-3,6,8-9" into CPU numbers.
func ParseCPUList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("invalid CPU list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("invalid CPU range %q", part)
			}
		}
		for i := a; i <= b; i++ {
			if !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	return out, nil
}

// ClusterByName returns the cluster named name, or a zero Cluster.
func (c *Config) ClusterByName(name string) Cluster {
	for _, cl := range c.Clusters {
		if cl.Name == name {
			return cl
		}
	}
	return Cluster{}
}

// checkEncPair: the gm engine (TLCP) needs the encryption pair besides the
// signing one.
func checkEncPair(engine string, c CertFiles, p string, add func(path, format string, args ...any)) {
	if engine != "gm" {
		return
	}
	if c.EncCertFile == "" || c.EncKeyFile == "" {
		add(p, "engine gm needs enc_cert_file and enc_key_file (TLCP's encryption certificate) besides cert_file and key_file")
		return
	}
	checkFile(c.EncCertFile, p+".enc_cert_file", add)
	checkFile(c.EncKeyFile, p+".enc_key_file", add)
}
