package rbac

import (
	"bytes"
	"crypto/x509"
	"net"
	"net/netip"

	"github.com/proxylab/proxylab/core/filter/internal/match"
	"github.com/proxylab/proxylab/core/protocol"
)

// Request is what the matcher reads: the head (nil for a connection, as
// the network filter has none), the peer and local addresses and the
// verified client certificate.
type Request struct {
	Head   *protocol.Head
	Remote netip.AddrPort
	Local  netip.AddrPort
	Cert   *x509.Certificate
}

// AddrPort converts a net.Addr without allocating for the TCP and UDP
// addresses connections carry.
func AddrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

type op uint8

const (
	opAny op = iota
	opHeader
	opPath
	opDstPort
	opDstIP
	opSrcIP
	opAuth
	opAnd
	opOr
	opNot
)

// node is one compiled permission or principal; read-only once built, so
// every loop evaluates it at once.
type node struct {
	op     op
	kids   []node
	hdr    match.Header
	str    match.String
	hasStr bool
	port   uint32
	prefix netip.Prefix
}

func (n *node) eval(r *Request) bool {
	switch n.op {
	case opAny:
		return true
	case opHeader:
		return r.Head != nil && n.hdr.Match(r.Head)
	case opPath:
		return r.Head != nil && n.str.Match(normPath(urlPath(r.Head.Target)))
	case opDstPort:
		return uint32(r.Local.Port()) == n.port
	case opDstIP:
		return n.prefix.IsValid() && n.prefix.Contains(r.Local.Addr().Unmap())
	case opSrcIP:
		return n.prefix.IsValid() && n.prefix.Contains(r.Remote.Addr().Unmap())
	case opAuth:
		return r.Cert != nil && (!n.hasStr || principalMatch(&n.str, r.Cert))
	case opAnd:
		for i := range n.kids {
			if !n.kids[i].eval(r) {
				return false
			}
		}
		return true
	case opOr:
		for i := range n.kids {
			if n.kids[i].eval(r) {
				return true
			}
		}
		return false
	case opNot:
		return !n.kids[0].eval(r)
	}
	return false
}

// urlPath is the target's path without query or fragment; an
// absolute-form target (http://host/p) gives its path.
func urlPath(t []byte) []byte {
	if len(t) > 0 && t[0] != '/' {
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			if j := bytes.IndexByte(t, '/'); j >= 0 {
				t = t[j:]
			} else {
				t = nil
			}
		}
	}
	if i := bytes.IndexAny(t, "?#"); i >= 0 {
		t = t[:i]
	}
	return t
}

// principalMatch follows Envoy: the URI SANs (SPIFFE ids) when the
// certificate has any, else the DNS SANs, else the subject.
func principalMatch(m *match.String, c *x509.Certificate) bool {
	if len(c.URIs) > 0 {
		for _, u := range c.URIs {
			if m.Match([]byte(u.String())) {
				return true
			}
		}
		return false
	}
	if len(c.DNSNames) > 0 {
		for _, d := range c.DNSNames {
			if m.Match([]byte(d)) {
				return true
			}
		}
		return false
	}
	return m.Match([]byte(c.Subject.String()))
}

type policy struct {
	name  string
	perms node // or over the permissions
	ids   node // or over the principals
}

// Engine is one compiled rules block: read-only, shared by every loop.
type Engine struct {
	deny     bool
	policies []policy
}

// Allowed evaluates the rules: with ALLOW a request passes when a policy
// matches, with DENY when none does. policy names the policy that matched
// ("" when none did).
func (e *Engine) Allowed(r *Request) (allowed bool, policy string) {
	for i := range e.policies {
		p := &e.policies[i]
		if p.perms.eval(r) && p.ids.eval(r) {
			return !e.deny, p.name
		}
	}
	return e.deny, ""
}
