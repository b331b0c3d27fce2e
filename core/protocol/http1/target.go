package http1

import (
	"bytes"

	"github.com/proxylab/proxylab/core/protocol"
)

var (
	errTarget      = perr(400, "invalid request target")
	errAbsScheme   = perr(400, "absolute-form target: unsupported scheme")
	errAbsUserinfo = perr(400, "absolute-form target: userinfo not allowed")
	errAbsHost     = perr(400, "absolute-form target: invalid host")
	errHostValue   = perr(400, "invalid Host")
)

// Storage the normalised head may alias (never written through).
var (
	slashTarget = []byte("/")
	hostName    = []byte("Host")
)

// normalizeTarget checks the request-target's form against the method (RFC
// 9112 §3.2) and turns absolute-form into what the rest of the proxy routes
// and forwards: origin-form path and a Host equal to the target's authority.
// RFC 9112 §3.2.2: a server must accept absolute-form, and the authority
// replaces any Host field (one disagreeing is overwritten, not trusted). The
// scheme must be http or https, the authority must have a host and no
// userinfo (RFC 9110 §4.2.4 deprecates it; it is a classic way to confuse a
// router). Origin-form requests only get their Host value checked.
func (p *Parser) normalizeTarget() error {
	h := &p.head
	t := h.Target
	switch {
	case t[0] == '/':
		return p.checkHosts()
	case string(h.Method) == "CONNECT":
		if !protocol.ValidAuthority(t) {
			return errTarget
		}
		return p.checkHosts()
	case len(t) == 1 && t[0] == '*':
		if string(h.Method) != "OPTIONS" {
			return errTarget
		}
		return p.checkHosts()
	}
	i := bytes.Index(t, []byte("://"))
	if i <= 0 || !protocol.ValidScheme(t[:i]) {
		return errTarget
	}
	if !protocol.EqualFold(t[:i], "http") && !protocol.EqualFold(t[:i], "https") {
		return errAbsScheme
	}
	rest := t[i+3:]
	end := len(rest)
	for j, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = j
			break
		}
	}
	auth, path := rest[:end], rest[end:]
	if bytes.IndexByte(auth, '@') >= 0 {
		return errAbsUserinfo
	}
	if !protocol.ValidAuthority(auth) {
		return errAbsHost
	}
	switch {
	case len(path) == 0:
		path = slashTarget
	case path[0] == '?':
		// "http://h?q" means "/?q": the one case that needs new storage
		// (rare; the head is parsed, not the hot path of origin-form).
		path = append([]byte{'/'}, path...)
	case path[0] == '#':
		return errTarget
	}
	h.Target = path
	replaced := false
	for k := range h.Headers.Fields {
		if f := &h.Headers.Fields[k]; protocol.EqualFold(f.Name, "host") {
			f.Value, replaced = auth, true
		}
	}
	if !replaced {
		h.Headers.Append(hostName, auth) // HTTP/1.0 may omit Host
	}
	return nil
}

// checkHosts refuses a Host value that is not an authority (an empty one is
// allowed: RFC 9112 §3.2 sends it when the target has no authority).
func (p *Parser) checkHosts() error {
	for _, f := range p.head.Headers.Fields {
		if len(f.Name) == 4 && protocol.EqualFold(f.Name, "host") && len(f.Value) > 0 && !protocol.ValidAuthority(f.Value) {
			return errHostValue
		}
	}
	return nil
}
