package tracing

import "math/rand/v2"

// RequestIDLen is the length of a generated x-request-id.
const RequestIDLen = 36

// NewRequestID writes a random UUID (version 4, RFC 9562 variant) into
// dst: 122 random bits from the runtime's per-thread generator, no lock,
// no allocation.
func NewRequestID(dst *[RequestIDLen]byte) {
	var u [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		u[i], u[8+i] = byte(hi>>(8*i)), byte(lo>>(8*i))
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	j := 0
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hexDigits[x>>4], hexDigits[x&15]
		j += 2
	}
}

// ValidRequestID reports whether an incoming x-request-id may be kept: 1
// to 128 visible ASCII characters (anything else is replaced, so a log or
// hash never sees control bytes).
func ValidRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
