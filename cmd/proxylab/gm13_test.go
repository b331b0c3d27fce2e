package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/net/http2"

	"github.com/proxylab/proxylab/offload/gm/tlcp"
	"github.com/proxylab/proxylab/offload/gm/tls13"
)

// sm13Dial opens a TLS 1.3-SM connection offering protos.
func sm13Dial(addr string, pool *smx509.CertPool, protos ...string) (*tls13.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls13.Client(raw, &tls13.Config{RootCAs: pool, ServerName: "localhost", NextProtos: protos})
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// sm13Get sends one HTTP/1.1 request over TLS 1.3-SM.
func sm13Get(addr string, pool *smx509.CertPool, path string) (*http.Response, string, error) {
	c, err := sm13Dial(addr, pool, "http/1.1")
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// sm13GetH2 sends one HTTP/2 request over TLS 1.3-SM (ALPN h2).
func sm13GetH2(addr string, pool *smx509.CertPool, path string) (*http.Response, string, error) {
	tr := &http2.Transport{DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
		c, err := sm13Dial(addr, pool, "h2")
		if err == nil && c.ConnectionState().ALPN != "h2" {
			c.Close()
			return nil, fmt.Errorf("ALPN %q", c.ConnectionState().ALPN)
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://localhost" + path)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// TestTLS13SMTLSAndTLCPOnOnePort: one port serves TLS (gotls), TLCP and
// TLS 1.3-SM, the ClientHello deciding; TLS 1.3-SM carries HTTP/1.1 and
// HTTP/2 to our own test client and to a second proxy whose gm cluster
// (min_version 1.3) calls the port with HTTP/1.1 and HTTP/2.
func TestTLS13SMTLSAndTLCPOnOnePort(t *testing.T) {
	dir, pool := gmCerts(t)
	pk := newPKI(t)
	sign, signKey := filepath.Join(dir, "server-sign.pem"), filepath.Join(dir, "server-sign-key.pem")
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
      tls13_sm:
        certificates: [{cert_file: %[4]q, key_file: %[5]q}]
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %[8]q}]}
admin: {address: "127.0.0.1:0"}
`, tr, pk.file("server.pem"), pk.file("server-key.pem"), sign, signKey,
			filepath.Join(dir, "server-enc.pem"), filepath.Join(dir, "server-enc-key.pem"), up.addr))
		web := p.addr("web")
		check := func(what string, resp *http.Response, body, want string, err error) {
			t.Helper()
			if err != nil || resp.StatusCode != 200 || body != want || resp.Header.Get("X-Seen-XFP") != "https" {
				t.Fatalf("%s: %v %q", what, err, body)
			}
		}
		resp, body, err := sm13Get(web, pool, "/sm13")
		check("TLS 1.3-SM HTTP/1.1", resp, body, "GET /sm13 0 ", err)
		// A second connection resumes with the ticket the first received.
		cache := tls13.NewSessionCache(4)
		for i, want := range []bool{false, true} {
			raw, err := net.DialTimeout("tcp", web, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			c := tls13.Client(raw, &tls13.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}, SessionCache: cache})
			fmt.Fprintf(c, "GET /resume%d HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", i)
			b, err := io.ReadAll(c)
			c.Close()
			if err != nil || !strings.Contains(string(b), "GET /resume") || c.ConnectionState().DidResume != want {
				t.Fatalf("connection %d: resumed %v, want %v: %v %q", i, c.ConnectionState().DidResume, want, err, b)
			}
		}
		resp, body, err = sm13GetH2(web, pool, "/sm13h2")
		check("TLS 1.3-SM HTTP/2", resp, body, "GET /sm13h2 0 ", err)
		if resp.ProtoMajor != 2 {
			t.Fatalf("HTTP/2 over TLS 1.3-SM answered %s", resp.Proto)
		}
		resp, body, err = tlcpGet(web, &tlcp.Config{RootCAs: pool, ServerName: "localhost"}, "/tlcp")
		check("TLCP", resp, body, "GET /tlcp 0 ", err)
		resp, body, err = tlsGet(t, web, &tls.Config{RootCAs: pk.pool, ServerName: "localhost"}, "/tls")
		check("TLS", resp, body, "GET /tls 0 ", err)

		// proxylab's own client engine: a second proxy calls the port over
		// TLS 1.3-SM with both HTTP versions.
		q := startProxy(t, fmt.Sprintf(`transport: %[1]s
listeners:
  - name: front
    address: 127.0.0.1:0
    http_proxy: {}
routes:
  - {name: h2, domains: ["*"], routes: [{prefix: /h2, cluster: sm2}, {prefix: /, cluster: sm1}]}
clusters:
  - {name: sm1, tls: {engine: gm, min_version: "1.3", ca_file: %[2]q, sni: localhost}, hosts: [{address: %[3]q}]}
  - {name: sm2, protocol: http2, tls: {engine: gm, min_version: "1.3", ca_file: %[2]q, sni: localhost}, hosts: [{address: %[3]q}]}
`, tr, filepath.Join(dir, "sm2-ca.pem"), web))
		for _, path := range []string{"/chain1", "/h2chain"} {
			res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + q.addr("front") + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || string(b) != "GET "+path+" 0 " {
				t.Fatalf("chain %s: %d %q", path, res.StatusCode, b)
			}
		}
		// Every SM connection really was TLS 1.3-SM: two direct, two from
		// the second proxy's clusters.
		_, metrics := (adminClient{t: t, base: "http://" + p.adminAddr()}).do("GET", "/stats/prometheus")
		if !strings.Contains(metrics, `suite="TLS_SM4_GCM_SM3"} 6`) || !regexp.MustCompile(`tls_resumptions_total\{name="web",side="listener"\} 1\b`).MatchString(metrics) {
			t.Fatalf("listener suites:\n%s", grepLines(metrics, "tls_"))
		}
	})
}

// TestTLS13SMClientAuth: an SM-only port (engine gm for TLCP, tls13_sm
// with policy sm_only) requiring client certificates: a second proxy's gm
// cluster presents its SM2 certificate; a client without one is refused.
func TestTLS13SMClientAuth(t *testing.T) {
	dir, pool := gmCerts(t)
	ca := filepath.Join(dir, "sm2-ca.pem")
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(echoHandler))
		p := startProxy(t, fmt.Sprintf(`transport: %[1]s
listeners:
  - name: web
    address: 127.0.0.1:0
%[2]s      tls13_sm:
        certificates: [{cert_file: %[3]q, key_file: %[4]q}]
        policy: sm_only
        client_auth: require
        client_ca: %[5]q
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %[6]q}]}
`, tr, gmListenerTLS(dir, ""), filepath.Join(dir, "server-sign.pem"), filepath.Join(dir, "server-sign-key.pem"), ca, up.addr))
		web := p.addr("web")
		q := startProxy(t, fmt.Sprintf(`transport: %[1]s
listeners:
  - name: front
    address: 127.0.0.1:0
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: sm}]}
clusters:
  - name: sm
    protocol: http2
    tls:
      engine: gm
      min_version: "1.3"
      ca_file: %[2]q
      sni: localhost
      client_cert: {cert_file: %[3]q, key_file: %[4]q, enc_cert_file: %[5]q, enc_key_file: %[6]q}
    hosts: [{address: %[7]q}]
`, tr, ca, filepath.Join(dir, "client-sign.pem"), filepath.Join(dir, "client-sign-key.pem"),
			filepath.Join(dir, "client-enc.pem"), filepath.Join(dir, "client-enc-key.pem"), web))
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + q.addr("front") + "/mutual")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != "GET /mutual 0 " {
			t.Fatalf("with a client certificate: %d %q", res.StatusCode, b)
		}
		// Without one: certificate_required (116), read after our Finished.
		c, err := sm13Dial(web, pool, "http/1.1")
		if err == nil {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		var ae *tls13.AlertError
		if !errors.As(err, &ae) || ae.Code != 116 {
			t.Fatalf("without a client certificate: %v", err)
		}
		// TLCP still answers on the SM-only port.
		resp, body, err := tlcpGet(web, &tlcp.Config{RootCAs: pool, ServerName: "localhost"}, "/tlcp")
		if err != nil || resp.StatusCode != 200 || body != "GET /tlcp 0 " {
			t.Fatalf("TLCP: %v %q", err, body)
		}
	})
}
