package tls13

import (
	"crypto/hmac"
	"encoding"
	"encoding/binary"
	"hash"

	"github.com/emmansun/gmsm/sm3"
)

// hashLen is SM3's output size, the length of every secret (RFC 8998 §3:
// both SM suites use SM3 for HKDF and the transcript).
const hashLen = sm3.Size

// extract is HKDF-Extract (RFC 5869 §2.2) with HMAC-SM3; a nil salt is
// hashLen zeros.
func extract(salt, ikm []byte) []byte {
	if salt == nil {
		salt = make([]byte, hashLen)
	}
	m := hmac.New(sm3.New, salt)
	m.Write(ikm)
	return m.Sum(nil)
}

// expand is HKDF-Expand (RFC 5869 §2.3) with HMAC-SM3.
func expand(prk, info []byte, n int) []byte {
	m := hmac.New(sm3.New, prk)
	out := make([]byte, 0, n+hashLen)
	var t []byte
	for i := byte(1); len(out) < n; i++ {
		m.Reset()
		m.Write(t)
		m.Write(info)
		m.Write([]byte{i})
		t = m.Sum(t[:0])
		out = append(out, t...)
	}
	return out[:n]
}

// expandLabel is HKDF-Expand-Label (RFC 8446 §7.1).
func expandLabel(secret []byte, label string, context []byte, n int) []byte {
	info := binary.BigEndian.AppendUint16(nil, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(append(info, "tls13 "...), label...)
	info = append(append(info, byte(len(context))), context...)
	return expand(secret, info, n)
}

// deriveSecret is Derive-Secret (RFC 8446 §7.1) over a transcript hash.
func deriveSecret(secret []byte, label string, transcriptHash []byte) []byte {
	return expandLabel(secret, label, transcriptHash, hashLen)
}

// emptyHash is SM3("") , the context of the "derived" secrets.
var emptyHash = func() []byte { h := sm3.Sum(nil); return h[:] }()

// schedule walks the key schedule of RFC 8446 §7.1 for one connection.
type schedule struct {
	early, handshake, master []byte
}

// newSchedule starts from a PSK (nil for a full handshake: zeros).
func newSchedule(psk []byte) *schedule {
	if psk == nil {
		psk = make([]byte, hashLen)
	}
	return &schedule{early: extract(nil, psk)}
}

// addShared mixes the (EC)DHE secret in, giving the handshake secret.
func (s *schedule) addShared(shared []byte) {
	s.handshake = extract(deriveSecret(s.early, "derived", emptyHash), shared)
	s.master = extract(deriveSecret(s.handshake, "derived", emptyHash), make([]byte, hashLen))
}

// binderKey is the resumption binder key of the early secret.
func (s *schedule) binderKey() []byte { return deriveSecret(s.early, "res binder", emptyHash) }

// handshakeSecrets are the handshake traffic secrets after ServerHello.
func (s *schedule) handshakeSecrets(th []byte) (client, server []byte) {
	return deriveSecret(s.handshake, "c hs traffic", th), deriveSecret(s.handshake, "s hs traffic", th)
}

// appSecrets are the first application traffic secrets after the
// server's Finished.
func (s *schedule) appSecrets(th []byte) (client, server []byte) {
	return deriveSecret(s.master, "c ap traffic", th), deriveSecret(s.master, "s ap traffic", th)
}

// resumptionSecret is resumption_master_secret after the client's Finished.
func (s *schedule) resumptionSecret(th []byte) []byte {
	return deriveSecret(s.master, "res master", th)
}

// ticketPSK is the PSK of one ticket (RFC 8446 §4.6.1).
func ticketPSK(resumption, nonce []byte) []byte {
	return expandLabel(resumption, "resumption", nonce, hashLen)
}

// finishedMAC is a Finished message's verify_data (RFC 8446 §4.4.4).
func finishedMAC(base, th []byte) []byte {
	m := hmac.New(sm3.New, expandLabel(base, "finished", nil, hashLen))
	m.Write(th)
	return m.Sum(nil)
}

// nextSecret is a traffic secret after KeyUpdate (RFC 8446 §7.2).
func nextSecret(s []byte) []byte { return expandLabel(s, "traffic upd", nil, hashLen) }

// transcript is the running SM3 hash of the handshake messages.
type transcript struct{ h hash.Hash }

func newTranscript() *transcript { return &transcript{h: sm3.New()} }

func (t *transcript) add(msgs ...[]byte) {
	for _, m := range msgs {
		t.h.Write(m)
	}
}

func (t *transcript) sum() []byte { return t.h.Sum(nil) }

// sumWith is the hash of the transcript followed by extra, leaving the
// transcript as it is (a PSK binder covers a truncated ClientHello).
func (t *transcript) sumWith(extra []byte) []byte {
	state, err := t.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("tls13: sm3 state: " + err.Error()) // gmsm's digest always marshals
	}
	h := sm3.New()
	h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
	h.Write(extra)
	return h.Sum(nil)
}

// binder is a PSK binder over the transcript hash th (RFC 8446 §4.2.11.2).
func binder(psk, th []byte) []byte { return finishedMAC(newSchedule(psk).binderKey(), th) }
