package tls13

import (
	"crypto/ecdsa"
	"encoding/binary"
	"io"

	"github.com/emmansun/gmsm/ecdh"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// sm2TLSID is the SM2 distinguishing identifier sm2sig_sm3 signs with in
// TLS 1.3 (RFC 8998 §3.2.1), instead of the default 1234567812345678.
var sm2TLSID = []byte("TLSv1.3+GM+Cipher+Suite")

// signedContent is what a CertificateVerify signs (RFC 8446 §4.4.3).
func signedContent(server bool, th []byte) []byte {
	b := make([]byte, 64, 64+34+len(th))
	for i := range b {
		b[i] = 0x20
	}
	if server {
		b = append(b, "TLS 1.3, server CertificateVerify"...)
	} else {
		b = append(b, "TLS 1.3, client CertificateVerify"...)
	}
	return append(append(b, 0), th...)
}

// certificateVerify signs the transcript with an SM2 key (sm2sig_sm3).
func certificateVerify(cert *Certificate, rnd io.Reader, server bool, th []byte) ([]byte, error) {
	sig, err := cert.Key.Sign(rnd, signedContent(server, th), sm2.NewSM2SignerOption(true, sm2TLSID))
	if err != nil {
		return nil, alert(alertInternalError)
	}
	b := appendVec16(binary.BigEndian.AppendUint16(nil, sigSM2SM3), sig)
	return handshakeMsg(msgCertificateVerify, b), nil
}

// verifyCertificateVerify checks a CertificateVerify body against the
// peer's leaf.
func verifyCertificateVerify(leaf *smx509.Certificate, body []byte, server bool, th []byte) error {
	r := reader{b: body}
	scheme := uint16(r.u16())
	sig := r.vec16()
	if r.bad || len(r.b) != 0 {
		return alert(alertDecodeError)
	}
	if scheme != sigSM2SM3 {
		return alert(alertIllegalParameter)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.VerifyASN1WithSM2(pub, sm2TLSID, signedContent(server, th), sig) {
		return alert(alertDecryptError)
	}
	return nil
}

// keyShare makes an ephemeral curveSM2 key.
func keyShare(rnd io.Reader) (*ecdh.PrivateKey, error) {
	k, err := ecdh.P256().GenerateKey(rnd)
	if err != nil {
		return nil, alert(alertInternalError)
	}
	return k, nil
}

// sharedSecret is the ECDHE secret with the peer's share: the x
// coordinate of the product (RFC 8446 §7.4.2, RFC 8998 §3.2.2).
func sharedSecret(k *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := ecdh.P256().NewPublicKey(peer)
	if err != nil {
		return nil, alert(alertIllegalParameter)
	}
	s, err := k.ECDH(pub)
	if err != nil {
		return nil, alert(alertIllegalParameter)
	}
	return s, nil
}

// messageHash replaces ClientHello1 in the transcript after a
// HelloRetryRequest (RFC 8446 §4.4.1).
func messageHash(ch1 []byte) []byte {
	t := newTranscript()
	t.add(ch1)
	return handshakeMsg(msgMessageHash, t.sum())
}

// finishedMsg is a Finished message over th with the base secret.
func finishedMsg(base, th []byte) []byte { return handshakeMsg(msgFinished, finishedMAC(base, th)) }
