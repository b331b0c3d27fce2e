package protocol

import "testing"

func TestValidators(t *testing.T) {
	type tc struct {
		s  string
		ok bool
	}
	for _, c := range []struct {
		name string
		f    func(string) bool
		cs   []tc
	}{
		{"method", ValidMethod[string], []tc{
			{"GET", true}, {"M-SEARCH", true}, {"get", true}, {"", false}, {"GET ", false},
			{"G\rET", false}, {"GET\n", false}, {"GET /x HTTP/1.1\r\n\r\nGET", false}, {"G\x00", false}, {"GE(T", false},
		}},
		{"target", ValidRequestTarget[string], []tc{
			{"/", true}, {"/a?b=c&d=%20", true}, {"*", true}, {"http://h/x", true}, {"", false},
			{"/a b", false}, {"/a\r\nX: y", false}, {"/a#frag", false}, {"/a|{b}\"", true}, {"/\x00", false}, {"/\x7f", false}, {"/\xc3\xa9", false}, {"/\t", false},
		}},
		{"scheme", ValidScheme[string], []tc{
			{"http", true}, {"HTTPS", true}, {"a+b-c.d", true}, {"x1", true}, {"", false}, {"1x", false},
			{"+x", false}, {"ht tp", false}, {"http\r\n", false}, {"h:", false},
		}},
		{"authority", ValidAuthority[string], []tc{
			{"example.com", true}, {"example.com:8080", true}, {"127.0.0.1:1", true}, {"[::1]", true},
			{"[::1]:443", true}, {"[fe80::1%25eth0]", true}, {"a_b~c!$&'()*+,;=", true}, {"h:", true},
			{"", false}, {":80", false}, {"user@host", false}, {"u:p@host", false}, {"host:8x", false},
			{"ho st", false}, {"host\r\nX: y", false}, {"host/path", false}, {"[::1", false}, {"[]", false},
			{"[::1]x", false}, {"host\x00", false}, {"h#", false}, {"h?", false},
			{"a%41b", true}, {"a%4", false}, {"a%zz", false}, {"a%", false}, {"[fe80::1%2]", false},
		}},
		{"name", ValidFieldName[string], []tc{
			{"x-a", true}, {"X-A", true}, {"", false}, {"a b", false}, {"a:", false}, {":path", false}, {"a\r", false}, {"\x00", false},
		}},
		{"value", ValidFieldValue[string], []tc{
			{"", true}, {"a b", true}, {"a\tb", true}, {"\xff", true}, {" a", false}, {"a ", false}, {"\ta", false},
			{"a\r\nX: y", false}, {"a\x00", false}, {"a\n", false}, {"a\x01", false}, {"a\x7f", false},
		}},
	} {
		for _, x := range c.cs {
			if got := c.f(x.s); got != x.ok {
				t.Errorf("%s(%q) = %v, want %v", c.name, x.s, got, x.ok)
			}
		}
	}
	if !ValidMethod([]byte("GET")) || ValidAuthority([]byte("a@b")) {
		t.Error("[]byte forms disagree")
	}
}

func TestValidatorsDoNotAllocate(t *testing.T) {
	b := []byte("example.com:8080")
	n := testing.AllocsPerRun(100, func() {
		_ = ValidMethod(b) && ValidRequestTarget(b) && ValidScheme(b) && ValidAuthority(b) &&
			ValidFieldName(b) && ValidFieldValue(b) && ValidAuthority("example.com")
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
