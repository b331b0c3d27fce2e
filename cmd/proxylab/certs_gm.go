package main

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// writeGMCerts writes an SM2 test CA and TLCP double certificates (a
// signing and an encryption certificate with their keys) for a server and
// a client.
func writeGMCerts(dir string, hosts []string, valid time.Duration) error {
	now := time.Now()
	caKey, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &smx509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "proxylab test SM2 CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(valid), IsCA: true, BasicConstraintsValid: true, KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign}
	caDER, err := smx509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := smx509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "sm2-ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	issue := func(name string, client, encryption bool) error {
		key, err := sm2.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &smx509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(valid),
			KeyUsage: smx509.KeyUsageDigitalSignature, ExtKeyUsage: []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth}}
		if client {
			tmpl.ExtKeyUsage = []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}
		} else {
			for _, h := range hosts {
				if ip := net.ParseIP(h); ip != nil {
					tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
				} else {
					tmpl.DNSNames = append(tmpl.DNSNames, h)
				}
			}
		}
		role := "sign"
		if encryption {
			tmpl.KeyUsage, role = smx509.KeyUsageKeyEncipherment|smx509.KeyUsageDataEncipherment|smx509.KeyUsageKeyAgreement, "enc"
		}
		der, err := smx509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kder, err := smx509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		base := filepath.Join(dir, fmt.Sprintf("%s-%s", map[bool]string{true: "client", false: "server"}[client], role))
		if err := writePEM(base+".pem", "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		return writePEM(base+"-key.pem", "PRIVATE KEY", kder, 0o600)
	}
	for _, c := range []struct{ client, enc bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
		if err := issue(map[bool]string{true: "proxylab test client", false: hosts[0]}[c.client], c.client, c.enc); err != nil {
			return err
		}
	}
	return nil
}
