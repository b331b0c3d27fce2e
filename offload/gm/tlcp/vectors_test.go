package tlcp

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
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
		cMAC, _, cKey, _, cIV, _ := s.keys(master, cr, sr)
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
