// Package tlcp implements TLCP 1.1 (GB/T 38636-2020, the Chinese
// commercial cryptography TLS variant, record version 0x0101) on
// github.com/emmansun/gmsm: SM2 double certificates (signing and
// encryption), SM3 PRF and MACs, SM4-CBC and SM4-GCM records.
//
// All four suites of the standard — ECC_SM4_CBC_SM3, ECC_SM4_GCM_SM3 (the
// premaster secret SM2-encrypted to the server's encryption certificate) and
// ECDHE_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3 (SM2 key agreement, GB/T 32918.3,
// between both sides' encryption keys and ephemeral keys) — in both roles,
// with client authentication and resumption by session ID.
package tlcp

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

// VersionTLCP is the protocol version on the wire.
const VersionTLCP = 0x0101

// Cipher suites (GB/T 38636-2020 §6.4.5.2.1).
const (
	ECDHE_SM4_CBC_SM3 uint16 = 0xe011
	ECC_SM4_CBC_SM3   uint16 = 0xe013
	ECDHE_SM4_GCM_SM3 uint16 = 0xe051
	ECC_SM4_GCM_SM3   uint16 = 0xe053
)

// Record content types (§6.3.3.1).
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23
)

// maxPlaintext bounds a record's plaintext (2^14).
const maxPlaintext = 16384

// AlertError is an alert sent or received; Code is the alert description.
type AlertError struct {
	Code   uint8
	Remote bool
}

// Alert descriptions (§6.3.4.2), TLCP's own included.
const (
	AlertCloseNotify            = 0
	AlertUnexpectedMessage      = 10
	AlertBadRecordMAC           = 20
	AlertRecordOverflow         = 22
	AlertHandshakeFailure       = 40
	AlertBadCertificate         = 42
	AlertUnsupportedCertificate = 43
	AlertCertificateExpired     = 45
	AlertCertificateUnknown     = 46
	AlertIllegalParameter       = 47
	AlertUnknownCA              = 48
	AlertDecodeError            = 50
	AlertDecryptError           = 51
	AlertProtocolVersion        = 70
	AlertInternalError          = 80
	AlertUnsupportedSite2Site   = 200
	AlertNoArea                 = 201
	AlertUnsupportedAreaType    = 202
	AlertBadIBCParam            = 203
	AlertUnsupportedIBCParam    = 204
	AlertIdentityNeed           = 205
)

func (e *AlertError) Error() string {
	side := "sent"
	if e.Remote {
		side = "received"
	}
	return fmt.Sprintf("tlcp: alert %d %s", e.Code, side)
}

// prfKey is TLCP's PRF, P_SM3 (TLS 1.2's P_hash with HMAC-SM3), keyed
// once with a secret: the master secret's key serves the key expansion and
// both Finished messages.
type prfKey struct{ mac hash.Hash }

func newPRF(secret []byte) prfKey { return prfKey{mac: hmac.New(sm3.New, secret)} }

// expand appends n bytes of PRF(secret, label, seed1 || seed2) to dst.
func (k prfKey) expand(dst []byte, label string, seed1, seed2 []byte, n int) []byte {
	var a, block [sm3.Size]byte
	mac := k.mac
	seed := func() {
		mac.Write([]byte(label))
		mac.Write(seed1)
		mac.Write(seed2)
	}
	mac.Reset()
	seed()
	ai := mac.Sum(a[:0]) // A(1)
	for want := len(dst) + n; ; {
		mac.Reset()
		mac.Write(ai)
		seed()
		if want-len(dst) <= sm3.Size {
			return append(dst, mac.Sum(block[:0])[:want-len(dst)]...)
		}
		dst = mac.Sum(dst)
		mac.Reset()
		mac.Write(ai)
		ai = mac.Sum(a[:0]) // A(i+1), only when more output is needed
	}
}

// prf is PRF(secret, label, seed) of n bytes.
func prf(secret []byte, label string, seed []byte, n int) []byte {
	return newPRF(secret).expand(make([]byte, 0, n), label, seed, nil, n)
}

// masterSecret derives the 48-byte master secret.
func masterSecret(pre, clientRandom, serverRandom []byte) []byte {
	return newPRF(pre).expand(make([]byte, 0, 48), "master secret", clientRandom, serverRandom, 48)
}

// finishedSum is a Finished message's verify_data (12 bytes) over the
// handshake transcript's SM3 hash.
func finishedSum(master prfKey, label string, transcriptHash []byte) []byte {
	return master.expand(make([]byte, 0, 12), label, transcriptHash, nil, 12)
}

// suite describes a cipher suite's record protection.
type suite struct {
	id             uint16
	aead           bool
	macLen, keyLen int
	ivLen          int // CBC: block; GCM: implicit salt
	ecdhe          bool
}

var suites = map[uint16]suite{
	ECC_SM4_CBC_SM3:   {id: ECC_SM4_CBC_SM3, macLen: 32, keyLen: 16, ivLen: 16},
	ECC_SM4_GCM_SM3:   {id: ECC_SM4_GCM_SM3, aead: true, keyLen: 16, ivLen: 4},
	ECDHE_SM4_CBC_SM3: {id: ECDHE_SM4_CBC_SM3, macLen: 32, keyLen: 16, ivLen: 16, ecdhe: true},
	ECDHE_SM4_GCM_SM3: {id: ECDHE_SM4_GCM_SM3, aead: true, keyLen: 16, ivLen: 4, ecdhe: true},
}

// keys splits the key block: client MAC, server MAC, client key, server
// key, client IV, server IV (§6.5.2).
func (s suite) keys(master prfKey, clientRandom, serverRandom []byte) (cMAC, sMAC, cKey, sKey, cIV, sIV []byte) {
	n := 2*s.macLen + 2*s.keyLen + 2*s.ivLen
	kb := master.expand(make([]byte, 0, n), "key expansion", serverRandom, clientRandom, n)
	take := func(k int) []byte { b := kb[:k:k]; kb = kb[k:]; return b }
	return take(s.macLen), take(s.macLen), take(s.keyLen), take(s.keyLen), take(s.ivLen), take(s.ivLen)
}

// halfConn protects one direction of a connection.
type halfConn struct {
	seq    [8]byte
	aead   cipher.AEAD
	block  cipher.Block
	mode   cipher.BlockMode // CBC, made at the first record (a halfConn only seals or only opens)
	mac    hash.Hash
	salt   []byte   // GCM implicit nonce part
	nonce  [12]byte // scratch: salt || explicit part
	macSum [32]byte // scratch: a record's MAC
	iv     [16]byte // scratch: a CBC record's IV
	ad     [13]byte // scratch: GCM additional data
	hdr    [5]byte  // scratch: a CBC record's header for the MAC
}

// nonceFor is salt || explicit (12 bytes) in the scratch array.
func (h *halfConn) nonceFor(explicit []byte) []byte {
	copy(h.nonce[:4], h.salt)
	copy(h.nonce[4:], explicit)
	return h.nonce[:]
}

func newHalf(s suite, macKey, key, iv []byte) (*halfConn, error) {
	b, err := sm4.NewCipher(key)
	if err != nil {
		return nil, err
	}
	h := &halfConn{}
	if s.aead {
		if h.aead, err = cipher.NewGCM(b); err != nil {
			return nil, err
		}
		h.salt = append([]byte(nil), iv...)
		return h, nil
	}
	h.block, h.mac = b, hmac.New(sm3.New, macKey)
	return h, nil
}

// ivSetter is what crypto/cipher's and gmsm's CBC modes implement to be
// reused with a new IV.
type ivSetter interface{ SetIV([]byte) }

// cbc is the direction's CBC mode set to iv, made once and reused for each
// record (a new one per record would be an allocation per record).
func (h *halfConn) cbc(encrypt bool, iv []byte) cipher.BlockMode {
	if h.mode == nil {
		if encrypt {
			h.mode = cipher.NewCBCEncrypter(h.block, iv)
		} else {
			h.mode = cipher.NewCBCDecrypter(h.block, iv)
		}
		return h.mode
	}
	if s, ok := h.mode.(ivSetter); ok {
		s.SetIV(iv)
		return h.mode
	}
	if encrypt {
		return cipher.NewCBCEncrypter(h.block, iv)
	}
	return cipher.NewCBCDecrypter(h.block, iv)
}

func (h *halfConn) incSeq() {
	for i := 7; i >= 0; i-- {
		h.seq[i]++
		if h.seq[i] != 0 {
			return
		}
	}
}

// header is a record header.
func header(typ uint8, n int) [5]byte {
	return [5]byte{typ, VersionTLCP >> 8, VersionTLCP & 0xff, byte(n >> 8), byte(n)}
}

// seal appends the protected record of typ carrying p; random supplies the
// explicit IV or nonce.
func (h *halfConn) seal(dst []byte, typ uint8, p []byte, random func([]byte)) []byte {
	if h == nil {
		hd := header(typ, len(p))
		return append(append(dst, hd[:]...), p...)
	}
	defer h.incSeq()
	if h.aead != nil {
		explicit := h.seq[:] // the sequence number is a unique explicit nonce
		nonce := h.nonceFor(explicit)
		ad := h.ad[:]
		copy(ad, h.seq[:])
		hd := header(typ, len(p))
		copy(ad[8:], hd[:])
		n := 8 + len(p) + h.aead.Overhead()
		out := header(typ, n)
		dst = append(dst, out[:]...)
		dst = append(dst, explicit...)
		return h.aead.Seal(dst, nonce, p, ad)
	}
	bs := h.block.BlockSize()
	h.mac.Reset()
	h.mac.Write(h.seq[:])
	h.hdr = header(typ, len(p)) // in the halfConn: a local would escape to the heap
	h.mac.Write(h.hdr[:])
	h.mac.Write(p)
	mac := h.mac.Sum(h.macSum[:0])
	plainLen := len(p) + len(mac)
	pad := bs - plainLen%bs // 1..bs bytes of padding, each the padding length - 1
	n := bs + plainLen + pad
	out := header(typ, n)
	dst = append(dst, out[:]...)
	start := len(dst)
	iv := h.iv[:bs]
	random(iv)
	dst = append(dst, iv...)
	dst = append(dst, p...)
	dst = append(dst, mac...)
	for i := 0; i < pad; i++ {
		dst = append(dst, byte(pad-1))
	}
	body := dst[start+bs:]
	h.cbc(true, iv).CryptBlocks(body, body)
	return dst
}

var errBadRecordMAC = &AlertError{Code: AlertBadRecordMAC}

// open verifies and decrypts a record's fragment in place, returning the
// plaintext.
func (h *halfConn) open(typ uint8, frag []byte) ([]byte, error) {
	if h == nil {
		return frag, nil
	}
	defer h.incSeq()
	if h.aead != nil {
		if len(frag) < 8+h.aead.Overhead() {
			return nil, errBadRecordMAC
		}
		nonce := h.nonceFor(frag[:8])
		ad := h.ad[:]
		copy(ad, h.seq[:])
		hd := header(typ, len(frag)-8-h.aead.Overhead())
		copy(ad[8:], hd[:])
		p, err := h.aead.Open(frag[8:8], nonce, frag[8:], ad)
		if err != nil {
			return nil, errBadRecordMAC
		}
		return p, nil
	}
	bs := h.block.BlockSize()
	macLen := h.mac.Size()
	if len(frag) < bs+macLen+1 || len(frag)%bs != 0 {
		return nil, errBadRecordMAC
	}
	body := frag[bs:]
	h.cbc(false, frag[:bs]).CryptBlocks(body, body)
	pad := int(body[len(body)-1]) + 1
	// Constant-time-ish padding check: every padding byte equals pad-1.
	good := 1
	if pad > len(body)-macLen {
		good, pad = 0, 0
	}
	for i := 0; i < pad; i++ {
		good &= subtle.ConstantTimeByteEq(body[len(body)-1-i], byte(pad-1))
	}
	p := body[:len(body)-pad-macLen]
	mac := body[len(body)-pad-macLen : len(body)-pad]
	h.mac.Reset()
	h.mac.Write(h.seq[:])
	h.hdr = header(typ, len(p)) // in the halfConn: a local would escape to the heap
	h.mac.Write(h.hdr[:])
	h.mac.Write(p)
	if subtle.ConstantTimeCompare(h.mac.Sum(h.macSum[:0]), mac)&good != 1 {
		return nil, errBadRecordMAC
	}
	return p, nil
}

// readRecordHeader parses a record header: type, length.
func readRecordHeader(b []byte) (typ uint8, n int, err error) {
	if v := binary.BigEndian.Uint16(b[1:]); v != VersionTLCP {
		return 0, 0, &AlertError{Code: AlertProtocolVersion}
	}
	n = int(binary.BigEndian.Uint16(b[3:]))
	if n > maxPlaintext+2048 {
		return 0, 0, &AlertError{Code: AlertRecordOverflow}
	}
	return b[0], n, nil
}

var errShort = errors.New("tlcp: short message")
