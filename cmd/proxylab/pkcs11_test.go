//go:build cgo

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/proxylab/proxylab/offload/ktls"
)

const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

// softhsmToken makes a SoftHSM2 token with scripts/softhsm-init.sh (keys
// "ec" and "rsa", certificates ec.pem and rsa.pem, PIN in pin) and points
// SOFTHSM2_CONF at it for the proxies this test starts.
func softhsmToken(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(softhsmModule); err != nil {
		t.Skip("SoftHSM2 not installed (make deps)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("../../scripts/softhsm-init.sh", dir).CombinedOutput(); err != nil {
		t.Fatalf("softhsm-init: %v\n%s", err, out)
	}
	t.Setenv("SOFTHSM2_CONF", filepath.Join(dir, "softhsm2.conf"))
	return dir
}

// pkcs11Config: listeners ec and rsa whose keys are the token's.
func pkcs11Config(tr, dir, up string) string {
	entry := func(label string) string {
		return fmt.Sprintf(`{cert_file: %q, pkcs11: {module: %s, token_label: proxylab, key_label: %s, pin_file: %q}}`,
			filepath.Join(dir, label+".pem"), softhsmModule, label, filepath.Join(dir, "pin"))
	}
	return fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: ec
    address: 127.0.0.1:0
    tls: {certificates: [%s]}
    http_proxy: {}
  - name: rsa
    address: 127.0.0.2:0 # one port per address: both certificates name localhost
    tls: {certificates: [%s]}
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, entry("ec"), entry("rsa"), up)
}

// sumOf adds the samples of family name that carry label=value (every
// sample when label is "").
func sumOf(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if label == "" || lp.GetName() == label && lp.GetValue() == value {
				sum += m.GetCounter().GetValue()
				break
			}
		}
	}
	return sum
}

// hostHasKTLS probes TCP_ULP "tls" as the proxy does.
func hostHasKTLS() bool { return ktls.Supported() }

func caPool(t *testing.T, file string) *x509.CertPool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(mustRead(t, file)) {
		t.Fatal("no CA in", file)
	}
	return pool
}

func TestPKCS11Listener(t *testing.T) {
	dir := softhsmToken(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hsm "+r.URL.Path) }))
	pool := caPool(t, filepath.Join(dir, "ca.pem"))
	forEachTransport(t, func(t *testing.T, tr string) {
		px := startProxy(t, pkcs11Config(tr, dir, up.addr))
		for _, tc := range []struct {
			listener string
			alg      x509.PublicKeyAlgorithm
			version  uint16
		}{
			{"ec", x509.ECDSA, tls.VersionTLS13},
			{"ec", x509.ECDSA, tls.VersionTLS12},
			{"rsa", x509.RSA, tls.VersionTLS13},
			{"rsa", x509.RSA, tls.VersionTLS12},
		} {
			cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tc.version, MaxVersion: tc.version}
			for i := 0; i < 3; i++ { // full handshakes: no session cache
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", px.addr(tc.listener), cfg)
				if err != nil {
					t.Fatalf("%s %x: %v\n%s", tc.listener, tc.version, err, px.logs())
				}
				if alg := c.ConnectionState().PeerCertificates[0].PublicKeyAlgorithm; alg != tc.alg {
					t.Fatalf("%s: served a %v certificate", tc.listener, alg)
				}
				c.Close()
			}
			resp, body, err := tlsGet(t, px.addr(tc.listener), cfg, "/go")
			if err != nil || resp.StatusCode != 200 || body != "hsm /go" {
				t.Fatalf("%s: %v %v %q", tc.listener, err, resp, body)
			}
		}
		for _, l := range []string{"ec", "rsa"} {
			host, port, _ := strings.Cut(px.addr(l), ":")
			out, err := exec.Command("curl", "-s", "--max-time", "5", "--cacert", filepath.Join(dir, "ca.pem"),
				"--resolve", "localhost:"+port+":"+host, "https://localhost:"+port+"/curl").CombinedOutput()
			if err != nil || string(out) != "hsm /curl" {
				t.Errorf("curl %s: %v %s", l, err, out)
			}
		}
		a := adminClient{t: t, base: "http://" + px.adminAddr()}
		fams := a.scrape()
		if n := sumOf(fams, "proxylab_offload_pkcs11_errors_total", "", ""); n != 0 {
			t.Errorf("pkcs11 errors counted: %v", n)
		}
		// This host's kernel has no TLS ULP: every connection is counted
		// unsupported, and the start says so once.
		if !hostHasKTLS() {
			if n := sumOf(fams, "proxylab_offload_ktls_total", "result", "unsupported"); n < 12 {
				t.Errorf("ktls unsupported counted %v, want ≥12", n)
			}
			if strings.Count(px.logs(), "kTLS hand-off was not exercised") != 1 {
				t.Errorf("want one log line saying kTLS was not exercised:\n%s", px.logs())
			}
		}
	})
}

// TestPKCS11TokenLostAndBack takes the token away under a running proxy:
// handshakes fail with a counted reason, an established connection keeps
// working, and once the token is back handshakes succeed again (the proxy
// logs in anew).
func TestPKCS11TokenLostAndBack(t *testing.T) {
	dir := softhsmToken(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hsm "+r.URL.Path) }))
	pool := caPool(t, filepath.Join(dir, "ca.pem"))
	px := startProxy(t, pkcs11Config("netpoll", dir, up.addr))
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	keep := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	get := func(c *http.Client) error {
		resp, err := c.Get("https://" + px.addr("ec") + "/k")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "hsm /k" {
			return fmt.Errorf("body %q", b)
		}
		return nil
	}
	if err := get(keep); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Rename(tokens, tokens+".away"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, _, err := tlsGet(t, px.addr("ec"), cfg, "/fresh"); err == nil {
			t.Fatal("a full handshake succeeded with the token away")
		}
	}
	if err := get(keep); err != nil {
		t.Fatalf("established connection broken by the token's loss: %v", err)
	}
	a := adminClient{t: t, base: "http://" + px.adminAddr()}
	fams := a.scrape()
	if n := sumOf(fams, "proxylab_offload_pkcs11_errors_total", "name", "ec"); n < 3 {
		t.Fatalf("pkcs11 errors counted %v, want ≥3\n%s", n, px.logs())
	}
	if err := os.Rename(tokens+".away", tokens); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, _, err := tlsGet(t, px.addr("ec"), cfg, "/back")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token back, handshakes still failing: %v\n%s", err, px.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(px.logs(), "token back, logged in again") {
		t.Error("no log line for the token's return")
	}
}

func TestPKCS11ConfigRefused(t *testing.T) {
	dir := softhsmToken(t)
	pin := filepath.Join(dir, "pin")
	cert := filepath.Join(dir, "ec.pem")
	cfg := func(entry string) string {
		return fmt.Sprintf(`listeners:
  - name: ec
    address: 127.0.0.1:0
    tls: {certificates: [%s]}
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: 127.0.0.1:1}]}
`, entry)
	}
	const p = "listeners[0].tls.certificates[0]"
	for _, tc := range []struct {
		name, entry, want string
		run               bool // refused by run (the token is asked), not by validate
	}{
		{"missing module", fmt.Sprintf(`{cert_file: %q, pkcs11: {token_label: proxylab, key_label: ec, pin_file: %q}}`, cert, pin),
			p + ".pkcs11.module: required", false},
		{"bad pin_env", fmt.Sprintf(`{cert_file: %q, pkcs11: {module: %s, token_label: proxylab, key_label: ec, pin_env: PROXYLAB_NO_SUCH_PIN}}`, cert, softhsmModule),
			p + ".pkcs11.pin_env: environment variable PROXYLAB_NO_SUCH_PIN is not set", false},
		{"inline pin", fmt.Sprintf(`{cert_file: %q, pkcs11: {module: %s, token_label: proxylab, key_label: ec, pin: "1234"}}`, cert, softhsmModule),
			p + ".pkcs11.pin: a PIN is never taken from the config file", false},
		{"key_file beside", fmt.Sprintf(`{cert_file: %q, key_file: %q, pkcs11: {module: %s, token_label: proxylab, key_label: ec, pin_file: %q}}`, cert, pin, softhsmModule, pin),
			p + ".key_file: set beside pkcs11", false},
		{"unknown field", fmt.Sprintf(`{cert_file: %q, pkcs11: {module: %s, token_label: proxylab, key_label: ec, pin_file: %q, serial: 3}}`, cert, softhsmModule, pin),
			p + ".pkcs11.serial", false},
		{"key not found", fmt.Sprintf(`{cert_file: %q, pkcs11: {module: %s, token_label: proxylab, key_label: nope, pin_file: %q}}`, cert, softhsmModule, pin),
			"object=nope: key pair with id= and label=6e6f7065 was not found", true},
		{"key does not match", fmt.Sprintf(`{cert_file: %q, pkcs11: {module: %s, token_label: proxylab, key_label: rsa, pin_file: %q}}`, cert, softhsmModule, pin),
			"does not match certificate", true},
	} {
		file := writeTemp(t, cfg(tc.entry))
		out, err := exec.Command(binPath, "validate", "-c", file).CombinedOutput()
		if tc.run {
			if err != nil {
				t.Fatalf("%s: validate refused: %s", tc.name, out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			out, err = exec.CommandContext(ctx, binPath, "run", "-c", file).CombinedOutput()
			cancel()
		}
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: got %v\n%s\nwant %q", tc.name, err, out, tc.want)
		}
	}
}
