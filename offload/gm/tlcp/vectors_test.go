package tlcp

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Published vectors through the primitives as this package uses them.
func TestPublishedVectors(t *testing.T) {
	// GB/T 32905-2016 (SM3), example 1: "abc".
	if got := sm3.Sum([]byte("abc")); hex.EncodeToString(got[:]) != "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0" {
		t.Fatalf("SM3(abc) = %x", got)
	}
	// GB/T 32907-2016 (SM4), example 1: key = plaintext = 0123456789abcdeffedcba9876543210.
	k, _ := hex.DecodeString("0123456789abcdeffedcba9876543210")
	b, _ := sm4.NewCipher(k)
	out := make([]byte, 16)
	b.Encrypt(out, k)
	if hex.EncodeToString(out) != "681edf34d206965e86b3e94f536e4246" {
		t.Fatalf("SM4 = %x", out)
	}
	// GB/T 32905 example 2: 64 bytes of "abcd".
	if got := sm3.Sum(bytes.Repeat([]byte("abcd"), 16)); hex.EncodeToString(got[:]) != "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732" {
		t.Fatalf("SM3(abcd×16) = %x", got)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The SM2 examples on the recommended curve (GB/T 32918.2 and .4 as
// reissued in GB/T 32918.5-2017 / GM/T 0003.5, also in OpenSSL's and
// openHiTLS's self-tests), run through this package's own signing,
// verifying, decrypting and key-agreement code: the key pair, Z_A and e,
// the published signature (verify is deterministic; signing is not, so a
// fresh signature must verify), and the published ciphertext decrypting to
// "encryption standard" in both encodings a ClientKeyExchange may carry.
func TestSM2PublishedVectors(t *testing.T) {
	d := unhex(t, "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
	priv, err := sm2.NewPrivateKey(d)
	if err != nil {
		t.Fatal(err)
	}
	pub := append(append([]byte{4}, unhex(t, "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020")...),
		unhex(t, "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")...)
	if got := ecdhKey(&Certificate{Key: priv}).PublicKey().Bytes(); !bytes.Equal(got, pub) {
		t.Fatalf("public key = %x, want %x", got, pub)
	}
	za, err := sm2.CalculateZA(&priv.PublicKey, sm2UID)
	if err != nil || hex.EncodeToString(za) != "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3" {
		t.Fatalf("Z_A = %x (%v)", za, err)
	}
	msg := []byte("message digest")
	if e := sm3.Sum(append(za, msg...)); hex.EncodeToString(e[:]) != "f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640" {
		t.Fatalf("e = %x", e)
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(bigFromHex(t, "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"))
		b.AddASN1BigInt(bigFromHex(t, "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"))
	})
	published := b.BytesOrPanic()
	cert := &smx509.Certificate{PublicKey: &priv.PublicKey}
	if !verify(cert, msg, published) {
		t.Fatal("the published signature does not verify")
	}
	if verify(cert, []byte("message digesT"), published) {
		t.Fatal("the published signature verifies a different message")
	}
	own, err := sign(priv, rand.Reader, msg)
	if err != nil || !verify(cert, msg, own) {
		t.Fatalf("a fresh signature with the published key does not verify (%v)", err)
	}

	// GB/T 32918.4 example: C1 || C3 || C2 with k = 59276E27…BC21.
	c1 := unhex(t, "0404EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0")
	c3 := unhex(t, "59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766")
	c2 := unhex(t, "21886CA989CA9C7D58087307CA93092D651EFA")
	var asn cryptobyte.Builder
	asn.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(bigFromBytes(c1[1:33]))
		b.AddASN1BigInt(bigFromBytes(c1[33:]))
		b.AddASN1OctetString(c3)
		b.AddASN1OctetString(c2)
	})
	for name, ct := range map[string][]byte{"C1C3C2": append(append(append([]byte(nil), c1...), c3...), c2...), "ASN.1": asn.BytesOrPanic()} {
		var dec crypto.Decrypter = priv
		pt, err := dec.Decrypt(rand.Reader, ct, nil)
		if err != nil || string(pt) != "encryption standard" {
			t.Fatalf("%s: decrypt = %q, %v", name, pt, err)
		}
		ct[len(ct)-1] ^= 1
		if _, err := dec.Decrypt(rand.Reader, ct, nil); err == nil {
			t.Fatalf("%s: a tampered ciphertext decrypted", name)
		}
	}

	// GB/T 32918.3 key agreement on the recommended curve (openHiTLS's
	// self-test vector, computed by its TLCP server role): the initiator's
	// static and ephemeral keys, the responder's static key and ephemeral
	// point, a 16-byte shared key. This is the server's side (server =
	// true); sm2Agree derives 48 bytes and the KDF's output is a
	// prefix stream. (Taken as responder, the same inputs give another key:
	// the role order is what makes ECDHE interoperate.)
	self, _ := sm2.NewPrivateKey(unhex(t, "81eb26e941bb5af16df116495f90695272ae2cd63d6c4ae1678418be48230029"))
	peer, _ := sm2.NewPrivateKey(unhex(t, "785129917d45a9ea5437a59356b82338eaadda6ceb199088f14ae10defa229b5"))
	eph, err := ecdh.P256().NewPrivateKey(unhex(t, "d4de15474db74d06491c440d305e012400990f3e390c7e87153c12db2ea60bb3"))
	if err != nil {
		t.Fatal(err)
	}
	peerEph, err := ecdh.P256().NewPublicKey(unhex(t, "04acc27688a6f7b706098bc91ff3ad1bff7dc2802cdb14ccccdb0a90471f9bd7072fedac0494b2ffc4d6853876c79b8f301c6573ad0aa50f39fc87181e1a1b46fe"))
	if err != nil {
		t.Fatal(err)
	}
	pre, err := sm2Agree(true, ecdhKey(&Certificate{Key: self}), eph, &smx509.Certificate{PublicKey: &peer.PublicKey}, peerEph)
	if err != nil || hex.EncodeToString(pre[:16]) != "6c89347354de2484c60b4ab1fde4c6e5" {
		t.Fatalf("shared key = %x (%v)", pre, err)
	}
}

// FuzzRecordOpen feeds arbitrary fragments to both record protections:
// never a panic, and nothing but a MAC failure is accepted silently.
func FuzzRecordOpen(f *testing.F) {
	st := suites[ECC_SM4_CBC_SM3]
	master := bytes.Repeat([]byte{9}, 48)
	cr, sr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	w, _ := newHalf(st, cr[:32], cr[:16], cr[:16])
	f.Add(w.seal(nil, recordApplicationData, []byte("hello"), func(b []byte) {})[5:], false)
	f.Add(make([]byte, 64), true)
	f.Fuzz(func(t *testing.T, frag []byte, gcm bool) {
		id := ECC_SM4_CBC_SM3
		if gcm {
			id = ECC_SM4_GCM_SM3
		}
		s := suites[id]
		cMAC, _, cKey, _, cIV, _ := s.keys(newPRF(master), cr, sr)
		h, _ := newHalf(s, cMAC, cKey, cIV)
		if p, err := h.open(recordApplicationData, append([]byte(nil), frag...)); err == nil && len(p) > len(frag) {
			t.Fatalf("plaintext longer than the fragment")
		}
	})
}

// FuzzServerHandshake feeds an arbitrary first flight to a server: it must
// end with an error (an alert) or a handshake, never a panic or a hang.
func FuzzServerHandshake(f *testing.F) {
	pki := newPKI(f)
	cfg := &Config{SignCert: pki.issue(f, "gm.test", false, false, time.Now().Add(time.Hour)), EncCert: pki.issue(f, "gm.test", true, false, time.Now().Add(time.Hour))}
	ch := []byte{22, 1, 1, 0, 49, 1, 0, 0, 45, 1, 1}
	ch = append(ch, make([]byte, 32)...)
	ch = append(ch, 0, 0, 2, 0xe0, 0x53, 1, 0)
	f.Add(ch)
	f.Add([]byte{22, 1, 1, 0, 4, 1, 0, 0, 0})
	f.Add([]byte{21, 1, 1, 0, 2, 2, 40})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := Server(&scriptConn{in: in}, cfg)
		if err := c.Handshake(); err == nil {
			t.Fatal("a handshake completed from a script with no Finished")
		}
	})
}

// scriptConn replays fixed input, then EOF; writes are discarded.
type scriptConn struct {
	nopAddrConn
	in []byte
}

func (s *scriptConn) Read(b []byte) (int, error) {
	if len(s.in) == 0 {
		return 0, errEOF
	}
	n := copy(b, s.in)
	s.in = s.in[n:]
	return n, nil
}
func (s *scriptConn) Write(b []byte) (int, error) { return len(b), nil }

func bigFromHex(t *testing.T, s string) *big.Int { return bigFromBytes(unhex(t, s)) }
func bigFromBytes(b []byte) *big.Int             { return new(big.Int).SetBytes(b) }
