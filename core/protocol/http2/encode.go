package http2

import (
	"strconv"
	"unsafe"

	"github.com/proxylab/proxylab/core/protocol"
)

// Head to field list (RFC 9113 §8.3): what the proxy sends.

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

// LowerName returns name in lowercase as a string HPACK may keep.
func LowerName(name []byte) string {
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

// AppendRegular appends h's forwardable fields: connection-specific ones
// dropped (TE kept only as "trailers"), names lowercased; host is skipped
// when it went into :authority.
func AppendRegular(dst []HeaderField, hs *protocol.Headers, skipHost bool) []HeaderField {
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
		dst = append(dst, HeaderField{Name: LowerName(f.Name), Value: string(f.Value)})
	}
	return dst
}

// RequestFields maps a request head to HTTP/2 (§8.3.1): Host becomes
// :authority; an absolute-form target is split.
func RequestFields(dst []HeaderField, h *protocol.Head, scheme string) []HeaderField {
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
		HeaderField{Name: ":method", Value: string(h.Method)},
		HeaderField{Name: ":scheme", Value: scheme},
		HeaderField{Name: ":authority", Value: string(authority)},
		HeaderField{Name: ":path", Value: string(target)},
	)
	dst = AppendRegular(dst, &h.Headers, true)
	if h.ContentLength >= 0 && !h.Headers.Has("content-length") {
		dst = append(dst, HeaderField{Name: "content-length", Value: strconv.FormatInt(h.ContentLength, 10)})
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

func StatusString(code int) string {
	if code >= 100 && code < 600 {
		return statusText[code]
	}
	return strconv.Itoa(code)
}

// ResponseFields maps a response head to HTTP/2 (§8.3.2).
func ResponseFields(dst []HeaderField, h *protocol.Head) []HeaderField {
	dst = append(dst, HeaderField{Name: ":status", Value: StatusString(h.Status)})
	dst = AppendRegular(dst, &h.Headers, false)
	if h.ContentLength >= 0 && !h.Chunked && !h.Headers.Has("content-length") && h.Status >= 200 && h.Status != 204 && h.Status != 304 {
		dst = append(dst, HeaderField{Name: "content-length", Value: strconv.FormatInt(h.ContentLength, 10)})
	}
	return dst
}

// TrailerList maps trailers to HTTP/2 fields.
func TrailerList(dst []HeaderField, t *protocol.Headers) []HeaderField {
	return AppendRegular(dst, t, false)
}
