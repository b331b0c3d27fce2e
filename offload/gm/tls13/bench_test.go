package tls13

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"

	"crypto/cipher"

	"github.com/emmansun/gmsm/sm4"

	"github.com/proxylab/proxylab/offload/gm/tlcp"
)

// handshakeLoop runs b.N full handshakes over loopback TCP, both sides in
// this process (so both sides' CPU): serve handshakes one accepted
// connection, dial one from the client side.
func handshakeLoop(b *testing.B, serve func(net.Conn), dial func(net.Conn) error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { serve(raw); raw.Close() }()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op") }()
	for i := 0; i < b.N; i++ {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if err := dial(raw); err != nil {
			b.Fatal(err)
		}
		raw.Close()
	}
}

// BenchmarkHandshake: TLS 1.3-SM (SM4-GCM, curveSM2, sm2sig_sm3)
// against crypto/tls TLS 1.3 with ECDSA P-256 and AES-128-GCM (X25519 is
// turned off: P-256 like for like), and TLCP's ECC_SM4_GCM_SM3.
func BenchmarkHandshake(b *testing.B) {
	b.Run("tls13-sm", func(b *testing.B) {
		pki := newPKI(b)
		server := &Config{Certificate: pki.issue(b, "sm.test")}
		client := &Config{RootCAs: pki.pool, ServerName: "sm.test"}
		handshakeLoop(b, func(c net.Conn) { Server(c, server).Handshake() }, func(c net.Conn) error { return Client(c, client).Handshake() })
	})
	b.Run("tls13-sm-resumed", func(b *testing.B) {
		// Each client connection takes the ticket the previous one read.
		pki := newPKI(b)
		tk, _ := NewTicketKeys(make([]byte, 16))
		server := &Config{Certificate: pki.issue(b, "sm.test"), TicketKeys: tk}
		client := &Config{RootCAs: pki.pool, ServerName: "sm.test", SessionCache: NewSessionCache(4), sessionByName: true}
		handshakeLoop(b, func(c net.Conn) {
			s := Server(c, server)
			if s.Handshake() == nil {
				s.Write([]byte{0}) // behind the ticket
			}
		}, func(c net.Conn) error {
			cc := Client(c, client)
			if err := cc.Handshake(); err != nil {
				return err
			}
			_, err := cc.Read(make([]byte, 1))
			return err
		})
	})
	b.Run("tlcp-ecc-sm4-gcm", func(b *testing.B) {
		pki := newPKI(b)
		sign, enc := pki.issue(b, "sm.test"), pki.issue(b, "sm.test")
		server := &tlcp.Config{SignCert: &tlcp.Certificate{Chain: sign.Chain, Key: sign.Key}, EncCert: &tlcp.Certificate{Chain: enc.Chain, Key: enc.Key}}
		client := &tlcp.Config{RootCAs: pki.pool, ServerName: "sm.test", CipherSuites: []uint16{tlcp.ECC_SM4_GCM_SM3}}
		handshakeLoop(b, func(c net.Conn) { tlcp.Server(c, server).Handshake() }, func(c net.Conn) error { return tlcp.Client(c, client).Handshake() })
	})
	b.Run("gotls-ecdsa-p256", func(b *testing.B) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, DNSNames: []string{"t"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		leaf, _ := x509.ParseCertificate(der)
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		server := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13,
			CurvePreferences: []tls.CurveID{tls.CurveP256}, SessionTicketsDisabled: true}
		client := &tls.Config{RootCAs: pool, ServerName: "t", CurvePreferences: []tls.CurveID{tls.CurveP256}, MinVersion: tls.VersionTLS13}
		handshakeLoop(b, func(c net.Conn) { tls.Server(c, server).Handshake() }, func(c net.Conn) error { return tls.Client(c, client).Handshake() })
	})
}

// BenchmarkRecords seals 16 KiB records (header, inner type, AEAD) on
// both suites, against gmsm's raw SM4-GCM sealing of the same size.
func BenchmarkRecords(b *testing.B) {
	p := make([]byte, maxPlaintext)
	for _, suite := range []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3} {
		b.Run(SuiteName(suite), func(b *testing.B) {
			h, _ := newHalf(suite, make([]byte, 32))
			buf := make([]byte, 0, maxCiphertext+5)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf = h.seal(buf[:0], recordApplicationData, p)
			}
		})
	}
	b.Run("raw-gmsm-sm4-gcm", func(b *testing.B) {
		block, _ := sm4.NewCipher(make([]byte, 16))
		aead, _ := cipher.NewGCM(block)
		nonce := make([]byte, 12)
		buf := make([]byte, 0, maxCiphertext)
		b.SetBytes(int64(len(p)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = aead.Seal(buf[:0], nonce, p, nil)
		}
	})
}

// cpuTime is the process's user and system CPU time: on a shared machine
// the wall time per handshake mostly measures the other tenants.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
