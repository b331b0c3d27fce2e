package proxy

import (
	"testing"
	"time"
)

func TestGRPCTimeout(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1S", time.Second, true},
		{"250m", 250 * time.Millisecond, true},
		{"3H", 3 * time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"10u", 10 * time.Microsecond, true},
		{"99999999n", 99999999, true},
		{"123456789S", 0, false}, // more than 8 digits
		{"5", 0, false},
		{"5s", 0, false}, // units are case-sensitive
		{"-1S", 0, false},
		{"", 0, false},
	}
	for _, c := range cases {
		d, ok := grpcTimeout([]byte(c.in))
		if d != c.want || ok != c.ok {
			t.Errorf("%q: %v %v, want %v %v", c.in, d, ok, c.want, c.ok)
		}
	}
}

func TestGRPCStatusAndMessage(t *testing.T) {
	for _, c := range []struct {
		status int
		flags  string
		want   int
	}{{503, "UH", 14}, {502, "UC", 14}, {504, "UT", 4}, {404, "NR", 12}, {400, "", 13}, {500, "", 2}} {
		if got := grpcStatus(c.status, c.flags); got != c.want {
			t.Errorf("%d %s: %d, want %d", c.status, c.flags, got, c.want)
		}
	}
	if got := string(grpcMessage("no route: 100%\n")); got != "no route: 100%25%0A" {
		t.Errorf("grpc-message %q", got)
	}
}
