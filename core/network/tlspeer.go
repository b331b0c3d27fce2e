package network

import "crypto/x509"

// peerInfo is what an engine connection may report of its session: the
// SNI the client sent and its verified certificate (engineconn.Conn does).
// Stream filters read them (core/filter Info: SNI, PeerCertificate).
type peerInfo interface {
	ServerName() string
	PeerCertificate() *x509.Certificate
}

func (s secured) ServerName() string {
	if p, ok := s.Conn.(peerInfo); ok {
		return p.ServerName()
	}
	return ""
}

func (s secured) PeerCertificate() *x509.Certificate {
	if p, ok := s.Conn.(peerInfo); ok {
		return p.PeerCertificate()
	}
	return nil
}

func (c *sniffConn) ServerName() string {
	if p, ok := c.conn().(peerInfo); ok {
		return p.ServerName()
	}
	return ""
}

func (c *sniffConn) PeerCertificate() *x509.Certificate {
	if p, ok := c.conn().(peerInfo); ok {
		return p.PeerCertificate()
	}
	return nil
}

var (
	_ peerInfo = secured{}
	_ peerInfo = (*sniffConn)(nil)
)
