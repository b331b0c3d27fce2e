package tls13

import (
	"bytes"
	"crypto/cipher"
	"encoding/hex"
	"testing"

	smcipher "github.com/emmansun/gmsm/cipher"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 8998 Appendix A: SM4-GCM (A.1) and SM4-CCM (A.2) through this
// package's record protection with the vector's key and IV at sequence
// number 0 (nonce = IV), and the nonce of later records.
func TestRFC8998Vectors(t *testing.T) {
	key := unhex(t, "0123456789abcdeffedcba9876543210")
	iv := unhex(t, "00001234567800000000abcd")
	aad := unhex(t, "feedfacedeadbeeffeedfacedeadbeefabaddad2")
	plain := unhex(t, "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccddddddddddddddddeeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa")
	for _, tc := range []struct {
		suite    uint16
		out, tag string
	}{
		{TLS_SM4_GCM_SM3, "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d", "83de3541e4c2b58177e065a9bf7b62ec"},
		{TLS_SM4_CCM_SM3, "48af93501fa62adbcd414cce6034d895dda1bf8f132f042098661572e7483094fd12e518ce062c98acee28d95df4416bed31a2f04476c18bb40c84a74b97dc5b", "16842d4fa186f56ab33256971fa110f4"},
	} {
		block, _ := sm4.NewCipher(key)
		h := &halfConn{suite: tc.suite}
		if tc.suite == TLS_SM4_GCM_SM3 {
			h.aead, _ = cipher.NewGCM(block)
		} else {
			h.aead, _ = smcipher.NewCCM(block)
		}
		copy(h.iv[:], iv)
		want := unhex(t, tc.out+tc.tag)
		if got := h.aead.Seal(nil, h.nextNonce(), plain, aad); !bytes.Equal(got, want) {
			t.Fatalf("%s: %x, want %x", SuiteName(tc.suite), got, want)
		}
		// seq 1: the IV's last byte XOR 1.
		if n := h.nextNonce(); n[11] != 0xcd^1 || !bytes.Equal(n[:11], iv[:11]) {
			t.Fatalf("nonce of record 1: %x", n)
		}
		// In-place open, as the record layer does it.
		buf := append([]byte(nil), want...)
		h.seq = 0
		p, err := h.aead.Open(buf[:0], h.nextNonce(), buf, aad)
		if err != nil || !bytes.Equal(p, plain) {
			t.Fatalf("%s open: %v", SuiteName(tc.suite), err)
		}
	}
	// GB/T 32905-2016 example 1: SM3("abc").
	if h := sm3.Sum([]byte("abc")); hex.EncodeToString(h[:]) != "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0" {
		t.Fatalf("SM3(abc) = %x", h)
	}
}

// refHMAC is HMAC-SM3 written out from RFC 2104 (not crypto/hmac).
func refHMAC(key, msg []byte) []byte {
	if len(key) > 64 {
		k := sm3.Sum(key)
		key = k[:]
	}
	ipad, opad := make([]byte, 64), make([]byte, 64)
	for i := range ipad {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		ipad[i], opad[i] = k^0x36, k^0x5c
	}
	inner := sm3.Sum(append(ipad, msg...))
	outer := sm3.Sum(append(opad, inner[:]...))
	return outer[:]
}

// refExpand is RFC 5869 HKDF-Expand on refHMAC.
func refExpand(prk, info []byte, n int) []byte {
	var out, t []byte
	for i := 1; len(out) < n; i++ {
		t = refHMAC(prk, append(append(append([]byte(nil), t...), info...), byte(i)))
		out = append(out, t...)
	}
	return out[:n]
}

// The key schedule's derivations against an independent computation:
// RFC 2104 HMAC and RFC 5869 HKDF written out on gmsm's SM3, the
// HkdfLabel built byte by byte as RFC 8446 §7.1 lays it out.
func TestHKDFSM3(t *testing.T) {
	salt, ikm := []byte("salt of the schedule"), bytes.Repeat([]byte{0x0b}, 22)
	if got, want := extract(salt, ikm), refHMAC(salt, ikm); !bytes.Equal(got, want) {
		t.Fatalf("extract %x, want %x", got, want)
	}
	if got, want := extract(nil, ikm), refHMAC(make([]byte, 32), ikm); !bytes.Equal(got, want) {
		t.Fatalf("extract with no salt %x, want %x", got, want)
	}
	prk := refHMAC(salt, ikm)
	for _, n := range []int{12, 16, 32, 42, 100} {
		if got, want := expand(prk, []byte("info"), n), refExpand(prk, []byte("info"), n); !bytes.Equal(got, want) {
			t.Fatalf("expand %d: %x, want %x", n, got, want)
		}
	}
	// HkdfLabel for "key", 16 bytes, empty context: 00 10 | 09 "tls13 key" | 00.
	label := append([]byte{0x00, 0x10, 0x09}, "tls13 key"...)
	label = append(label, 0x00)
	if got, want := expandLabel(prk, "key", nil, 16), refExpand(prk, label, 16); !bytes.Equal(got, want) {
		t.Fatalf("expandLabel key: %x, want %x", got, want)
	}
	// Derive-Secret(early, "derived", "") with the SM3 of the empty string.
	early := refHMAC(make([]byte, 32), make([]byte, 32))
	e := sm3.Sum(nil)
	derived := append([]byte{0x00, 0x20, 0x0d}, "tls13 derived"...)
	derived = append(append(derived, 0x20), e[:]...)
	if got, want := deriveSecret(newSchedule(nil).early, "derived", emptyHash), refExpand(early, derived, 32); !bytes.Equal(got, want) {
		t.Fatalf("derived: %x, want %x", got, want)
	}
	// finished: HMAC(expandLabel(base, "finished"), th).
	fk := append([]byte{0x00, 0x20, 0x0e}, "tls13 finished"...)
	fk = append(fk, 0)
	th := sm3.Sum([]byte("transcript"))
	if got, want := finishedMAC(prk, th[:]), refHMAC(refExpand(prk, fk, 32), th[:]); !bytes.Equal(got, want) {
		t.Fatalf("finished: %x, want %x", got, want)
	}
}
