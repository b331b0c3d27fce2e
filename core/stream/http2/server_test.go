package http2

import (
	"testing"

	"golang.org/x/net/http2"
)

func TestServerSimpleGet(t *testing.T) {
	h := newHarness(t, Settings{})
	h.handshake()
	h.get(1)
	f := h.expect(http2.FrameHeaders)
	m := h.decode(f)
	if m[":status"] != "200" || m["content-type"] != "text/plain" || m["content-length"] != "2" {
		t.Fatalf("response head %v", m)
	}
	d := h.expect(http2.FrameData).(*http2.DataFrame)
	if string(d.Data()) != "ok" || !d.StreamEnded() {
		t.Fatalf("data %q end=%v", d.Data(), d.StreamEnded())
	}
	s := h.app.streams[0]
	if string(s.head.Method) != "GET" || string(s.head.Target) != "/" || string(s.head.Headers.Get("host")) != "example.com" {
		t.Fatalf("request head %s %s host=%s", s.head.Method, s.head.Target, s.head.Headers.Get("host"))
	}
}
