package h2test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
)

// TestConnPair: a client and a server Conn over a real socket pair
// exchange the preface, SETTINGS, a header block split over CONTINUATION
// (any field, even an invalid one) and DATA; a read with nothing coming
// times out.
func TestConnPair(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		pre := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, pre); err != nil {
			done <- err
			return
		}
		s := New(c)
		s.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 7})
		block := s.Block(Fields(":status", "200", "X-Invalid Name", "v\r\n", "big", strings.Repeat("b", 100)))
		s.Batch(func() {
			s.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: block[:10]})
			s.WriteContinuation(1, true, block[10:])
			s.WriteData(1, true, []byte("hi"))
		})
		_, err = io.Copy(io.Discard, c)
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cl := New(c)
	cl.Timeout = 5 * time.Second
	set, err := cl.Handshake()
	if err != nil || set[http2.SettingMaxConcurrentStreams] != 7 {
		t.Fatalf("handshake: %v %v", set, err)
	}
	h, err := cl.ReadFrame()
	if err != nil || h.Type != http2.FrameHeaders || !h.HeadersEnded() || h.Get(":status") != "200" ||
		h.Get("X-Invalid Name") != "v\r\n" || len(h.Regular()) != 2 {
		t.Fatalf("headers %v %v: %v", h, h.Fields, err)
	}
	d, err := cl.ReadFrame()
	if err != nil || d.Type != http2.FrameData || string(d.Data) != "hi" || !d.StreamEnded() {
		t.Fatalf("data %v: %v", d, err)
	}
	cl.Timeout = 50 * time.Millisecond
	if f, err := cl.ReadFrame(); err == nil {
		t.Fatalf("read %v with nothing sent", f)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
