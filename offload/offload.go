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

	"gopkg.in/yaml.v3"

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
	// Options are the entry's settings of the engine's own, as its
	// module's CertOptions decoder returned them (gm: the encryption
	// pair); nil when it has none.
	Options any
}

// Filer is implemented by certificate options that name files of their
// own, so a change to them reloads the certificates too.
type Filer interface{ Files() []string }

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
	offload                 map[offloadKey]uint64
}

// offloadKey is one offload_* counter: its metric, label and value.
type offloadKey struct{ metric, label, value string }

// Offload counts one event of an offload backend: metric
// offload_<metric>_total{label=value} (e.g. pkcs11_errors, reason,
// token_not_present).
func (s *Stats) Offload(metric, label, value string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.offload == nil {
		s.offload = map[offloadKey]uint64{}
	}
	s.offload[offloadKey{metric, label, value}]++
	s.mu.Unlock()
}

// OffloadCount is one offload_* count (tests and the admin page).
func (s *Stats) OffloadCount(metric, label, value string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offload[offloadKey{metric, label, value}]
}

// offloadHelp words the offload metrics.
var offloadHelp = map[string]string{
	"pkcs11_errors": "Failed PKCS#11 private-key operations by reason.",
	"remote_signer": "Remote signing requests by result.",
	"ktls":          "Kernel TLS hand-offs by result.",
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

// Collect exports the handshake counts (proxylab_tls_*); the caller
// adds the side and name labels.
func (s *Stats) Collect(emit stats.Emit) {
	emit("tls_handshakes_total", "Completed TLS handshakes.", stats.CounterKind, float64(s.Handshakes.Value()))
	emit("tls_resumptions_total", "TLS handshakes that resumed a session.", stats.CounterKind, float64(s.Resumptions.Value()))
	failures, versions, suites := s.Snapshot()
	for k, v := range failures {
		emit("tls_handshake_failures_total", "Failed TLS handshakes by reason.", stats.CounterKind, float64(v), stats.Label{Name: "reason", Value: k})
	}
	for k, v := range versions {
		emit("tls_versions_total", "Completed TLS handshakes by negotiated version.", stats.CounterKind, float64(v), stats.Label{Name: "version", Value: k})
	}
	for k, v := range suites {
		emit("tls_suites_total", "Completed TLS handshakes by cipher suite.", stats.CounterKind, float64(v), stats.Label{Name: "suite", Value: k})
	}
	s.mu.Lock()
	off := make(map[offloadKey]uint64, len(s.offload))
	for k, v := range s.offload {
		off[k] = v
	}
	s.mu.Unlock()
	for k, v := range off {
		emit("offload_"+k.metric+"_total", offloadHelp[k.metric], stats.CounterKind, float64(v), stats.Label{Name: k.label, Value: k.value})
	}
}

var _ stats.Collector = (*Stats)(nil)

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

// CertOptionsDecoder decodes the keys of a certificate entry beyond
// cert_file and key_file, as one mapping (nil when the entry has none),
// for entries of tls blocks using the engine. Errors are
// registry.FieldErrors under path; the value becomes CertFiles.Options.
type CertOptionsDecoder func(node *yaml.Node, path string) (any, []error)

// ListenerBlockDecoder decodes a block an engine adds to every listener's
// tls block, whatever engine the listener uses (engine names it). A value
// that is a Beside adds a server to the listener.
type ListenerBlockDecoder func(node *yaml.Node, path, engine string) (any, []error)

// Module is an engine as registered: its factory and the decoders of the
// settings it owns.
type Module struct {
	Name string
	New  Factory
	// CertOptions: nil means entries of the engine take no other keys.
	CertOptions CertOptionsDecoder
	// ListenerBlocks by key in the listener's tls block (gm: tlcp).
	ListenerBlocks map[string]ListenerBlockDecoder
}

// Beside is a listener block's decoded value that serves a second secure
// protocol on the listener's port (gm's tlcp beside TLS). Its server is
// asked before the listener's own which connections are its (Claimer).
type Beside interface {
	// NewServer builds the server; listener carries the listener's
	// handshake timeout and its handshake stats, which it shares.
	NewServer(listener *ServerConfig) (Server, error)
}

// Claimer is implemented by servers that tell their clients by the first
// bytes a connection sends: the TLS inspector asks the listener's servers
// in order. match: the bytes start this engine's handshake; needMore: too
// few bytes arrived to tell.
type Claimer interface {
	Claims(first []byte) (match, needMore bool)
}

var (
	engines = registry.New[Module]("crypto engine")
	blocks  = registry.New[ListenerBlockDecoder]("listener tls block")
)

// Register makes an engine without settings of its own available by
// name; duplicates panic.
func Register(name string, f Factory) { RegisterModule(Module{Name: name, New: f}) }

// RegisterModule makes m available by m.Name; a duplicate name or
// listener block key panics.
func RegisterModule(m Module) {
	engines.Register(m.Name, m)
	for key, dec := range m.ListenerBlocks {
		blocks.Register(key, dec)
	}
}

// CertOptionsDecoders are the engines' certificate options decoders, by
// engine name.
func CertOptionsDecoders() map[string]CertOptionsDecoder {
	out := map[string]CertOptionsDecoder{}
	for _, n := range engines.Names() {
		if m, _ := engines.Get(n); m.CertOptions != nil {
			out[n] = m.CertOptions
		}
	}
	return out
}

// ListenerBlockDecoders are the listener tls blocks engines added, by key.
func ListenerBlockDecoders() map[string]ListenerBlockDecoder {
	out := map[string]ListenerBlockDecoder{}
	for _, n := range blocks.Names() {
		out[n], _ = blocks.Get(n)
	}
	return out
}

// ErrUnknown is wrapped by New for an unregistered name.
var ErrUnknown = errors.New("offload: unknown engine")

// New builds the named engine.
func New(name string) (Engine, error) {
	m, ok := engines.Get(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (available: %v)", ErrUnknown, name, Names())
	}
	return m.New()
}

// Names lists the registered engines, sorted.
func Names() []string { return engines.Names() }
