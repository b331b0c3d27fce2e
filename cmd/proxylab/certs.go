package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// cmdCerts writes a test CA, a server certificate and a client certificate,
// so TLS can be tried in one command.
func cmdCerts(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "certs", "directory to write into")
	hosts := fs.String("hosts", "localhost,127.0.0.1", "comma-separated DNS names and IPs for the server certificate")
	keyType := fs.String("key", "ecdsa", "server key type: ecdsa (P-256) or rsa (2048)")
	days := fs.Int("days", 365, "validity in days")
	gm := fs.Bool("gm", false, "SM2 certificates for TLCP (engine gm): a CA and signing + encryption pairs for a server and a client")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *gm {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			fmt.Fprintf(stderr, "proxylab certs: %v\n", err)
			return 1
		}
		if err := writeGMCerts(*dir, strings.Split(*hosts, ","), time.Duration(*days)*24*time.Hour); err != nil {
			fmt.Fprintf(stderr, "proxylab certs: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, `wrote %[1]s/sm2-ca.pem, %[1]s/server-{sign,enc}.pem and keys, %[1]s/client-{sign,enc}.pem and keys

listener TLCP:
    tls:
      engine: gm
      certificates:
        - {cert_file: %[1]s/server-sign.pem, key_file: %[1]s/server-sign-key.pem,
           enc_cert_file: %[1]s/server-enc.pem, enc_key_file: %[1]s/server-enc-key.pem}
      # client_auth: require
      # client_ca: %[1]s/sm2-ca.pem
`, *dir)
		return 0
	}
	if err := writeCerts(*dir, strings.Split(*hosts, ","), *keyType, time.Duration(*days)*24*time.Hour); err != nil {
		fmt.Fprintf(stderr, "proxylab certs: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, `wrote %[1]s/ca.pem, %[1]s/server.pem, %[1]s/server-key.pem, %[1]s/client.pem, %[1]s/client-key.pem

listener TLS:
    tls:
      certificates: [{cert_file: %[1]s/server.pem, key_file: %[1]s/server-key.pem}]
      # client_auth: require
      # client_ca: %[1]s/ca.pem
try it:
    curl --cacert %[1]s/ca.pem https://localhost:8443/
`, *dir)
	return 0
}

func writeCerts(dir string, hosts []string, keyType string, valid time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "proxylab test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(valid),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	issue := func(name string, tmpl *x509.Certificate, rsaKey bool) error {
		var pub any
		var keyDER []byte
		if rsaKey {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return err
			}
			pub = &k.PublicKey
			keyDER, _ = x509.MarshalPKCS8PrivateKey(k)
		} else {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			pub = &k.PublicKey
			keyDER, _ = x509.MarshalPKCS8PrivateKey(k)
		}
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = serial(), now.Add(-time.Hour), now.Add(valid)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		return writePEM(filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", keyDER, 0o600)
	}
	srv := &x509.Certificate{Subject: pkix.Name{CommonName: hosts[0]}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			srv.IPAddresses = append(srv.IPAddresses, ip)
		} else {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	if err := issue("server", srv, keyType == "rsa"); err != nil {
		return err
	}
	spiffe, _ := url.Parse("spiffe://proxylab.test/client")
	cli := &x509.Certificate{Subject: pkix.Name{CommonName: "proxylab test client"}, URIs: []*url.URL{spiffe},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	return issue("client", cli, false)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}
