package rbac

import "bytes"

// normPath is the path url_path permissions are matched against: the path
// as an upstream that resolves it would see it, so a policy on /public/
// cannot be passed with /public/../admin. Percent-encoded unreserved
// characters and slashes are decoded, dot segments removed (RFC 3986
// §5.2.4) and repeated slashes merged (Envoy's normalize_path and
// merge_slashes, applied for matching only: the request is forwarded as
// it came). Paths that need none of it are returned as they are, without
// allocating.
func normPath(p []byte) []byte {
	if bytes.IndexByte(p, '%') < 0 && bytes.Index(p, []byte("/.")) < 0 && bytes.Index(p, []byte("//")) < 0 {
		return p
	}
	dec := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if c, ok := unhex(p[i+1], p[i+2]); ok && (unreserved(c) || c == '/') {
				dec = append(dec, c)
				i += 2
				continue
			}
		}
		dec = append(dec, p[i])
	}
	out := make([]byte, 0, len(dec)+1)
	segs := bytes.Split(dec, []byte("/"))
	trailing := len(dec) > 0 && dec[len(dec)-1] == '/'
	var stack [][]byte
	for _, s := range segs {
		switch string(s) {
		case "", ".":
		case "..":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		default:
			stack = append(stack, s)
		}
	}
	for _, s := range stack {
		out = append(append(out, '/'), s...)
	}
	if len(segs) > 0 {
		last := string(segs[len(segs)-1])
		trailing = trailing || last == "." || last == ".."
	}
	if trailing || len(out) == 0 {
		out = append(out, '/')
	}
	return out
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(a, b byte) (byte, bool) {
	h, ok1 := hexVal(a)
	l, ok2 := hexVal(b)
	return h<<4 | l, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
