package gm

import (
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/gm/tls13"
	"github.com/proxylab/proxylab/offload/internal/engineconn"
	"github.com/proxylab/proxylab/transport"
)

// SM policies of a tls13_sm block: which TLS ClientHellos the TLS 1.3-SM
// server takes from the listener's own engine.
const (
	// PolicySMPreferred: every ClientHello offering TLS 1.3 with an RFC
	// 8998 suite, even when it offers standard suites too.
	PolicySMPreferred = "sm_preferred"
	// PolicyStandardPreferred: only ClientHellos offering nothing but SM
	// suites; a client that can do both gets standard TLS.
	PolicyStandardPreferred = "standard_preferred"
	// PolicySMOnly: every TLS ClientHello (one without an SM suite fails
	// with handshake_failure). TLCP records stay TLCP's.
	PolicySMOnly = "sm_only"
)

// loadSMCert loads one single-certificate entry: an SM2 chain and its
// key, usable as a crypto.Signer.
func loadSMCert(certFile, keyFile string) (*tls13.Certificate, []string, error) {
	chain, err := loadChain(certFile)
	if err != nil {
		return nil, nil, err
	}
	k, err := loadKey(keyFile)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("gm: %s: the key cannot sign", keyFile)
	}
	leaf, err := smx509.ParseCertificate(chain[0])
	if err != nil {
		return nil, nil, fmt.Errorf("gm: %s: %w", certFile, err)
	}
	if !sm2.IsSM2PublicKey(leaf.PublicKey) {
		return nil, nil, fmt.Errorf("gm: %s: not an SM2 certificate (sm2sig_sm3 needs one)", certFile)
	}
	return &tls13.Certificate{Chain: chain, Key: signer}, leaf.DNSNames, nil
}

// smServer terminates TLS 1.3-SM beside a listener's engine.
type smServer struct {
	block   TLS13SM
	cfg     *tls13.Config
	policy  string
	stats   *offload.Stats
	hs      *engineconn.Handshakers
	timeout time.Duration // the listener's handshake timeout
	every   time.Duration // certificate files are checked this often
	certs   atomic.Pointer[smCerts]
	stop    chan struct{}
	once    sync.Once
}

// smCerts are a block's certificates by SNI and the files' stamp.
type smCerts struct {
	offload.ByName[*tls13.Certificate]
	stamp string
}

func (b *TLS13SM) paths() []string {
	var p []string
	for _, c := range b.Certificates {
		p = append(p, c.CertFile, c.KeyFile)
	}
	return p
}

func loadSMCerts(b *TLS13SM) (*smCerts, error) {
	if len(b.Certificates) == 0 {
		return nil, errors.New("gm: tls13_sm needs a certificate")
	}
	cs := &smCerts{stamp: offload.FileStamp(b.paths()...)}
	for _, c := range b.Certificates {
		cert, names, err := loadSMCert(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		cs.Add(cert, names)
	}
	return cs, nil
}

// newSMServer loads the certificates (chosen by SNI, the first by
// default; re-read when their files change, every reload_interval).
func newSMServer(b *TLS13SM, listener *offload.ServerConfig) (*smServer, error) {
	cs, err := loadSMCerts(b)
	if err != nil {
		return nil, err
	}
	// Tickets under a random key per listener (not shared between
	// instances, lost at restart: clients then do a full handshake).
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("gm: %w", err)
	}
	tk, err := tls13.NewTicketKeys(key)
	if err != nil {
		return nil, fmt.Errorf("gm: %w", err)
	}
	s := &smServer{block: *b, policy: b.Policy, stats: listener.Stats, hs: engineconn.NewInlineHandshakers(),
		timeout: listener.HandshakeTimeout, every: listener.ReloadInterval, stop: make(chan struct{})}
	s.certs.Store(cs)
	s.cfg = &tls13.Config{NextProtos: listener.ALPN, TicketKeys: tk,
		GetCertificate: func(name string) *tls13.Certificate { return s.certs.Load().Pick(name) }}
	if b.ClientAuth == "require" {
		if s.cfg.ClientCAs, err = loadPool(b.ClientCA); err != nil {
			return nil, err
		}
	}
	if s.every <= 0 {
		s.every = 5 * time.Second
	}
	go s.watch()
	return s, nil
}

// watch reloads changed certificate files; a bad file is refused with a
// log line and the certificates in use are kept.
func (s *smServer) watch() {
	tk := time.NewTicker(s.every)
	defer tk.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tk.C:
			stamp := offload.FileStamp(s.block.paths()...)
			if stamp == s.certs.Load().stamp {
				continue
			}
			cs, err := loadSMCerts(&s.block)
			if err != nil {
				slog.Warn("gm: new tls13_sm certificate refused, keeping the current one", "err", err)
				old := *s.certs.Load()
				old.stamp = stamp
				s.certs.Store(&old)
				continue
			}
			s.certs.Store(cs)
			slog.Info("gm: tls13_sm certificates reloaded", "entries", len(s.block.Certificates))
		}
	}
}

func (s *smServer) Wrap(c transport.Conn) offload.Conn {
	tc := engineconn.New(c, true, s.timeout, s.stats, s.hs)
	tc.SetProtocol(smProtocol{tls13.Server(tc.Adapter(), s.cfg)})
	return tc
}

func (s *smServer) Close() { s.once.Do(func() { close(s.stop) }) }

// Claims the TLS ClientHellos the policy gives to TLS 1.3-SM.
func (s *smServer) Claims(first []byte) (match, needMore bool) {
	if s.policy == PolicySMOnly {
		if len(first) < 3 {
			return false, len(first) > 0 && first[0] == 0x16
		}
		return first[0] == 0x16 && first[1] == 3, false
	}
	o, more, ok := tls13.PeekClientHello(first)
	if more || !ok {
		return false, more
	}
	if s.policy == PolicyStandardPreferred {
		return o.SM && !o.Standard, false
	}
	return o.SM, false
}

var _ offload.Claimer = (*smServer)(nil)

// smClient speaks TLS 1.3-SM to upstream hosts (a gm cluster with
// min_version "1.3").
type smClient struct {
	cfg  offload.ClientConfig
	base tls13.Config
	hs   *engineconn.Handshakers
}

func newSMClient(cfg *offload.ClientConfig) (*smClient, error) {
	cl := &smClient{cfg: *cfg, hs: engineconn.NewHandshakers()}
	cl.base.SessionCache = tls13.NewSessionCache(1024)
	cl.base.InsecureSkipVerify = cfg.Insecure
	cl.base.NextProtos = cfg.ALPN
	if cfg.Cert != nil {
		// The entry's signing pair answers a CertificateRequest.
		cert, _, err := loadSMCert(cfg.Cert.CertFile, cfg.Cert.KeyFile)
		if err != nil {
			return nil, err
		}
		cl.base.Certificate = cert
	}
	if cfg.CAFile != "" {
		pool, err := loadPool(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		cl.base.RootCAs = pool
	} else if !cfg.Insecure {
		return nil, errors.New("gm: a cluster needs ca_file (there are no system SM2 roots)")
	}
	return cl, nil
}

func (cl *smClient) Wrap(c transport.Conn, host string) offload.Conn {
	t := cl.base
	t.ServerName = cl.cfg.SNI
	if t.ServerName == "" {
		t.ServerName = hostOnly(host)
	}
	tc := engineconn.New(c, false, cl.cfg.ClientHandshakeTimeout(), cl.cfg.Stats, cl.hs)
	tc.SetProtocol(smProtocol{tls13.Client(tc.Adapter(), &t)})
	return tc
}

// smProtocol is a TLS 1.3-SM connection as an engineconn.Protocol.
type smProtocol struct{ *tls13.Conn }

func (p smProtocol) Negotiated() engineconn.Negotiated {
	st := p.ConnectionState()
	// No PeerCertificate: crypto/x509 does not parse SM2 keys (as TLCP).
	return engineconn.Negotiated{ALPN: st.ALPN, Version: "TLSv1.3", Suite: tls13.SuiteName(st.CipherSuite), ServerName: st.ServerName, Resumed: st.DidResume}
}

// FailureReason names alerts for metrics.
func (smProtocol) FailureReason(err error) string {
	var ae *tls13.AlertError
	if errors.As(err, &ae) {
		return fmt.Sprintf("alert_%d", ae.Code)
	}
	return ""
}
