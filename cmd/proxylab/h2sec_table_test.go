package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/protocol/http2"
)

// h2Case is one request of the RFC 9113 §8.2/§8.3 table.
type h2Case struct {
	name   string
	fields []http2.HeaderField
	body   []byte // nil: END_STREAM on HEADERS
	// want: "rst" (RST_STREAM PROTOCOL_ERROR, nothing upstream), "fwd"
	// (exactly one well-formed HTTP/1.1 request upstream, then check), or
	// a status the proxy answers itself with nothing upstream.
	want  string
	check func(t *testing.T, r *http.Request, body []byte)
}

// pseudo builds a request whose pseudo-fields are given in full.
func pseudo(kv ...string) []http2.HeaderField { return hf(kv...) }

func h2Cases() []h2Case {
	bad := func(name string, fields []http2.HeaderField) h2Case {
		return h2Case{name: name, fields: fields, want: "rst"}
	}
	withMethod := func(m string) []http2.HeaderField {
		return pseudo(":method", m, ":scheme", "$s", ":authority", "example.com", ":path", "/t")
	}
	withPath := func(p string) []http2.HeaderField {
		return pseudo(":method", "GET", ":scheme", "$s", ":authority", "example.com", ":path", p)
	}
	withAuthority := func(a string) []http2.HeaderField {
		return pseudo(":method", "GET", ":scheme", "$s", ":authority", a, ":path", "/t")
	}
	withScheme := func(s string) []http2.HeaderField {
		return pseudo(":method", "GET", ":scheme", s, ":authority", "example.com", ":path", "/t")
	}
	cs := []h2Case{
		// :method (§8.3.1, RFC 9110 §9.1: a token)
		bad("method with SP", withMethod("GET /x HTTP/1.1")),
		bad("method with CRLF", withMethod("GE\r\nT")),
		bad("method with LF", withMethod("GET\n")),
		bad("method with NUL", withMethod("GET\x00")),
		bad("method empty", withMethod("")),
		bad("method non-token", withMethod("G(T")),
		bad("method smuggling a request", withMethod("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET")),
		// :path
		bad("path with CRLF header injection", withPath("/a\r\nX-Injected: 1")),
		bad("path smuggling a request", withPath("/ HTTP/1.1\r\nHost: evil\r\n\r\nGET /")),
		bad("path with SP", withPath("/a b")),
		bad("path with HTAB", withPath("/a\tb")),
		bad("path with NUL", withPath("/a\x00")),
		bad("path with DEL", withPath("/a\x7f")),
		bad("path non-ASCII", withPath("/\xc3\xa9")),
		bad("path empty", withPath("")),
		bad("path relative", withPath("a")),
		bad("path with fragment", withPath("/a#/../admin")),
		bad("path asterisk with GET", withPath("*")),
		// :authority (no userinfo, host[:port])
		bad("authority with SP", withAuthority("a b")),
		bad("authority with CRLF", withAuthority("a\r\nX-Injected: 1")),
		bad("authority with userinfo", withAuthority("user@example.com")),
		bad("authority with user:pass", withAuthority("u:p@example.com")),
		bad("authority empty", withAuthority("")),
		bad("authority with path", withAuthority("example.com/p")),
		bad("authority with NUL", withAuthority("example.com\x00")),
		bad("authority bad port", withAuthority("example.com:80x")),
		bad("authority open bracket", withAuthority("[::1")),
		// :scheme (RFC 3986 §3.1)
		bad("scheme with SP", withScheme("ht tp")),
		bad("scheme with CRLF", withScheme("http\r\nX-Injected: 1")),
		bad("scheme empty", withScheme("")),
		bad("scheme starts with digit", withScheme("1http")),
		// presence, duplicates, order, unknown pseudo-fields
		bad("missing :method", pseudo(":scheme", "$s", ":authority", "example.com", ":path", "/t")),
		bad("missing :path", pseudo(":method", "GET", ":scheme", "$s", ":authority", "example.com")),
		bad("missing :scheme", pseudo(":method", "GET", ":authority", "example.com", ":path", "/t")),
		bad("duplicate :method", append(withMethod("GET"), hf(":method", "POST")...)),
		bad("duplicate :path", append(withPath("/t"), hf(":path", "/u")...)),
		bad("duplicate :scheme", append(withPath("/t"), hf(":scheme", "$s")...)),
		bad("duplicate :authority", append(withPath("/t"), hf(":authority", "other.example")...)),
		bad("pseudo after regular", append(hf(":method", "GET", ":scheme", "$s", ":authority", "example.com", "accept", "*/*"), hf(":path", "/t")...)),
		bad("unknown pseudo", get("/t", ":foo", "bar")),
		bad("unknown pseudo first", append(hf(":foo", "bar"), withPath("/t")...)),
		bad("response pseudo in request", append(hf(":status", "200"), withPath("/t")...)),
		bad(":protocol without CONNECT", append(withPath("/t"), hf(":protocol", "websocket")...)),
		bad("no :authority and no host", pseudo(":method", "GET", ":scheme", "$s", ":path", "/t")),
		// field names (§8.2.1: lowercase token)
		bad("uppercase name", get("/t", "X-Upper", "1")),
		bad("name with SP", get("/t", "x foo", "1")),
		bad("name with colon", get("/t", "x:foo", "1")),
		bad("empty name", get("/t", "", "1")),
		bad("name with CR", get("/t", "x\rfoo", "1")),
		bad("name with LF", get("/t", "x\nfoo", "1")),
		bad("name with NUL", get("/t", "x\x00", "1")),
		bad("name non-ASCII", get("/t", "\xc3\xa9", "1")),
		// field values (§8.2.1)
		bad("value with CRLF header injection", get("/t", "x-a", "a\r\nX-Injected: 1")),
		bad("value with LF", get("/t", "x-a", "a\nb")),
		bad("value with CR", get("/t", "x-a", "a\rb")),
		bad("value with NUL", get("/t", "x-a", "a\x00b")),
		bad("value with CTL", get("/t", "x-a", "a\x01b")),
		bad("value leading SP", get("/t", "x-a", " a")),
		bad("value trailing SP", get("/t", "x-a", "a ")),
		bad("value leading HTAB", get("/t", "x-a", "\ta")),
		bad("value trailing HTAB", get("/t", "x-a", "a\t")),
		// connection-specific fields (§8.2.2)
		bad("connection", get("/t", "connection", "close")),
		bad("keep-alive", get("/t", "keep-alive", "timeout=5")),
		bad("proxy-connection", get("/t", "proxy-connection", "keep-alive")),
		bad("transfer-encoding", get("/t", "transfer-encoding", "chunked")),
		bad("upgrade", get("/t", "upgrade", "websocket")),
		bad("te gzip", get("/t", "te", "gzip")),
		bad("te trailers and more", get("/t", "te", "trailers, gzip")),
		// host
		bad("host invalid", pseudo(":method", "GET", ":scheme", "$s", ":path", "/t", "host", "a b")),
		bad("host with userinfo", pseudo(":method", "GET", ":scheme", "$s", ":path", "/t", "host", "u@example.com")),
		bad("two host fields", get("/t", "host", "a.example", "host", "b.example")),
		// content-length (§8.1.1)
		bad("content-length without DATA", get("/t", "content-length", "5")),
		bad("content-length not a number", get("/t", "content-length", "abc")),
		{name: "content-length below DATA", fields: hf(":method", "POST", ":scheme", "$s", ":authority", "example.com", ":path", "/t", "content-length", "3"), body: []byte("hello"), want: "rst"},
		// CONNECT (§8.5, RFC 8441)
		bad("CONNECT with :path", pseudo(":method", "CONNECT", ":authority", "example.com:443", ":path", "/")),
		bad("CONNECT with :scheme", pseudo(":method", "CONNECT", ":scheme", "$s", ":authority", "example.com:443")),
		bad("CONNECT without :authority", pseudo(":method", "CONNECT")),
		bad("extended CONNECT without :path", pseudo(":method", "CONNECT", ":protocol", "websocket", ":scheme", "$s", ":authority", "example.com")),
		// A tunnel cannot start half-closed, and this listener did not
		// advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3); the
		// tunnels themselves are tested in tunnel_h2_test.go.
		bad("CONNECT with END_STREAM", pseudo(":method", "CONNECT", ":authority", "example.com:443")),
		bad("extended CONNECT not advertised", pseudo(":method", "CONNECT", ":protocol", "websocket", ":scheme", "$s", ":authority", "example.com", ":path", "/chat")),
	}
	ok := func(name string, fields []http2.HeaderField, check func(t *testing.T, r *http.Request, body []byte)) h2Case {
		return h2Case{name: name, fields: fields, want: "fwd", check: check}
	}
	return append(cs,
		ok("GET", get("/t"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.Method != "GET" || r.RequestURI != "/t" || r.Host != "example.com" {
				t.Errorf("%s %s Host %q", r.Method, r.RequestURI, r.Host)
			}
		}),
		ok("query", get("/t?a=b%20c&d"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.RequestURI != "/t?a=b%20c&d" {
				t.Errorf("target %q", r.RequestURI)
			}
		}),
		ok("extension method", pseudo(":method", "PURGE", ":scheme", "$s", ":authority", "example.com", ":path", "/t"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.Method != "PURGE" {
				t.Errorf("method %q", r.Method)
			}
		}),
		ok("OPTIONS asterisk", pseudo(":method", "OPTIONS", ":scheme", "$s", ":authority", "example.com", ":path", "*"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.Method != "OPTIONS" || r.RequestURI != "*" {
				t.Errorf("%s %q", r.Method, r.RequestURI)
			}
		}),
		h2Case{name: "POST with content-length", fields: hf(":method", "POST", ":scheme", "$s", ":authority", "example.com", ":path", "/t", "content-length", "5"), body: []byte("hello"), want: "fwd",
			check: func(t *testing.T, r *http.Request, body []byte) {
				if r.Method != "POST" || string(body) != "hello" || r.ContentLength != 5 {
					t.Errorf("%s %q cl=%d", r.Method, body, r.ContentLength)
				}
			}},
		h2Case{name: "POST without content-length", fields: hf(":method", "POST", ":scheme", "$s", ":authority", "example.com", ":path", "/t"), body: []byte("hello"), want: "fwd",
			check: func(t *testing.T, r *http.Request, body []byte) {
				if string(body) != "hello" {
					t.Errorf("body %q", body)
				}
			}},
		ok("te trailers", get("/t", "te", "trailers"), nil),
		ok("cookie crumbs joined", get("/t", "cookie", "a=1", "cookie", "b=2"), func(t *testing.T, r *http.Request, _ []byte) {
			if got := r.Header.Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
				t.Errorf("Cookie %q", got)
			}
		}),
		ok("host equal to :authority", get("/t", "host", "example.com"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.Host != "example.com" {
				t.Errorf("Host %q", r.Host)
			}
		}),
		ok("host differs from :authority: :authority wins", get("/t", "host", "other.example"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.Host != "example.com" {
				t.Errorf("Host %q", r.Host)
			}
		}),
		ok("host without :authority", pseudo(":method", "GET", ":scheme", "$s", ":path", "/t", "host", "h.example:8080"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.Host != "h.example:8080" {
				t.Errorf("Host %q", r.Host)
			}
		}),
		ok("authority with port", withAuthority("example.com:8443"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.Host != "example.com:8443" {
				t.Errorf("Host %q", r.Host)
			}
		}),
		ok("authority IPv6", withAuthority("[::1]:8080"), func(t *testing.T, r *http.Request, _ []byte) {
			if r.Host != "[::1]:8080" {
				t.Errorf("Host %q", r.Host)
			}
		}),
		ok("value with inner SP and HTAB", get("/t", "x-a", "a b\tc"), func(t *testing.T, r *http.Request, _ []byte) {
			if got := r.Header.Get("X-A"); got != "a b\tc" {
				t.Errorf("X-A %q", got)
			}
		}),
		ok("value with obs-text", get("/t", "x-a", "caf\xc3\xa9"), func(t *testing.T, r *http.Request, _ []byte) {
			if got := r.Header.Get("X-A"); got != "caf\xc3\xa9" {
				t.Errorf("X-A %q", got)
			}
		}),
		ok("empty value", get("/t", "x-empty", ""), nil),
		ok("name of every tchar", get("/t", "x-a!#$%&'*+.^_`|~0", "1"), func(t *testing.T, r *http.Request, _ []byte) {
			if _, ok := r.Header["X-A!#$%&'*+.^_`|~0"]; !ok {
				t.Errorf("field missing: %v", r.Header)
			}
		}),
	)
}

// TestH2RequestValidationTable sends every case as raw frames through the
// real binary: invalid requests get RST_STREAM PROTOCOL_ERROR and nothing
// reaches the upstream; valid ones reach it as exactly one well-formed
// HTTP/1.1 request. After each case a sentinel request on the same
// connection proves the connection lives and orders the upstream's view.
func TestH2RequestValidationTable(t *testing.T) {
	cases := h2Cases()
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startRecUpstream(t)
		p := startProxy(t, h2secConfig(tr, pk, up.addr, closedPort(t)))
		for _, l := range h2Listeners {
			t.Run(l, func(t *testing.T) {
				h := dialH2(t, p, l, pk)
				id := uint32(1)
				for _, c := range cases {
					mark := up.mark()
					h.send(id, c.fields, c.body)
					res := h.await(id)
					h.send(id+2, get(fmt.Sprintf("/sentinel-%d", id)), nil)
					sent := h.await(id + 2)
					if sent.status != "200" {
						t.Fatalf("%s: sentinel got %v (case got %v)", c.name, sent, res)
					}
					seen := up.since(mark)
					t.Run(c.name, func(t *testing.T) { checkCase(t, c, res, seen, id) })
					id += 4
				}
			})
		}
	})
}

// checkCase asserts one case's outcome and what the upstream received:
// the case's request (when forwarded) then the sentinel, nothing else.
func checkCase(t *testing.T, c h2Case, res h2Result, seen []byte, id uint32) {
	switch c.want {
	case "rst":
		if !res.rst || res.code != http2.ErrCodeProtocol {
			t.Errorf("got %v, want RST_STREAM PROTOCOL_ERROR", res)
		}
	case "fwd":
		if res.status != "200" || string(res.body) != upstreamBody {
			t.Errorf("got %v, want the upstream's 200", res)
		}
	default:
		if res.status != c.want {
			t.Errorf("got %v, want %s from the proxy", res, c.want)
		}
	}
	br := bufio.NewReader(bytes.NewReader(seen))
	if c.want == "fwd" {
		r, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("upstream request does not parse: %v\n%q", err, seen)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatalf("upstream body: %v\n%q", err, seen)
		}
		// ReadRequest refuses two Host fields; an injected line would show.
		if r.Header.Get("X-Injected") != "" {
			t.Errorf("smuggled fields: %v", r.Header)
		}
		if c.check != nil {
			c.check(t, r, body)
		}
	}
	r, err := http.ReadRequest(br)
	if err != nil || r.RequestURI != fmt.Sprintf("/sentinel-%d", id) {
		t.Fatalf("upstream received more than the case's request before the sentinel (%v):\n%q", err, seen)
	}
	io.Copy(io.Discard, r.Body)
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Fatalf("upstream received bytes after the sentinel: %q\nall: %q", rest, seen)
	}
	if strings.Contains(string(seen), "X-Injected") || strings.Contains(string(seen), "evil") {
		t.Fatalf("injected bytes reached the upstream:\n%q", seen)
	}
}
