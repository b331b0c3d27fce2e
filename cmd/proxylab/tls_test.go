package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pki is a test CA that issues certificates into a directory.
type pki struct {
	t    *testing.T
	dir  string
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	if err := writeCerts(dir, []string{"localhost", "127.0.0.1"}, "ecdsa", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	// Reuse the CA writeCerts made (its key is not kept), by issuing our own
	// CA alongside for the extra certificates.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "test CA 2"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	writePEM(filepath.Join(dir, "ca2.pem"), "CERTIFICATE", der, 0o644)
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool.AppendCertsFromPEM(caPEM)
	pool.AddCert(cert)
	// One bundle with both CAs, for clients and client_ca.
	both := append(caPEM, mustRead(t, filepath.Join(dir, "ca2.pem"))...)
	os.WriteFile(filepath.Join(dir, "cas.pem"), both, 0o644)
	return &pki{t: t, dir: dir, key: key, cert: cert, pool: pool}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issue writes name.pem and name-key.pem signed by the second CA.
func (p *pki) issue(name string, dns []string, uris []string, client bool, notAfter time.Time) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name}, DNSNames: dns,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, h := range dns {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(certFile, "CERTIFICATE", der, 0o644)
	writePEM(keyFile, "PRIVATE KEY", kder, 0o600)
	return
}

func (p *pki) file(name string) string { return filepath.Join(p.dir, name) }

func tlsListenerConfig(tr string, p *pki, up string, tlsExtra string) string {
	api, apiKey := p.issue("api", []string{"api.test", "*.wild.test"}, nil, false, time.Now().Add(time.Hour))
	return fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: web
    address: 127.0.0.1:0
    tls:
      certificates:
        - {cert_file: %q, key_file: %q}
        - {cert_file: %q, key_file: %q}
%s
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, p.file("server.pem"), p.file("server-key.pem"), api, apiKey, indent(tlsExtra, 6), up)
}

func tlsGet(t *testing.T, addr string, cfg *tls.Config, path string) (*http.Response, string, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	resp, err := c.Get("https://" + addr + path)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

func TestTLSListener(t *testing.T) {
	p := newPKI(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		px := startProxy(t, tlsListenerConfig(tr, p, up.addr, ""))
		addr := px.addr("web")
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			resp, body, err := tlsGet(t, addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: v, MaxVersion: v}, "/v")
			if err != nil || resp.StatusCode != 200 || body != "GET /v 0 " {
				t.Fatalf("%s: %v %q", tls.VersionName(v), err, body)
			}
			if resp.TLS.Version != v || resp.Header.Get("X-Seen-XFP") != "https" {
				t.Fatalf("%s: negotiated %s, X-Forwarded-Proto %q", tls.VersionName(v), tls.VersionName(resp.TLS.Version), resp.Header.Get("X-Seen-XFP"))
			}
		}
		for sni, wantCN := range map[string]string{"api.test": "api", "x.wild.test": "api", "localhost": "localhost", "unknown.test": "localhost"} {
			cfg := &tls.Config{RootCAs: p.pool, ServerName: sni, InsecureSkipVerify: sni == "unknown.test"}
			resp, _, err := tlsGet(t, addr, cfg, "/sni")
			if err != nil {
				t.Fatalf("SNI %s: %v", sni, err)
			}
			if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != wantCN {
				t.Errorf("SNI %s served %q, want %q", sni, cn, wantCN)
			}
		}
		// ALPN: the codec (auto) offers h2 first, then http/1.1.
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost", NextProtos: []string{"http/1.1", "h2"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != "h2" {
			t.Errorf("ALPN %q", got)
		}
		conn.Close()
		// Resumption with a session ticket.
		cache := tls.NewLRUClientSessionCache(8)
		var resumed bool
		for i := 0; i < 2; i++ {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost", ClientSessionCache: cache})
			if err != nil {
				t.Fatal(err)
			}
			// TLS 1.3 tickets arrive after the handshake: read a response.
			fmt.Fprint(c, "GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
			buf := make([]byte, 512)
			c.Read(buf)
			resumed = c.ConnectionState().DidResume
			c.Close()
		}
		if !resumed {
			t.Error("second connection did not resume")
		}
		a := adminClient{t: t, base: "http://" + px.adminAddr()}
		fams := a.scrape()
		if n := value(t, fams, "proxylab_tls_resumptions_total", map[string]string{"side": "listener", "name": "web"}); n < 1 {
			t.Errorf("resumptions metric %v", n)
		}
		if n := value(t, fams, "proxylab_tls_handshakes_total", map[string]string{"side": "listener", "name": "web"}); n < 8 {
			t.Errorf("handshakes metric %v", n)
		}
		// Plaintext on a TLS-only port is a failed handshake, counted.
		raw := dialRaw(t, addr)
		raw.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		raw.expectClosed()
		time.Sleep(50 * time.Millisecond)
		if n := value(t, a.scrape(), "proxylab_tls_handshake_failures_total", map[string]string{"name": "web", "reason": "not_tls"}); n != 1 {
			t.Errorf("not_tls failures %v", n)
		}
	})
}

func TestTLSClientAuth(t *testing.T) {
	p := newPKI(t)
	goodCert, goodKey := p.issue("good-client", nil, []string{"spiffe://proxylab.test/client"}, true, time.Now().Add(time.Hour))
	otherCert, otherKey := p.issue("other-client", nil, []string{"spiffe://elsewhere.test/client"}, true, time.Now().Add(time.Hour))
	load := func(c, k string) []tls.Certificate {
		pair, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{pair}
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		px := startProxy(t, tlsListenerConfig(tr, p, up.addr, fmt.Sprintf("client_auth: require\nclient_ca: %q\nclient_sans: [\"spiffe://proxylab.test/client\"]", p.file("cas.pem"))))
		addr := px.addr("web")
		base := func() *tls.Config { return &tls.Config{RootCAs: p.pool, ServerName: "localhost"} }
		cfg := base()
		cfg.Certificates = load(goodCert, goodKey)
		if resp, _, err := tlsGet(t, addr, cfg, "/mtls"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("valid client certificate refused: %v", err)
		}
		if _, _, err := tlsGet(t, addr, base(), "/none"); err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("no client certificate: err %v, want the certificate_required alert", err)
		}
		cfg = base()
		cfg.Certificates = load(otherCert, otherKey)
		if _, _, err := tlsGet(t, addr, cfg, "/wrong-san"); err == nil {
			t.Fatal("client certificate with a SAN not allowed was accepted")
		}
	})
}

func TestTLSInspectorServesBoth(t *testing.T) {
	p := newPKI(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		px := startProxy(t, tlsListenerConfig(tr, p, up.addr, "inspector: true"))
		addr := px.addr("web")
		resp, err := http.Get("http://" + addr + "/plain")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Seen-XFP") != "http" {
			t.Fatalf("plaintext: %d xfp %q", resp.StatusCode, resp.Header.Get("X-Seen-XFP"))
		}
		r2, _, err := tlsGet(t, addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost"}, "/tls")
		if err != nil || r2.StatusCode != 200 || r2.Header.Get("X-Seen-XFP") != "https" {
			t.Fatalf("TLS on the same port: %v", err)
		}
	})
}

func TestClusterTLS(t *testing.T) {
	p := newPKI(t)
	good, goodKey := p.issue("up-good", []string{"localhost", "127.0.0.1"}, nil, false, time.Now().Add(time.Hour))
	expired, expiredKey := p.issue("up-expired", []string{"localhost", "127.0.0.1"}, nil, false, time.Now().Add(-time.Hour))
	clientCert, clientKey := p.issue("proxy-client", nil, []string{"spiffe://proxylab.test/proxy"}, true, time.Now().Add(time.Hour))
	tlsUpstream := func(certFile, keyFile string, requireClient bool) string {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			who := "-"
			if len(r.TLS.PeerCertificates) > 0 {
				who = r.TLS.PeerCertificates[0].URIs[0].String()
			}
			fmt.Fprintf(w, "tls upstream saw %s", who)
		}))
		s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
		if requireClient {
			s.TLS.ClientAuth, s.TLS.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
		}
		s.StartTLS()
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "https://")
	}
	goodUp, expiredUp, mtlsUp := tlsUpstream(good, goodKey, false), tlsUpstream(expired, expiredKey, false), tlsUpstream(good, goodKey, true)
	plainUp := startUpstream(t, http.HandlerFunc(echoHandler))
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /good, cluster: good}
      - {prefix: /wronghost, cluster: wronghost}
      - {prefix: /expired, cluster: expired}
      - {prefix: /mtls, cluster: mtls}
      - {prefix: /optout, cluster: optout}
clusters:
  - {name: good, tls: {ca_file: %[2]q}, hosts: [{address: %[3]q}]}
  - {name: wronghost, tls: {ca_file: %[2]q, sni: wrong.test}, hosts: [{address: %[3]q}]}
  - {name: expired, tls: {ca_file: %[2]q}, hosts: [{address: %[4]q}]}
  - {name: mtls, tls: {ca_file: %[2]q, client_cert: {cert_file: %[5]q, key_file: %[6]q}}, hosts: [{address: %[7]q}]}
  - {name: optout, tls: {ca_file: %[2]q}, hosts: [{address: %[8]q, plaintext: true}]}
`, tr, p.file("cas.pem"), goodUp, expiredUp, clientCert, clientKey, mtlsUp, plainUp.addr)
		px := startProxy(t, cfg)
		c := dialRaw(t, px.addr("web"))
		for _, tc := range []struct {
			path   string
			status int
			body   string
		}{
			{"/good", 200, "tls upstream saw -"},
			{"/good", 200, "tls upstream saw -"}, // pooled, still TLS
			{"/mtls", 200, "tls upstream saw spiffe://proxylab.test/proxy"},
			{"/optout", 200, "GET /optout 0 "},
			{"/wronghost", 503, ""}, // a failed handshake is a connect failure
			{"/expired", 503, ""},
		} {
			c.send("GET " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := c.readResponse("GET")
			if resp.StatusCode != tc.status || (tc.body != "" && body != tc.body) {
				t.Errorf("%s: %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.status, tc.body)
			}
		}
	})
}

// TestTLSReloadUnderLoad swaps the certificate files while clients keep
// connecting: no request fails, new connections get the new certificate,
// and a broken file is refused with the old certificate kept.
func TestTLSReloadUnderLoad(t *testing.T) {
	p := newPKI(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		cert, key := filepath.Join(t.TempDir(), "live.pem"), ""
		key = cert + ".key"
		a1, a1k := p.issue("gen1-"+tr, []string{"localhost"}, nil, false, time.Now().Add(time.Hour))
		a2, a2k := p.issue("gen2-"+tr, []string{"localhost"}, nil, false, time.Now().Add(time.Hour))
		swap := func(c, k string) {
			os.WriteFile(cert+".tmp", mustRead(t, c), 0o644)
			os.WriteFile(key+".tmp", mustRead(t, k), 0o600)
			os.Rename(key+".tmp", key)
			os.Rename(cert+".tmp", cert)
		}
		swap(a1, a1k)
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - name: web
    address: 127.0.0.1:0
    tls:
      certificates: [{cert_file: %q, key_file: %q}]
      reload_interval: 100ms
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, cert, key, up.addr)
		px := startProxy(t, cfg)
		addr := px.addr("web")
		var ok, failed atomic.Int64
		var seen sync.Map
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, _, err := tlsGet(t, addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost"}, "/load")
					if err != nil || resp.StatusCode != 200 {
						failed.Add(1)
						continue
					}
					ok.Add(1)
					seen.Store(resp.TLS.PeerCertificates[0].Subject.CommonName, true)
				}
			}()
		}
		time.Sleep(400 * time.Millisecond)
		swap(a2, a2k)
		time.Sleep(500 * time.Millisecond)
		os.WriteFile(cert, []byte("not a certificate"), 0o644) // broken: refused, gen2 kept
		time.Sleep(500 * time.Millisecond)
		close(stop)
		wg.Wait()
		_, gen1 := seen.Load("gen1-" + tr)
		_, gen2 := seen.Load("gen2-" + tr)
		if failed.Load() != 0 || ok.Load() == 0 || !gen1 || !gen2 {
			t.Fatalf("%d ok, %d failed; saw gen1=%v gen2=%v", ok.Load(), failed.Load(), gen1, gen2)
		}
		resp, _, err := tlsGet(t, addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost"}, "/after-bad-file")
		if err != nil || resp.TLS.PeerCertificates[0].Subject.CommonName != "gen2-"+tr {
			t.Fatalf("after a broken file: %v", err)
		}
		if !strings.Contains(px.logs(), "new certificate refused") {
			t.Error("no log line about the refused certificate")
		}
		t.Logf("%s: %d requests over new TLS connections during reloads, 0 failed", tr, ok.Load())
	})
}

// TestTLSWithCurlAndOpenSSL: independent clients agree with the proxy.
func TestTLSWithCurlAndOpenSSL(t *testing.T) {
	p := newPKI(t)
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		px := startProxy(t, tlsListenerConfig(tr, p, up.addr, ""))
		_, port, _ := net.SplitHostPort(px.addr("web"))
		for _, v := range []string{"--tlsv1.2 --tls-max 1.2", "--tlsv1.3"} {
			args := append(strings.Fields(v), "-s", "--cacert", p.file("cas.pem"), "--resolve", "api.test:"+port+":127.0.0.1", "https://api.test:"+port+"/curl")
			out, err := exec.Command("curl", args...).CombinedOutput()
			if err != nil || string(out) != "GET /curl 0 " {
				t.Errorf("curl %s: %v %s", v, err, out)
			}
		}
		cmd := exec.Command("openssl", "s_client", "-connect", px.addr("web"), "-servername", "api.test", "-CAfile", p.file("cas.pem"), "-verify_return_error", "-brief")
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "Verification: OK") || !strings.Contains(string(out), "api") {
			t.Errorf("openssl s_client:\n%s", out)
		}
	})
}

// TestTLSBulkBothWays streams 64 MiB up and down through a TLS listener and
// checks every byte (records span reads; backpressure crosses the engine).
func TestTLSBulkBothWays(t *testing.T) {
	p := newPKI(t)
	const size = 64 << 20
	want := patternSum(size)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" {
				h := &hashingReader{r: r.Body, h: sha256New()}
				io.Copy(io.Discard, h)
				fmt.Fprintf(w, "%d %x", h.n, h.h.Sum(nil))
				return
			}
			io.Copy(w, &patternReader{size: size})
		}))
		px := startProxy(t, tlsListenerConfig(tr, p, up.addr, ""))
		c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "localhost"}}}
		resp, err := c.Post("https://"+px.addr("web")+"/up", "application/octet-stream", &patternReader{size: size})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != fmt.Sprintf("%d %s", size, want) {
			t.Fatalf("upload through TLS: %q", body)
		}
		resp, err = c.Get("https://" + px.addr("web") + "/down")
		if err != nil {
			t.Fatal(err)
		}
		h := &hashingReader{r: resp.Body, h: sha256New()}
		io.Copy(io.Discard, h)
		resp.Body.Close()
		if h.n != size || fmt.Sprintf("%x", h.h.Sum(nil)) != want {
			t.Fatalf("download through TLS: %d bytes", h.n)
		}
	})
}

func sha256New() hashState { return sha256.New() }

// TestTLSSharedTicketKeys: two instances with the same ticket key file
// resume each other's sessions; an instance with other keys does not.
func TestTLSSharedTicketKeys(t *testing.T) {
	p := newPKI(t)
	keyFile := filepath.Join(t.TempDir(), "tickets.keys")
	os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)+"\n"+strings.Repeat("cd", 32)+"\n"), 0o600)
	otherKeys := filepath.Join(t.TempDir(), "other.keys")
	os.WriteFile(otherKeys, []byte(strings.Repeat("ef", 32)+"\n"), 0o600)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		a := startProxy(t, tlsListenerConfig(tr, p, up.addr, fmt.Sprintf("session_ticket_key_file: %q", keyFile)))
		b := startProxy(t, tlsListenerConfig(tr, p, up.addr, fmt.Sprintf("session_ticket_key_file: %q", keyFile)))
		c := startProxy(t, tlsListenerConfig(tr, p, up.addr, fmt.Sprintf("session_ticket_key_file: %q", otherKeys)))
		cache := tls.NewLRUClientSessionCache(8)
		connect := func(addr string) bool {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost", ClientSessionCache: cache})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprint(conn, "GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
			conn.Read(make([]byte, 512)) // the TLS 1.3 ticket arrives with the response
			return conn.ConnectionState().DidResume
		}
		connect(a.addr("web"))
		if !connect(b.addr("web")) {
			t.Error("instance b did not resume instance a's session with shared keys")
		}
		if connect(c.addr("web")) {
			t.Error("instance c resumed with different keys")
		}
	})
}

// clientHello is the first flight a Go TLS client sends (one record).
func clientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go tls.Client(b, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}).Handshake()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(a, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(a, body); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return append(hdr, body...)
}

// Handshakes that stall or are abandoned end cleanly and are counted by
// reason; handshakes interleaved on one event loop all complete.
func TestTLSHandshakeTimeoutAndAbort(t *testing.T) {
	p := newPKI(t)
	hello := clientHello(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		px := startProxy(t, tlsListenerConfig(tr, p, up.addr, "handshake_timeout: 300ms"))
		addr := px.addr("web")
		a := adminClient{t: t, base: "http://" + px.adminAddr()}
		failures := func(reason string) float64 {
			return counterOr0(a.scrape(), "proxylab_tls_handshake_failures_total", map[string]string{"name": "web", "reason": reason})
		}
		// Stalled: nothing sent, and half a ClientHello sent.
		for _, sent := range [][]byte{nil, hello[:len(hello)/2]} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write(sent)
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := c.Read(make([]byte, 64))
			took := time.Since(start)
			c.Close()
			if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("stalled handshake (%d bytes sent): read %d, %v; want the proxy to close", len(sent), n, err)
			}
			if took < 200*time.Millisecond {
				t.Fatalf("stalled handshake closed after %v, before the 300ms timeout", took)
			}
		}
		waitFor(t, 3*time.Second, "2 timeouts counted", func() bool { return failures("timeout") == 2 })
		// Abandoned after the ClientHello: the server flight is sent, then
		// the client goes away.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(hello)
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			t.Fatalf("no server flight: %v", err)
		}
		c.Close()
		waitFor(t, 3*time.Second, "1 abandoned handshake counted", func() bool { return failures("connection_closed") == 1 })
		// Many handshakes at once, interleaved on the loops.
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				resp, body, err := tlsGet(t, addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost"}, fmt.Sprintf("/c%d", i))
				if err != nil || resp.StatusCode != 200 || body != fmt.Sprintf("GET /c%d 0 ", i) {
					errs <- fmt.Errorf("client %d: %v %q", i, err, body)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := failures("timeout"); n != 2 {
			t.Errorf("timeouts now %v, want still 2", n)
		}
	})
}
