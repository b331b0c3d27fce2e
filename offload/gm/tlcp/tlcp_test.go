package tlcp

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"github.com/emmansun/gmsm/sm3"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// testPKI is an SM2 CA issuing double certificates.
type testPKI struct {
	key  *sm2.PrivateKey
	cert *smx509.Certificate
	pool *smx509.CertPool
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test SM2 CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: smx509.KeyUsageCertSign}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := smx509.ParseCertificate(der)
	pool := smx509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{key: key, cert: cert, pool: pool}
}

// issue makes a certificate for one use: signing (digitalSignature) or
// encryption (keyEncipherment, dataEncipherment), as GB/T 38636 pairs them.
func (p *testPKI) issue(t testing.TB, name string, encryption, client bool, notAfter time.Time) *Certificate {
	t.Helper()
	key, _ := sm2.GenerateKey(rand.Reader)
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: smx509.KeyUsageDigitalSignature,
		ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}}
	if encryption {
		tmpl.KeyUsage = smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment
	}
	if client {
		tmpl.ExtKeyUsage = []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return &Certificate{Chain: [][]byte{der}, Key: key}
}

// pair runs a handshake between a client and a server over a socket pair
// and returns both ends (or the errors).
func pair(t *testing.T, scfg, ccfg *Config) (*Conn, *Conn, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		s := Server(raw, scfg)
		ch <- res{s, s.Handshake()}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := Client(raw, ccfg)
	cerr := c.Handshake()
	if cerr != nil {
		raw.Close()
	}
	s := <-ch
	t.Cleanup(func() { raw.Close(); s.c.raw.Close() })
	return s.c, c, s.err, cerr
}

func TestHandshakeAndData(t *testing.T) {
	pki := newPKI(t)
	server := &Config{SignCert: pki.issue(t, "gm.test", false, false, time.Now().Add(time.Hour)), EncCert: pki.issue(t, "gm.test", true, false, time.Now().Add(time.Hour))}
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		t.Run(map[uint16]string{ECC_SM4_GCM_SM3: "ECC_SM4_GCM_SM3", ECC_SM4_CBC_SM3: "ECC_SM4_CBC_SM3"}[suite], func(t *testing.T) {
			s, c, serr, cerr := pair(t, server, &Config{RootCAs: pki.pool, ServerName: "gm.test", CipherSuites: []uint16{suite}})
			if serr != nil || cerr != nil {
				t.Fatalf("server %v, client %v", serr, cerr)
			}
			if c.ConnectionState().CipherSuite != suite || len(c.ConnectionState().PeerCertificates) != 2 {
				t.Fatalf("state %+v", c.ConnectionState())
			}
			// Bulk both ways, crossing record boundaries.
			msg := bytes.Repeat([]byte("国密 TLCP "), 5000)
			go c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("server read: %v", err)
			}
			go s.Write([]byte("pong"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("client read %q: %v", buf, err)
			}
			c.Close()
			if _, err := s.Read(buf); err != io.EOF {
				t.Fatalf("after close_notify: %v", err)
			}
		})
	}
}

func TestClientAuthentication(t *testing.T) {
	pki := newPKI(t)
	srv := func() *Config {
		return &Config{SignCert: pki.issue(t, "gm.test", false, false, time.Now().Add(time.Hour)), EncCert: pki.issue(t, "gm.test", true, false, time.Now().Add(time.Hour)),
			ClientAuth: RequireAndVerifyClientCert, ClientCAs: pki.pool}
	}
	t.Run("accepted", func(t *testing.T) {
		s, _, serr, cerr := pair(t, srv(), &Config{RootCAs: pki.pool, ServerName: "gm.test",
			SignCert: pki.issue(t, "client", false, true, time.Now().Add(time.Hour)), EncCert: pki.issue(t, "client", true, true, time.Now().Add(time.Hour))})
		if serr != nil || cerr != nil {
			t.Fatalf("server %v, client %v", serr, cerr)
		}
		if peer := s.ConnectionState().PeerCertificates; len(peer) != 2 || peer[0].Subject.CommonName != "client" {
			t.Fatalf("client certificates %v", peer)
		}
	})
	t.Run("no certificate: handshake_failure", func(t *testing.T) {
		_, _, serr, cerr := pair(t, srv(), &Config{RootCAs: pki.pool, ServerName: "gm.test"})
		var ae *AlertError
		if !errors.As(serr, &ae) || ae.Code != AlertHandshakeFailure || !errors.As(cerr, &ae) || ae.Code != AlertHandshakeFailure || !ae.Remote {
			t.Fatalf("server %v, client %v", serr, cerr)
		}
	})
	t.Run("untrusted certificate: bad_certificate", func(t *testing.T) {
		other := newPKI(t)
		_, _, serr, cerr := pair(t, srv(), &Config{RootCAs: pki.pool, ServerName: "gm.test",
			SignCert: other.issue(t, "client", false, true, time.Now().Add(time.Hour)), EncCert: other.issue(t, "client", true, true, time.Now().Add(time.Hour))})
		var ae *AlertError
		if !errors.As(serr, &ae) || ae.Code != AlertBadCertificate || !errors.As(cerr, &ae) || ae.Code != AlertBadCertificate {
			t.Fatalf("server %v, client %v", serr, cerr)
		}
	})
}

func TestServerVerification(t *testing.T) {
	pki := newPKI(t)
	expired := &Config{SignCert: pki.issue(t, "gm.test", false, false, time.Now().Add(-time.Minute)), EncCert: pki.issue(t, "gm.test", true, false, time.Now().Add(time.Hour))}
	good := &Config{SignCert: pki.issue(t, "gm.test", false, false, time.Now().Add(time.Hour)), EncCert: pki.issue(t, "gm.test", true, false, time.Now().Add(time.Hour))}
	for _, tc := range []struct {
		name   string
		server *Config
		client *Config
		code   uint8
	}{
		{"expired signing certificate", expired, &Config{RootCAs: pki.pool, ServerName: "gm.test"}, AlertCertificateExpired},
		{"wrong host", good, &Config{RootCAs: pki.pool, ServerName: "other.test"}, AlertBadCertificate},
		{"unknown CA", good, &Config{RootCAs: newPKI(t).pool, ServerName: "gm.test"}, AlertBadCertificate},
		{"no common suite", &Config{SignCert: good.SignCert, EncCert: good.EncCert, CipherSuites: []uint16{ECC_SM4_CBC_SM3}},
			&Config{RootCAs: pki.pool, ServerName: "gm.test", CipherSuites: []uint16{ECC_SM4_GCM_SM3}}, AlertHandshakeFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, serr, cerr := pair(t, tc.server, tc.client)
			var ae *AlertError
			if !errors.As(cerr, &ae) || ae.Code != tc.code {
				t.Fatalf("client %v (server %v), want alert %d", cerr, serr, tc.code)
			}
			if !errors.As(serr, &ae) || !ae.Remote || ae.Code != tc.code {
				if tc.code != AlertHandshakeFailure { // the server sent that one itself
					t.Fatalf("server %v, want the client's alert %d", serr, tc.code)
				}
			}
		})
	}
}

func TestRecordTampering(t *testing.T) {
	for _, id := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		st := suites[id]
		master := bytes.Repeat([]byte{7}, 48)
		cr, sr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		cMAC, _, cKey, _, cIV, _ := st.keys(newPRF(master), cr, sr)
		w, _ := newHalf(st, cMAC, cKey, cIV)
		r, _ := newHalf(st, cMAC, cKey, cIV)
		rec := w.seal(nil, recordApplicationData, []byte("hello"), func(b []byte) { rand.Read(b) })
		good := append([]byte(nil), rec...)
		p, err := r.open(recordApplicationData, good[5:])
		if err != nil || string(p) != "hello" {
			t.Fatalf("%x: %q %v", id, p, err)
		}
		rec2 := w.seal(nil, recordApplicationData, []byte("hello"), func(b []byte) { rand.Read(b) })
		rec2[len(rec2)-1] ^= 1
		if _, err := r.open(recordApplicationData, rec2[5:]); err == nil {
			t.Fatalf("%x: a tampered record was accepted", id)
		}
	}
}

// TestPRF checks P_SM3 against a direct transcription of RFC 5246 §5
// (A(0) = seed, A(i) = HMAC(secret, A(i-1)), output HMAC(secret, A(i) +
// seed) for i = 1, 2, …), for lengths within, at and across block edges,
// and with the seed given in two parts as the key derivations do.
func TestPRF(t *testing.T) {
	h := func(key []byte, parts ...[]byte) []byte {
		m := hmac.New(sm3.New, key)
		for _, p := range parts {
			m.Write(p)
		}
		return m.Sum(nil)
	}
	secret, seed := []byte("secret"), []byte("label-seed")
	ls := append([]byte("label"), seed...)
	var want []byte
	for a := ls; len(want) < 128; {
		a = h(secret, a)
		want = append(want, h(secret, a, ls)...)
	}
	for _, n := range []int{12, 32, 33, 48, 64, 100, 128} {
		if got := prf(secret, "label", seed, n); !bytes.Equal(got, want[:n]) {
			t.Fatalf("n=%d: %x, want %x", n, got, want[:n])
		}
		if got := newPRF(secret).expand([]byte("pre"), "label", seed[:4], seed[4:], n); !bytes.Equal(got, append([]byte("pre"), want[:n]...)) {
			t.Fatalf("n=%d, split seed: %x", n, got)
		}
	}
}

// nopAddrConn fills net.Conn's address and deadline methods for test conns.
type nopAddrConn struct{}

func (nopAddrConn) Close() error                     { return nil }
func (nopAddrConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (nopAddrConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (nopAddrConn) SetDeadline(time.Time) error      { return nil }
func (nopAddrConn) SetReadDeadline(time.Time) error  { return nil }
func (nopAddrConn) SetWriteDeadline(time.Time) error { return nil }

var errEOF = io.EOF

func TestResumption(t *testing.T) {
	pki := newPKI(t)
	scache, ccache := NewSessionCache(100, time.Hour), NewSessionCache(100, time.Hour)
	server := &Config{SignCert: pki.issue(t, "gm.test", false, false, time.Now().Add(time.Hour)), EncCert: pki.issue(t, "gm.test", true, false, time.Now().Add(time.Hour)),
		SessionCache: scache}
	for _, suite := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		client := &Config{RootCAs: pki.pool, ServerName: "gm.test", CipherSuites: []uint16{suite}, SessionCache: ccache}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		handshake := func() (ConnectionState, ConnectionState) {
			t.Helper()
			done := make(chan ConnectionState, 1)
			go func() {
				raw, err := ln.Accept()
				if err != nil {
					done <- ConnectionState{}
					return
				}
				s := Server(raw, server)
				if err := s.Handshake(); err != nil {
					t.Errorf("server: %v", err)
				}
				buf := make([]byte, 5)
				io.ReadFull(s, buf)
				s.Write(buf)
				done <- s.ConnectionState()
				s.Close()
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			raw.SetDeadline(time.Now().Add(5 * time.Second))
			c := Client(raw, client)
			if err := c.Handshake(); err != nil {
				t.Fatalf("client: %v", err)
			}
			c.Write([]byte("hello"))
			buf := make([]byte, 5)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("echo %q %v", buf, err)
			}
			c.Close()
			return c.ConnectionState(), <-done
		}
		c1, s1 := handshake()
		c2, s2 := handshake()
		if c1.DidResume || s1.DidResume || !c2.DidResume || !s2.DidResume || c2.CipherSuite != suite {
			t.Fatalf("%s: first resumed=%v/%v, second resumed=%v/%v", SuiteName(suite), c1.DidResume, s1.DidResume, c2.DidResume, s2.DidResume)
		}
		if len(c2.PeerCertificates) != 2 {
			t.Fatal("resumed session lost the peer certificates")
		}
		// A server that forgot the session does a full handshake.
		scache.mu.Lock()
		scache.m = map[string]*session{}
		scache.mu.Unlock()
		if c3, s3 := handshake(); c3.DidResume || s3.DidResume {
			t.Fatal("resumed a session the server no longer has")
		}
		ln.Close()
	}
}

func TestECDHESuites(t *testing.T) {
	pki := newPKI(t)
	server := &Config{SignCert: pki.issue(t, "gm.test", false, false, time.Now().Add(time.Hour)), EncCert: pki.issue(t, "gm.test", true, false, time.Now().Add(time.Hour)),
		ClientCAs: pki.pool}
	cs, ce := pki.issue(t, "client", false, true, time.Now().Add(time.Hour)), pki.issue(t, "client", true, true, time.Now().Add(time.Hour))
	for _, suite := range []uint16{ECDHE_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3} {
		t.Run(SuiteName(suite), func(t *testing.T) {
			s, c, serr, cerr := pair(t, server, &Config{RootCAs: pki.pool, ServerName: "gm.test", CipherSuites: []uint16{suite}, SignCert: cs, EncCert: ce})
			if serr != nil || cerr != nil {
				t.Fatalf("server %v, client %v", serr, cerr)
			}
			if s.ConnectionState().CipherSuite != suite || len(s.ConnectionState().PeerCertificates) != 2 {
				t.Fatalf("server state %+v", s.ConnectionState())
			}
			go c.Write([]byte("forward secret"))
			buf := make([]byte, 14)
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "forward secret" {
				t.Fatalf("%q %v", buf, err)
			}
		})
	}
	t.Run("without a client certificate", func(t *testing.T) {
		_, _, _, cerr := pair(t, server, &Config{RootCAs: pki.pool, ServerName: "gm.test", CipherSuites: []uint16{ECDHE_SM4_GCM_SM3}})
		var ae *AlertError
		if !errors.As(cerr, &ae) || ae.Code != AlertHandshakeFailure {
			t.Fatalf("client %v", cerr)
		}
	})
	t.Run("a client without a certificate offers only ECC to a server preferring ECDHE", func(t *testing.T) {
		prefer := *server
		prefer.CipherSuites = []uint16{ECDHE_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3, ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3}
		_, c, serr, cerr := pair(t, &prefer, &Config{RootCAs: pki.pool, ServerName: "gm.test"})
		if serr != nil || cerr != nil || c.ConnectionState().CipherSuite != ECC_SM4_GCM_SM3 {
			t.Fatalf("server %v, client %v, suite %s", serr, cerr, SuiteName(c.ConnectionState().CipherSuite))
		}
	})
	t.Run("a server that cannot verify clients does not pick ECDHE", func(t *testing.T) {
		noCA := &Config{SignCert: server.SignCert, EncCert: server.EncCert}
		_, c, serr, cerr := pair(t, noCA, &Config{RootCAs: pki.pool, ServerName: "gm.test", CipherSuites: []uint16{ECDHE_SM4_GCM_SM3, ECC_SM4_GCM_SM3}, SignCert: cs, EncCert: ce})
		if serr != nil || cerr != nil || c.ConnectionState().CipherSuite != ECC_SM4_GCM_SM3 {
			t.Fatalf("%v %v %x", serr, cerr, c.ConnectionState().CipherSuite)
		}
	})
}
