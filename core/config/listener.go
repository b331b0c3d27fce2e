package config

import "time"

// Listener is one bound address with its network filter.
type Listener struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// TLS, when set, secures the listener's connections.
	TLS *ListenerTLS `yaml:"tls,omitempty"`
	// ListenerFilters run on each accepted connection (listenerfilters.go).
	ListenerFilters []ListenerFilter `yaml:"listener_filters,omitempty"`
	// Exactly one of the network filters.
	HTTP *HTTPProxy `yaml:"http_proxy,omitempty"`
	TCP  *TCPProxy  `yaml:"tcp_proxy,omitempty"`
}

// CertFiles is one PEM certificate chain and its key.
type CertFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Extra are the entry's other keys, the engine's own (decoded by the
	// engine of the tls block into EngineOptions).
	Extra         Blocks `yaml:",inline"`
	EngineOptions any    `yaml:"-"`
}

// ListenerTLS is a listener's TLS settings.
type ListenerTLS struct {
	// Engine secures the connections: a registered engine (the binary's
	// default when unset, Known.DefaultEngine).
	Engine string `yaml:"engine"`
	// Certificates: the first is the default, the others chosen by SNI
	// against the names in them (exact or wildcard).
	Certificates []CertFiles `yaml:"certificates"`
	// Blocks are keys engines add to any listener's tls block, each
	// decoded by its engine (e.g. one serving a second protocol on the
	// port, asked first which connections are its own).
	Blocks Blocks `yaml:",inline"`
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
	t.ClientAuth = "none"
	t.TicketRotation = Duration(time.Hour)
	t.ReloadInterval = Duration(5 * time.Second)
	t.HandshakeTimeout = Duration(10 * time.Second)
}

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
	// Options are the option blocks the codecs own for their server sides
	// (Known.Codecs), each decoded by its codec.
	Options CodecOptions `yaml:"-"`
	// Header changes for every request and response of the listener.
	HeaderOps `yaml:",inline"`
	// Upgrades (WebSocket), CONNECT, tunnel idle timeout (tunnel.go).
	HTTPTunnels `yaml:",inline"`
	// HTTPFilters is the ordered stream filter chain (httpfilters.go);
	// PerRequestBufferLimit bounds what it buffers per direction of a
	// request (over it: 413 for a request, 500 for a response).
	HTTPFilters           []HTTPFilter `yaml:"http_filters,omitempty"`
	PerRequestBufferLimit int          `yaml:"per_request_buffer_limit_bytes"`
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

func (h *HTTPProxy) setDefaults() {
	h.Codec = CodecAuto
	h.HeaderReadTimeout = Duration(10 * time.Second)
	h.IdleTimeout = Duration(60 * time.Second)
	h.StreamIdleTimeout = Duration(5 * time.Minute)
	h.MaxRequestLine = 8 << 10
	h.MaxHeaderBytes = 64 << 10
	h.MaxHeaders = 100
	h.MaxRequestBuffer = 64 << 10
	h.HighWatermark = 256 << 10
	h.TunnelIdleTimeout = Duration(time.Hour)
	h.PerRequestBufferLimit = 1 << 20
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
