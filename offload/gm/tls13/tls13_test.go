package tls13

import (
	"bytes"
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

type testPKI struct {
	key  *sm2.PrivateKey
	cert *smx509.Certificate
	pool *smx509.CertPool
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	key, _ := sm2.GenerateKey(rand.Reader)
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

// issue makes a single SM2 server certificate for name.
func (p *testPKI) issue(t testing.TB, name string) *Certificate {
	t.Helper()
	key, _ := sm2.GenerateKey(rand.Reader)
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature,
		ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return &Certificate{Chain: [][]byte{der}, Key: key}
}

// pair handshakes a client and a server over loopback TCP.
func pair(t testing.TB, scfg, ccfg *Config) (s, c *Conn, serr, cerr error) {
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
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		s := Server(raw, scfg)
		ch <- res{s, s.Handshake()}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c = Client(raw, ccfg)
	cerr = c.Handshake()
	if cerr != nil {
		raw.Close()
	}
	r := <-ch
	t.Cleanup(func() {
		raw.Close()
		if r.c != nil {
			r.c.raw.Close()
		}
	})
	return r.c, c, r.err, cerr
}

func exchange(t *testing.T, a, b *Conn, msg []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := a.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes: %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// Our client and server on every suite, with and without a
// HelloRetryRequest, with ALPN: both directions carry data across
// record boundaries.
func TestInterop(t *testing.T) {
	pki := newPKI(t)
	cert := pki.issue(t, "sm.test")
	big := bytes.Repeat([]byte("0123456789abcdef"), 3000) // several records
	for _, suite := range []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3} {
		for _, retry := range []bool{false, true} {
			name := SuiteName(suite)
			if retry {
				name += "/hello-retry"
			}
			t.Run(name, func(t *testing.T) {
				scfg := &Config{Certificate: cert, NextProtos: []string{"h2", "http/1.1"}}
				ccfg := &Config{RootCAs: pki.pool, ServerName: "sm.test", CipherSuites: []uint16{suite}, NextProtos: []string{"http/1.1", "h2"}, noInitialShare: retry}
				s, c, serr, cerr := pair(t, scfg, ccfg)
				if serr != nil || cerr != nil {
					t.Fatalf("server %v, client %v", serr, cerr)
				}
				ss, cs := s.ConnectionState(), c.ConnectionState()
				if ss.CipherSuite != suite || cs.CipherSuite != suite || ss.ALPN != "h2" || cs.ALPN != "h2" || ss.HelloRetried != retry || cs.HelloRetried != retry || ss.ServerName != "sm.test" {
					t.Fatalf("server %+v client %+v", ss, cs)
				}
				exchange(t, c, s, big)
				exchange(t, s, c, big)
			})
		}
	}
}

func TestKeyUpdate(t *testing.T) {
	pki := newPKI(t)
	s, c, serr, cerr := pair(t, &Config{Certificate: pki.issue(t, "sm.test")}, &Config{RootCAs: pki.pool, ServerName: "sm.test"})
	if serr != nil || cerr != nil {
		t.Fatal(serr, cerr)
	}
	if err := c.KeyUpdate(true); err != nil {
		t.Fatal(err)
	}
	exchange(t, c, s, []byte("after the client's update"))
	// The server owed an update (update_requested): its next write sends
	// it and the client follows.
	exchange(t, s, c, []byte("after the server's update"))
	if s.out.seq != 1 || s.in.seq != 1 || c.in.seq != 1 {
		t.Fatalf("sequence numbers restart with new keys: %d %d %d", s.out.seq, s.in.seq, c.in.seq)
	}
}

func TestHandshakeFailures(t *testing.T) {
	pki := newPKI(t)
	cert := pki.issue(t, "sm.test")
	other := newPKI(t)
	for _, tc := range []struct {
		name       string
		scfg, ccfg *Config
		alert      uint8
	}{
		{"unknown CA", &Config{Certificate: cert}, &Config{RootCAs: other.pool, ServerName: "sm.test"}, alertBadCertificate},
		{"wrong name", &Config{Certificate: cert}, &Config{RootCAs: pki.pool, ServerName: "other.test"}, alertBadCertificate},
		{"no shared suite", &Config{Certificate: cert, CipherSuites: []uint16{TLS_SM4_CCM_SM3}}, &Config{RootCAs: pki.pool, ServerName: "sm.test", CipherSuites: []uint16{TLS_SM4_GCM_SM3}}, alertHandshakeFailure},
		{"no shared protocol", &Config{Certificate: cert, NextProtos: []string{"h2"}}, &Config{RootCAs: pki.pool, ServerName: "sm.test", NextProtos: []string{"http/1.1"}}, alertNoApplicationProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, serr, cerr := pair(t, tc.scfg, tc.ccfg)
			var ae *AlertError
			if !errors.As(cerr, &ae) || ae.Code != tc.alert {
				t.Fatalf("client %v, want alert %d", cerr, tc.alert)
			}
			if serr == nil {
				t.Fatal("server succeeded")
			}
		})
	}
}

// A tampered record fails with bad_record_mac; nothing is delivered.
func TestRecordTampering(t *testing.T) {
	for _, suite := range []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3} {
		w, _ := newHalf(suite, make([]byte, 32))
		r, _ := newHalf(suite, make([]byte, 32))
		rec := w.seal(nil, recordApplicationData, []byte("hello"))
		rec[len(rec)-3] ^= 1
		if _, _, err := r.open(rec[:5], rec[5:]); err == nil {
			t.Fatalf("%s: tampered record accepted", SuiteName(suite))
		}
		w, _ = newHalf(suite, make([]byte, 32))
		r, _ = newHalf(suite, make([]byte, 32))
		rec = w.seal(nil, recordHandshake, []byte("hello"))
		typ, p, err := r.open(rec[:5], rec[5:])
		if err != nil || typ != recordHandshake || string(p) != "hello" || rec[0] != recordApplicationData {
			t.Fatalf("%s: %d %q %v", SuiteName(suite), typ, p, err)
		}
	}
}

// downgradeServer answers any ClientHello with a TLS 1.2 ServerHello
// whose random ends with sentinel.
func downgradeServer(t *testing.T, sentinel []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		hdr := make([]byte, 5)
		io.ReadFull(c, hdr)
		io.CopyN(io.Discard, c, int64(hdr[3])<<8|int64(hdr[4]))
		random := append(make([]byte, 24), sentinel...)
		body := append([]byte{3, 3}, random...)
		body = append(body, 0, 0x00, 0xC6, 0)
		c.Write((*halfConn)(nil).seal(nil, recordHandshake, handshakeMsg(msgServerHello, body)))
		io.Copy(io.Discard, c)
	}()
	return ln.Addr().String()
}

func TestDowngrade(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sentinel []byte
		alert    uint8
	}{
		{"TLS 1.2 sentinel", downgrade12, alertIllegalParameter},
		{"TLS 1.1 sentinel", downgrade11, alertIllegalParameter},
		{"plain TLS 1.2", make([]byte, 8), alertProtocolVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", downgradeServer(t, tc.sentinel))
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(5 * time.Second))
			err = Client(raw, &Config{InsecureSkipVerify: true}).Handshake()
			var ae *AlertError
			if !errors.As(err, &ae) || ae.Code != tc.alert || ae.Remote {
				t.Fatalf("%v, want alert %d sent", err, tc.alert)
			}
		})
	}
}

// A server refuses ClientHellos it cannot serve with the right alert.
func TestServerRefusals(t *testing.T) {
	pki := newPKI(t)
	cert := pki.issue(t, "sm.test")
	share := make([]byte, 65)
	base := func() *clientHello {
		k, _ := keyShare(rand.Reader)
		copy(share, k.PublicKey().Bytes())
		return &clientHello{random: make([]byte, 32), suites: []uint16{TLS_SM4_GCM_SM3}, versions: []uint16{version13},
			keyShares: map[uint16][]byte{groupCurveSM2: k.PublicKey().Bytes()}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*clientHello)
		alert uint8
	}{
		{"TLS 1.2 only", func(ch *clientHello) { ch.versions = []uint16{0x0303} }, alertProtocolVersion},
		{"AES suites only", func(ch *clientHello) { ch.suites = []uint16{0x1301} }, alertHandshakeFailure},
		{"bad key share", func(ch *clientHello) { ch.keyShares[groupCurveSM2] = []byte{4, 1, 2} }, alertIllegalParameter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := base()
			tc.edit(ch)
			in := (*halfConn)(nil).seal(nil, recordHandshake, handshakeMsg(msgClientHello, ch.marshal()))
			err := Server(&scriptConn{in: bytes.NewReader(in)}, &Config{Certificate: cert}).Handshake()
			var ae *AlertError
			if !errors.As(err, &ae) || ae.Code != tc.alert {
				t.Fatalf("%v, want alert %d", err, tc.alert)
			}
		})
	}
}

// scriptConn replays fixed input, then EOF; writes are discarded.
type scriptConn struct {
	net.Conn
	in *bytes.Reader
}

func (s *scriptConn) Read(b []byte) (int, error)  { return s.in.Read(b) }
func (s *scriptConn) Write(b []byte) (int, error) { return len(b), nil }
func (s *scriptConn) Close() error                { return nil }
func (s *scriptConn) RemoteAddr() net.Addr        { return &net.TCPAddr{} }

// issueClient makes an SM2 client certificate.
func (p *testPKI) issueClient(t testing.TB) *Certificate {
	t.Helper()
	key, _ := sm2.GenerateKey(rand.Reader)
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature,
		ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return &Certificate{Chain: [][]byte{der}, Key: key}
}

func TestClientAuthentication(t *testing.T) {
	pki := newPKI(t)
	server := &Config{Certificate: pki.issue(t, "sm.test"), ClientCAs: pki.pool}
	other := newPKI(t)
	for _, suite := range []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3} {
		t.Run(SuiteName(suite), func(t *testing.T) {
			s, c, serr, cerr := pair(t, server, &Config{RootCAs: pki.pool, ServerName: "sm.test", CipherSuites: []uint16{suite}, Certificate: pki.issueClient(t)})
			if serr != nil || cerr != nil {
				t.Fatalf("server %v, client %v", serr, cerr)
			}
			if len(s.ConnectionState().PeerCertificates) != 1 || s.ConnectionState().PeerCertificates[0].Subject.CommonName != "client" {
				t.Fatalf("server state %+v", s.ConnectionState())
			}
			exchange(t, c, s, []byte("authenticated"))
		})
	}
	for _, tc := range []struct {
		name  string
		cert  *Certificate
		alert uint8
	}{{"no certificate", nil, alertCertificateRequired}, {"unknown CA", other.issueClient(t), alertBadCertificate}} {
		t.Run(tc.name, func(t *testing.T) {
			_, c, serr, cerr := pair(t, server, &Config{RootCAs: pki.pool, ServerName: "sm.test", Certificate: tc.cert})
			var ae *AlertError
			if !errors.As(serr, &ae) || ae.Code != tc.alert || ae.Remote {
				t.Fatalf("server %v, want alert %d sent", serr, tc.alert)
			}
			// The client finished first; its next read gets the alert.
			if cerr == nil {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := c.Read(make([]byte, 1))
				if !errors.As(err, &ae) || ae.Code != tc.alert || !ae.Remote {
					t.Fatalf("client read %v, want alert %d received", err, tc.alert)
				}
			}
		})
	}
}

// TestResumption: a ticket from a full handshake resumes (no certificate
// messages), with and without a HelloRetryRequest; a ticket of another
// server's keys falls back to a full handshake; a wrong binder is
// decrypt_error.
func TestResumption(t *testing.T) {
	pki := newPKI(t)
	tk, _ := NewTicketKeys(bytes.Repeat([]byte{7}, 16))
	server := &Config{Certificate: pki.issue(t, "sm.test"), TicketKeys: tk}
	full := func(t *testing.T, ccfg *Config) {
		t.Helper()
		s, c, serr, cerr := pair(t, server, ccfg)
		if serr != nil || cerr != nil || c.ConnectionState().DidResume {
			t.Fatalf("first: %v %v %+v", serr, cerr, c.ConnectionState())
		}
		exchange(t, s, c, []byte("ticket ahead")) // the client reads the NewSessionTicket
	}
	// Each connection dials a new port: tickets are kept per server name
	// and address, so the test keys the cache by name only.
	for _, retry := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			cache := NewSessionCache(10)
			ccfg := &Config{RootCAs: pki.pool, ServerName: "sm.test", SessionCache: cache, sessionByName: true}
			full(t, ccfg)
			ccfg.noInitialShare = retry
			s, c, serr, cerr := pair(t, server, ccfg)
			if serr != nil || cerr != nil {
				t.Fatalf("resume: %v %v", serr, cerr)
			}
			if !s.ConnectionState().DidResume || !c.ConnectionState().DidResume || c.ConnectionState().HelloRetried != retry {
				t.Fatalf("not resumed: server %+v client %+v", s.ConnectionState(), c.ConnectionState())
			}
			exchange(t, c, s, []byte("resumed"))
		})
	}
	t.Run("other server's ticket", func(t *testing.T) {
		cache := NewSessionCache(10)
		ccfg := &Config{RootCAs: pki.pool, ServerName: "sm.test", SessionCache: cache, sessionByName: true}
		full(t, ccfg)
		tk2, _ := NewTicketKeys(bytes.Repeat([]byte{8}, 16))
		other := &Config{Certificate: server.Certificate, TicketKeys: tk2}
		s, c, serr, cerr := pair(t, other, ccfg)
		if serr != nil || cerr != nil || s.ConnectionState().DidResume || c.ConnectionState().DidResume {
			t.Fatalf("%v %v %+v", serr, cerr, c.ConnectionState())
		}
	})
	t.Run("wrong binder", func(t *testing.T) {
		cache := NewSessionCache(10)
		ccfg := &Config{RootCAs: pki.pool, ServerName: "sm.test", SessionCache: cache, sessionByName: true}
		full(t, ccfg)
		for _, s := range cache.m {
			s.psk = bytes.Repeat([]byte{1}, 32)
		}
		_, _, serr, _ := pair(t, server, ccfg)
		var ae *AlertError
		if !errors.As(serr, &ae) || ae.Code != alertDecryptError {
			t.Fatalf("server %v", serr)
		}
	})
}
