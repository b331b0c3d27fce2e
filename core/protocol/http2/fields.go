package http2

import (
	"strconv"
	"unsafe"

	"github.com/proxylab/proxylab/core/protocol"
)

// BytesOf aliases a decoded string's bytes (no copy). Heads built from them
// are read-only for their consumers, as the stream package documents.
func BytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// hostName is the name :authority is forwarded under (shared, read-only).
var hostName = []byte("host")

// ValidName: RFC 9113 §8.2.1 — a token (RFC 9110 §5.1) in lowercase.
func ValidName(s string) bool {
	if !protocol.ValidFieldName(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return false
		}
	}
	return true
}

// connectionSpecificName: §8.2.2 — fields that make a message malformed.
func connectionSpecificName(s string) bool {
	switch s {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// CheckRegular validates one regular field of a received header list
// (§8.2.1, §8.2.2); values are held to RFC 9110 §5.5 (protocol.ValidFieldValue)
// since they may be forwarded to HTTP/1.
func CheckRegular(f HeaderField) string {
	switch {
	case !ValidName(f.Name):
		return "invalid field name " + strconv.Quote(f.Name)
	case !protocol.ValidFieldValue(f.Value):
		return "invalid value of " + f.Name
	case connectionSpecificName(f.Name):
		return "connection-specific field " + f.Name
	case f.Name == "te" && f.Value != "trailers":
		return "TE other than trailers"
	}
	return ""
}

// parseLength reads content-length; all occurrences must agree.
func parseLength(h *protocol.Head, v string) string {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || v[0] == '+' {
		return "invalid content-length"
	}
	if h.ContentLength >= 0 && h.ContentLength != n {
		return "conflicting content-length"
	}
	h.ContentLength = n
	return ""
}

// Pseudo are a request's pseudo-header fields (§8.3.1, RFC 8441 §4).
type Pseudo struct {
	Method, Scheme, Authority, Path, Protocol string
	Has                                       [5]bool // in the order above
}

// set records one pseudo-field; it returns a reason when the field is
// unknown (response pseudo-fields included) or repeated.
func (p *Pseudo) set(name, value string) string {
	var i int
	switch name {
	case ":method":
		i, p.Method = 0, value
	case ":scheme":
		i, p.Scheme = 1, value
	case ":authority":
		i, p.Authority = 2, value
	case ":path":
		i, p.Path = 3, value
	case ":protocol":
		i, p.Protocol = 4, value
	default:
		return "unknown pseudo-header " + name
	}
	if p.Has[i] {
		return "duplicate " + name
	}
	p.Has[i] = true
	return ""
}

// check validates the pseudo-fields' values and their combination:
// a plain CONNECT (§8.5) has only :method and :authority; an extended
// CONNECT (RFC 8441 §4) has all five; any other request has :method,
// :scheme and a non-empty :path starting with '/' ('*' for OPTIONS) and
// no :protocol. :authority, when present, is host[:port] without userinfo.
func (p *Pseudo) check() string {
	switch {
	case !p.Has[0] || !protocol.ValidMethod(p.Method):
		return "missing or invalid :method"
	case p.Has[2] && !protocol.ValidAuthority(p.Authority):
		return "invalid :authority"
	case p.Has[1] && !protocol.ValidScheme(p.Scheme):
		return "invalid :scheme"
	case p.Has[3] && !protocol.ValidRequestTarget(p.Path):
		return "invalid :path"
	}
	if p.Method == "CONNECT" {
		if !p.Has[4] {
			if p.Has[1] || p.Has[3] || !p.Has[2] {
				return "CONNECT needs :authority and no :scheme or :path"
			}
			return ""
		}
		if !p.Has[1] || !p.Has[2] || !p.Has[3] || p.Protocol == "" {
			return "extended CONNECT needs :scheme, :authority, :path and :protocol"
		}
		return ""
	}
	switch {
	case p.Has[4]:
		return ":protocol outside CONNECT"
	case !p.Has[1] || !p.Has[3]:
		return "missing :scheme or :path"
	case p.Path[0] != '/' && !(p.Path == "*" && p.Method == "OPTIONS"):
		return "invalid :path"
	}
	return ""
}

// RequestHead builds a request head from a decoded field list (§8.3.1) and
// returns a reason when the request is malformed (§8.1.1): pseudo-fields
// first and valid (Pseudo.check), regular fields valid (CheckRegular).
// Host: :authority wins, as in Go's server and Envoy — a host field that
// differs from :authority is dropped and :authority forwarded as Host, so
// the upstream never sees two; host alone is used when :authority is
// absent; a request with neither is malformed (RFC 9110 §7.2).
// Cookie crumbs are joined (§8.2.3). The pseudo-fields are left in p: a
// CONNECT (plain or extended) is returned with Method and Target from them
// but otherwise unfinished, for the stream layer to map (its tunnel
// semantics are not wire format).
func RequestHead(fields []HeaderField, h *protocol.Head, p *Pseudo) string {
	*h = protocol.Head{Major: 2, Minor: 1, ContentLength: -1, Headers: protocol.Headers{Fields: h.Headers.Fields[:0]}}
	*p = Pseudo{}
	var regular bool
	var cookies, hosts int
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			if regular {
				return "pseudo-header after regular fields"
			}
			if why := p.set(f.Name, f.Value); why != "" {
				return why
			}
			continue
		}
		regular = true
		if why := CheckRegular(f); why != "" {
			return why
		}
		switch f.Name {
		case "content-length":
			if why := parseLength(h, f.Value); why != "" {
				return why
			}
		case "host":
			if hosts++; hosts > 1 || !protocol.ValidAuthority(f.Value) {
				return "invalid or repeated host"
			}
			if p.Has[2] {
				continue // :authority wins
			}
		case "cookie":
			cookies++
		}
		h.Headers.Append(BytesOf(f.Name), BytesOf(f.Value))
	}
	if why := p.check(); why != "" {
		return why
	}
	h.Method, h.Target = BytesOf(p.Method), BytesOf(p.Path)
	if p.Method == "CONNECT" {
		return ""
	}
	if p.Has[2] {
		h.Headers.Append(hostName, BytesOf(p.Authority))
	} else if hosts == 0 {
		// RFC 9110 §7.2, RFC 9112 §3.2: forwarded as HTTP/1.1, the
		// request needs a Host.
		return "no :authority or host"
	}
	if cookies > 1 {
		joinCookies(&h.Headers)
	}
	return ""
}

// joinCookies folds cookie crumbs into one field for HTTP/1 peers (§8.2.3).
// Empty crumbs are left out: joined they would make a value such as "; "
// that no client could send itself; a cookie of only empty crumbs is
// forwarded as one empty field.
func joinCookies(hs *protocol.Headers) {
	var joined []byte
	kept := hs.Fields[:0]
	at := -1
	for _, f := range hs.Fields {
		if string(f.Name) != "cookie" {
			kept = append(kept, f)
			continue
		}
		if at < 0 {
			at = len(kept)
			kept = append(kept, f)
		}
		if len(f.Value) == 0 {
			continue
		}
		if len(joined) > 0 {
			joined = append(joined, "; "...)
		}
		joined = append(joined, f.Value...)
	}
	clear(hs.Fields[len(kept):])
	hs.Fields = kept
	kept[at].Value = joined
}

// ResponseHead builds a response head (§8.3.2); it returns a reason when
// the response is malformed.
func ResponseHead(fields []HeaderField, h *protocol.Head) string {
	*h = protocol.Head{Major: 2, Minor: 1, ContentLength: -1, Headers: protocol.Headers{Fields: h.Headers.Fields[:0]}}
	regular := false
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			if regular || f.Name != ":status" || h.Status != 0 {
				return "bad pseudo-header " + f.Name
			}
			n, err := strconv.Atoi(f.Value)
			if err != nil || n < 100 || n > 999 || len(f.Value) != 3 {
				return "invalid :status"
			}
			h.Status = n
			continue
		}
		regular = true
		if why := CheckRegular(f); why != "" {
			return why
		}
		if f.Name == "content-length" {
			if why := parseLength(h, f.Value); why != "" {
				return why
			}
		}
		h.Headers.Append(BytesOf(f.Name), BytesOf(f.Value))
	}
	if h.Status == 0 {
		return "missing :status"
	}
	return ""
}

// TrailerFields validates a trailer block (no pseudo-fields, §8.1) and
// drops the fields a trailer may not carry (RFC 9110 §6.5.1: framing,
// routing, request modifiers, content metadata), so they never reach a
// peer that might act on them; it returns how many it dropped.
func TrailerFields(fields []HeaderField, t *protocol.Headers) (why string, dropped int) {
	t.Fields = t.Fields[:0]
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			return "pseudo-header in trailers", dropped
		}
		if why := CheckRegular(f); why != "" {
			return why, dropped
		}
		if protocol.ForbiddenTrailer(f.Name) {
			dropped++
			continue
		}
		t.Append(BytesOf(f.Name), BytesOf(f.Value))
	}
	return "", dropped
}
