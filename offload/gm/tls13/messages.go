package tls13

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// AlertError is a fatal alert: sent by us (Remote false) or received.
type AlertError struct {
	Code   uint8
	Remote bool
}

func (e *AlertError) Error() string {
	if e.Remote {
		return fmt.Sprintf("tls13: alert %d received", e.Code)
	}
	return fmt.Sprintf("tls13: alert %d sent", e.Code)
}

func alert(code uint8) error { return &AlertError{Code: code} }

// Alert descriptions (RFC 8446 §6).
const (
	alertCloseNotify           = 0
	alertUnexpectedMessage     = 10
	alertBadRecordMAC          = 20
	alertRecordOverflow        = 22
	alertHandshakeFailure      = 40
	alertBadCertificate        = 42
	alertIllegalParameter      = 47
	alertDecodeError           = 50
	alertDecryptError          = 51
	alertProtocolVersion       = 70
	alertInternalError         = 80
	alertMissingExtension      = 109
	alertCertificateRequired   = 116
	alertNoApplicationProtocol = 120
	alertUnsupportedExtension  = 110
)

var errUnsupported = errors.New("tls13: unsupported cipher suite")

// Handshake message types (RFC 8446 §4).
const (
	msgClientHello         = 1
	msgServerHello         = 2
	msgNewSessionTicket    = 4
	msgEncryptedExtensions = 8
	msgCertificate         = 11
	msgCertificateRequest  = 13
	msgCertificateVerify   = 15
	msgFinished            = 20
	msgKeyUpdate           = 24
	msgMessageHash         = 254
)

// Extensions used.
const (
	extServerName        = 0
	extSupportedGroups   = 10
	extSignatureAlgs     = 13
	extALPN              = 16
	extSupportedVersions = 43
	extCookie            = 44
	extPreSharedKey      = 41
	extPSKModes          = 45
	extKeyShare          = 51
)

// helloRetryRandom marks a ServerHello as HelloRetryRequest (§4.1.3).
var helloRetryRandom = []byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// Downgrade sentinels a TLS 1.3 server puts in a TLS 1.2/1.1 ServerHello
// random's last 8 bytes (§4.1.3).
var (
	downgrade12 = []byte("DOWNGRD\x01")
	downgrade11 = []byte("DOWNGRD\x00")
)

// reader decodes big-endian vectors; a short read sets bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if n > len(r.b) || r.bad {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() int {
	v := r.take(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (r *reader) u16() int {
	v := r.take(2)
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(v))
}

func (r *reader) vec8() []byte  { return r.take(r.u8()) }
func (r *reader) vec16() []byte { return r.take(r.u16()) }
func (r *reader) vec24() []byte {
	v := r.take(3)
	if v == nil {
		return nil
	}
	return r.take(int(v[0])<<16 | int(v[1])<<8 | int(v[2]))
}

func appendVec8(b, v []byte) []byte { return append(append(b, byte(len(v))), v...) }
func appendVec16(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(v))), v...)
}
func appendVec24(b, v []byte) []byte {
	return append(append(b, byte(len(v)>>16), byte(len(v)>>8), byte(len(v))), v...)
}

func appendExt(b []byte, typ uint16, body []byte) []byte {
	return appendVec16(binary.BigEndian.AppendUint16(b, typ), body)
}

// handshakeMsg frames a handshake message.
func handshakeMsg(typ byte, body []byte) []byte {
	return appendVec24([]byte{typ}, body)
}

func u16s(b []byte) []uint16 {
	out := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		out = append(out, binary.BigEndian.Uint16(b[i:]))
	}
	return out
}

func has(list []uint16, v uint16) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// clientHello is the parsed ClientHello (RFC 8446 §4.1.2).
type clientHello struct {
	random, sessionID []byte
	suites            []uint16
	serverName        string
	versions          []uint16
	groups            []uint16
	sigAlgs           []uint16
	keyShares         map[uint16][]byte
	alpn              []string
	cookie            []byte
	pskModes          bool     // psk_key_exchange_modes present
	pskDHE            bool     // it has psk_dhe_ke
	pskTickets        [][]byte // pre_shared_key identities
	pskAges           []uint32 // their obfuscated ages
	binders           [][]byte
	bindersLen        int // bytes of the binders vector, length included
}

// parseClientHello decodes a ClientHello body; errors are decode_error
// alerts, or illegal_parameter for a well-formed but invalid field.
func parseClientHello(body []byte) (*clientHello, error) {
	r := reader{b: body}
	ch := &clientHello{keyShares: map[uint16][]byte{}}
	r.u16() // legacy_version
	ch.random = r.take(32)
	ch.sessionID = r.vec8()
	suites := r.vec16()
	comp := r.vec8()
	exts := r.vec16()
	if r.bad || len(r.b) != 0 || len(suites)%2 != 0 || len(ch.sessionID) > 32 {
		return nil, alert(alertDecodeError)
	}
	if len(comp) != 1 || comp[0] != 0 {
		return nil, alert(alertIllegalParameter)
	}
	ch.suites = u16s(suites)
	seen := map[uint16]bool{}
	er := reader{b: exts}
	for len(er.b) > 0 {
		typ := uint16(er.u16())
		data := er.vec16()
		if er.bad || seen[typ] {
			return nil, alert(alertDecodeError)
		}
		seen[typ] = true
		x := reader{b: data}
		switch typ {
		case extServerName:
			l := reader{b: x.vec16()}
			for len(l.b) > 0 && !l.bad {
				if kind, name := l.u8(), l.vec16(); kind == 0 && ch.serverName == "" {
					ch.serverName = string(name)
				}
			}
			x.bad = x.bad || l.bad
		case extSupportedVersions:
			v := x.vec8()
			x.bad = x.bad || len(v)%2 != 0
			ch.versions = u16s(v)
		case extSupportedGroups:
			v := x.vec16()
			x.bad = x.bad || len(v)%2 != 0
			ch.groups = u16s(v)
		case extSignatureAlgs:
			v := x.vec16()
			x.bad = x.bad || len(v)%2 != 0
			ch.sigAlgs = u16s(v)
		case extKeyShare:
			l := reader{b: x.vec16()}
			for len(l.b) > 0 && !l.bad {
				g := uint16(l.u16())
				k := l.vec16()
				if _, dup := ch.keyShares[g]; dup {
					return nil, alert(alertIllegalParameter)
				}
				ch.keyShares[g] = k
			}
			x.bad = x.bad || l.bad
		case extALPN:
			l := reader{b: x.vec16()}
			for len(l.b) > 0 && !l.bad {
				p := l.vec8()
				if len(p) == 0 {
					l.bad = true
				}
				ch.alpn = append(ch.alpn, string(p))
			}
			x.bad = x.bad || l.bad
		case extCookie:
			ch.cookie = x.vec16()
		case extPSKModes:
			ch.pskModes = true
			for _, m := range x.vec8() {
				ch.pskDHE = ch.pskDHE || m == 1
			}
		case extPreSharedKey:
			if len(er.b) != 0 {
				return nil, alert(alertIllegalParameter) // must come last (§4.2.11)
			}
			ids := reader{b: x.vec16()}
			for len(ids.b) > 0 && !ids.bad {
				ch.pskTickets = append(ch.pskTickets, ids.vec16())
				age := ids.take(4)
				if age != nil {
					ch.pskAges = append(ch.pskAges, binary.BigEndian.Uint32(age))
				}
			}
			ch.bindersLen = len(x.b)
			bs := reader{b: x.vec16()}
			for len(bs.b) > 0 && !bs.bad {
				ch.binders = append(ch.binders, bs.vec8())
			}
			if ids.bad || bs.bad || len(ch.binders) != len(ch.pskTickets) || len(ch.pskTickets) == 0 {
				return nil, alert(alertDecodeError)
			}
		default:
			x.b = nil
		}
		if x.bad || len(x.b) != 0 {
			return nil, alert(alertDecodeError)
		}
	}
	if er.bad {
		return nil, alert(alertDecodeError)
	}
	return ch, nil
}

// marshalClientHello encodes a ClientHello body.
func (ch *clientHello) marshal() []byte {
	b := binary.BigEndian.AppendUint16(nil, legacyVersion)
	b = append(b, ch.random...)
	b = appendVec8(b, ch.sessionID)
	var s []byte
	for _, id := range ch.suites {
		s = binary.BigEndian.AppendUint16(s, id)
	}
	b = appendVec16(b, s)
	b = append(b, 1, 0)
	var e []byte
	if ch.serverName != "" {
		e = appendExt(e, extServerName, appendVec16(nil, appendVec16([]byte{0}, []byte(ch.serverName))))
	}
	var v []byte
	for _, x := range ch.versions {
		v = binary.BigEndian.AppendUint16(v, x)
	}
	e = appendExt(e, extSupportedVersions, appendVec8(nil, v))
	e = appendExt(e, extSupportedGroups, appendVec16(nil, binary.BigEndian.AppendUint16(nil, groupCurveSM2)))
	e = appendExt(e, extSignatureAlgs, appendVec16(nil, binary.BigEndian.AppendUint16(nil, sigSM2SM3)))
	var ks []byte
	for g, k := range ch.keyShares {
		ks = appendVec16(binary.BigEndian.AppendUint16(ks, g), k)
	}
	e = appendExt(e, extKeyShare, appendVec16(nil, ks))
	if len(ch.cookie) > 0 {
		e = appendExt(e, extCookie, appendVec16(nil, ch.cookie))
	}
	if len(ch.alpn) > 0 {
		var l []byte
		for _, p := range ch.alpn {
			l = appendVec8(l, []byte(p))
		}
		e = appendExt(e, extALPN, appendVec16(nil, l))
	}
	if len(ch.pskTickets) > 0 {
		e = appendExt(e, extPSKModes, []byte{1, 1}) // psk_dhe_ke
		var ids, bs []byte
		for i, t := range ch.pskTickets {
			ids = binary.BigEndian.AppendUint32(appendVec16(ids, t), ch.pskAges[i])
			bs = appendVec8(bs, ch.binders[i])
		}
		e = appendExt(e, extPreSharedKey, appendVec16(appendVec16(nil, ids), bs))
	}
	return appendVec16(b, e)
}

// serverHello is a ServerHello or HelloRetryRequest (§4.1.3).
type serverHello struct {
	random, sessionID []byte
	suite             uint16
	version           uint16 // supported_versions, 0 when absent
	group             uint16 // key_share's group (HRR: selected_group)
	share             []byte // key_share's key, nil in an HRR
	cookie            []byte
	psk               bool // pre_shared_key: the first identity selected
}

func (sh *serverHello) retry() bool { return string(sh.random) == string(helloRetryRandom) }

func (sh *serverHello) marshal() []byte {
	b := binary.BigEndian.AppendUint16(nil, legacyVersion)
	b = append(b, sh.random...)
	b = appendVec8(b, sh.sessionID)
	b = binary.BigEndian.AppendUint16(b, sh.suite)
	b = append(b, 0)
	e := appendExt(nil, extSupportedVersions, binary.BigEndian.AppendUint16(nil, version13))
	if sh.retry() {
		e = appendExt(e, extKeyShare, binary.BigEndian.AppendUint16(nil, sh.group))
	} else {
		e = appendExt(e, extKeyShare, appendVec16(binary.BigEndian.AppendUint16(nil, sh.group), sh.share))
	}
	if len(sh.cookie) > 0 {
		e = appendExt(e, extCookie, appendVec16(nil, sh.cookie))
	}
	if sh.psk {
		e = appendExt(e, extPreSharedKey, []byte{0, 0})
	}
	return appendVec16(b, e)
}

func parseServerHello(body []byte) (*serverHello, error) {
	r := reader{b: body}
	sh := &serverHello{}
	r.u16()
	sh.random = r.take(32)
	sh.sessionID = r.vec8()
	sh.suite = uint16(r.u16())
	comp := r.u8()
	exts := r.b
	if len(exts) > 0 {
		exts = r.vec16()
	}
	if r.bad || len(r.b) != 0 {
		return nil, alert(alertDecodeError)
	}
	if comp != 0 {
		return nil, alert(alertIllegalParameter)
	}
	er := reader{b: exts}
	for len(er.b) > 0 && !er.bad {
		typ := uint16(er.u16())
		x := reader{b: er.vec16()}
		switch typ {
		case extSupportedVersions:
			sh.version = uint16(x.u16())
		case extKeyShare:
			sh.group = uint16(x.u16())
			if len(x.b) > 0 {
				sh.share = x.vec16()
			}
		case extCookie:
			sh.cookie = x.vec16()
		case extPreSharedKey:
			if x.u16() != 0 {
				return nil, alert(alertIllegalParameter) // only one identity is offered
			}
			sh.psk = true
		default:
			return nil, alert(alertUnsupportedExtension)
		}
		if x.bad || len(x.b) != 0 {
			return nil, alert(alertDecodeError)
		}
	}
	if er.bad {
		return nil, alert(alertDecodeError)
	}
	return sh, nil
}

// certificateMsg encodes a Certificate message body (§4.4.2): an empty
// request context, then each DER certificate with no extensions.
func certificateMsg(chain [][]byte) []byte {
	var l []byte
	for _, c := range chain {
		l = appendVec24(l, c)
		l = append(l, 0, 0)
	}
	return appendVec24([]byte{0}, l)
}

func parseCertificateMsg(body []byte) ([][]byte, error) {
	r := reader{b: body}
	ctx := r.vec8()
	l := reader{b: r.vec24()}
	if r.bad || len(r.b) != 0 || len(ctx) != 0 {
		return nil, alert(alertDecodeError)
	}
	var chain [][]byte
	for len(l.b) > 0 && !l.bad {
		chain = append(chain, l.vec24())
		l.vec16() // extensions (OCSP, SCT) ignored
	}
	if l.bad {
		return nil, alert(alertDecodeError)
	}
	return chain, nil
}
