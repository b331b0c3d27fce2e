package http2

import (
	"strconv"
	"unsafe"

	"golang.org/x/net/http2/hpack"

	"github.com/proxylab/proxylab/core/protocol"
)

// bytesOf aliases a decoded string's bytes (no copy). Heads built from them
// are read-only for their consumers, as the stream package documents.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// hostName is the name :authority is forwarded under (shared, read-only).
var hostName = []byte("host")

// validName: RFC 9113 §8.2.1 — a token (RFC 9110 §5.1) in lowercase.
func validName(s string) bool {
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

// checkRegular validates one regular field of a received header list
// (§8.2.1, §8.2.2); values are held to RFC 9110 §5.5 (protocol.ValidFieldValue)
// since they may be forwarded to HTTP/1.
func checkRegular(f hpack.HeaderField) string {
	switch {
	case !validName(f.Name):
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

// pseudo are a request's pseudo-header fields (§8.3.1, RFC 8441 §4).
type pseudo struct {
	method, scheme, authority, path, protocol string
	has                                       [5]bool // in the order above
}

// set records one pseudo-field; it returns a reason when the field is
// unknown (response pseudo-fields included) or repeated.
func (p *pseudo) set(name, value string) string {
	var i int
	switch name {
	case ":method":
		i, p.method = 0, value
	case ":scheme":
		i, p.scheme = 1, value
	case ":authority":
		i, p.authority = 2, value
	case ":path":
		i, p.path = 3, value
	case ":protocol":
		i, p.protocol = 4, value
	default:
		return "unknown pseudo-header " + name
	}
	if p.has[i] {
		return "duplicate " + name
	}
	p.has[i] = true
	return ""
}

// check validates the pseudo-fields' values and their combination:
// a plain CONNECT (§8.5) has only :method and :authority; an extended
// CONNECT (RFC 8441 §4) has all five; any other request has :method,
// :scheme and a non-empty :path starting with '/' ('*' for OPTIONS) and
// no :protocol. :authority, when present, is host[:port] without userinfo.
func (p *pseudo) check() string {
	switch {
	case !p.has[0] || !protocol.ValidMethod(p.method):
		return "missing or invalid :method"
	case p.has[2] && !protocol.ValidAuthority(p.authority):
		return "invalid :authority"
	case p.has[1] && !protocol.ValidScheme(p.scheme):
		return "invalid :scheme"
	case p.has[3] && !protocol.ValidRequestTarget(p.path):
		return "invalid :path"
	}
	if p.method == "CONNECT" {
		if !p.has[4] {
			if p.has[1] || p.has[3] || !p.has[2] {
				return "CONNECT needs :authority and no :scheme or :path"
			}
			return ""
		}
		if !p.has[1] || !p.has[2] || !p.has[3] || p.protocol == "" {
			return "extended CONNECT needs :scheme, :authority, :path and :protocol"
		}
		return ""
	}
	switch {
	case p.has[4]:
		return ":protocol outside CONNECT"
	case !p.has[1] || !p.has[3]:
		return "missing :scheme or :path"
	case p.path[0] != '/' && !(p.path == "*" && p.method == "OPTIONS"):
		return "invalid :path"
	}
	return ""
}

// requestHead builds a request head from a decoded field list (§8.3.1) and
// returns a reason when the request is malformed (§8.1.1): pseudo-fields
// first and valid (pseudo.check), regular fields valid (checkRegular).
// Host: :authority wins, as in Go's server and Envoy — a host field that
// differs from :authority is dropped and :authority forwarded as Host, so
// the upstream never sees two; host alone is used when :authority is
// absent; a request with neither is malformed (RFC 9110 §7.2).
// Cookie crumbs are joined (§8.2.3). A CONNECT (plain or extended) is
// finished by connectHead (connect.go).
func requestHead(fields []hpack.HeaderField, h *protocol.Head) string {
	*h = protocol.Head{Major: 2, Minor: 1, ContentLength: -1, Headers: protocol.Headers{Fields: h.Headers.Fields[:0]}}
	var p pseudo
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
		if why := checkRegular(f); why != "" {
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
			if p.has[2] {
				continue // :authority wins
			}
		case "cookie":
			cookies++
		}
		h.Headers.Append(bytesOf(f.Name), bytesOf(f.Value))
	}
	if why := p.check(); why != "" {
		return why
	}
	h.Method, h.Target = bytesOf(p.method), bytesOf(p.path)
	if p.method == "CONNECT" {
		return connectHead(h, &p)
	}
	if p.has[2] {
		h.Headers.Append(hostName, bytesOf(p.authority))
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
func joinCookies(hs *protocol.Headers) {
	var joined []byte
	kept := hs.Fields[:0]
	at := -1
	for _, f := range hs.Fields {
		if string(f.Name) == "cookie" {
			if at < 0 {
				at = len(kept)
				kept = append(kept, f)
			} else {
				if joined == nil {
					joined = append(joined, kept[at].Value...)
				}
				joined = append(append(joined, "; "...), f.Value...)
			}
			continue
		}
		kept = append(kept, f)
	}
	clear(hs.Fields[len(kept):])
	hs.Fields = kept
	kept[at].Value = joined
}

// responseHead builds a response head (§8.3.2); it returns a reason when
// the response is malformed.
func responseHead(fields []hpack.HeaderField, h *protocol.Head) string {
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
		if why := checkRegular(f); why != "" {
			return why
		}
		if f.Name == "content-length" {
			if why := parseLength(h, f.Value); why != "" {
				return why
			}
		}
		h.Headers.Append(bytesOf(f.Name), bytesOf(f.Value))
	}
	if h.Status == 0 {
		return "missing :status"
	}
	return ""
}

// trailerFields validates a trailer block (no pseudo-fields, §8.1) and
// drops the fields a trailer may not carry (RFC 9110 §6.5.1: framing,
// routing, request modifiers, content metadata), so they never reach a
// peer that might act on them; it returns how many it dropped.
func trailerFields(fields []hpack.HeaderField, t *protocol.Headers) (why string, dropped int) {
	t.Fields = t.Fields[:0]
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			return "pseudo-header in trailers", dropped
		}
		if why := checkRegular(f); why != "" {
			return why, dropped
		}
		if protocol.ForbiddenTrailer(f.Name) {
			dropped++
			continue
		}
		t.Append(bytesOf(f.Name), bytesOf(f.Value))
	}
	return "", dropped
}

// lowerNames maps the usual spellings of common names to their lowercase
// string, so encoding them allocates nothing.
var lowerNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Age", "Authorization",
		"Cache-Control", "Content-Encoding", "Content-Length", "Content-Type", "Cookie", "Date",
		"ETag", "Expires", "Host", "If-Modified-Since", "If-None-Match", "Last-Modified", "Location",
		"Referer", "Server", "Set-Cookie", "User-Agent", "Vary", "Via", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Request-Id", "Grpc-Status", "Grpc-Message", "Grpc-Timeout",
		"Grpc-Encoding", "Grpc-Accept-Encoding", "Te", "Trailer",
	} {
		l := []byte(n)
		for i, c := range l {
			if 'A' <= c && c <= 'Z' {
				l[i] = c + 32
			}
		}
		m[n], m[string(l)] = string(l), string(l)
	}
	return m
}()

// lowerName returns name in lowercase as a string HPACK may keep.
func lowerName(name []byte) string {
	if s, ok := lowerNames[string(name)]; ok {
		return s
	}
	b := make([]byte, len(name))
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 32
		}
		b[i] = c
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// appendRegular appends h's forwardable fields: connection-specific ones
// dropped (TE kept only as "trailers"), names lowercased; host is skipped
// when it went into :authority.
func appendRegular(dst []hpack.HeaderField, hs *protocol.Headers, skipHost bool) []hpack.HeaderField {
	conn := hs.Get("connection")
	for _, f := range hs.Fields {
		if protocol.ConnectionSpecific(f.Name, conn, conn != nil) {
			if !(len(f.Name) == 2 && string(f.Value) == "trailers") {
				continue
			}
		}
		if skipHost && protocol.EqualFold(f.Name, "host") {
			continue
		}
		dst = append(dst, hpack.HeaderField{Name: lowerName(f.Name), Value: string(f.Value)})
	}
	return dst
}

// requestFields maps a request head to HTTP/2 (§8.3.1): Host becomes
// :authority; an absolute-form target is split.
func requestFields(dst []hpack.HeaderField, h *protocol.Head, scheme string) []hpack.HeaderField {
	target := h.Target
	authority := h.Headers.Get("host")
	if i := indexScheme(target); i > 0 {
		rest := target[i:]
		j := 0
		for j < len(rest) && rest[j] != '/' && rest[j] != '?' {
			j++
		}
		if authority == nil {
			authority = rest[:j]
		}
		target = rest[j:]
		if len(target) == 0 {
			target = []byte("/")
		}
	}
	dst = append(dst,
		hpack.HeaderField{Name: ":method", Value: string(h.Method)},
		hpack.HeaderField{Name: ":scheme", Value: scheme},
		hpack.HeaderField{Name: ":authority", Value: string(authority)},
		hpack.HeaderField{Name: ":path", Value: string(target)},
	)
	dst = appendRegular(dst, &h.Headers, true)
	if h.ContentLength >= 0 && !h.Headers.Has("content-length") {
		dst = append(dst, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(h.ContentLength, 10)})
	}
	return dst
}

func indexScheme(t []byte) int {
	switch {
	case len(t) > 7 && protocol.EqualFold(t[:7], "http://"):
		return 7
	case len(t) > 8 && protocol.EqualFold(t[:8], "https://"):
		return 8
	}
	return 0
}

var statusText = func() (t [600]string) {
	for i := 100; i < 600; i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusString(code int) string {
	if code >= 100 && code < 600 {
		return statusText[code]
	}
	return strconv.Itoa(code)
}

// responseFields maps a response head to HTTP/2 (§8.3.2).
func responseFields(dst []hpack.HeaderField, h *protocol.Head) []hpack.HeaderField {
	dst = append(dst, hpack.HeaderField{Name: ":status", Value: statusString(h.Status)})
	dst = appendRegular(dst, &h.Headers, false)
	if h.ContentLength >= 0 && !h.Chunked && !h.Headers.Has("content-length") && h.Status >= 200 && h.Status != 204 && h.Status != 304 {
		dst = append(dst, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(h.ContentLength, 10)})
	}
	return dst
}

// trailerList maps trailers to HTTP/2 fields.
func trailerList(dst []hpack.HeaderField, t *protocol.Headers) []hpack.HeaderField {
	return appendRegular(dst, t, false)
}
