package tlcp

import (
	"crypto/cipher"
	"net"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm4"
)

// BenchmarkHandshake is one full ECC handshake, client and server in this
// process over a socket pair (so both sides' CPU), and one resumed.
func BenchmarkHandshake(b *testing.B) {
	pki := newPKI(b)
	for _, resume := range []bool{false, true} {
		name := "full"
		if resume {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			server := &Config{SignCert: pki.issue(b, "gm.test", false, false, time.Now().Add(time.Hour)), EncCert: pki.issue(b, "gm.test", true, false, time.Now().Add(time.Hour))}
			client := &Config{RootCAs: pki.pool, ServerName: "gm.test"}
			if resume {
				server.SessionCache, client.SessionCache = NewSessionCache(100, time.Hour), NewSessionCache(100, time.Hour)
			}
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			defer ln.Close()
			go func() {
				for {
					raw, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { s := Server(raw, server); s.Handshake(); raw.Close() }()
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				raw, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if err := Client(raw, client).Handshake(); err != nil {
					b.Fatal(err)
				}
				raw.Close()
			}
		})
	}
}

// BenchmarkRecords seals 16 KiB records, against raw SM4-GCM sealing of the
// same size with gmsm (the throughput target's reference).
func BenchmarkRecords(b *testing.B) {
	p := make([]byte, maxPlaintext)
	key := make([]byte, 16)
	for _, id := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		b.Run(SuiteName(id), func(b *testing.B) {
			h, _ := newHalf(suites[id], make([]byte, 32), key, make([]byte, suites[id].ivLen))
			var out []byte
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				out = h.seal(out[:0], recordApplicationData, p, func([]byte) {})
			}
		})
	}
	for _, id := range []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3} {
		b.Run(SuiteName(id)+"/open", func(b *testing.B) {
			w, _ := newHalf(suites[id], make([]byte, 32), key, make([]byte, suites[id].ivLen))
			r, _ := newHalf(suites[id], make([]byte, 32), key, make([]byte, suites[id].ivLen))
			recs := make([][]byte, 64)
			for i := range recs {
				recs[i] = w.seal(nil, recordApplicationData, p, func(b []byte) {})
			}
			frag := make([]byte, len(recs[0]))
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%len(recs) == 0 && i > 0 {
					b.StopTimer()
					r, _ = newHalf(suites[id], make([]byte, 32), key, make([]byte, suites[id].ivLen))
					b.StartTimer()
				}
				rec := recs[i%len(recs)]
				copy(frag, rec)
				if _, err := r.open(recordApplicationData, frag[5:len(rec)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("raw-sm4-gcm", func(b *testing.B) {
		blk, _ := sm4.NewCipher(key)
		g, _ := cipher.NewGCM(blk)
		nonce := make([]byte, 12)
		var out []byte
		b.SetBytes(int64(len(p)))
		for i := 0; i < b.N; i++ {
			out = g.Seal(out[:0], nonce, p, nil)
		}
	})
}
