package protocol

// Validators for the parts of a request every codec copies into another
// protocol's framing. A proxy that forwards an HTTP/2 (or HTTP/1) request
// as HTTP/1.1 writes :method and :path into the request line and fields
// into header lines, so a byte the grammar does not allow (CR, LF, SP,
// NUL...) would let one request become two (request smuggling). Every
// codec checks what it decodes with these, and every encoder may check
// what it writes.
//
// They take string or []byte, never allocate and run in one pass.

// tchar is RFC 9110 §5.6.2's token character set.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// authChar is what RFC 3986 §3.2.2 allows in a reg-name or IP literal:
// unreserved, pct-encoded ('%'), sub-delims, and ':' (port, IPv6).
var authChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "-._~%!$&'()*+,;=:" {
		t[c] = true
	}
	return t
}()

// ValidToken reports whether s is an RFC 9110 §5.6.2 token: one or more
// tchar.
func ValidToken[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// ValidMethod reports whether s is a request method: RFC 9110 §9.1
// (method = token). Case is significant and not checked.
func ValidMethod[T ~string | ~[]byte](s T) bool { return ValidToken(s) }

// ValidRequestTarget reports whether s may be written as a request target
// (RFC 9112 §3.2, RFC 9113 §8.3.1 :path): non-empty, only visible ASCII
// (0x21-0x7E) — no SP, CTL, DEL or bytes above 0x7F, so it cannot end the
// request line early or start a header line — and no '#': a fragment is
// never part of a request target (RFC 9112 §3.2, RFC 3986 §3.5), and
// servers that strip it would see another path than the one routed (Envoy
// rejects it too). Other characters RFC 3986 leaves out but clients send
// unescaped ('|', '{', '"' ...) are accepted, as by common servers. It does
// not check the form (origin, absolute, authority, asterisk); callers check
// the one their method allows.
func ValidRequestTarget[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// ValidScheme reports whether s is an RFC 3986 §3.1 scheme:
// ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func ValidScheme[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20 // lowercase letters; digits and +-. keep their value
		switch {
		case 'a' <= c && c <= 'z':
		case i > 0 && ('0' <= s[i] && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.'):
		default:
			return false
		}
	}
	return true
}

// ValidAuthority reports whether s is an authority a request may carry in
// :authority or Host (RFC 9113 §8.3.1, RFC 9110 §7.2): host [":" port] of
// RFC 3986 §3.2 without userinfo ('@' is rejected, as §8.3.1 requires). The
// host is a non-empty reg-name (unreserved, pct-encoded, sub-delims) or a
// bracketed IP literal; the port, if present, is digits only.
func ValidAuthority[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	i := 0
	if s[0] == '[' {
		for i = 1; i < len(s) && s[i] != ']'; i++ {
			if c := s[i]; !authChar[c] || c == '%' && (i == 1 || !pctAt(s, i)) {
				return false
			}
		}
		if i == len(s) || i == 1 {
			return false // no closing bracket, or "[]"
		}
		i++ // past ']'
	} else {
		for ; i < len(s) && s[i] != ':'; i++ {
			if !authChar[s[i]] || s[i] == '%' && !pctAt(s, i) {
				return false
			}
		}
		if i == 0 {
			return false // empty host
		}
	}
	if i == len(s) {
		return true
	}
	if s[i] != ':' {
		return false
	}
	for i++; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// pctAt reports whether s[i] ('%') starts a pct-encoded octet: two hex
// digits follow (RFC 3986 §2.1).
func pctAt[T ~string | ~[]byte](s T, i int) bool {
	return i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2])
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

// ValidFieldName reports whether s is a field name: a token (RFC 9110
// §5.1). HTTP/2 additionally requires lowercase (RFC 9113 §8.2.1), which
// its codec checks itself.
func ValidFieldName[T ~string | ~[]byte](s T) bool { return ValidToken(s) }

// ValidFieldValue reports whether s is a field value (RFC 9110 §5.5): no
// control characters but HTAB (so no NUL, CR or LF, RFC 9113 §8.2.1), no
// DEL, obs-text (0x80-0xFF) allowed, and no leading or trailing SP or HTAB.
// This is stricter than RFC 9113 §8.2.1's minimum on purpose: a value
// forwarded to HTTP/1 must be one an HTTP/1 parser reads the same way.
func ValidFieldValue[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	n := len(s)
	return n == 0 || s[0] != ' ' && s[0] != '\t' && s[n-1] != ' ' && s[n-1] != '\t'
}
