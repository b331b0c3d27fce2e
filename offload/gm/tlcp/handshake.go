package tlcp

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/subtle"
	"encoding/binary"
	"io"
	"net"
	"slices"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// Handshake message types (§6.4.5.1).
const (
	msgClientHello        = 1
	msgServerHello        = 2
	msgCertificate        = 11
	msgServerKeyExchange  = 12
	msgCertificateRequest = 13
	msgServerHelloDone    = 14
	msgCertificateVerify  = 15
	msgClientKeyExchange  = 16
	msgFinished           = 20

	certTypeECCSign = 64 // ecc_sign
)

func decodeErr() error { return &AlertError{Code: AlertDecodeError} }

// reader walks a message body.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
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
func (r *reader) u24() int {
	v := r.take(3)
	if v == nil {
		return 0
	}
	return int(v[0])<<16 | int(v[1])<<8 | int(v[2])
}
func (r *reader) vec8() []byte  { return r.take(r.u8()) }
func (r *reader) vec16() []byte { return r.take(r.u16()) }
func (r *reader) vec24() []byte { return r.take(r.u24()) }

func appendVec16(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(v))), v...)
}
func appendU24(b []byte, n int) []byte { return append(b, byte(n>>16), byte(n>>8), byte(n)) }

// certificateBody encodes a Certificate message: the signing chain's leaf,
// the encryption certificate, then the rest of the chain (GB/T 38636
// §6.4.5.3: signing certificate first, encryption certificate second).
func certificateBody(sign, enc *Certificate) []byte {
	var list []byte
	if sign != nil && enc != nil && len(sign.Chain) > 0 && len(enc.Chain) > 0 {
		certs := [][]byte{sign.Chain[0], enc.Chain[0]}
		certs = append(certs, sign.Chain[1:]...)
		for _, der := range certs {
			list = append(appendU24(list, len(der)), der...)
		}
	}
	return append(appendU24(nil, len(list)), list...)
}

func parseCertificates(body []byte) ([]*smx509.Certificate, error) {
	r := reader{b: body}
	list := reader{b: r.vec24()}
	if r.bad || len(r.b) != 0 {
		return nil, decodeErr()
	}
	var certs []*smx509.Certificate
	for len(list.b) > 0 {
		der := list.vec24()
		if list.bad {
			return nil, decodeErr()
		}
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, &AlertError{Code: AlertBadCertificate}
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// verifyPeer checks the signing and encryption certificates against roots
// (both must chain to them), the signing one against name when given.
func (c *Conn) verifyPeer(certs []*smx509.Certificate, roots *smx509.CertPool, name string, usage smx509.ExtKeyUsage) error {
	if len(certs) < 2 {
		return &AlertError{Code: AlertBadCertificate}
	}
	for _, k := range certs[:2] {
		if _, ok := k.PublicKey.(*ecdsa.PublicKey); !ok || !sm2.IsSM2PublicKey(k.PublicKey) {
			return &AlertError{Code: AlertUnsupportedCertificate}
		}
	}
	if c.cfg.InsecureSkipVerify {
		return nil
	}
	inter := smx509.NewCertPool()
	for _, x := range certs[2:] {
		inter.AddCert(x)
	}
	for i, leaf := range certs[:2] {
		opts := smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: c.cfg.now(), KeyUsages: []smx509.ExtKeyUsage{usage}}
		if i == 0 {
			opts.DNSName = name
		}
		if _, err := leaf.Verify(opts); err != nil {
			if c.cfg.now().After(leaf.NotAfter) {
				return &AlertError{Code: AlertCertificateExpired}
			}
			return &AlertError{Code: AlertBadCertificate}
		}
	}
	return nil
}

// parseHelloExtensions reads a ClientHello's extensions, if any, and
// returns the server_name (RFC 6066 §3); unknown extensions are skipped.
func parseHelloExtensions(b []byte) (string, error) {
	if len(b) == 0 {
		return "", nil
	}
	r := reader{b: b}
	exts := reader{b: r.vec16()}
	if r.bad || len(r.b) != 0 {
		return "", decodeErr()
	}
	name := ""
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := reader{b: exts.vec16()}
		if exts.bad {
			return "", decodeErr()
		}
		if typ != 0 {
			continue
		}
		list := reader{b: data.vec16()}
		for len(list.b) > 0 && !list.bad {
			kind := list.u8()
			host := list.vec16()
			if kind == 0 && name == "" {
				name = string(host)
			}
		}
		if data.bad || list.bad {
			return "", decodeErr()
		}
	}
	return name, nil
}

// keyExchangeSigned is what the ECC ServerKeyExchange signs: both randoms
// and the encryption certificate (§6.4.5.4).
func keyExchangeSigned(clientRandom, serverRandom, encCert []byte) []byte {
	m := append(append([]byte(nil), clientRandom...), serverRandom...)
	return append(appendU24(m, len(encCert)), encCert...)
}

// sign signs msg with an SM2 key (SM3 with the default user ID, ASN.1).
func sign(key crypto.PrivateKey, rnd io.Reader, msg []byte) ([]byte, error) {
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, &AlertError{Code: AlertInternalError}
	}
	sig, err := s.Sign(rnd, msg, sm2.DefaultSM2SignerOpts)
	if err != nil {
		return nil, &AlertError{Code: AlertInternalError}
	}
	return sig, nil
}

func verify(cert *smx509.Certificate, msg, sig []byte) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && sm2.VerifyASN1WithSM2(pub, nil, msg, sig)
}

// curveSM2 is the named curve TLCP implementations put in ECDHE
// parameters (GmSSL and Tongsuo: 30); any id is accepted when reading.
const curveSM2 = 30

// ecdheParams encodes ECParameters (named_curve, SM2) and the point.
func ecdheParams(pub *ecdh.PublicKey) []byte {
	pt := pub.Bytes()
	return append([]byte{3, 0, curveSM2, byte(len(pt))}, pt...)
}

// splitECDHEParams cuts the parameters off a ServerKeyExchange.
func splitECDHEParams(b []byte) (params, rest []byte, err error) {
	if len(b) < 4 || b[0] != 3 || len(b) < 4+int(b[3]) {
		return nil, nil, decodeErr()
	}
	n := 4 + int(b[3])
	return b[:n], b[n:], nil
}

// parseECDHEParams reads ECParameters and an SM2 point; a ClientKeyExchange
// may also wrap them in a 2-byte length (both forms are seen in the wild).
func parseECDHEParams(b []byte) (*ecdh.PublicKey, error) {
	if len(b) > 2 && b[0] != 3 && int(binary.BigEndian.Uint16(b)) == len(b)-2 {
		b = b[2:]
	}
	params, rest, err := splitECDHEParams(b)
	if err != nil || len(rest) != 0 {
		return nil, decodeErr()
	}
	pub, err := ecdh.P256().NewPublicKey(params[4:])
	if err != nil {
		return nil, &AlertError{Code: AlertIllegalParameter}
	}
	return pub, nil
}

// ecdhKey is an encryption certificate's key usable for SM2 key agreement
// (an in-memory SM2 key; an HSM-held one offers only Decrypt).
func ecdhKey(c *Certificate) *ecdh.PrivateKey {
	if c == nil {
		return nil
	}
	k, ok := c.Key.(interface {
		ECDH() (*ecdh.PrivateKey, error)
	})
	if !ok {
		return nil
	}
	e, err := k.ECDH()
	if err != nil {
		return nil
	}
	return e
}

// sm2UID is the default SM2 user ID both sides use.
var sm2UID = []byte("1234567812345678")

// sm2Agree derives the 48-byte premaster secret with the SM2 key agreement
// protocol (GB/T 32918.3): own static (encryption) and ephemeral keys, the
// peer's encryption certificate and ephemeral key. In TLCP the server is
// the initiator (its Z comes first in the KDF input) and the client the
// responder, as Tongsuo and openHiTLS compute it; the GB/T 32918.3 vector in
// TestSM2PublishedVectors pins the order.
func sm2Agree(server bool, static, eph *ecdh.PrivateKey, peerCert *smx509.Certificate, peerEph *ecdh.PublicKey) ([]byte, error) {
	pub, ok := peerCert.PublicKey.(*ecdsa.PublicKey)
	if !ok || static == nil {
		return nil, &AlertError{Code: AlertUnsupportedCertificate}
	}
	peerStatic, err := sm2.PublicKeyToECDH(pub)
	if err != nil {
		return nil, &AlertError{Code: AlertUnsupportedCertificate}
	}
	uv, err := static.SM2MQV(eph, peerStatic, peerEph)
	if err != nil {
		return nil, &AlertError{Code: AlertIllegalParameter}
	}
	pre, err := uv.SM2SharedKey(!server, 48, static.PublicKey(), peerStatic, sm2UID, sm2UID)
	if err != nil {
		return nil, &AlertError{Code: AlertInternalError}
	}
	return pre, nil
}

func (c *Conn) serverHandshake() error {
	typ, body, err := c.readHandshake()
	if err != nil {
		return err
	}
	if typ != msgClientHello {
		return &AlertError{Code: AlertUnexpectedMessage}
	}
	r := reader{b: body}
	version := r.u16()
	clientRandom := r.take(32)
	offeredSID := r.vec8()
	suitesRaw := r.vec16()
	comp := r.vec8()
	if r.bad || len(suitesRaw)%2 != 0 || !slices.Contains(comp, 0) {
		return decodeErr()
	}
	serverName, err := parseHelloExtensions(r.b)
	if err != nil {
		return err
	}
	cfg := c.cfg
	if cfg.GetCertificates != nil {
		// A per-connection copy with the certificates for this name.
		cp := *cfg
		cp.SignCert, cp.EncCert = cfg.GetCertificates(serverName)
		cfg = &cp
		c.cfg = cfg
	}
	if cfg.SignCert == nil || cfg.EncCert == nil {
		return &AlertError{Code: AlertInternalError}
	}
	if version != VersionTLCP {
		return &AlertError{Code: AlertProtocolVersion}
	}
	var chosen uint16
	canECDHE := ecdhKey(cfg.EncCert) != nil && cfg.ClientCAs != nil
	for _, s := range cfg.suites() {
		if !slices.Contains(supported, s) || suites[s].ecdhe && !canECDHE {
			continue
		}
		for i := 0; i < len(suitesRaw); i += 2 {
			if binary.BigEndian.Uint16(suitesRaw[i:]) == s {
				chosen = s
				break
			}
		}
		if chosen != 0 {
			break
		}
	}
	if chosen == 0 {
		return &AlertError{Code: AlertHandshakeFailure}
	}
	serverRandom := make([]byte, 32)
	binary.BigEndian.PutUint32(serverRandom, uint32(cfg.now().Unix()))
	c.random(serverRandom[4:])
	if len(offeredSID) > 0 {
		if old := cfg.SessionCache.get(string(offeredSID), cfg.now()); old != nil && offersSuite(suitesRaw, old.suite) {
			return c.serverResume(old, clientRandom, serverRandom)
		}
	}
	st := suites[chosen]
	sid := make([]byte, 32)
	c.random(sid)

	var flight []byte
	sh := binary.BigEndian.AppendUint16(nil, VersionTLCP)
	sh = append(sh, serverRandom...)
	sh = append(append(sh, byte(len(sid))), sid...)
	sh = binary.BigEndian.AppendUint16(sh, chosen)
	sh = append(sh, 0)
	flight = c.handshakeMsg(flight, msgServerHello, sh)
	flight = c.handshakeMsg(flight, msgCertificate, certificateBody(cfg.SignCert, cfg.EncCert))
	var eph *ecdh.PrivateKey
	var ske []byte
	if st.ecdhe {
		if eph, err = ecdh.P256().GenerateKey(cfg.rand()); err != nil {
			return &AlertError{Code: AlertInternalError}
		}
		ske = ecdheParams(eph.PublicKey())
		signed := append(append(append([]byte(nil), clientRandom...), serverRandom...), ske...)
		sig, err := sign(cfg.SignCert.Key, cfg.rand(), signed)
		if err != nil {
			return err
		}
		ske = appendVec16(ske, sig)
	} else {
		sig, err := sign(cfg.SignCert.Key, cfg.rand(), keyExchangeSigned(clientRandom, serverRandom, cfg.EncCert.Chain[0]))
		if err != nil {
			return err
		}
		ske = appendVec16(nil, sig)
	}
	flight = c.handshakeMsg(flight, msgServerKeyExchange, ske)
	needCert := cfg.ClientAuth == RequireAndVerifyClientCert || st.ecdhe
	if needCert {
		cr := []byte{1, certTypeECCSign}
		cr = binary.BigEndian.AppendUint16(cr, 0) // any CA
		flight = c.handshakeMsg(flight, msgCertificateRequest, cr)
	}
	flight = c.handshakeMsg(flight, msgServerHelloDone, nil)
	c.wmu.Lock()
	err = c.writeRecords(recordHandshake, flight)
	c.wmu.Unlock()
	if err != nil {
		return err
	}

	var clientCerts []*smx509.Certificate
	if needCert {
		if typ, body, err = c.readHandshake(); err != nil {
			return err
		}
		if typ != msgCertificate {
			return &AlertError{Code: AlertUnexpectedMessage}
		}
		if clientCerts, err = parseCertificates(body); err != nil {
			return err
		}
		if len(clientCerts) == 0 {
			return &AlertError{Code: AlertHandshakeFailure} // required, not sent
		}
		if err := c.verifyPeer(clientCerts, cfg.ClientCAs, "", smx509.ExtKeyUsageClientAuth); err != nil {
			return err
		}
	}
	if typ, body, err = c.readHandshake(); err != nil {
		return err
	}
	if typ != msgClientKeyExchange {
		return &AlertError{Code: AlertUnexpectedMessage}
	}
	var pre []byte
	if st.ecdhe {
		peerEph, err := parseECDHEParams(body)
		if err != nil {
			return err
		}
		if pre, err = sm2Agree(true, ecdhKey(cfg.EncCert), eph, clientCerts[1], peerEph); err != nil {
			return err
		}
	} else {
		r = reader{b: body}
		ct := r.vec16()
		if r.bad || len(r.b) != 0 {
			return decodeErr()
		}
		dec, ok := cfg.EncCert.Key.(crypto.Decrypter)
		if !ok {
			return &AlertError{Code: AlertInternalError}
		}
		if pre, err = dec.Decrypt(cfg.rand(), ct, nil); err != nil || len(pre) != 48 || binary.BigEndian.Uint16(pre) != VersionTLCP {
			return &AlertError{Code: AlertDecryptError}
		}
	}
	if len(clientCerts) > 0 {
		digest := c.transcriptHash()
		if typ, body, err = c.readHandshake(); err != nil {
			return err
		}
		if typ != msgCertificateVerify {
			return &AlertError{Code: AlertUnexpectedMessage}
		}
		r = reader{b: body}
		sig := r.vec16()
		if r.bad || !verify(clientCerts[0], digest[:], sig) {
			return &AlertError{Code: AlertDecryptError}
		}
	}
	master := masterSecret(pre, clientRandom, serverRandom)
	mk := newPRF(master)
	cMAC, sMAC, cKey, sKey, cIV, sIV := st.keys(mk, clientRandom, serverRandom)
	in, err := newHalf(st, cMAC, cKey, cIV)
	if err != nil {
		return err
	}
	out, err := newHalf(st, sMAC, sKey, sIV)
	if err != nil {
		return err
	}
	if err := c.expectChangeCipherSpec(in); err != nil {
		return err
	}
	want := finishedSum(mk, "client finished", c.transcriptHash())
	if typ, body, err = c.readHandshake(); err != nil {
		return err
	}
	if typ != msgFinished || subtle.ConstantTimeCompare(body, want) != 1 {
		return &AlertError{Code: AlertDecryptError}
	}
	fin := c.handshakeMsg(nil, msgFinished, finishedSum(mk, "server finished", c.transcriptHash()))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.state = ConnectionState{CipherSuite: chosen, PeerCertificates: clientCerts}
	if err := c.writeFinished(nil, out, fin); err != nil {
		return err
	}
	cfg.SessionCache.put(string(sid), &session{id: sid, master: master, suite: chosen, peer: clientCerts, created: cfg.now()})
	return nil
}

func offersSuite(raw []byte, id uint16) bool {
	for i := 0; i+1 < len(raw); i += 2 {
		if binary.BigEndian.Uint16(raw[i:]) == id {
			return true
		}
	}
	return false
}

// keysFor makes both directions' protection from a master secret;
// client says which side this is.
func keysFor(st suite, master prfKey, clientRandom, serverRandom []byte, client bool) (in, out *halfConn, err error) {
	cMAC, sMAC, cKey, sKey, cIV, sIV := st.keys(master, clientRandom, serverRandom)
	ch, err := newHalf(st, cMAC, cKey, cIV)
	if err != nil {
		return nil, nil, err
	}
	sh, err := newHalf(st, sMAC, sKey, sIV)
	if err != nil {
		return nil, nil, err
	}
	if client {
		return sh, ch, nil
	}
	return ch, sh, nil
}

// serverResume finishes an abbreviated handshake: ServerHello with the
// old session ID, then the server's ChangeCipherSpec and Finished first.
func (c *Conn) serverResume(old *session, clientRandom, serverRandom []byte) error {
	sh := binary.BigEndian.AppendUint16(nil, VersionTLCP)
	sh = append(sh, serverRandom...)
	sh = append(append(sh, byte(len(old.id))), old.id...)
	sh = binary.BigEndian.AppendUint16(sh, old.suite)
	sh = append(sh, 0)
	hello := c.handshakeMsg(nil, msgServerHello, sh)
	mk := newPRF(old.master)
	in, out, err := keysFor(suites[old.suite], mk, clientRandom, serverRandom, false)
	if err != nil {
		return err
	}
	fin := c.handshakeMsg(nil, msgFinished, finishedSum(mk, "server finished", c.transcriptHash()))
	c.wmu.Lock()
	err = c.writeFinished(hello, out, fin)
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	if err := c.expectChangeCipherSpec(in); err != nil {
		return err
	}
	want := finishedSum(mk, "client finished", c.transcriptHash())
	typ, body, err := c.readHandshake()
	if err != nil {
		return err
	}
	if typ != msgFinished || subtle.ConstantTimeCompare(body, want) != 1 {
		return &AlertError{Code: AlertDecryptError}
	}
	c.state = ConnectionState{DidResume: true, CipherSuite: old.suite, PeerCertificates: old.peer}
	return nil
}

func (c *Conn) clientHandshake() error {
	cfg := c.cfg
	clientRandom := make([]byte, 32)
	binary.BigEndian.PutUint32(clientRandom, uint32(cfg.now().Unix()))
	c.random(clientRandom[4:])
	cacheKey := cfg.ServerName + "|" + c.raw.RemoteAddr().String()
	old := cfg.SessionCache.get(cacheKey, cfg.now())
	ch := binary.BigEndian.AppendUint16(nil, VersionTLCP)
	ch = append(ch, clientRandom...)
	if old != nil {
		ch = append(append(ch, byte(len(old.id))), old.id...)
	} else {
		ch = append(ch, 0)
	}
	offered := cfg.offerable()
	if len(offered) == 0 {
		return &AlertError{Code: AlertHandshakeFailure}
	}
	var suitesRaw []byte
	for _, s := range offered {
		suitesRaw = binary.BigEndian.AppendUint16(suitesRaw, s)
	}
	ch = appendVec16(ch, suitesRaw)
	ch = append(ch, 1, 0) // null compression
	if name := cfg.ServerName; name != "" && net.ParseIP(name) == nil {
		// server_name (RFC 6066), which GM/T 0024-2023 carries over.
		entry := append([]byte{0}, appendVec16(nil, []byte(name))...)
		ext := binary.BigEndian.AppendUint16(nil, 0)
		ext = appendVec16(ext, appendVec16(nil, entry))
		ch = appendVec16(ch, ext)
	}
	c.wmu.Lock()
	err := c.writeRecords(recordHandshake, c.handshakeMsg(nil, msgClientHello, ch))
	c.wmu.Unlock()
	if err != nil {
		return err
	}

	typ, body, err := c.readHandshake()
	if err != nil {
		return err
	}
	if typ != msgServerHello {
		return &AlertError{Code: AlertUnexpectedMessage}
	}
	r := reader{b: body}
	version := r.u16()
	serverRandom := r.take(32)
	sid := r.vec8()
	chosen := uint16(r.u16())
	comp := r.u8()
	if r.bad {
		return decodeErr()
	}
	if version != VersionTLCP {
		return &AlertError{Code: AlertProtocolVersion}
	}
	if !slices.Contains(offered, chosen) || !slices.Contains(supported, chosen) || comp != 0 {
		return &AlertError{Code: AlertIllegalParameter}
	}
	if old != nil && len(sid) > 0 && bytes.Equal(sid, old.id) {
		if chosen != old.suite {
			return &AlertError{Code: AlertIllegalParameter}
		}
		return c.clientResume(old, clientRandom, serverRandom)
	}
	cfg.SessionCache.remove(cacheKey)
	st := suites[chosen]
	if typ, body, err = c.readHandshake(); err != nil {
		return err
	}
	if typ != msgCertificate {
		return &AlertError{Code: AlertUnexpectedMessage}
	}
	serverCerts, err := parseCertificates(body)
	if err != nil {
		return err
	}
	if err := c.verifyPeer(serverCerts, cfg.RootCAs, cfg.ServerName, smx509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	if typ, body, err = c.readHandshake(); err != nil {
		return err
	}
	if typ != msgServerKeyExchange {
		return &AlertError{Code: AlertUnexpectedMessage}
	}
	var serverEph *ecdh.PublicKey
	if st.ecdhe {
		params, rest, err := splitECDHEParams(body)
		if err != nil {
			return err
		}
		if serverEph, err = parseECDHEParams(params); err != nil {
			return err
		}
		r = reader{b: rest}
		sig := r.vec16()
		signed := append(append(append([]byte(nil), clientRandom...), serverRandom...), params...)
		if r.bad || len(r.b) != 0 || !verify(serverCerts[0], signed, sig) {
			return &AlertError{Code: AlertDecryptError}
		}
	} else {
		r = reader{b: body}
		sig := r.vec16()
		if r.bad || !verify(serverCerts[0], keyExchangeSigned(clientRandom, serverRandom, serverCerts[1].Raw), sig) {
			return &AlertError{Code: AlertDecryptError}
		}
	}
	if typ, body, err = c.readHandshake(); err != nil {
		return err
	}
	certRequested := false
	if typ == msgCertificateRequest {
		certRequested = true
		if typ, body, err = c.readHandshake(); err != nil {
			return err
		}
	}
	if typ != msgServerHelloDone || len(body) != 0 {
		return &AlertError{Code: AlertUnexpectedMessage}
	}

	var flight []byte
	sendCert := certRequested && cfg.SignCert != nil && cfg.EncCert != nil
	if certRequested {
		if sendCert {
			flight = c.handshakeMsg(flight, msgCertificate, certificateBody(cfg.SignCert, cfg.EncCert))
		} else {
			flight = c.handshakeMsg(flight, msgCertificate, certificateBody(nil, nil))
		}
	}
	var pre []byte
	if st.ecdhe {
		own := ecdhKey(cfg.EncCert)
		if !sendCert || own == nil {
			return &AlertError{Code: AlertHandshakeFailure} // SM2 key agreement needs our encryption key
		}
		eph, err := ecdh.P256().GenerateKey(cfg.rand())
		if err != nil {
			return &AlertError{Code: AlertInternalError}
		}
		if pre, err = sm2Agree(false, own, eph, serverCerts[1], serverEph); err != nil {
			return err
		}
		flight = c.handshakeMsg(flight, msgClientKeyExchange, ecdheParams(eph.PublicKey()))
	} else {
		pre = make([]byte, 48)
		binary.BigEndian.PutUint16(pre, VersionTLCP)
		c.random(pre[2:])
		encPub, ok := serverCerts[1].PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return &AlertError{Code: AlertUnsupportedCertificate}
		}
		ct, err := sm2.EncryptASN1(cfg.rand(), encPub, pre)
		if err != nil {
			return &AlertError{Code: AlertInternalError}
		}
		flight = c.handshakeMsg(flight, msgClientKeyExchange, appendVec16(nil, ct))
	}
	if sendCert {
		digest := c.transcriptHash()
		sig, err := sign(cfg.SignCert.Key, cfg.rand(), digest[:])
		if err != nil {
			return err
		}
		flight = c.handshakeMsg(flight, msgCertificateVerify, appendVec16(nil, sig))
	}
	master := masterSecret(pre, clientRandom, serverRandom)
	mk := newPRF(master)
	cMAC, sMAC, cKey, sKey, cIV, sIV := st.keys(mk, clientRandom, serverRandom)
	out, err := newHalf(st, cMAC, cKey, cIV)
	if err != nil {
		return err
	}
	in, err := newHalf(st, sMAC, sKey, sIV)
	if err != nil {
		return err
	}
	fin := finishedSum(mk, "client finished", c.transcriptHash())
	c.wmu.Lock()
	err = c.writeFinished(flight, out, c.handshakeMsg(nil, msgFinished, fin))
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	if err := c.expectChangeCipherSpec(in); err != nil {
		return err
	}
	want := finishedSum(mk, "server finished", c.transcriptHash())
	if typ, body, err = c.readHandshake(); err != nil {
		return err
	}
	if typ != msgFinished || !bytes.Equal(body, want) {
		return &AlertError{Code: AlertDecryptError}
	}
	c.state = ConnectionState{CipherSuite: chosen, PeerCertificates: serverCerts}
	if len(sid) > 0 {
		cfg.SessionCache.put(cacheKey, &session{id: append([]byte(nil), sid...), master: master, suite: chosen, peer: serverCerts, created: cfg.now()})
	}
	return nil
}

// clientResume finishes an abbreviated handshake: the server's
// ChangeCipherSpec and Finished, then ours.
func (c *Conn) clientResume(old *session, clientRandom, serverRandom []byte) error {
	mk := newPRF(old.master)
	in, out, err := keysFor(suites[old.suite], mk, clientRandom, serverRandom, true)
	if err != nil {
		return err
	}
	if err := c.expectChangeCipherSpec(in); err != nil {
		return err
	}
	want := finishedSum(mk, "server finished", c.transcriptHash())
	typ, body, err := c.readHandshake()
	if err != nil {
		return err
	}
	if typ != msgFinished || !bytes.Equal(body, want) {
		return &AlertError{Code: AlertDecryptError}
	}
	fin := c.handshakeMsg(nil, msgFinished, finishedSum(mk, "client finished", c.transcriptHash()))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeFinished(nil, out, fin); err != nil {
		return err
	}
	c.state = ConnectionState{DidResume: true, CipherSuite: old.suite, PeerCertificates: old.peer}
	return nil
}
