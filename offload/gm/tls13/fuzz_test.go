package tls13

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// FuzzTLS13SMClientHello feeds arbitrary ClientHello bodies to the parser
// and whole first flights to a server: an error (an alert) or a
// handshake that waits for more, never a panic.
func FuzzTLS13SMClientHello(f *testing.F) {
	k, _ := keyShare(rand.Reader)
	ch := &clientHello{random: make([]byte, 32), sessionID: make([]byte, 32), suites: []uint16{TLS_SM4_GCM_SM3}, versions: []uint16{version13},
		keyShares: map[uint16][]byte{groupCurveSM2: k.PublicKey().Bytes()}, alpn: []string{"h2"}, serverName: "sm.test"}
	f.Add(ch.marshal())
	ch.keyShares = map[uint16][]byte{}
	f.Add(ch.marshal())
	f.Add([]byte{3, 3})
	pki := newPKI(f)
	cfg := &Config{Certificate: pki.issue(f, "sm.test")}
	f.Fuzz(func(t *testing.T, body []byte) {
		if ch, err := parseClientHello(body); err == nil {
			parseClientHello(ch.marshal()) // what parses re-encodes
		}
		if len(body) > 1<<16 {
			return
		}
		in := (*halfConn)(nil).seal(nil, recordHandshake, handshakeMsg(msgClientHello, body))
		for i := 0; i <= len(in); i += 1 + len(in)/8 {
			PeekClientHello(in[:i]) // what the port's inspector does
		}
		if err := Server(&scriptConn{in: bytes.NewReader(in)}, cfg).Handshake(); err == nil {
			t.Fatal("a handshake completed from one flight")
		}
	})
}

// FuzzTLS13SMRecord feeds arbitrary fragments to both suites' record
// opening: only an authentic record (one sealed here) is accepted.
func FuzzTLS13SMRecord(f *testing.F) {
	w, _ := newHalf(TLS_SM4_GCM_SM3, make([]byte, 32))
	f.Add(w.seal(nil, recordApplicationData, []byte("hello")), false)
	f.Add([]byte{23, 3, 3, 0, 17, 1}, true)
	f.Fuzz(func(t *testing.T, rec []byte, ccm bool) {
		if len(rec) < 5 {
			return
		}
		suite := TLS_SM4_GCM_SM3
		if ccm {
			suite = TLS_SM4_CCM_SM3
		}
		r, _ := newHalf(suite, make([]byte, 32))
		orig := append([]byte(nil), rec...)
		typ, p, err := r.open(rec[:5], rec[5:])
		if err != nil {
			return
		}
		// Accepted: it must be what sealing that plaintext gives.
		w, _ := newHalf(suite, make([]byte, 32))
		if again := w.seal(nil, typ, p); !bytes.Equal(again[5:], orig[5:]) || len(p) > maxPlaintext {
			t.Fatalf("accepted a record not sealed with the key")
		}
	})
}

// FuzzTLS13SMServerFlight answers a client's ClientHello with arbitrary
// bytes (records as a server would send them): the client must fail with
// an alert or an I/O error, never panic or complete.
func FuzzTLS13SMServerFlight(f *testing.F) {
	sh := &serverHello{random: make([]byte, 32), sessionID: make([]byte, 32), suite: TLS_SM4_GCM_SM3, group: groupCurveSM2, share: make([]byte, 65)}
	f.Add((*halfConn)(nil).seal(nil, recordHandshake, handshakeMsg(msgServerHello, sh.marshal())))
	hrr := &serverHello{random: helloRetryRandom, sessionID: make([]byte, 32), suite: TLS_SM4_GCM_SM3, group: groupCurveSM2}
	f.Add((*halfConn)(nil).seal(nil, recordHandshake, handshakeMsg(msgServerHello, hrr.marshal())))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := Client(&scriptConn{in: bytes.NewReader(in)}, &Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err := c.Handshake(); err == nil {
			t.Fatal("a handshake completed against replayed bytes")
		}
	})
}
