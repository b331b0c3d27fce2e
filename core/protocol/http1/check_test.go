package http1

import (
	"errors"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

func TestAbsoluteFormTarget(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		head     string // "" when rejected
		status   int
	}{
		{"absolute replaces Host", "GET http://a.example/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", "GET /p?q=1 1.1|Host=a.example", 0},
		{"https scheme, port", "GET HTTPS://a.example:8443/x HTTP/1.1\r\nHost: a.example:8443\r\n\r\n", "GET /x 1.1|Host=a.example:8443", 0},
		{"empty path", "GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", "GET / 1.1|Host=a.example", 0},
		{"query without path", "GET http://a.example?x HTTP/1.1\r\nHost: b\r\n\r\n", "GET /?x 1.1|Host=a.example", 0},
		{"HTTP/1.0 without Host gets one", "GET http://a.example/z HTTP/1.0\r\n\r\n", "GET /z 1.0|Host=a.example", 0},
		{"IPv6 literal", "GET http://[::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n", "GET / 1.1|Host=[::1]:80", 0},
		{"OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS * 1.1|Host=a", 0},
		{"empty Host allowed", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET / 1.1|Host=", 0},
		{"userinfo", "GET http://u:p@a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"empty host", "GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"port only", "GET http://:80/p HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"bad scheme", "GET ftp://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"not a scheme", "GET 1ttp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"no slashes", "GET http:a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"fragment", "GET http://a.example#f HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"bad port", "GET http://a.example:8x/ HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"relative target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"asterisk not OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"Host not an authority", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "", 400},
		{"pct-encoded ok", "GET /a%2Fb?q=%41 HTTP/1.1\r\nHost: a\r\n\r\n", "GET /a%2Fb?q=%41 1.1|Host=a", 0},
		{"HTTP/1.0 two Hosts", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "", 400},
		{"short pct-encoding", "GET /%0 HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"non-hex pct-encoding", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", "", 400},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			err := feed(NewRequestParser(DefaultLimits, r), tc.in, len(tc.in))
			if tc.head == "" {
				var pe *protocol.Error
				if !errors.As(err, &pe) || pe.Status != tc.status {
					t.Fatalf("err %v, want status %d", err, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.heads) != 1 || r.heads[0] != tc.head {
				t.Fatalf("heads %q, want %q", r.heads, tc.head)
			}
		})
	}
}

func TestTrailersDropForbidden(t *testing.T) {
	in := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3\r\nabc\r\n0\r\nContent-Length: 5\r\nX-Sum: 1\r\nHost: evil\r\nTransfer-Encoding: chunked\r\n" +
		"Authorization: x\r\nContent-Type: a/b\r\nTrailer: X\r\nConnection: close\r\nTE: trailers\r\nGrpc-Status: 0\r\n\r\n"
	r := &recorder{}
	if err := feed(NewRequestParser(DefaultLimits, r), in, 7); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.trailers, ","); got != "X-Sum=1,Grpc-Status=0" || r.complete != 1 || r.body.String() != "abc" {
		t.Fatalf("trailers %q complete %d body %q", got, r.complete, r.body.String())
	}
	// A trailer section of forbidden fields only: no OnTrailers at all.
	r = &recorder{}
	resp := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 9\r\n\r\n"
	if err := feed(NewResponseParser(DefaultLimits, r), resp, len(resp)); err != nil || len(r.trailers) != 0 || r.complete != 1 {
		t.Fatalf("err %v trailers %q complete %d", err, r.trailers, r.complete)
	}
}

func TestEncodeLastChunkDropsForbidden(t *testing.T) {
	var tr protocol.Headers
	for _, kv := range [][2]string{{"content-length", "5"}, {"x-ok", "1"}, {"host", "evil"}, {"x-bad", "a\r\nb"},
		{"bad name", "v"}, {"transfer-encoding", "chunked"}, {"grpc-status", "0"}} {
		tr.Add(kv[0], []byte(kv[1]))
	}
	b := EncodeLastChunk(&tr)
	defer b.Release()
	if got, want := string(b.Bytes()), "0\r\nx-ok: 1\r\ngrpc-status: 0\r\n\r\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCheckRequestHead(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		fields         [][2]string
		ok             bool
	}{
		{"GET", "/p?q", [][2]string{{"Host", "a:1"}, {"X", "v\tw"}}, true},
		{"GET", "http://a/p", nil, true},
		{"CONNECT", "a.example:443", nil, true},
		{"OPTIONS", "*", nil, true},
		{"GET", "/", [][2]string{{"Host", ""}}, true},
		{"GET", "/", [][2]string{{"X", "\x80obs-text"}}, true},
		{"GE T", "/", nil, false},
		{"", "/", nil, false},
		{"GET\r\n", "/", nil, false},
		{"GET", "", nil, false},
		{"GET", "/a b", nil, false},
		{"GET", "/a\r\nX: y", nil, false},
		{"GET", "/a\x00", nil, false},
		{"GET", "/a\x7f", nil, false},
		{"GET", "/\xff", nil, false},
		{"GET", "*", nil, false},
		{"GET", "a.example:443", nil, false},
		{"CONNECT", "/x", nil, false},
		{"GET", "x://", nil, false},
		{"GET", "/%4", nil, false},
		{"GET", "/%4g", nil, false},
		{"GET", "/", [][2]string{{"X", "a\r\nContent-Length: 0"}}, false},
		{"GET", "/", [][2]string{{"X", "a\nb"}}, false},
		{"GET", "/", [][2]string{{"X", "a\x00"}}, false},
		{"GET", "/", [][2]string{{"X Y", "a"}}, false},
		{"GET", "/", [][2]string{{"X:", "a"}}, false},
		{"GET", "/", [][2]string{{"", "a"}}, false},
		{"GET", "/", [][2]string{{":authority", "a"}}, false},
		{"GET", "/", [][2]string{{"Host", "a b"}}, false},
		{"GET", "/", [][2]string{{"host", "u@a"}}, false},
		{"GET", "/", [][2]string{{"Host", "a"}, {"host", "b"}}, false},
	} {
		h := &Head{Method: []byte(tc.method), Target: []byte(tc.target)}
		for _, f := range tc.fields {
			h.Headers.Add(f[0], []byte(f[1]))
		}
		err := CheckRequestHead(h)
		if (err == nil) != tc.ok {
			t.Errorf("%q %q %q: err %v, want ok=%v", tc.method, tc.target, tc.fields, err, tc.ok)
		}
		var pe *protocol.Error
		if err != nil && (!errors.As(err, &pe) || pe.Status != 400) {
			t.Errorf("%q: err %v, want a 400 protocol.Error", tc.target, err)
		}
	}
}

func TestCheckResponseHead(t *testing.T) {
	for _, tc := range []struct {
		status int
		reason string
		fields [][2]string
		ok     bool
	}{
		{200, "OK", [][2]string{{"X", "v"}}, true},
		{999, "", nil, true},
		{100, "Continue", nil, true},
		{99, "", nil, false},
		{1000, "", nil, false},
		{0, "", nil, false},
		{200, "OK\r\nX: y", nil, false},
		{200, "O\x00K", nil, false},
		{200, "OK", [][2]string{{"X", "a\r\n\r\nHTTP/1.1 200"}}, false},
		{200, "OK", [][2]string{{"X Y", "a"}}, false},
	} {
		h := &Head{Status: tc.status, Reason: []byte(tc.reason)}
		for _, f := range tc.fields {
			h.Headers.Add(f[0], []byte(f[1]))
		}
		if err := CheckResponseHead(h); (err == nil) != tc.ok {
			t.Errorf("%d %q %q: err %v, want ok=%v", tc.status, tc.reason, tc.fields, err, tc.ok)
		}
	}
}

func TestCheckHeadNoAlloc(t *testing.T) {
	h := &Head{Method: []byte("GET"), Target: []byte("/bench?x=1")}
	h.Headers.Add("Host", []byte("bench.example:8080"))
	h.Headers.Add("User-Agent", []byte("bench/1.0"))
	r := &Head{Status: 200, Reason: []byte("OK")}
	r.Headers.Add("Content-Type", []byte("text/plain"))
	if n := testing.AllocsPerRun(100, func() {
		if CheckRequestHead(h) != nil || CheckResponseHead(r) != nil {
			t.Fatal("rejected")
		}
	}); n != 0 {
		t.Fatalf("%v allocs per check", n)
	}
}
