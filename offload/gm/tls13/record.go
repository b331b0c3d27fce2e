package tls13

import (
	"crypto/cipher"
	"encoding/binary"
	"slices"

	smcipher "github.com/emmansun/gmsm/cipher"
	"github.com/emmansun/gmsm/sm4"
)

// Cipher suites (RFC 8998 §2).
const (
	TLS_SM4_GCM_SM3 uint16 = 0x00C6
	TLS_SM4_CCM_SM3 uint16 = 0x00C7
)

// Named group, signature scheme and protocol constants.
const (
	groupCurveSM2 uint16 = 0x0029 // RFC 8998 §2
	sigSM2SM3     uint16 = 0x0708 // sm2sig_sm3
	version13     uint16 = 0x0304
	legacyVersion uint16 = 0x0303
)

// SuiteName names a suite as RFC 8998 does.
func SuiteName(id uint16) string {
	switch id {
	case TLS_SM4_GCM_SM3:
		return "TLS_SM4_GCM_SM3"
	case TLS_SM4_CCM_SM3:
		return "TLS_SM4_CCM_SM3"
	}
	return "unknown"
}

// Record content types (RFC 8446 §5.1).
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23
)

const (
	maxPlaintext  = 1 << 14
	maxCiphertext = maxPlaintext + 256 // RFC 8446 §5.2
	keyLen        = 16
	ivLen         = 12
)

// halfConn protects one direction: the suite's AEAD under a traffic
// secret, the per-record nonce being iv XOR the sequence number (RFC 8446
// §5.3). A nil *halfConn is the initial plaintext state. Owned by the side
// of the Conn using it (read side under rmu, write side under wmu).
type halfConn struct {
	suite  uint16
	secret []byte
	aead   cipher.AEAD
	iv     [ivLen]byte
	seq    uint64
	nonce  [ivLen]byte

	scratch []byte // CCM: the plaintext being sealed
}

// newHalf derives the key and IV of a traffic secret (RFC 8446 §7.3).
func newHalf(suite uint16, secret []byte) (*halfConn, error) {
	block, err := sm4.NewCipher(expandLabel(secret, "key", nil, keyLen))
	if err != nil {
		return nil, err
	}
	h := &halfConn{suite: suite, secret: secret}
	switch suite {
	case TLS_SM4_GCM_SM3:
		h.aead, err = cipher.NewGCM(block)
	case TLS_SM4_CCM_SM3:
		h.aead, err = smcipher.NewCCM(block) // 12-byte nonce, 16-byte tag (RFC 8998 §3.1)
	default:
		return nil, errUnsupported
	}
	if err != nil {
		return nil, err
	}
	copy(h.iv[:], expandLabel(secret, "iv", nil, ivLen))
	return h, nil
}

// next is the direction after a KeyUpdate.
func (h *halfConn) next() (*halfConn, error) { return newHalf(h.suite, nextSecret(h.secret)) }

func (h *halfConn) nextNonce() []byte {
	h.nonce = h.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], h.seq)
	for i := range s {
		h.nonce[ivLen-8+i] ^= s[i]
	}
	h.seq++
	return h.nonce[:]
}

// seal appends one record of typ holding p (at most maxPlaintext bytes).
func (h *halfConn) seal(dst []byte, typ byte, p []byte) []byte {
	if h == nil {
		dst = append(dst, typ, 3, 3, byte(len(p)>>8), byte(len(p)))
		return append(dst, p...)
	}
	n := len(p) + 1 + h.aead.Overhead()
	start := len(dst)
	dst = append(dst, recordApplicationData, 3, 3, byte(n>>8), byte(n))
	hdr := len(dst)
	dst = append(dst, p...)
	dst = append(dst, typ)
	dst = slices.Grow(dst, h.aead.Overhead()) // Seal then writes in place
	plain := dst[hdr:]
	if h.suite == TLS_SM4_CCM_SM3 {
		// gmsm's CCM Seal (v0.44.1) computes the tag after encrypting, over
		// its output: sealing in place would authenticate the ciphertext.
		h.scratch = append(h.scratch[:0], plain...)
		plain = h.scratch
	}
	out := h.aead.Seal(dst[hdr:hdr], h.nextNonce(), plain, dst[start:hdr])
	return dst[:hdr+len(out)]
}

// open decrypts a record in place (hdr is its 5-byte header, frag the
// rest) and returns the inner content type and plaintext with the
// padding removed.
func (h *halfConn) open(hdr, frag []byte) (byte, []byte, error) {
	if h == nil {
		return hdr[0], frag, nil
	}
	if hdr[0] != recordApplicationData {
		return 0, nil, alert(alertUnexpectedMessage)
	}
	p, err := h.aead.Open(frag[:0], h.nextNonce(), frag, hdr)
	if err != nil {
		return 0, nil, alert(alertBadRecordMAC)
	}
	i := len(p) - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, alert(alertUnexpectedMessage)
	}
	if i > maxPlaintext {
		return 0, nil, alert(alertRecordOverflow)
	}
	return p[i], p[:i], nil
}
