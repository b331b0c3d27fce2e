package gotls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkServerHandshakeCPU is crypto/tls's server side alone: CPU per
// full TLS 1.3 handshake from the server thread's CPU clock (its socket
// reads and writes included; accept, close and everything the proxy adds
// around an engine excluded), for the key types and key shares the TLS
// issue's target names. Reported as server-µs/handshake; the whole-proxy
// figure is scripts/bench-tls.sh's.
func BenchmarkServerHandshakeCPU(b *testing.B) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name   string
		key    any
		curves []tls.CurveID
	}{
		{"ECDSA-P256/X25519MLKEM768", ec, nil},
		{"ECDSA-P256/X25519", ec, []tls.CurveID{tls.X25519}},
		{"ECDSA-P256/P256", ec, []tls.CurveID{tls.CurveP256}},
		{"RSA-2048/X25519", rk, []tls.CurveID{tls.X25519}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cert := selfSigned(b, tc.key)
			server := &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true}
			client := &tls.Config{InsecureSkipVerify: true, CurvePreferences: tc.curves}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			type result struct {
				cpu time.Duration
				n   int
				err error
			}
			done := make(chan result, 1)
			go func() {
				runtime.LockOSThread()
				var r result
				var ts unix.Timespec
				for {
					raw, err := ln.Accept()
					if err != nil {
						done <- r
						return
					}
					unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
					t0 := time.Duration(ts.Nano())
					err = tls.Server(raw, server).Handshake()
					unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
					r.cpu += time.Duration(ts.Nano()) - t0
					r.n++
					raw.Close()
					if err != nil {
						r.err = err
						done <- r
						return
					}
				}
			}()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				raw, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if err := tls.Client(raw, client).Handshake(); err != nil {
					b.Fatal(err)
				}
				raw.Close()
			}
			b.StopTimer()
			ln.Close()
			r := <-done
			if r.err != nil {
				b.Fatal(r.err)
			}
			b.ReportMetric(float64(r.cpu.Microseconds())/float64(max(r.n, 1)), "server-µs/handshake")
		})
	}
}

func selfSigned(b *testing.B, key any) tls.Certificate {
	b.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"bench"}}
	var pub any
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
