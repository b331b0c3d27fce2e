package tinyrpc

import (
	"testing"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
)

func TestDecode(t *testing.T) {
	c := Codec{}
	req := AppendRequest(nil, 7, "echo", "upper", []byte("hi"), false)
	for _, tc := range []struct {
		name    string
		in      []byte
		n       int
		kind    xprotocol.Kind
		id      uint64
		service string
		method  string
		err     bool
	}{
		{"request", req, len(req), xprotocol.Request, 7, "echo", "upper", false},
		{"oneway", AppendRequest(nil, 8, "s", "m", nil, true), 14 + 3, xprotocol.Oneway, 8, "s", "m", false},
		{"response", AppendResponse(nil, 9, StatusBusy, []byte("x")), 15, xprotocol.Response, 9, "", "", false},
		{"heartbeat", c.AppendHeartbeat(nil, 10), 14, xprotocol.Heartbeat, 10, "", "", false},
		{"partial header", req[:5], 0, 0, 0, "", "", false},
		{"partial body", req[:len(req)-1], 0, 0, 0, "", "", false},
		{"bad magic", []byte("GET / HTTP/1.1\r\n"), 0, 0, 0, "", "", true},
		{"bad magic early", []byte{0xA7, 'X'}, 0, 0, 0, "", "", true},
		{"unknown kind", append([]byte{0xA7, 'T', 9}, make([]byte, 11)...), 0, 0, 0, "", "", true},
		{"oversized", []byte{0xA7, 'T', 0, 0, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff}, 0, 0, 0, "", "", true},
	} {
		var f xprotocol.Frame
		n, err := c.Decode(tc.in, &f)
		if (err != nil) != tc.err || n != tc.n {
			t.Errorf("%s: n=%d err=%v, want n=%d err=%v", tc.name, n, err, tc.n, tc.err)
			continue
		}
		if n == 0 {
			continue
		}
		if f.Kind != tc.kind || f.ID != tc.id || string(f.Headers.Get(xprotocol.FieldService)) != tc.service ||
			string(f.Headers.Get(xprotocol.FieldMethod)) != tc.method {
			t.Errorf("%s: %+v", tc.name, f)
		}
	}
	// SetID rewrites in place; error replies keep the request's ID.
	c.SetID(req, 99)
	var f xprotocol.Frame
	c.Decode(req, &f)
	if f.ID != 99 {
		t.Fatalf("SetID: id %d", f.ID)
	}
	errFrame := c.AppendError(nil, &f, 404, "no route")
	c.Decode(errFrame, &f)
	if f.ID != 99 || c.HTTPStatus(&f) != 404 {
		t.Fatalf("AppendError: id %d status %d", f.ID, c.HTTPStatus(&f))
	}
	for _, tc := range []struct {
		in   []byte
		want xprotocol.MatchResult
	}{{nil, xprotocol.NeedMore}, {[]byte{0xA7}, xprotocol.NeedMore}, {[]byte{0xA7, 'T'}, xprotocol.Match}, {[]byte("TRACE"), xprotocol.NoMatch}} {
		if got := c.Match(tc.in); got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
