package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/proxylab/proxylab/bench/loadgen"
	"github.com/proxylab/proxylab/offload/gm/tlcp"
)

func gmCerts(t *testing.T) (dir string, pool *smx509.CertPool) {
	t.Helper()
	dir = t.TempDir()
	if err := writeGMCerts(dir, []string{"localhost", "127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(filepath.Join(dir, "sm2-ca.pem"))
	pool = smx509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return dir, pool
}

// tlcpPair loads a TLCP double certificate written by writeGMCerts.
func tlcpPair(t *testing.T, dir, who string) (*tlcp.Certificate, *tlcp.Certificate) {
	t.Helper()
	load := func(name string) *tlcp.Certificate {
		certPEM, _ := os.ReadFile(filepath.Join(dir, name+".pem"))
		keyPEM, _ := os.ReadFile(filepath.Join(dir, name+"-key.pem"))
		cb, kb := pemBlock(certPEM), pemBlock(keyPEM)
		key, err := smx509.ParsePKCS8PrivateKey(kb)
		if err != nil {
			t.Fatal(err)
		}
		return &tlcp.Certificate{Chain: [][]byte{cb}, Key: key}
	}
	return load(who + "-sign"), load(who + "-enc")
}

func gmListenerTLS(dir, extra string) string {
	return fmt.Sprintf(`    tls:
      engine: gm
      certificates:
        - {cert_file: %[1]q, key_file: %[2]q, enc_cert_file: %[3]q, enc_key_file: %[4]q}
%[5]s`, filepath.Join(dir, "server-sign.pem"), filepath.Join(dir, "server-sign-key.pem"),
		filepath.Join(dir, "server-enc.pem"), filepath.Join(dir, "server-enc-key.pem"), extra)
}

// tlcpGet sends one HTTP/1.1 request over TLCP and returns the response.
func tlcpGet(addr string, cfg *tlcp.Config, path string) (*http.Response, string, error) {
	raw, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, "", err
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tlcp.Client(raw, cfg)
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return nil, "", err
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

func TestGMListener(t *testing.T) {
	dir, pool := gmCerts(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		for _, suite := range []uint16{tlcp.ECC_SM4_GCM_SM3, tlcp.ECC_SM4_CBC_SM3} {
			t.Run(tlcp.SuiteName(suite), func(t *testing.T) {
				p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - name: web
    address: 127.0.0.1:0
%s
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, gmListenerTLS(dir, ""), up.addr))
				resp, body, err := tlcpGet(p.addr("web"), &tlcp.Config{RootCAs: pool, ServerName: "localhost", CipherSuites: []uint16{suite}}, "/gm?x=1")
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || body != "GET /gm?x=1 0 " || resp.Header.Get("X-Seen-XFP") != "https" {
					t.Fatalf("%d %q xfp=%q", resp.StatusCode, body, resp.Header.Get("X-Seen-XFP"))
				}
			})
		}
	})
}

func TestGMClientAuthAndClusters(t *testing.T) {
	dir, pool := gmCerts(t)
	// A TLCP upstream (our tlcp package serving net/http) requiring client
	// certificates: the proxy's cluster speaks TLCP with its own pair.
	ss, se := tlcpPair(t, dir, "server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tlcp upstream") })}
	go srv.Serve(tlcp.Listener{Listener: ln, Config: &tlcp.Config{SignCert: ss, EncCert: se, ClientAuth: tlcp.RequireAndVerifyClientCert, ClientCAs: pool}})
	t.Cleanup(func() { srv.Close() })
	forEachTransport(t, func(t *testing.T, tr string) {
		p := startProxy(t, fmt.Sprintf(`transport: %[1]s
listeners:
  - name: web
    address: 127.0.0.1:0
%[2]s
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - name: up
    tls:
      engine: gm
      ca_file: %[3]q
      sni: localhost
      client_cert: {cert_file: %[4]q, key_file: %[5]q, enc_cert_file: %[6]q, enc_key_file: %[7]q}
    hosts: [{address: %[8]q}]
`, tr, gmListenerTLS(dir, fmt.Sprintf("      client_auth: require\n      client_ca: %q\n", filepath.Join(dir, "sm2-ca.pem"))),
			filepath.Join(dir, "sm2-ca.pem"), filepath.Join(dir, "client-sign.pem"), filepath.Join(dir, "client-sign-key.pem"),
			filepath.Join(dir, "client-enc.pem"), filepath.Join(dir, "client-enc-key.pem"), ln.Addr().String()))
		cs, ce := tlcpPair(t, dir, "client")
		resp, body, err := tlcpGet(p.addr("web"), &tlcp.Config{RootCAs: pool, ServerName: "localhost", SignCert: cs, EncCert: ce}, "/")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || body != "tlcp upstream" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		// Without a client certificate the listener refuses with an alert.
		_, _, err = tlcpGet(p.addr("web"), &tlcp.Config{RootCAs: pool, ServerName: "localhost"}, "/")
		var ae *tlcp.AlertError
		if !errors.As(err, &ae) || ae.Code != tlcp.AlertHandshakeFailure || !ae.Remote {
			t.Fatalf("no client certificate: %v", err)
		}
	})
}

func pemBlock(data []byte) []byte {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil
	}
	return b.Bytes
}

// TestTLSAndTLCPOnOnePort: a listener with Go TLS and a tlcp block serves
// both kinds of client, told apart by the ClientHello's record version.
func TestTLSAndTLCPOnOnePort(t *testing.T) {
	dir, pool := gmCerts(t)
	pk := newPKI(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		p := startProxy(t, fmt.Sprintf(`transport: %[1]s
listeners:
  - name: web
    address: 127.0.0.1:0
    tls:
      certificates: [{cert_file: %[2]q, key_file: %[3]q}]
      tlcp:
        certificates:
          - {cert_file: %[4]q, key_file: %[5]q, enc_cert_file: %[6]q, enc_key_file: %[7]q}
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %[8]q}]}
`, tr, pk.file("server.pem"), pk.file("server-key.pem"), filepath.Join(dir, "server-sign.pem"), filepath.Join(dir, "server-sign-key.pem"),
			filepath.Join(dir, "server-enc.pem"), filepath.Join(dir, "server-enc-key.pem"), up.addr))
		resp, body, err := tlcpGet(p.addr("web"), &tlcp.Config{RootCAs: pool, ServerName: "localhost"}, "/tlcp")
		if err != nil || resp.StatusCode != 200 || body != "GET /tlcp 0 " {
			t.Fatalf("TLCP client: %v %q", err, body)
		}
		resp2, body2, err := tlsGet(t, p.addr("web"), &tls.Config{RootCAs: pk.pool, ServerName: "localhost"}, "/tls")
		if err != nil || resp2.StatusCode != 200 || body2 != "GET /tls 0 " {
			t.Fatalf("TLS client: %v %q", err, body2)
		}
	})
}

// TestGMSNIAndReload: entries are chosen by the ClientHello's server_name,
// and replaced when their files change (a broken file keeps the old one).
func TestGMSNIAndReload(t *testing.T) {
	dirA, poolA := gmCerts(t)
	dirB := t.TempDir()
	if err := writeGMCerts(dirB, []string{"other.test"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	pemB, _ := os.ReadFile(filepath.Join(dirB, "sm2-ca.pem"))
	poolB := smx509.NewCertPool()
	poolB.AppendCertsFromPEM(pemB)
	entry := func(dir string) string {
		return fmt.Sprintf("        - {cert_file: %q, key_file: %q, enc_cert_file: %q, enc_key_file: %q}\n", filepath.Join(dir, "server-sign.pem"),
			filepath.Join(dir, "server-sign-key.pem"), filepath.Join(dir, "server-enc.pem"), filepath.Join(dir, "server-enc-key.pem"))
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - name: web
    address: 127.0.0.1:0
    tls:
      engine: gm
      reload_interval: 100ms
      certificates:
%s%s    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, direct_response: {status: 200, body: "ok"}}]}
clusters:
  - {name: up, hosts: [{address: "127.0.0.1:1"}]}
`, tr, entry(dirA), entry(dirB)))
		if _, body, err := tlcpGet(p.addr("web"), &tlcp.Config{RootCAs: poolB, ServerName: "other.test"}, "/"); err != nil || body != "ok" {
			t.Fatalf("SNI other.test: %v %q", err, body)
		}
		if _, _, err := tlcpGet(p.addr("web"), &tlcp.Config{RootCAs: poolA, ServerName: "localhost"}, "/"); err != nil {
			t.Fatalf("default entry: %v", err)
		}
	})
	// Reload: replace entry A's files with a new CA's; new connections get
	// them. A broken file afterwards is refused and the new pair kept.
	p := startProxy(t, fmt.Sprintf(`listeners:
  - name: web
    address: 127.0.0.1:0
    tls:
      engine: gm
      reload_interval: 100ms
      certificates:
%s    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, direct_response: {status: 200, body: "ok"}}]}
clusters:
  - {name: up, hosts: [{address: "127.0.0.1:1"}]}
`, entry(dirA)))
	fresh := t.TempDir()
	if err := writeGMCerts(fresh, []string{"localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	pemC, _ := os.ReadFile(filepath.Join(fresh, "sm2-ca.pem"))
	poolC := smx509.NewCertPool()
	poolC.AppendCertsFromPEM(pemC)
	for _, f := range []string{"server-sign.pem", "server-sign-key.pem", "server-enc.pem", "server-enc-key.pem"} {
		b, _ := os.ReadFile(filepath.Join(fresh, f))
		os.WriteFile(filepath.Join(dirA, f), b, 0o600)
	}
	waitFor(t, 5*time.Second, "the reloaded certificate", func() bool {
		_, _, err := tlcpGet(p.addr("web"), &tlcp.Config{RootCAs: poolC, ServerName: "localhost"}, "/")
		return err == nil
	})
	os.WriteFile(filepath.Join(dirA, "server-enc.pem"), []byte("not a certificate"), 0o600)
	time.Sleep(300 * time.Millisecond)
	if _, _, err := tlcpGet(p.addr("web"), &tlcp.Config{RootCAs: poolC, ServerName: "localhost"}, "/"); err != nil {
		t.Fatalf("after a broken file: %v", err)
	}
	if !strings.Contains(p.logs(), "new certificate refused") {
		t.Fatal("the broken file was not reported")
	}
}

// TestGMHandshakeLoad drives a TLCP listener with the load generator's
// handshake protocol (what scripts/bench-gm.sh measures): every handshake
// is counted by the proxy, full ones without resumption and, with it,
// nearly all resumed (the first of each worker cannot be).
func TestGMHandshakeLoad(t *testing.T) {
	dir, _ := gmCerts(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		p := startProxy(t, fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: web
    address: 127.0.0.1:0
%s
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, gmListenerTLS(dir, ""), up.addr))
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		var total float64
		for _, resume := range []bool{false, true} {
			res, err := loadgen.Run(context.Background(), loadgen.Config{Target: p.addr("web"), Protocol: "handshake", TLS: true, Engine: "tlcp",
				TLCPSuite: tlcp.ECC_SM4_GCM_SM3, Resume: resume, Connections: 2, Duration: 300 * time.Millisecond, Timeout: 5 * time.Second})
			if err != nil || res.Errors != 0 || res.Requests < 5 {
				t.Fatalf("resume=%v: %v, %d handshakes, %d errors (%v)", resume, err, res.Requests, res.Errors, res.FirstError)
			}
			total += float64(res.Requests)
			// The proxy counts a handshake when it has read the client's
			// last flight, possibly after the client has moved on.
			var hs, rs float64
			for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				fams := a.scrape()
				hs = value(t, fams, "proxylab_tls_handshakes_total", map[string]string{"side": "listener", "name": "web"})
				rs = value(t, fams, "proxylab_tls_resumptions_total", map[string]string{"side": "listener", "name": "web"})
				if hs == total || time.Now().After(deadline) {
					break
				}
			}
			if hs != total {
				t.Fatalf("resume=%v: proxy counted %v handshakes, the load generator %v", resume, hs, total)
			}
			if !resume && rs != 0 || resume && rs < 0.9*float64(res.Requests) {
				t.Fatalf("resume=%v: %v resumptions of %d handshakes", resume, rs, res.Requests)
			}
		}
	})
}
