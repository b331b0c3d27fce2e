// Package offload is the crypto-engine seam: how a connection is secured.
// An engine wraps a transport.Conn and returns a transport.Conn that carries
// plaintext, so every engine runs over every transport and nothing above
// offload/ knows which engine (if any) secures a connection. Engines are
// values built from config and registered by name (crypto/tls is "gotls";
// GM/SM and offload engines come as packages of their own).
//
// Private keys are used through crypto.Signer / crypto.Decrypter, so an
// engine can take keys that live in hardware or behind a remote signer.
package offload

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
)

// Engine builds the server and client sides of a secure protocol.
type Engine interface {
	Name() string
	// NewServer validates cfg and loads its material once; Wrap then
	// secures each accepted connection.
	NewServer(cfg *ServerConfig) (Server, error)
	NewClient(cfg *ClientConfig) (Client, error)
}

// Server secures accepted connections for one listener.
type Server interface {
	// Wrap returns the plaintext side of c; the handshake starts when it is
	// started (or attached).
	Wrap(c transport.Conn) Conn
	// Close stops background work (certificate reload, ticket rotation).
	Close()
}

// Client secures connections dialled to one cluster.
type Client interface {
	// Wrap returns the plaintext side of c, dialled to host (for SNI when
	// the config names none). Writes before the handshake completes are
	// queued, so a pool may send a request at once.
	Wrap(c transport.Conn, host string) Conn
}

// Secure is implemented by connections that can say whether they are
// encrypted (the HTTP layer sets X-Forwarded-Proto from it).
type Secure interface {
	IsSecure() bool
}

// Conn is a secured connection.
type Conn interface {
	transport.Conn
	// Attach sets the plaintext handler and returns the handler that must
	// receive the underlying connection's (ciphertext) events, for a caller
	// that started the underlying connection itself (the TLS inspector).
	Attach(h transport.Handler) transport.Handler
	// NegotiatedProtocol is the ALPN result ("" before the handshake or
	// when none was agreed).
	NegotiatedProtocol() string
}

// CertFiles is one certificate chain and its key, PEM files.
type CertFiles struct {
	CertFile string
	KeyFile  string
	// EncCertFile and EncKeyFile are the encryption certificate and key of
	// engines with double certificates (gm: TLCP); others ignore them.
	EncCertFile string
	EncKeyFile  string
}

// ServerConfig is a listener's TLS settings, engine-neutral.
type ServerConfig struct {
	// Certificates: the first is the default; the others are chosen by SNI
	// against the names in their certificates (exact or wildcard).
	Certificates []CertFiles
	ALPN         []string
	MinVersion   string // "1.2" or "1.3"
	MaxVersion   string
	CipherSuites []string // by IANA name; empty: the engine's defaults
	Curves       []string // e.g. X25519MLKEM768, X25519, P256; empty: defaults
	// ClientAuth: "none", "request" or "require" (require-and-verify).
	ClientAuth string
	ClientCA   string   // PEM bundle verifying client certificates
	ClientSANs []string // if set, a client certificate must carry one of these SANs (DNS, URI such as spiffe://…, email, IP)
	// SessionTicketKeyFile shares ticket keys between instances: lines of
	// 64 hex digits, the first encrypts. Empty: keys are random and rotate
	// every TicketRotation.
	SessionTicketKeyFile string
	TicketRotation       time.Duration
	// ReloadInterval is how often certificate and key files are checked for
	// changes; a bad new file is refused and the old one kept.
	ReloadInterval   time.Duration
	HandshakeTimeout time.Duration
	Stats            *Stats
}

// ClientConfig is a cluster's TLS settings.
type ClientConfig struct {
	SNI        string // empty: the host dialled
	CAFile     string // empty: the system roots
	Insecure   bool   // skip verification (tests only; logged loudly)
	Cert       *CertFiles
	ALPN       []string
	MinVersion string
	// HandshakeTimeout bounds the handshake (the cluster's connect
	// timeout: connected means secured); 0: 10 s.
	HandshakeTimeout time.Duration
	Stats            *Stats
}

// ClientHandshakeTimeout is cfg's handshake bound, 10 s when unset.
func (cfg *ClientConfig) ClientHandshakeTimeout() time.Duration {
	if cfg.HandshakeTimeout > 0 {
		return cfg.HandshakeTimeout
	}
	return 10 * time.Second
}

// Stats count handshakes (Envoy's ssl.*).
type Stats struct {
	Handshakes, Resumptions stats.Counter
	mu                      sync.Mutex
	failures                map[string]uint64
	versions                map[string]uint64
	suites                  map[string]uint64
}

// Failed counts a failed handshake by reason.
func (s *Stats) Failed(reason string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.failures == nil {
		s.failures = map[string]uint64{}
	}
	s.failures[reason]++
	s.mu.Unlock()
}

// Negotiated counts a completed handshake's version and suite.
func (s *Stats) Negotiated(key uint64, version, suite string, resumed bool) {
	if s == nil {
		return
	}
	s.Handshakes.Inc(key)
	if resumed {
		s.Resumptions.Inc(key)
	}
	s.mu.Lock()
	if s.versions == nil {
		s.versions, s.suites = map[string]uint64{}, map[string]uint64{}
	}
	s.versions[version]++
	s.suites[suite]++
	s.mu.Unlock()
}

// Snapshot copies the labelled counts.
func (s *Stats) Snapshot() (failures, versions, suites map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := func(m map[string]uint64) map[string]uint64 {
		out := make(map[string]uint64, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return cp(s.failures), cp(s.versions), cp(s.suites)
}

// Factory builds an engine.
type Factory func() (Engine, error)

var engines = registry.New[Factory]("crypto engine")

// Register makes an engine available by name; duplicates panic.
func Register(name string, f Factory) { engines.Register(name, f) }

// ErrUnknown is wrapped by New for an unregistered name.
var ErrUnknown = errors.New("offload: unknown engine")

// New builds the named engine.
func New(name string) (Engine, error) {
	f, ok := engines.Get(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (available: %v)", ErrUnknown, name, Names())
	}
	return f()
}

// Names lists the registered engines, sorted.
func Names() []string { return engines.Names() }
