package http1

import (
	"github.com/proxylab/proxylab/core/protocol"
)

// The encoder's own checks. A head reaches the HTTP/1 encoder from any codec
// (HTTP/2 downstream today) and through the proxy's rewrites, so before a
// head is serialised it is checked against the HTTP/1.1 grammar: a byte that
// could end a line or a token early would make the upstream (or client) read
// a different message than the one the proxy routed. Each check is one loop
// over the bytes and allocates nothing.

var (
	errEncMethod  = perr(400, "method is not a token")
	errEncTarget  = perr(400, "request target not encodable")
	errEncName    = perr(400, "header name is not a token")
	errEncValue   = perr(400, "header value has a control character")
	errEncHost    = perr(400, "Host is not one valid authority")
	errEncStatus  = perr(502, "status code out of range")
	errEncReason  = perr(502, "reason phrase has a control character")
	errEncRspName = perr(502, "response header name is not a token")
	errEncRspVal  = perr(502, "response header value has a control character")
)

// validValue reports whether v may follow "name: " on a header line: no
// control byte but HTAB, no DEL (RFC 9110 §5.5; obs-text is allowed). Unlike
// protocol.ValidFieldValue it accepts leading or trailing whitespace, which
// every HTTP/1 parser strips the same way (it cannot change the framing).
func validValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validTarget reports whether t is a request target of a form method may
// use (RFC 9112 §3.2): origin-form "/...", absolute-form "scheme://...",
// authority-form for CONNECT only, "*" for OPTIONS only; in every case only
// visible ASCII, so it cannot end the request line early.
func validTarget(method, t []byte) bool {
	if !protocol.ValidRequestTarget(t) || !validPercent(t) {
		return false
	}
	if string(method) == "CONNECT" {
		return protocol.ValidAuthority(t)
	}
	switch t[0] {
	case '/':
		return true
	case '*':
		return len(t) == 1 && string(method) == "OPTIONS"
	}
	for i, c := range t {
		if c == ':' {
			if i == 0 || !protocol.ValidScheme(t[:i]) || len(t) < i+3 || t[i+1] != '/' || t[i+2] != '/' {
				return false
			}
			auth := t[i+3:]
			for j, c := range auth {
				if c == '/' || c == '?' {
					auth = auth[:j]
					break
				}
			}
			return protocol.ValidAuthority(auth)
		}
	}
	return false
}

// validPercent reports whether every '%' in t starts a pct-encoded octet
// ("%" HEXDIG HEXDIG, RFC 3986 §2.1): an upstream that decodes the path
// (net/http does, and refuses the request otherwise) must not read something
// else than what the proxy routed.
func validPercent(t []byte) bool {
	for i := 0; i < len(t); i++ {
		if t[i] == '%' {
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// CheckRequestHead reports why h cannot be written as an HTTP/1.1 request
// head (a *protocol.Error with status 400), or nil. Fields the encoder would
// drop as hop-by-hop are checked too: nothing malformed is trusted.
func CheckRequestHead(h *Head) error {
	if !protocol.ValidMethod(h.Method) {
		return errEncMethod
	}
	if !validTarget(h.Method, h.Target) {
		return errEncTarget
	}
	hosts := 0
	for _, f := range h.Headers.Fields {
		if !protocol.ValidFieldName(f.Name) {
			return errEncName
		}
		if !validValue(f.Value) {
			return errEncValue
		}
		if len(f.Name) == 4 && protocol.EqualFold(f.Name, "host") {
			if hosts++; hosts > 1 || len(f.Value) > 0 && !protocol.ValidAuthority(f.Value) {
				return errEncHost
			}
		}
	}
	return nil
}

// CheckResponseHead reports why h cannot be written as an HTTP/1.1 response
// head (a *protocol.Error with status 502: the fault is upstream's), or nil.
func CheckResponseHead(h *Head) error {
	if h.Status < 100 || h.Status > 999 {
		return errEncStatus
	}
	if !validValue(h.Reason) {
		return errEncReason
	}
	for _, f := range h.Headers.Fields {
		if !protocol.ValidFieldName(f.Name) {
			return errEncRspName
		}
		if !validValue(f.Value) {
			return errEncRspVal
		}
	}
	return nil
}

// FilterTrailers removes, in place, the fields of t that ForbiddenTrailer
// names or that are not well formed, and returns how many it removed.
func FilterTrailers(t *protocol.Headers) int {
	out := t.Fields[:0]
	for _, f := range t.Fields {
		if protocol.ForbiddenTrailer(f.Name) || !protocol.ValidFieldName(f.Name) || !validValue(f.Value) {
			continue
		}
		out = append(out, f)
	}
	n := len(t.Fields) - len(out)
	clear(t.Fields[len(out):])
	t.Fields = out
	return n
}
