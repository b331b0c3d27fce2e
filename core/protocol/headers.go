// Package protocol holds what every codec shares: header fields and the
// protocol-neutral error type that maps a decode failure to a status.
package protocol

import (
	"bytes"
	"fmt"
)

// Field is one header field. Name and Value alias the buffer the message was
// decoded from unless set by a filter; they are valid only as long as that
// buffer, which the codec documents per callback.
type Field struct {
	Name, Value []byte
}

// Headers is an ordered list of fields; lookups are case-insensitive. The zero
// value is empty and ready to use.
type Headers struct {
	Fields []Field
}

// Get returns the first value of name, or nil.
func (h *Headers) Get(name string) []byte {
	for i := range h.Fields {
		if equalFold(h.Fields[i].Name, name) {
			return h.Fields[i].Value
		}
	}
	return nil
}

// Has reports whether name is present.
func (h *Headers) Has(name string) bool {
	for i := range h.Fields {
		if equalFold(h.Fields[i].Name, name) {
			return true
		}
	}
	return false
}

// Add appends a field.
func (h *Headers) Add(name string, value []byte) {
	h.Fields = append(h.Fields, Field{Name: []byte(name), Value: value})
}

// Set replaces every field named name with one field.
func (h *Headers) Set(name string, value []byte) {
	h.Del(name)
	h.Add(name, value)
}

// Del removes every field named name.
func (h *Headers) Del(name string) {
	out := h.Fields[:0]
	for _, f := range h.Fields {
		if !equalFold(f.Name, name) {
			out = append(out, f)
		}
	}
	clear(h.Fields[len(out):])
	h.Fields = out
}

// Reset empties h, keeping capacity.
func (h *Headers) Reset() {
	clear(h.Fields)
	h.Fields = h.Fields[:0]
}

// equalFold compares an ASCII header name without allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || (x|0x20) < 'a' || (x|0x20) > 'z' {
			return false
		}
	}
	return true
}

// EqualFold is the exported ASCII case-insensitive comparison.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// HasToken reports whether a comma-separated header value contains token,
// case-insensitively (e.g. Connection: keep-alive, Upgrade).
func HasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if equalFold(bytes.TrimSpace(part), token) {
			return true
		}
	}
	return false
}

// Error is a decode failure with the HTTP status a server answers it with
// (400, 413, 414, 431, 501 …) and a short reason for the response body.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("protocol: %d %s", e.Status, e.Reason) }

// Errorf builds an *Error.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// Head is a decoded request or response head, codec-neutral. Byte slices
// alias the codec's input buffer and are valid only during the callback that
// delivers the Head, unless the codec says otherwise.
type Head struct {
	Method, Target []byte // request
	Status         int    // response
	Reason         []byte // response
	Minor          int    // HTTP/1.Minor for HTTP/1 messages; 1 for HTTP/2 (its semantics are 1.1's)
	Major          int    // 2 for HTTP/2 messages; 0 or 1 for HTTP/1
	Headers        Headers

	ContentLength  int64 // -1 when unknown
	Chunked        bool
	Close          bool // the sender wants the connection closed after this message
	ExpectContinue bool
	Upgrade        bool // Connection: upgrade

	// Frame is a whole RPC frame (xprotocol) carried opaque through the
	// proxy: the request or response itself, with the fields above only
	// describing it for routing. nil for HTTP.
	Frame []byte
}

// Append adds a field whose name is already bytes (no conversion).
func (h *Headers) Append(name, value []byte) {
	h.Fields = append(h.Fields, Field{Name: name, Value: value})
}

// CloneInto copies h into dst so that dst owns every byte. The bytes go
// into arena (grown if needed) and dst's field slice is reused, so a caller
// that keeps both across messages allocates nothing in the steady state. It
// returns the arena, which dst now aliases.
func (h *Head) CloneInto(dst *Head, arena []byte) []byte {
	n := len(h.Method) + len(h.Target) + len(h.Reason) + len(h.Frame)
	for _, f := range h.Headers.Fields {
		n += len(f.Name) + len(f.Value)
	}
	if cap(arena) < n {
		arena = make([]byte, 0, n)
	}
	arena = arena[:0]
	cp := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		s := len(arena)
		arena = append(arena, b...)
		return arena[s:len(arena):len(arena)]
	}
	fields := dst.Headers.Fields[:0]
	*dst = *h
	dst.Method, dst.Target, dst.Reason, dst.Frame = cp(h.Method), cp(h.Target), cp(h.Reason), cp(h.Frame)
	for _, f := range h.Headers.Fields {
		fields = append(fields, Field{Name: cp(f.Name), Value: cp(f.Value)})
	}
	dst.Headers.Fields = fields
	return arena
}

// ConnectionSpecific reports whether a field describes one connection and
// must not be forwarded (RFC 9110 §7.6.1, RFC 9113 §8.2.2): TE, Upgrade,
// Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding and the fields
// the Connection header lists.
func ConnectionSpecific(name []byte, connection []byte, hasConnection bool) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 7:
		if equalFold(name, "upgrade") {
			return true
		}
	case 10:
		if equalFold(name, "connection") || equalFold(name, "keep-alive") {
			return true
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return true
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return true
		}
	}
	return hasConnection && HasToken(connection, string(name))
}
