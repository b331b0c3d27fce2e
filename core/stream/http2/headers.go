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

// validName: RFC 9113 §8.2.1 — lowercase, no separators or controls.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || ('A' <= c && c <= 'Z') || c == ':' {
			return false
		}
	}
	return true
}

// validValue: §8.2.1 — no NUL, CR, LF; no leading or trailing whitespace.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\r' || c == '\n' {
			return false
		}
	}
	return len(s) == 0 || (s[0] != ' ' && s[0] != '\t' && s[len(s)-1] != ' ' && s[len(s)-1] != '\t')
}

// connectionSpecificName: §8.2.2 — fields that make a message malformed.
func connectionSpecificName(s string) bool {
	switch s {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// checkRegular validates one regular field of a received header list.
func checkRegular(f hpack.HeaderField) string {
	switch {
	case !validName(f.Name):
		return "invalid field name " + strconv.Quote(f.Name)
	case !validValue(f.Value):
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

// requestHead builds a request head from a decoded field list (§8.3.1):
// pseudo-fields first, :method/:scheme/:path required, :authority becomes
// Host when no Host field is present, cookie crumbs joined (§8.2.3).
// It returns a reason when the request is malformed.
func requestHead(fields []hpack.HeaderField, h *protocol.Head) string {
	if isConnect(fields) {
		return connectHead(fields, h) // connect.go
	}
	*h = protocol.Head{Major: 2, Minor: 1, ContentLength: -1, Headers: protocol.Headers{Fields: h.Headers.Fields[:0]}}
	var scheme, authority string
	var hasMethod, hasPath, hasScheme, regular, hasHost bool
	var cookies int
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			if regular {
				return "pseudo-header after regular fields"
			}
			dup := false
			switch f.Name {
			case ":method":
				dup, hasMethod, h.Method = hasMethod, true, bytesOf(f.Value)
			case ":path":
				dup, hasPath, h.Target = hasPath, true, bytesOf(f.Value)
			case ":scheme":
				dup, hasScheme, scheme = hasScheme, true, f.Value
			case ":authority":
				dup, authority = authority != "", f.Value
			default:
				return "unknown pseudo-header " + f.Name
			}
			if dup {
				return "duplicate " + f.Name
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
			hasHost = true
		case "cookie":
			cookies++
		}
		h.Headers.Append(bytesOf(f.Name), bytesOf(f.Value))
	}
	switch {
	case !hasMethod:
		return "missing :method"
	case string(h.Method) == "CONNECT":
		return "CONNECT" // answered 501 by the caller
	case !hasScheme || !hasPath || len(h.Target) == 0:
		return "missing :scheme or :path"
	case h.Target[0] != '/' && !(string(h.Target) == "*" && string(h.Method) == "OPTIONS"):
		return "invalid :path"
	}
	_ = scheme
	if !hasHost && authority != "" {
		h.Headers.Append([]byte("host"), bytesOf(authority))
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

// trailerFields validates a trailer block (no pseudo-fields, §8.1).
func trailerFields(fields []hpack.HeaderField, t *protocol.Headers) string {
	t.Fields = t.Fields[:0]
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			return "pseudo-header in trailers"
		}
		if why := checkRegular(f); why != "" {
			return why
		}
		t.Append(bytesOf(f.Name), bytesOf(f.Value))
	}
	return ""
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
