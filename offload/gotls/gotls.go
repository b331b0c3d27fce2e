// Package gotls is the crypto/tls engine ("gotls").
package gotls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/internal/engineconn"
	"github.com/proxylab/proxylab/offload/ktls"
	"github.com/proxylab/proxylab/transport"
)

// Name is the registered name.
const Name = "gotls"

// Engine is the crypto/tls engine.
type Engine struct{}

var _ offload.Engine = Engine{}

// New returns the engine (the registry's factory).
func New() (offload.Engine, error) { return Engine{}, nil }

func (Engine) Name() string { return Name }

// ParseVersion maps "1.0" … "1.3" to crypto/tls constants ("" → 0).
func ParseVersion(v string) (uint16, error) {
	switch v {
	case "":
		return 0, nil
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	case "1.0", "1.1":
		return 0, fmt.Errorf("gotls: TLS %s is not offered (too weak); use 1.2 or 1.3", v)
	}
	return 0, fmt.Errorf("gotls: unknown TLS version %q (1.2 or 1.3)", v)
}

// ParseSuites maps IANA suite names to IDs, refusing insecure ones.
func ParseSuites(names []string) ([]uint16, error) {
	if len(names) == 0 {
		return nil, nil
	}
	known := map[string]uint16{}
	for _, s := range tls.CipherSuites() {
		known[s.Name] = s.ID
	}
	var out []uint16
	for _, n := range names {
		id, ok := known[n]
		if !ok {
			return nil, fmt.Errorf("gotls: unknown or insecure cipher suite %q", n)
		}
		out = append(out, id)
	}
	return out, nil
}

// ParseCurves maps curve names (X25519MLKEM768, X25519, P256, P384, P521).
func ParseCurves(names []string) ([]tls.CurveID, error) {
	var out []tls.CurveID
	for _, n := range names {
		switch n {
		case "X25519MLKEM768":
			out = append(out, tls.X25519MLKEM768)
		case "X25519":
			out = append(out, tls.X25519)
		case "P256":
			out = append(out, tls.CurveP256)
		case "P384":
			out = append(out, tls.CurveP384)
		case "P521":
			out = append(out, tls.CurveP521)
		default:
			return nil, fmt.Errorf("gotls: unknown curve %q", n)
		}
	}
	return out, nil
}

// certSet is the loaded certificates with their SNI index.
type certSet struct {
	offload.ByName[*tls.Certificate]
	stamp string // file sizes and times, to see changes
	// inMemory: every key is a software key in this process, so handshakes
	// run inline on the event loop (a key elsewhere, e.g. a hardware
	// signer, may block: its handshakes go to worker goroutines).
	inMemory bool
}

// inMemoryKey says whether k is a software key crypto/tls signs with at
// CPU speed, or one whose signatures suspend the handshake rather than
// block (offload.AsyncSigner): either way the handshake may run inline.
func inMemoryKey(k crypto.PrivateKey) bool {
	switch k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey, offload.AsyncSigner:
		return true
	}
	return false
}

func loadCerts(files []offload.CertFiles, st *offload.Stats) (*certSet, error) {
	if len(files) == 0 {
		return nil, errNoCert
	}
	cs := &certSet{stamp: offload.FileStamp(offload.Paths(files)...), inMemory: true}
	for _, f := range files {
		c, err := loadPair(f, st)
		if err != nil {
			return nil, fmt.Errorf("gotls: certificate %s: %w", f.CertFile, err)
		}
		leaf := c.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("gotls: certificate %s: %w", f.CertFile, err)
			}
			c.Leaf = leaf
		}
		cs.inMemory = cs.inMemory && inMemoryKey(c.PrivateKey)
		cs.Add(&c, leaf.DNSNames)
	}
	return cs, nil
}

type server struct {
	hs    *engineconn.Handshakers // workers, for keys outside the process
	ihs   *engineconn.Handshakers // inline coroutines, for in-memory keys
	cfg   offload.ServerConfig
	tls   *tls.Config
	certs atomic.Pointer[certSet]
	stop  chan struct{}
	once  sync.Once

	ticketStamp string
	ticketKeys  [][32]byte
	lastRotate  time.Time
}

func (Engine) NewServer(cfg *offload.ServerConfig) (offload.Server, error) {
	s := &server{cfg: *cfg, stop: make(chan struct{}), hs: engineconn.NewHandshakers(), ihs: engineconn.NewInlineHandshakers()}
	cs, err := loadCerts(cfg.Certificates, cfg.Stats)
	if err != nil {
		return nil, err
	}
	s.certs.Store(cs)
	ktls.Supported() // probed (and logged) once per process, at the first listener
	minV, err := ParseVersion(cfg.MinVersion)
	if err != nil {
		return nil, err
	}
	maxV, err := ParseVersion(cfg.MaxVersion)
	if err != nil {
		return nil, err
	}
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	suites, err := ParseSuites(cfg.CipherSuites)
	if err != nil {
		return nil, err
	}
	curves, err := ParseCurves(cfg.Curves)
	if err != nil {
		return nil, err
	}
	t := &tls.Config{
		MinVersion:       minV,
		MaxVersion:       maxV,
		CipherSuites:     suites,
		CurvePreferences: curves, // nil keeps Go's default, post-quantum X25519MLKEM768 first
		NextProtos:       cfg.ALPN,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return forHandshake(s.certs.Load().Pick(hello.ServerName), hello.Context()), nil
		},
	}
	switch cfg.ClientAuth {
	case "", "none":
	case "request":
		t.ClientAuth = tls.RequestClientCert
	case "require":
		t.ClientAuth = tls.RequireAndVerifyClientCert
		if cfg.ClientCA == "" {
			return nil, errors.New("gotls: client_auth require needs client_ca")
		}
	default:
		return nil, fmt.Errorf("gotls: unknown client_auth %q (none, request, require)", cfg.ClientAuth)
	}
	if cfg.ClientCA != "" {
		pool, err := loadPool(cfg.ClientCA)
		if err != nil {
			return nil, err
		}
		t.ClientCAs = pool
		if t.ClientAuth == tls.RequestClientCert {
			t.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	if len(cfg.ClientSANs) > 0 {
		t.VerifyPeerCertificate = sanMatcher(cfg.ClientSANs)
	}
	s.tls = t
	if err := s.refreshTickets(time.Now()); err != nil {
		return nil, err
	}
	go s.watch()
	return s, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gotls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("gotls: no certificate in %s", path)
	}
	return pool, nil
}

// sanMatcher accepts a verified client certificate only if it carries one of
// the allowed SANs (DNS names, URIs such as SPIFFE IDs, emails, IPs).
func sanMatcher(allowed []string) func([][]byte, [][]*x509.Certificate) error {
	set := map[string]bool{}
	for _, a := range allowed {
		set[a] = true
	}
	return func(_ [][]byte, chains [][]*x509.Certificate) error {
		if len(chains) == 0 || len(chains[0]) == 0 {
			return nil // no certificate (client_auth request): nothing to match
		}
		leaf := chains[0][0]
		var names []string
		names = append(names, leaf.DNSNames...)
		names = append(names, leaf.EmailAddresses...)
		for _, u := range leaf.URIs {
			names = append(names, u.String())
		}
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		for _, n := range names {
			if set[n] {
				return nil
			}
		}
		return fmt.Errorf("gotls: client certificate SANs %v match none allowed", names)
	}
}

// refreshTickets loads shared ticket keys when their file changed, or
// rotates random ones on schedule (the previous key still decrypts).
func (s *server) refreshTickets(now time.Time) error {
	if path := s.cfg.SessionTicketKeyFile; path != "" {
		stamp := offload.FileStamp(path)
		if stamp == s.ticketStamp {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("gotls: session ticket keys: %w", err)
		}
		var keys [][32]byte
		for i, line := range strings.Fields(string(data)) {
			raw, err := hex.DecodeString(line)
			if err != nil || len(raw) != 32 {
				return fmt.Errorf("gotls: session ticket key file %s line %d: want 64 hex digits", path, i+1)
			}
			keys = append(keys, [32]byte(raw))
		}
		if len(keys) == 0 {
			return fmt.Errorf("gotls: session ticket key file %s has no key", path)
		}
		s.tls.SetSessionTicketKeys(keys)
		s.ticketStamp = stamp
		return nil
	}
	every := s.cfg.TicketRotation
	if every <= 0 {
		every = time.Hour
	}
	if s.ticketKeys != nil && now.Sub(s.lastRotate) < every {
		return nil
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("gotls: ticket key: %w", err)
	}
	s.ticketKeys = append([][32]byte{k}, s.ticketKeys...)
	if len(s.ticketKeys) > 2 {
		s.ticketKeys = s.ticketKeys[:2]
	}
	s.tls.SetSessionTicketKeys(s.ticketKeys)
	s.lastRotate = now
	return nil
}

// watch reloads changed certificate files and ticket keys; a bad file is
// refused with a log line and the material in use is kept.
func (s *server) watch() {
	every := s.cfg.ReloadInterval
	if every <= 0 {
		every = 5 * time.Second
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tk.C:
			if offload.FileStamp(offload.Paths(s.cfg.Certificates)...) != s.certs.Load().stamp {
				cs, err := loadCerts(s.cfg.Certificates, s.cfg.Stats)
				if err != nil {
					slog.Warn("gotls: new certificate refused, keeping the current one", "err", err)
					// Do not retry the same broken files every tick.
					old := *s.certs.Load()
					old.stamp = offload.FileStamp(offload.Paths(s.cfg.Certificates)...)
					s.certs.Store(&old)
				} else {
					s.certs.Store(cs)
					slog.Info("gotls: certificates reloaded", "files", len(s.cfg.Certificates))
				}
			}
			if err := s.refreshTickets(now); err != nil {
				slog.Warn("gotls: session ticket keys not changed", "err", err)
			}
		}
	}
}

func (s *server) Wrap(c transport.Conn) offload.Conn {
	hs := s.hs
	if s.certs.Load().inMemory {
		hs = s.ihs
	}
	tc := engineconn.New(c, true, s.cfg.HandshakeTimeout, s.cfg.Stats, hs)
	tc.SetProtocol(goTLS{tls.Server(tc.Adapter(), s.tls)})
	return tc
}

func (s *server) Close() { s.once.Do(func() { close(s.stop) }) }

// Claims every TLS handshake record (content type 22).
func (s *server) Claims(first []byte) (match, needMore bool) {
	return len(first) > 0 && first[0] == recordTypeHandshake, false
}

// recordTypeHandshake starts every TLS ClientHello (RFC 8446 §5.1).
const recordTypeHandshake = 0x16

var _ offload.Claimer = (*server)(nil)

type client struct {
	hs    *engineconn.Handshakers
	cfg   offload.ClientConfig
	base  *tls.Config
	mu    sync.Mutex
	perSN map[string]*tls.Config
}

func (Engine) NewClient(cfg *offload.ClientConfig) (offload.Client, error) {
	minV, err := ParseVersion(cfg.MinVersion)
	if err != nil {
		return nil, err
	}
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	t := &tls.Config{MinVersion: minV, NextProtos: cfg.ALPN, InsecureSkipVerify: cfg.Insecure,
		ClientSessionCache: tls.NewLRUClientSessionCache(256)}
	if cfg.CAFile != "" {
		if t.RootCAs, err = loadPool(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	if cfg.Cert != nil {
		c, err := loadPair(*cfg.Cert, cfg.Stats)
		if err != nil {
			return nil, fmt.Errorf("gotls: client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{c}
	}
	if cfg.Insecure {
		slog.Warn("gotls: upstream certificate verification is OFF (insecure)")
	}
	return &client{cfg: *cfg, base: t, perSN: map[string]*tls.Config{}, hs: engineconn.NewHandshakers()}, nil
}

// Wrap secures a connection dialled to host ("ip:port" or "name:port").
func (cl *client) Wrap(c transport.Conn, host string) offload.Conn {
	sni := cl.cfg.SNI
	if sni == "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			sni = h
		} else {
			sni = host
		}
	}
	cl.mu.Lock()
	t, ok := cl.perSN[sni]
	if !ok {
		t = cl.base.Clone()
		t.ServerName = sni
		cl.perSN[sni] = t
	}
	cl.mu.Unlock()
	tc := engineconn.New(c, false, cl.cfg.ClientHandshakeTimeout(), cl.cfg.Stats, cl.hs)
	tc.SetProtocol(goTLS{tls.Client(tc.Adapter(), t)})
	return tc
}

// goTLS is crypto/tls as an engineconn.Protocol.
type goTLS struct{ *tls.Conn }

func (g goTLS) Negotiated() engineconn.Negotiated {
	cs := g.ConnectionState()
	ng := engineconn.Negotiated{ALPN: cs.NegotiatedProtocol, Version: tls.VersionName(cs.Version), Suite: tls.CipherSuiteName(cs.CipherSuite),
		Resumed: cs.DidResume, ServerName: cs.ServerName}
	if len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 { // verified only: client_auth request may leave it unchecked
		ng.PeerCertificate = cs.VerifiedChains[0][0]
	}
	return ng
}

// FailureReason names crypto/tls's handshake errors for metrics.
func (goTLS) FailureReason(err error) string {
	var ae tls.AlertError
	var rec tls.RecordHeaderError
	var ce *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ce):
		return "certificate_verify_failed"
	case errors.As(err, &rec):
		return "not_tls"
	case errors.As(err, &ae):
		return "alert_" + ae.Error()
	}
	return ""
}
