package protocol

// forbiddenTrailers are the fields never taken from, nor sent in, a trailer
// section, by every codec: those that frame the message, route it,
// authenticate it, modify the request, or describe its content, cache or
// connection (RFC 9110 §6.5.1: a recipient must not merge such trailers
// into the header section, and a proxy that forwarded "Content-Length" or
// "Host" as a trailer would let a later hop that merges trailers
// reinterpret the message). It is Go net/http's badTrailer list plus the
// connection-specific fields, content-location, conditionals, set-cookie,
// location, retry-after, vary, date, age and expires. Lowercase.
var forbiddenTrailers = [...]string{
	"te", "host", "age", "date", "vary", "range", "realm", "expect", "pragma", "cookie",
	"expires", "trailer", "upgrade", "location", "if-match", "if-range", "connection",
	"keep-alive", "set-cookie", "retry-after", "content-type", "max-forwards",
	"authorization", "cache-control", "content-range", "if-none-match",
	"content-length", "content-encoding", "content-location", "proxy-connection",
	"www-authenticate", "transfer-encoding", "if-modified-since", "proxy-authenticate",
	"if-unmodified-since", "proxy-authorization",
}

// ForbiddenTrailer reports, case-insensitively, whether name is a field a
// trailer section may not carry (forbiddenTrailers) or a pseudo-field. It
// allocates nothing.
func ForbiddenTrailer[T ~string | ~[]byte](name T) bool {
	if len(name) > 0 && name[0] == ':' {
		return true
	}
	for _, f := range forbiddenTrailers {
		if len(f) != len(name) {
			continue
		}
		i := 0
		for ; i < len(f); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != f[i] {
				break
			}
		}
		if i == len(f) {
			return true
		}
	}
	return false
}
