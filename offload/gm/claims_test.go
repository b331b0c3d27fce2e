package gm

import "testing"

// TestClaims: gm claims TLCP ClientHellos by their record version and asks
// for more bytes when too few arrived to read it; TLS and plaintext are
// not its own.
func TestClaims(t *testing.T) {
	cases := []struct {
		name          string
		first         []byte
		match, needMo bool
	}{
		{"tlcp hello", []byte{0x16, 0x01, 0x01, 0x00, 0x40}, true, false},
		{"tls 1.0 record", []byte{0x16, 0x03, 0x01, 0x00, 0x40}, false, false},
		{"tls 1.2 record", []byte{0x16, 0x03, 0x03}, false, false},
		{"one byte", []byte{0x16}, false, true},
		{"two bytes", []byte{0x16, 0x01}, false, true},
		{"http", []byte("GET / HTTP/1.1\r\n"), false, false},
		{"empty", nil, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			match, more := (&server{}).Claims(c.first)
			if match != c.match || more != c.needMo {
				t.Fatalf("Claims(% x) = %v, %v; want %v, %v", c.first, match, more, c.match, c.needMo)
			}
		})
	}
}
