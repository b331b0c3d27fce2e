package tls13

import "encoding/binary"

// Offer is what a ClientHello offers, as a port serving several secure
// protocols needs it to pick one.
type Offer struct {
	// SM: TLS 1.3 with an RFC 8998 suite. Standard: any other suite
	// (signalling values and GREASE aside).
	SM, Standard bool
}

// PeekClientHello reads the ClientHello at the start of a connection's
// first bytes (not consumed). needMore: its record has not all arrived.
// ok false: the bytes are not a TLS handshake record or the ClientHello
// does not parse (or spans several records), which the caller treats as
// not SM.
func PeekClientHello(first []byte) (o Offer, needMore, ok bool) {
	if len(first) == 0 || first[0] != recordHandshake {
		return Offer{}, false, false
	}
	if len(first) < 5 {
		return Offer{}, true, false
	}
	if first[1] != 3 {
		return Offer{}, false, false // TLCP (0x0101) or not TLS
	}
	n := int(binary.BigEndian.Uint16(first[3:]))
	if n > maxPlaintext {
		return Offer{}, false, false
	}
	if len(first) < 5+n {
		return Offer{}, true, false
	}
	msg := first[5 : 5+n]
	if len(msg) < 4 || msg[0] != msgClientHello {
		return Offer{}, false, false
	}
	l := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if 4+l != len(msg) {
		return Offer{}, false, false
	}
	ch, err := parseClientHello(msg[4:])
	if err != nil {
		return Offer{}, false, false
	}
	tls13 := has(ch.versions, version13)
	for _, s := range ch.suites {
		switch {
		case s == TLS_SM4_GCM_SM3 || s == TLS_SM4_CCM_SM3:
			o.SM = o.SM || tls13
		case s == 0x00FF || s == 0x5600 || s&0x0f0f == 0x0a0a:
		default:
			o.Standard = true
		}
	}
	return o, false, true
}
