package tls13

import (
	"bytes"
	"crypto/hmac"
	"net"
	"time"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

func (c *Conn) clientHandshake() error {
	cfg := c.cfg
	ch := &clientHello{random: make([]byte, 32), sessionID: make([]byte, 32), suites: cfg.suites(),
		versions: []uint16{version13}, alpn: cfg.NextProtos, keyShares: map[uint16][]byte{}}
	if _, err := cfg.rand().Read(ch.random); err != nil {
		return alert(alertInternalError)
	}
	cfg.rand().Read(ch.sessionID) // middlebox compatibility (RFC 8446 §D.4)
	if n := cfg.ServerName; n != "" && net.ParseIP(n) == nil {
		ch.serverName = n
	}
	eph, err := keyShare(cfg.rand())
	if err != nil {
		return err
	}
	if !cfg.noInitialShare {
		ch.keyShares[groupCurveSM2] = eph.PublicKey().Bytes()
	}
	sess := cfg.SessionCache.take(c.sessionKey(), time.Now())
	chMsg := c.hello(ch, sess)
	if err := c.writeHandshake(chMsg); err != nil {
		return err
	}
	sh, shMsg, err := c.readServerHello(ch)
	if err != nil {
		return err
	}
	if sh.retry() {
		if sh.group != groupCurveSM2 || len(ch.keyShares) != 0 && ch.keyShares[groupCurveSM2] != nil {
			return alert(alertIllegalParameter) // a retry must change something (§4.1.4)
		}
		c.th.add(messageHash(chMsg), shMsg)
		ch.keyShares[groupCurveSM2] = eph.PublicKey().Bytes()
		ch.cookie = sh.cookie
		chMsg = c.hello(ch, sess)
		if err := c.writeHandshake(chMsg); err != nil {
			return err
		}
		hrrSuite := sh.suite
		if sh, shMsg, err = c.readServerHello(ch); err != nil {
			return err
		}
		if sh.retry() || sh.suite != hrrSuite {
			return alert(alertIllegalParameter)
		}
		c.state.HelloRetried = true
	}
	if sh.group != groupCurveSM2 || sh.share == nil || sh.psk && sess == nil {
		return alert(alertIllegalParameter)
	}
	c.th.add(chMsg, shMsg)
	shared, err := sharedSecret(eph, sh.share)
	if err != nil {
		return err
	}
	var psk []byte
	if sh.psk {
		psk = sess.psk
	}
	return c.clientFlight(sh.suite, eph, shared, psk)
}

// hello encodes the ClientHello, offering sess's ticket when there is one
// (pre_shared_key last, its binder over the transcript so far and the
// hello up to the binders: RFC 8446 §4.2.11.2).
func (c *Conn) hello(ch *clientHello, sess *session) []byte {
	if sess == nil {
		return handshakeMsg(msgClientHello, ch.marshal())
	}
	age := uint32(time.Since(sess.created)/time.Millisecond) + sess.ageAdd
	ch.pskTickets, ch.pskAges, ch.binders = [][]byte{sess.ticket}, []uint32{age}, [][]byte{make([]byte, hashLen)}
	msg := handshakeMsg(msgClientHello, ch.marshal())
	truncated := msg[:len(msg)-(2+1+hashLen)]
	copy(msg[len(msg)-hashLen:], binder(sess.psk, c.th.sumWith(truncated)))
	return msg
}

// readServerHello reads a ServerHello or HelloRetryRequest and checks it
// against what was offered: TLS 1.3 (a TLS 1.2 answer is a downgrade, its
// sentinel an attack: RFC 8446 §4.1.3), an offered suite, the echoed
// session ID.
func (c *Conn) readServerHello(ch *clientHello) (*serverHello, []byte, error) {
	msg, err := c.readHandshake()
	if err != nil {
		return nil, nil, err
	}
	if msg[0] != msgServerHello {
		return nil, nil, alert(alertUnexpectedMessage)
	}
	sh, err := parseServerHello(msg[4:])
	if err != nil {
		return nil, nil, err
	}
	if sh.version != version13 {
		if tail := sh.random[24:]; bytes.Equal(tail, downgrade12) || bytes.Equal(tail, downgrade11) {
			return nil, nil, alert(alertIllegalParameter)
		}
		return nil, nil, alert(alertProtocolVersion)
	}
	if !has(ch.suites, sh.suite) || !bytes.Equal(sh.sessionID, ch.sessionID) {
		return nil, nil, alert(alertIllegalParameter)
	}
	return sh, msg, nil
}

// clientFlight reads the server's encrypted flight, checks it and sends
// the client's Finished.
func (c *Conn) clientFlight(suite uint16, eph *ecdh.PrivateKey, shared, psk []byte) error {
	resumed := psk != nil
	ks := newSchedule(psk)
	ks.addShared(shared)
	cHS, sHS := ks.handshakeSecrets(c.th.sum())
	inHS, err := newHalf(suite, sHS)
	if err != nil {
		return alert(alertInternalError)
	}
	outHS, err := newHalf(suite, cHS)
	if err != nil {
		return alert(alertInternalError)
	}
	if err := c.setIn(inHS); err != nil {
		return err
	}
	body, err := c.expect(msgEncryptedExtensions)
	if err != nil {
		return err
	}
	proto, err := c.parseEncryptedExtensions(body)
	if err != nil {
		return err
	}
	if resumed {
		return c.clientFinish(ks, suite, sHS, cHS, outHS, proto, false, nil)
	}
	msg, err := c.readHandshake()
	if err != nil {
		return err
	}
	certRequested := msg[0] == msgCertificateRequest
	if certRequested {
		c.th.add(msg)
		if msg, err = c.readHandshake(); err != nil {
			return err
		}
	}
	if msg[0] != msgCertificate {
		return alert(alertUnexpectedMessage)
	}
	c.th.add(msg)
	certs, err := c.verifyServer(msg[4:])
	if err != nil {
		return err
	}
	th := c.th.sum()
	if body, err = c.expect(msgCertificateVerify); err != nil {
		return err
	}
	if err := verifyCertificateVerify(certs[0], body, true, th); err != nil {
		return err
	}
	return c.clientFinish(ks, suite, sHS, cHS, outHS, proto, certRequested, certs)
}

// clientFinish checks the server's Finished, answers a certificate
// request and sends the client's Finished.
func (c *Conn) clientFinish(ks *schedule, suite uint16, sHS, cHS []byte, outHS *halfConn, proto string, certRequested bool, certs []*smx509.Certificate) error {
	want := finishedMAC(sHS, c.th.sum())
	body, err := c.expect(msgFinished)
	if err != nil {
		return err
	}
	if !hmac.Equal(body, want) {
		return alert(alertDecryptError)
	}
	cAP, sAP := ks.appSecrets(c.th.sum())
	var flight []byte
	if certRequested {
		// Our certificate when configured (signed as a client), else an
		// empty Certificate: the server decides whether that will do.
		var chain [][]byte
		if cfg := c.cfg; cfg.Certificate != nil {
			chain = cfg.Certificate.Chain
		}
		cm := handshakeMsg(msgCertificate, certificateMsg(chain))
		c.th.add(cm)
		flight = cm
		if chain != nil {
			cv, err := certificateVerify(c.cfg.Certificate, c.cfg.rand(), false, c.th.sum())
			if err != nil {
				return err
			}
			c.th.add(cv)
			flight = append(flight, cv...)
		}
	}
	fin := finishedMsg(cHS, c.th.sum())
	c.th.add(fin)
	flight = append(flight, fin...)
	if c.cfg.SessionCache != nil {
		c.resumption = ks.resumptionSecret(c.th.sum())
	}
	in, err := newHalf(suite, sAP)
	if err != nil {
		return alert(alertInternalError)
	}
	if err := c.setIn(in); err != nil {
		return err
	}
	c.wmu.Lock()
	c.out = outHS
	c.wbuf = c.appendRecords(c.wbuf[:0], recordHandshake, flight)
	_, err = c.raw.Write(c.wbuf)
	if err == nil {
		c.out, err = newHalf(suite, cAP)
	}
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	c.state.CipherSuite, c.state.ALPN, c.state.PeerCertificates, c.state.DidResume = suite, proto, certs, certs == nil
	return nil
}

// parseEncryptedExtensions returns the ALPN protocol the server chose,
// which must be one offered.
func (c *Conn) parseEncryptedExtensions(body []byte) (string, error) {
	r := reader{b: body}
	exts := reader{b: r.vec16()}
	if r.bad || len(r.b) != 0 {
		return "", alert(alertDecodeError)
	}
	proto := ""
	for len(exts.b) > 0 && !exts.bad {
		typ := exts.u16()
		x := reader{b: exts.vec16()}
		if typ != extALPN {
			continue
		}
		l := reader{b: x.vec16()}
		p := l.vec8()
		if l.bad || x.bad || len(l.b) != 0 || len(x.b) != 0 || len(p) == 0 {
			return "", alert(alertDecodeError)
		}
		proto = string(p)
		offered := false
		for _, q := range c.cfg.NextProtos {
			offered = offered || q == proto
		}
		if !offered {
			return "", alert(alertIllegalParameter)
		}
	}
	if exts.bad {
		return "", alert(alertDecodeError)
	}
	return proto, nil
}

// verifyServer parses the server's chain and verifies it against the
// roots and the server name.
func (c *Conn) verifyServer(body []byte) ([]*smx509.Certificate, error) {
	ders, err := parseCertificateMsg(body)
	if err != nil {
		return nil, err
	}
	if len(ders) == 0 {
		return nil, alert(alertDecodeError)
	}
	return verifyChain(ders, !c.cfg.InsecureSkipVerify, c.cfg.RootCAs, c.cfg.ServerName, smx509.ExtKeyUsageServerAuth)
}

// verifyChain parses a peer's chain (leaf first, an SM2 key) and, when
// verify, verifies it against roots (nil: the system's) for usage and
// name (when given).
func verifyChain(ders [][]byte, verify bool, roots *smx509.CertPool, name string, usage smx509.ExtKeyUsage) ([]*smx509.Certificate, error) {
	certs := make([]*smx509.Certificate, len(ders))
	for i, d := range ders {
		var err error
		if certs[i], err = smx509.ParseCertificate(d); err != nil {
			return nil, alert(alertBadCertificate)
		}
	}
	if !sm2.IsSM2PublicKey(certs[0].PublicKey) {
		return nil, alert(alertBadCertificate)
	}
	if !verify {
		return certs, nil
	}
	inter := smx509.NewCertPool()
	for _, x := range certs[1:] {
		inter.AddCert(x)
	}
	opts := smx509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, KeyUsages: []smx509.ExtKeyUsage{usage}}
	if _, err := certs[0].Verify(opts); err != nil {
		return nil, alert(alertBadCertificate)
	}
	return certs, nil
}
