package tls13

import (
	"crypto/hmac"
	"encoding/binary"
	"time"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/smx509"
)

// negotiate checks a ClientHello against the configuration: TLS 1.3
// offered, a shared SM suite, sm2sig_sm3 and curveSM2.
func (c *Conn) negotiate(ch *clientHello) (uint16, error) {
	if !has(ch.versions, version13) {
		return 0, alert(alertProtocolVersion)
	}
	if ch.sigAlgs == nil || ch.groups == nil {
		return 0, alert(alertMissingExtension)
	}
	var suite uint16
	for _, s := range c.cfg.suites() {
		if has(ch.suites, s) {
			suite = s
			break
		}
	}
	if suite == 0 || !has(ch.sigAlgs, sigSM2SM3) || !has(ch.groups, groupCurveSM2) {
		return 0, alert(alertHandshakeFailure)
	}
	return suite, nil
}

// selectALPN picks the server's first protocol the client offered; none
// in common is no_application_protocol (RFC 7301 §3.2).
func selectALPN(server, client []string) (string, error) {
	if len(server) == 0 || len(client) == 0 {
		return "", nil
	}
	for _, p := range server {
		for _, q := range client {
			if p == q {
				return p, nil
			}
		}
	}
	return "", alert(alertNoApplicationProtocol)
}

func (c *Conn) readClientHello() ([]byte, *clientHello, error) {
	msg, err := c.readHandshake()
	if err != nil {
		return nil, nil, err
	}
	if msg[0] != msgClientHello {
		return nil, nil, alert(alertUnexpectedMessage)
	}
	ch, err := parseClientHello(msg[4:])
	return msg, ch, err
}

func (c *Conn) serverHandshake() error {
	msg, ch, err := c.readClientHello()
	if err != nil {
		return err
	}
	suite, err := c.negotiate(ch)
	if err != nil {
		return err
	}
	share, ok := ch.keyShares[groupCurveSM2]
	if !ok {
		// HelloRetryRequest for curveSM2 (§4.1.4); the second ClientHello
		// must now carry it and keep to the same suite.
		c.th.add(messageHash(msg))
		hrr := &serverHello{random: helloRetryRandom, sessionID: ch.sessionID, suite: suite, group: groupCurveSM2}
		m := handshakeMsg(msgServerHello, hrr.marshal())
		c.th.add(m)
		if err := c.writeHandshake(m); err != nil {
			return err
		}
		if msg, ch, err = c.readClientHello(); err != nil {
			return err
		}
		s2, err := c.negotiate(ch)
		if err != nil {
			return err
		}
		if share, ok = ch.keyShares[groupCurveSM2]; !ok || len(ch.keyShares) != 1 || s2 != suite {
			return alert(alertIllegalParameter)
		}
		c.state.HelloRetried = true
	}
	psk, err := c.acceptTicket(ch, msg)
	if err != nil {
		return err
	}
	c.th.add(msg)
	cert := c.cfg.Certificate
	if c.cfg.GetCertificate != nil {
		cert = c.cfg.GetCertificate(ch.serverName)
	}
	if cert == nil || len(cert.Chain) == 0 {
		return alert(alertInternalError)
	}
	proto, err := selectALPN(c.cfg.NextProtos, ch.alpn)
	if err != nil {
		return err
	}
	eph, err := keyShare(c.cfg.rand())
	if err != nil {
		return err
	}
	shared, err := sharedSecret(eph, share)
	if err != nil {
		return err
	}
	return c.serverFlight(ch, suite, cert, proto, eph, shared, psk)
}

// acceptTicket returns the PSK of the first ticket offered when it opens
// and its binder (over the transcript and the ClientHello up to the
// binders) is right; nil for a full handshake. A bad binder on a ticket
// that opened is decrypt_error (§4.2.11).
func (c *Conn) acceptTicket(ch *clientHello, msg []byte) ([]byte, error) {
	if len(ch.pskTickets) > 0 && !ch.pskModes {
		return nil, alert(alertMissingExtension) // §4.2.9
	}
	// Tickets carry no client identity: a server requiring client
	// certificates neither issues nor accepts them.
	if c.cfg.TicketKeys == nil || c.cfg.ClientCAs != nil || !ch.pskDHE || len(ch.pskTickets) == 0 {
		return nil, nil
	}
	s, err := c.cfg.TicketKeys.open(ch.pskTickets[0], time.Now())
	if err != nil {
		return nil, nil
	}
	want := binder(s.psk, c.th.sumWith(msg[:len(msg)-ch.bindersLen]))
	if !hmac.Equal(want, ch.binders[0]) {
		return nil, alert(alertDecryptError)
	}
	return s.psk, nil
}

// serverFlight sends ServerHello and the encrypted flight, then reads
// and checks the client's Finished.
func (c *Conn) serverFlight(ch *clientHello, suite uint16, cert *Certificate, proto string, eph *ecdh.PrivateKey, shared, psk []byte) error {
	resumed := psk != nil
	sh := &serverHello{random: make([]byte, 32), sessionID: ch.sessionID, suite: suite, group: groupCurveSM2, share: eph.PublicKey().Bytes(), psk: resumed}
	if _, err := c.cfg.rand().Read(sh.random); err != nil {
		return alert(alertInternalError)
	}
	shMsg := handshakeMsg(msgServerHello, sh.marshal())
	c.th.add(shMsg)
	ks := newSchedule(psk)
	ks.addShared(shared)
	cHS, sHS := ks.handshakeSecrets(c.th.sum())
	inHS, err := newHalf(suite, cHS)
	if err != nil {
		return alert(alertInternalError)
	}
	outHS, err := newHalf(suite, sHS)
	if err != nil {
		return alert(alertInternalError)
	}
	var ee []byte
	if proto != "" {
		ee = appendExt(ee, extALPN, appendVec16(nil, appendVec8(nil, []byte(proto))))
	}
	flight := handshakeMsg(msgEncryptedExtensions, appendVec16(nil, ee))
	c.th.add(flight)
	if c.cfg.ClientCAs != nil && !resumed {
		// CertificateRequest (§4.3.2): empty context, sm2sig_sm3 only.
		sa := appendExt(nil, extSignatureAlgs, appendVec16(nil, binary.BigEndian.AppendUint16(nil, sigSM2SM3)))
		cr := handshakeMsg(msgCertificateRequest, appendVec16([]byte{0}, sa))
		c.th.add(cr)
		flight = append(flight, cr...)
	}
	if !resumed {
		certMsg := handshakeMsg(msgCertificate, certificateMsg(cert.Chain))
		c.th.add(certMsg)
		flight = append(flight, certMsg...)
		cv, err := certificateVerify(cert, c.cfg.rand(), true, c.th.sum())
		if err != nil {
			return err
		}
		c.th.add(cv)
		flight = append(flight, cv...)
	}
	fin := finishedMsg(sHS, c.th.sum())
	c.th.add(fin)
	flight = append(flight, fin...)
	cAP, sAP := ks.appSecrets(c.th.sum())

	c.wmu.Lock()
	c.wbuf = c.out.seal(c.wbuf[:0], recordHandshake, shMsg)
	c.out = outHS
	c.wbuf = c.appendRecords(c.wbuf, recordHandshake, flight)
	_, err = c.raw.Write(c.wbuf)
	if err == nil {
		c.out, err = newHalf(suite, sAP)
	}
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	if err := c.setIn(inHS); err != nil {
		return err
	}
	if c.cfg.ClientCAs != nil && !resumed {
		if err := c.readClientCertificate(); err != nil {
			return err
		}
	}
	want := finishedMAC(cHS, c.th.sum())
	body, err := c.expect(msgFinished)
	if err != nil {
		return err
	}
	if !hmac.Equal(body, want) {
		return alert(alertDecryptError)
	}
	in, err := newHalf(suite, cAP)
	if err != nil {
		return alert(alertInternalError)
	}
	if err := c.setIn(in); err != nil {
		return err
	}
	c.state.CipherSuite, c.state.ALPN, c.state.ServerName, c.state.DidResume = suite, proto, ch.serverName, resumed
	// A ticket after every handshake, resumed ones included, so a client
	// using each ticket once keeps resuming.
	if c.cfg.TicketKeys == nil || c.cfg.ClientCAs != nil {
		return nil
	}
	nst, err := newSessionTicket(c.cfg.TicketKeys, c.cfg.rand(), suite, ks.resumptionSecret(c.th.sum()), time.Now())
	if err != nil {
		return alert(alertInternalError)
	}
	return c.writeHandshake(nst)
}

// readClientCertificate reads the client's Certificate and
// CertificateVerify and verifies them against ClientCAs; an empty
// Certificate is certificate_required (§4.4.2.4).
func (c *Conn) readClientCertificate() error {
	body, err := c.expect(msgCertificate)
	if err != nil {
		return err
	}
	ders, err := parseCertificateMsg(body)
	if err != nil {
		return err
	}
	if len(ders) == 0 {
		return alert(alertCertificateRequired)
	}
	certs, err := verifyChain(ders, true, c.cfg.ClientCAs, "", smx509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	th := c.th.sum()
	if body, err = c.expect(msgCertificateVerify); err != nil {
		return err
	}
	if err := verifyCertificateVerify(certs[0], body, false, th); err != nil {
		return err
	}
	c.state.PeerCertificates = certs
	return nil
}
