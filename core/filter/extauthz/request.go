package extauthz

import (
	"crypto/x509"
	"net"
	"strings"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
)

// checkRequest is what either variant sends, copied out of the head at
// DecodeHeaders (the head is not valid after the call).
type checkRequest struct {
	method, path, host, scheme, protocol string
	headers                              [][2]string // lower-cased names, in order
	remote, local                        net.Addr
	principal, sni                       string
	ext                                  map[string]string
	body                                 []byte
}

func newCheckRequest(h *protocol.Head, info filter.Info, ext map[string]string) *checkRequest {
	r := &checkRequest{method: string(h.Method), path: string(h.Target), remote: info.RemoteAddr(),
		local: info.LocalAddr(), sni: info.SNI(), ext: ext, scheme: "http", protocol: "HTTP/1.1"}
	if h.Major == 2 {
		r.protocol = "HTTP/2"
	} else if h.Minor == 0 {
		r.protocol = "HTTP/1.0"
	}
	if info.SNI() != "" || info.PeerCertificate() != nil {
		r.scheme = "https"
	}
	if c := info.PeerCertificate(); c != nil {
		r.principal = principal(c)
	}
	r.headers = make([][2]string, 0, len(h.Headers.Fields))
	for _, f := range h.Headers.Fields {
		n := strings.ToLower(string(f.Name))
		switch n {
		case ":authority", "host":
			r.host = string(f.Value)
			continue
		}
		if strings.HasPrefix(n, ":") {
			continue
		}
		r.headers = append(r.headers, [2]string{n, string(f.Value)})
	}
	return r
}

// principal is the peer's identity as Envoy puts it in the check: the
// first URI SAN, else the first DNS SAN, else the subject.
func principal(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

// headerMap joins repeated headers with "," (Envoy's CheckRequest map).
func (r *checkRequest) headerMap() map[string]string {
	m := make(map[string]string, len(r.headers)+3)
	for _, kv := range r.headers {
		if v, ok := m[kv[0]]; ok {
			m[kv[0]] = v + "," + kv[1]
		} else {
			m[kv[0]] = kv[1]
		}
	}
	m[":method"], m[":path"], m[":authority"], m[":scheme"] = r.method, r.path, r.host, r.scheme
	return m
}
