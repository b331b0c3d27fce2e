package proxy

import "testing"

func TestSplitAuthority(t *testing.T) {
	for in, want := range map[string]string{
		"example.com:443": "example.com 443", "EXAMPLE.com:443": "example.com 443",
		"127.0.0.1:1": "127.0.0.1 1", "[::1]:22": "::1 22", "a-b.c:65535": "a-b.c 65535",
	} {
		h, p, ok := splitAuthority([]byte(in))
		if !ok || h+" "+p != want {
			t.Errorf("%q → %q %q %v, want %s", in, h, p, ok, want)
		}
	}
	for _, bad := range []string{"", "example.com", "example.com:", ":443", "example.com:0", "example.com:65536",
		"example.com:+1", "u@example.com:443", "/path", "a b:1", "::1:22", "[::1]", "exa_mple.com:1", "h:1/x", "[v]:1", "[127.0.0.1]:1", "[::ffff:127.0.0.1]:1", "[fe80::1%eth0]:1"} {
		if h, p, ok := splitAuthority([]byte(bad)); ok {
			t.Errorf("%q accepted as %q %q", bad, h, p)
		}
	}
}
