package gm

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/gm/tls13"
)

// firstFlight is what a client writes first (its ClientHello record).
func firstFlight(t *testing.T, start func(net.Conn)) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go func() { start(b); b.Close() }()
	a.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(a, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(a, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// TestSMClaims: which ClientHellos each policy gives to TLS 1.3-SM.
func TestSMClaims(t *testing.T) {
	sm := firstFlight(t, func(c net.Conn) { tls13.Client(c, &tls13.Config{InsecureSkipVerify: true}).Handshake() })
	mixed := firstFlight(t, func(c net.Conn) {
		tls13.Client(c, &tls13.Config{InsecureSkipVerify: true, CipherSuites: []uint16{0x1301, tls13.TLS_SM4_GCM_SM3}}).Handshake()
	})
	std := firstFlight(t, func(c net.Conn) { tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake() })
	tlcpHello := []byte{0x16, 0x01, 0x01, 0x00, 0x40}
	for _, tc := range []struct {
		policy         string
		sm, mixed, std bool
	}{
		{PolicySMPreferred, true, true, false},
		{PolicyStandardPreferred, true, false, false},
		{PolicySMOnly, true, true, true},
	} {
		s := &smServer{policy: tc.policy}
		for _, c := range []struct {
			name  string
			first []byte
			want  bool
		}{{"sm", sm, tc.sm}, {"mixed", mixed, tc.mixed}, {"standard", std, tc.std}, {"tlcp", tlcpHello, false}} {
			if m, more := s.Claims(c.first); m != c.want || more {
				t.Errorf("%s: %s hello: claimed %v (more %v), want %v", tc.policy, c.name, m, more, c.want)
			}
			// Any prefix of the record asks for more or does not match.
			if m, more := s.Claims(c.first[:len(c.first)-1]); m && c.name != "tlcp" && tc.policy != PolicySMOnly || !more && !m && tc.policy != PolicySMOnly && c.name != "tlcp" {
				t.Errorf("%s: %s hello cut short: claimed %v, more %v", tc.policy, c.name, m, more)
			}
		}
	}
}

// A gm cluster's min_version picks TLCP ("") or TLS 1.3-SM ("1.3");
// anything else is refused.
func TestClientVersions(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want string // type of the client, "" for an error
	}{{"", "*gm.client"}, {"1.3", "*gm.smClient"}, {"1.2", ""}} {
		c, err := Engine{}.NewClient(&offload.ClientConfig{MinVersion: tc.v, Insecure: true})
		if got := fmt.Sprintf("%T", c); tc.want == "" && err == nil || tc.want != "" && got != tc.want {
			t.Errorf("min_version %q: %s, %v", tc.v, got, err)
		}
	}
}

// A tls13_sm block is refused with its field paths.
func TestTLS13SMBlockValidation(t *testing.T) {
	var node yaml.Node
	if err := yaml.Unmarshal([]byte("certificates: [{cert_file: /nonexistent.pem, key_file: /nonexistent-key.pem}]\npolicy: sm_first\nclient_auth: require\n"), &node); err != nil {
		t.Fatal(err)
	}
	_, errs := DecodeTLS13SM(node.Content[0], "listeners[0].tls.tls13_sm", "gotls")
	got := fmt.Sprint(errs)
	for _, want := range []string{"listeners[0].tls.tls13_sm.policy", "listeners[0].tls.tls13_sm.certificates[0].cert_file", "listeners[0].tls.tls13_sm.client_ca"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %s lack %s", got, want)
		}
	}
}

// writeSMCert writes a self-signed SM2 certificate for name and its key.
func writeSMCert(t *testing.T, certFile, keyFile, name string) {
	t.Helper()
	key, _ := sm2.GenerateKey(rand.Reader)
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: smx509.KeyUsageDigitalSignature}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := smx509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

// The tls13_sm certificates are re-read when their files change; a
// broken file keeps the ones in use.
func TestTLS13SMReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeSMCert(t, cf, kf, "one.test")
	s, err := newSMServer(&TLS13SM{Certificates: []SMCert{{cf, kf}}, Policy: PolicySMPreferred, ClientAuth: "none"},
		&offload.ServerConfig{ReloadInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	name := func() string {
		leaf, _ := smx509.ParseCertificate(s.cfg.GetCertificate("").Chain[0])
		return leaf.Subject.CommonName
	}
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); name() != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("certificate %q, want %q", name(), want)
			}
		}
	}
	waitFor("one.test")
	time.Sleep(30 * time.Millisecond) // a later mtime for the stamp
	writeSMCert(t, cf, kf, "two.test")
	waitFor("two.test")
	time.Sleep(30 * time.Millisecond)
	os.WriteFile(cf, []byte("broken"), 0o644)
	time.Sleep(200 * time.Millisecond)
	if name() != "two.test" {
		t.Fatalf("a broken file replaced the certificate: %q", name())
	}
}
