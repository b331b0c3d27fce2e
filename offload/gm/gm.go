// Package gm is the GM/SM crypto engine: TLCP 1.1 (GB/T 38636-2020) with
// SM2 double certificates, on github.com/emmansun/gmsm (offload/gm/tlcp).
// Listener and cluster configs choose it with `tls.engine: gm`; each
// certificate entry names the signing pair (cert_file, key_file) and the
// encryption pair (enc_cert_file, enc_key_file). Keys are used through
// crypto.Signer and crypto.Decrypter only.
package gm

import (
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/gm/tlcp"
	"github.com/proxylab/proxylab/offload/internal/engineconn"
	"github.com/proxylab/proxylab/offload/ktls"
	"github.com/proxylab/proxylab/transport"
)

// Name is the engine's registered name.
const Name = "gm"

// Engine is the GM engine.
type Engine struct{}

var _ offload.Engine = Engine{}

// New is the engine's registry factory.
func New() (offload.Engine, error) { return Engine{}, nil }

func (Engine) Name() string { return Name }

// loadChain reads PEM certificates (leaf first) as DER.
func loadChain(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gm: %w", err)
	}
	var chain [][]byte
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := smx509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("gm: %s: %w", path, err)
		}
		chain = append(chain, b.Bytes)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("gm: %s: no certificate", path)
	}
	return chain, nil
}

// loadKey reads a PKCS#8 (or SEC1) SM2 private key.
func loadKey(path string) (crypto.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gm: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("gm: %s: no PEM key", path)
	}
	if k, err := smx509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	k, err := smx509.ParseSM2PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("gm: %s: not an SM2 key: %w", path, err)
	}
	return k, nil
}

// loadPair loads the signing and encryption certificates of one entry.
func loadPair(f offload.CertFiles) (sign, enc *tlcp.Certificate, err error) {
	o, _ := f.Options.(*CertOptions)
	if o == nil || o.EncCertFile == "" || o.EncKeyFile == "" {
		return nil, nil, errors.New("gm: a certificate entry needs enc_cert_file and enc_key_file (TLCP's encryption certificate)")
	}
	load := func(cert, key string, want func(crypto.PrivateKey) bool, role string) (*tlcp.Certificate, error) {
		chain, err := loadChain(cert)
		if err != nil {
			return nil, err
		}
		k, err := loadKey(key)
		if err != nil {
			return nil, err
		}
		if !want(k) {
			return nil, fmt.Errorf("gm: %s: the %s key cannot be used for that", key, role)
		}
		return &tlcp.Certificate{Chain: chain, Key: k}, nil
	}
	if sign, err = load(f.CertFile, f.KeyFile, func(k crypto.PrivateKey) bool { _, ok := k.(crypto.Signer); return ok }, "signing"); err != nil {
		return nil, nil, err
	}
	if enc, err = load(o.EncCertFile, o.EncKeyFile, func(k crypto.PrivateKey) bool { _, ok := k.(crypto.Decrypter); return ok }, "encryption"); err != nil {
		return nil, nil, err
	}
	return sign, enc, nil
}

func loadPool(path string) (*smx509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gm: %w", err)
	}
	pool := smx509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("gm: %s: no CA certificate", path)
	}
	return pool, nil
}

// pair is one entry's signing and encryption certificates.
type pair struct{ sign, enc *tlcp.Certificate }

// certSet is every entry, chosen by the ClientHello's server_name against
// the signing certificates' names, the first by default.
type certSet struct {
	offload.ByName[pair]
	stamp string
}

func loadSet(files []offload.CertFiles) (*certSet, error) {
	if len(files) == 0 {
		return nil, errors.New("gm: a server needs a certificate entry")
	}
	cs := &certSet{stamp: offload.FileStamp(offload.Paths(files)...)}
	for _, f := range files {
		sign, enc, err := loadPair(f)
		if err != nil {
			return nil, err
		}
		leaf, err := smx509.ParseCertificate(sign.Chain[0])
		if err != nil {
			return nil, fmt.Errorf("gm: %s: %w", f.CertFile, err)
		}
		cs.Add(pair{sign, enc}, leaf.DNSNames)
	}
	return cs, nil
}

// server terminates TLCP on a listener.
type server struct {
	cfg     offload.ServerConfig
	tlcp    *tlcp.Config
	hs      *engineconn.Handshakers
	timeout time.Duration
	certs   atomic.Pointer[certSet]
	stop    chan struct{}
	once    sync.Once
}

// NewServer loads the double certificates (chosen by SNI, the first by
// default; reloaded when their files change) and the client CA.
func (Engine) NewServer(cfg *offload.ServerConfig) (offload.Server, error) {
	cs, err := loadSet(cfg.Certificates)
	if err != nil {
		return nil, err
	}
	s := &server{cfg: *cfg, hs: engineconn.NewInlineHandshakers(), timeout: cfg.HandshakeTimeout, stop: make(chan struct{})}
	s.certs.Store(cs)
	ktls.Supported() // probed (and logged) once per process; TLCP records cannot go to the kernel (see ktls)
	// Sessions resume by ID for an hour (TLCP has no tickets).
	t := &tlcp.Config{SessionCache: tlcp.NewSessionCache(20000, time.Hour)}
	t.GetCertificates = func(name string) (*tlcp.Certificate, *tlcp.Certificate) {
		p := s.certs.Load().Pick(name)
		return p.sign, p.enc
	}
	def := cs.Pick("")
	t.SignCert, t.EncCert = def.sign, def.enc
	switch cfg.ClientAuth {
	case "", "none":
	case "require":
		if cfg.ClientCA == "" {
			return nil, errors.New("gm: client_auth require needs client_ca")
		}
		if t.ClientCAs, err = loadPool(cfg.ClientCA); err != nil {
			return nil, err
		}
		t.ClientAuth = tlcp.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("gm: client_auth %q is not supported (none, require)", cfg.ClientAuth)
	}
	s.tlcp = t
	go s.watch()
	return s, nil
}

// watch reloads changed certificate files; a bad file is refused with a
// log line and the certificates in use are kept.
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
		case <-tk.C:
			stamp := offload.FileStamp(offload.Paths(s.cfg.Certificates)...)
			if stamp == s.certs.Load().stamp {
				continue
			}
			cs, err := loadSet(s.cfg.Certificates)
			if err != nil {
				slog.Warn("gm: new certificate refused, keeping the current one", "err", err)
				old := *s.certs.Load()
				old.stamp = stamp // do not retry the same broken files every tick
				s.certs.Store(&old)
				continue
			}
			s.certs.Store(cs)
			slog.Info("gm: certificates reloaded", "entries", len(s.cfg.Certificates))
		}
	}
}

func (s *server) Wrap(c transport.Conn) offload.Conn {
	tc := engineconn.New(c, true, s.timeout, s.cfg.Stats, s.hs)
	tc.SetProtocol(protocol{tlcp.Server(tc.Adapter(), s.tlcp)})
	return tc
}

func (s *server) Close() { s.once.Do(func() { close(s.stop) }) }

// Claims TLCP ClientHellos: a handshake record (22) of record version
// 1.1 (0x0101), which no TLS version uses.
func (s *server) Claims(first []byte) (match, needMore bool) {
	if len(first) == 0 || first[0] != 0x16 {
		return false, false
	}
	if len(first) < 3 {
		return false, true
	}
	return first[1] == 0x01 && first[2] == 0x01, false
}

var _ offload.Claimer = (*server)(nil)

// client speaks TLCP to upstream hosts.
type client struct {
	cfg  offload.ClientConfig
	base tlcp.Config
	hs   *engineconn.Handshakers
}

// NewClient loads the roots and, for client authentication, the double
// certificates.
//
// min_version "1.3" makes the cluster speak TLS 1.3 with the SM suites
// of RFC 8998 instead ("" is TLCP).
func (Engine) NewClient(cfg *offload.ClientConfig) (offload.Client, error) {
	switch cfg.MinVersion {
	case "":
	case "1.3":
		return newSMClient(cfg)
	default:
		return nil, fmt.Errorf("gm: min_version %q: \"\" (TLCP) or 1.3 (TLS 1.3 with the SM suites of RFC 8998)", cfg.MinVersion)
	}
	cl := &client{cfg: *cfg, hs: engineconn.NewHandshakers()}
	cl.base.SessionCache = tlcp.NewSessionCache(1024, time.Hour)
	cl.base.InsecureSkipVerify = cfg.Insecure
	if cfg.CAFile != "" {
		pool, err := loadPool(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		cl.base.RootCAs = pool
	} else if !cfg.Insecure {
		return nil, errors.New("gm: a cluster needs ca_file (there are no system SM2 roots)")
	}
	if cfg.Cert != nil {
		sign, enc, err := loadPair(*cfg.Cert)
		if err != nil {
			return nil, err
		}
		cl.base.SignCert, cl.base.EncCert = sign, enc
	}
	return cl, nil
}

func (cl *client) Wrap(c transport.Conn, host string) offload.Conn {
	t := cl.base
	t.ServerName = cl.cfg.SNI
	if t.ServerName == "" {
		t.ServerName = hostOnly(host)
	}
	tc := engineconn.New(c, false, cl.cfg.ClientHandshakeTimeout(), cl.cfg.Stats, cl.hs)
	tc.SetProtocol(protocol{tlcp.Client(tc.Adapter(), &t)})
	return tc
}

func hostOnly(hostport string) string {
	for i := len(hostport) - 1; i >= 0; i-- {
		if hostport[i] == ':' {
			return hostport[:i]
		}
	}
	return hostport
}

// protocol is a TLCP connection as an engineconn.Protocol.
type protocol struct{ *tlcp.Conn }

func (p protocol) Negotiated() engineconn.Negotiated {
	st := p.ConnectionState()
	return engineconn.Negotiated{Version: "TLCP1.1", Suite: tlcp.SuiteName(st.CipherSuite), Resumed: st.DidResume}
}

// FailureReason names TLCP alerts for metrics.
func (protocol) FailureReason(err error) string {
	var ae *tlcp.AlertError
	if errors.As(err, &ae) {
		return fmt.Sprintf("alert_%d", ae.Code)
	}
	return ""
}
