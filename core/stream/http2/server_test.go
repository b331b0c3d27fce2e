package http2

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/protocol/http2/h2test"

	"github.com/proxylab/proxylab/foundation/timer"
)

func TestServerSimpleGet(t *testing.T) {
	h := newHarness(t, Settings{})
	h.handshake()
	h.get(1)
	m := h.decode(h.expect(http2.FrameHeaders))
	if m[":status"] != "200" || m["content-type"] != "text/plain" || m["content-length"] != "2" {
		t.Fatalf("response head %v", m)
	}
	d := h.expect(http2.FrameData)
	if string(d.Data) != "ok" || !d.StreamEnded() {
		t.Fatalf("data %q end=%v", d.Data, d.StreamEnded())
	}
	s := h.app.streams[0]
	if string(s.head.Method) != "GET" || string(s.head.Target) != "/" || string(s.head.Headers.Get("host")) != "example.com" {
		t.Fatalf("request head %s %s host=%s", s.head.Method, s.head.Target, s.head.Headers.Get("host"))
	}
	if n := len(h.sc.streams); n != 0 {
		t.Fatalf("%d streams left after a complete exchange", n)
	}
}

// TestServerConnectionErrors: each case breaks the protocol so that the
// whole connection must end with GOAWAY and the given code (RFC 9113 §5.4.1).
func TestServerConnectionErrors(t *testing.T) {
	cases := []struct {
		name string
		set  Settings
		send func(h *harness)
		code http2.ErrCode
	}{
		{"HEADERS on an even stream (§5.1.1)", Settings{}, func(h *harness) { h.get(2) }, http2.ErrCodeProtocol},
		{"stream id going down (§5.1.1)", Settings{}, func(h *harness) { h.get(5); h.get(3) }, http2.ErrCodeProtocol},
		{"DATA on an idle stream (§5.1)", Settings{}, func(h *harness) { h.fr.WriteData(7, true, []byte("x")); h.send() }, http2.ErrCodeProtocol},
		{"RST_STREAM on an idle stream (§6.4)", Settings{}, func(h *harness) { h.fr.WriteRSTStream(9, http2.ErrCodeCancel); h.send() }, http2.ErrCodeProtocol},
		{"WINDOW_UPDATE on an idle stream (§6.9)", Settings{}, func(h *harness) { h.fr.WriteWindowUpdate(9, 10); h.send() }, http2.ErrCodeProtocol},
		{"PUSH_PROMISE from a client (§6.6)", Settings{}, func(h *harness) {
			h.fr.WritePushPromise(1, 2, true, nil)
			h.send()
		}, http2.ErrCodeProtocol},
		{"CONTINUATION without HEADERS (§6.10)", Settings{}, func(h *harness) { h.fr.WriteContinuation(1, true, nil); h.send() }, http2.ErrCodeProtocol},
		{"HEADERS interleaved before CONTINUATION (§6.10)", Settings{}, func(h *harness) {
			h.fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: []byte{0x82}, EndHeaders: false})
			h.fr.WriteData(1, false, []byte("x"))
			h.send()
		}, http2.ErrCodeProtocol},
		{"zero WINDOW_UPDATE on the connection (§6.9)", Settings{}, func(h *harness) {
			h.sendBytes([]byte{0, 0, 4, byte(http2.FrameWindowUpdate), 0, 0, 0, 0, 0, 0, 0, 0, 0})
		}, http2.ErrCodeProtocol},
		{"connection window overflow (§6.9.1)", Settings{}, func(h *harness) { h.fr.WriteWindowUpdate(0, 1<<31-1); h.send() }, http2.ErrCodeFlowControl},
		{"SETTINGS_ENABLE_PUSH of 2 (§6.5.2)", Settings{}, func(h *harness) {
			h.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 2})
			h.send()
		}, http2.ErrCodeProtocol},
		{"SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 (§6.5.2)", Settings{}, func(h *harness) {
			h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
			h.send()
		}, http2.ErrCodeFlowControl},
		{"SETTINGS ACK with a payload (§6.5)", Settings{}, func(h *harness) {
			h.sendBytes([]byte{0, 0, 6, byte(http2.FrameSettings), 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1})
		}, http2.ErrCodeFrameSize},
		{"PING of 7 bytes (§6.7)", Settings{}, func(h *harness) {
			h.sendBytes([]byte{0, 0, 7, byte(http2.FramePing), 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7})
		}, http2.ErrCodeFrameSize},
		{"frame above SETTINGS_MAX_FRAME_SIZE (§4.2)", Settings{}, func(h *harness) {
			h.fr.WriteData(1, false, make([]byte, 20000))
			h.send()
		}, http2.ErrCodeFrameSize},
		{"invalid HPACK (§4.3)", Settings{}, func(h *harness) {
			h.fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0x7f}, EndHeaders: true, EndStream: true})
			h.send()
		}, http2.ErrCodeCompression},
		{"CONTINUATION flood (CVE-2024-27316)", Settings{MaxHeaderListSize: 4096}, func(h *harness) {
			h.fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: []byte{0x82}, EndHeaders: false})
			for i := 0; i < 2000; i++ {
				h.fr.WriteContinuation(1, false, []byte{0x40, 0x01, 'a', 0x01, 'b'})
			}
			h.send()
		}, http2.ErrCodeEnhanceYourCalm},
		{"empty CONTINUATION flood", Settings{MaxHeaderListSize: 4096}, func(h *harness) {
			h.fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: []byte{0x82}, EndHeaders: false})
			for i := 0; i < 5000; i++ {
				h.fr.WriteContinuation(1, false, nil)
			}
			h.send()
		}, http2.ErrCodeEnhanceYourCalm},
		{"rapid reset (CVE-2023-44487)", Settings{ResetBurst: 10, ResetRate: 1}, func(h *harness) {
			h.app.auto = false
			for id := uint32(1); id < 60; id += 2 {
				h.get(id)
				h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
				h.send()
			}
		}, http2.ErrCodeEnhanceYourCalm},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.set)
			h.handshake()
			tc.send(h)
			h.expectGoAway(tc.code)
			if !h.fc.wclosed && !h.fc.closed {
				t.Fatal("connection not closed after GOAWAY")
			}
		})
	}
}

// TestServerStreamErrors: each case is a stream error: RST_STREAM on that
// stream with the code, and the connection goes on serving (§5.4.2).
func TestServerStreamErrors(t *testing.T) {
	req := []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}
	with := func(kv ...string) []string { return append(append([]string(nil), req...), kv...) }
	malformed := []struct {
		name string
		kv   []string
	}{
		{"uppercase field name (§8.2.1)", with("X-Upper", "1")},
		{"connection-specific field (§8.2.2)", with("connection", "keep-alive")},
		{"transfer-encoding (§8.2.2)", with("transfer-encoding", "chunked")},
		{"TE other than trailers (§8.2.2)", with("te", "gzip")},
		{"missing :path (§8.3.1)", []string{":method", "GET", ":scheme", "http", ":authority", "a"}},
		{"missing :method (§8.3.1)", []string{":scheme", "http", ":path", "/"}},
		{"pseudo-field after a regular one (§8.3)", []string{":method", "GET", "x", "1", ":scheme", "http", ":path", "/"}},
		{"unknown pseudo-field (§8.3)", with(":protocol2", "x")},
		{"duplicate :path (§8.3.1)", with(":path", "/again")},
		{"response pseudo-field in a request (§8.3)", with(":status", "200")},
		{"field value with a newline (§8.2.1)", with("x", "a\nb")},
		{"content-length with a bodyless request (§8.1.1)", with("content-length", "5")},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Settings{})
			h.handshake()
			h.headers(1, true, tc.kv...)
			h.expectRST(1, http2.ErrCodeProtocol)
			if len(h.app.streams) != 0 {
				t.Fatal("a malformed request reached the proxy")
			}
			if h.sc.set.Stats.MalformedRequests.Load() != 1 {
				t.Fatal("not counted")
			}
			h.get(3) // the connection still serves
			if m := h.decode(h.expect(http2.FrameHeaders)); m[":status"] != "200" {
				t.Fatalf("next stream: %v", m)
			}
		})
	}

	t.Run("content-length mismatch in DATA (§8.1.1)", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.handshake()
		h.headers(1, false, with("content-length", "3")...)
		h.fr.WriteData(1, true, []byte("toolong"))
		h.send()
		h.expectRST(1, http2.ErrCodeProtocol)
		if s := h.app.streams[0]; s.reset == nil {
			t.Fatal("the proxy's stream was not told")
		}
	})
	t.Run("trailers without END_STREAM (§8.1)", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.handshake()
		h.headers(1, false, req...)
		h.headers(1, false, "x-trailer", "1")
		h.expectRST(1, http2.ErrCodeProtocol)
	})
	t.Run("DATA after END_STREAM (§5.1 half-closed)", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.app.auto = false
		h.handshake()
		h.get(1)
		h.fr.WriteData(1, false, []byte("late"))
		h.send()
		h.expectRST(1, http2.ErrCodeStreamClosed)
	})
	t.Run("stream window exceeded (§6.9.1)", func(t *testing.T) {
		h := newHarness(t, Settings{InitialStreamWindow: 65535})
		h.app.auto, h.app.hold = false, true
		h.handshake()
		h.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a")
		for n := 0; n < 65535; n += 16384 {
			h.fr.WriteData(1, false, make([]byte, min(16384, 65535-n)))
		}
		h.send()
		if f := h.next(); f != nil {
			t.Fatalf("within the window: %v", describe(f))
		}
		h.fr.WriteData(1, false, []byte("x"))
		h.send()
		h.expectRST(1, http2.ErrCodeFlowControl)
	})
	t.Run("stream window overflow by WINDOW_UPDATE (§6.9.1)", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.app.auto = false
		h.handshake()
		h.get(1)
		h.fr.WriteWindowUpdate(1, 1<<31-1)
		h.send()
		h.expectRST(1, http2.ErrCodeFlowControl)
	})
	t.Run("concurrent stream limit (§5.1.2)", func(t *testing.T) {
		h := newHarness(t, Settings{MaxConcurrentStreams: 2})
		h.app.auto = false
		h.handshake()
		h.get(1)
		h.get(3)
		h.get(5)
		h.expectRST(5, http2.ErrCodeRefusedStream)
		if len(h.app.streams) != 2 {
			t.Fatalf("%d streams reached the proxy", len(h.app.streams))
		}
	})
}

func TestServerHeaderListTooLarge(t *testing.T) {
	h := newHarness(t, Settings{MaxHeaderListSize: 1024})
	h.handshake()
	h.get(1, "x-big", strings.Repeat("a", 2000))
	m := h.decode(h.expect(http2.FrameHeaders))
	if m[":status"] != "431" {
		t.Fatalf("%v", m)
	}
	// HPACK state stayed in step: the next request decodes fine.
	h.get(3, "x-small", "b")
	for f := h.next(); f == nil || f.StreamID != 3 || f.Type != http2.FrameData; f = h.next() {
		if f == nil {
			t.Fatal("no response on stream 3")
		}
	}
	if s := h.app.streams[0]; string(s.head.Headers.Get("x-small")) != "b" {
		t.Fatalf("next request's fields: %v", s.head.Headers)
	}
}

func TestServerControlFrames(t *testing.T) {
	t.Run("PING is answered with the same data", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.handshake()
		h.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
		h.send()
		p := h.expect(http2.FramePing)
		if !p.IsAck() || p.PingData != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
			t.Fatalf("%v %v", p.IsAck(), p.PingData)
		}
	})
	t.Run("unknown frame types and PRIORITY are ignored (§5.5)", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.handshake()
		h.fr.WriteRaw(0xfa, 0, 1, []byte("whatever"))
		h.fr.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 10})
		h.send()
		h.get(1)
		if m := h.decode(h.expect(http2.FrameHeaders)); m[":status"] != "200" {
			t.Fatalf("%v", m)
		}
	})
	t.Run("frames on a stream we reset are ignored (§5.4.2)", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.app.auto = false
		h.handshake()
		h.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a")
		h.nc.Lock()
		h.app.streams[0].enc.Reset()
		h.nc.Unlock()
		h.expectRST(1, http2.ErrCodeInternal)
		h.fr.WriteData(1, false, []byte("in flight"))
		h.headers(1, true, "x-trailer", "1")
		h.send()
		if f := h.next(); f != nil {
			t.Fatalf("answered a frame on a reset stream: %v", describe(f))
		}
	})
	t.Run("client cancel reaches the proxy's stream", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.app.auto = false
		h.handshake()
		h.get(1)
		h.fr.WriteRSTStream(1, http2.ErrCodeCancel)
		h.send()
		var se *StreamError
		if err := h.app.streams[0].reset; !errors.As(err, &se) || se.Code != http2.ErrCodeCancel || !se.Remote {
			t.Fatalf("reset reason %v", err)
		}
	})
	t.Run("GOAWAY on drain, streams in flight finish", func(t *testing.T) {
		h := newHarness(t, Settings{})
		h.app.auto = false
		h.handshake()
		h.get(1)
		h.nc.Lock()
		h.sc.Drain(h.nc)
		h.nc.Unlock()
		g := h.expectGoAway(http2.ErrCodeNo)
		if g.LastStreamID != 1 {
			t.Fatalf("last stream %d", g.LastStreamID)
		}
		h.get(3)
		h.expectRST(3, http2.ErrCodeRefusedStream)
		h.nc.Lock()
		h.app.streams[0].enc.LocalReply(200, "done")
		h.nc.Unlock()
		if m := h.decode(h.expect(http2.FrameHeaders)); m[":status"] != "200" {
			t.Fatalf("%v", m)
		}
		h.expect(http2.FrameData)
		if !h.fc.wclosed {
			t.Fatal("not closed after the last stream")
		}
	})
}

// TestServerSendFlowControl: the response respects the client's stream
// window, waits, and resumes on WINDOW_UPDATE (§6.9).
func TestServerSendFlowControl(t *testing.T) {
	h := newHarness(t, Settings{})
	h.app.body = bytes.Repeat([]byte("z"), 100)
	h.wbuf.WriteString(http2.ClientPreface)
	h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	h.send()
	h.expect(http2.FrameSettings)
	h.expect(http2.FrameWindowUpdate)
	h.expect(http2.FrameSettings)
	h.get(1)
	h.expect(http2.FrameHeaders)
	d := h.expect(http2.FrameData)
	if len(d.Data) != 10 || d.StreamEnded() {
		t.Fatalf("sent %d bytes with a 10-byte window", len(d.Data))
	}
	if f := h.next(); f != nil {
		t.Fatalf("sent beyond the window: %v", describe(f))
	}
	h.fr.WriteWindowUpdate(1, 90)
	h.send()
	d = h.expect(http2.FrameData)
	if len(d.Data) != 90 || !d.StreamEnded() {
		t.Fatalf("after WINDOW_UPDATE: %d bytes end=%v", len(d.Data), d.StreamEnded())
	}
}

// TestServerLargeHeadersUseContinuation: a response head larger than the
// peer's max frame size is split into HEADERS + CONTINUATION.
func TestServerLargeHeadersUseContinuation(t *testing.T) {
	h := newHarness(t, Settings{})
	h.app.auto = false
	h.handshake()
	h.get(1)
	var big []byte
	for i := 0; i < 40; i++ {
		big = append(big, strings.Repeat(string(rune('a'+i%26)), 1000)...)
	}
	s := h.app.streams[0]
	h.nc.Lock()
	s.enc.EncodeHead(headWith("x-big", string(big)), true)
	h.nc.Unlock()
	hf := h.expect(http2.FrameHeaders)
	block := append([]byte(nil), hf.Data...)
	for !hf.HeadersEnded() {
		c := h.expect(http2.FrameContinuation)
		block = append(block, c.Data...)
		if c.HeadersEnded() {
			break
		}
	}
	fields, _, err := http2.NewDecoder(4096, 1<<20, 1<<20).Decode(block)
	if err != nil || len(fields) < 2 || fields[1].Value != string(big) {
		t.Fatalf("reassembled head: %v", err)
	}
}

// FuzzServerFrames feeds arbitrary frames after a valid handshake: the
// server must never panic, never write a frame it could not read back, and
// keep its stream table within the advertised limit.
func FuzzServerFrames(f *testing.F) {
	var b bytes.Buffer
	fr := http2.Writer{W: &b}
	block := http2.NewEncoder().Encode(h2test.Fields(":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a", "content-length", "3"))
	fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
	fr.WriteData(1, true, []byte("abc"))
	f.Add(append([]byte(nil), b.Bytes()...))
	b.Reset()
	fr.WriteHeaders(http2.HeadersParam{StreamID: 3, BlockFragment: block[:3], EndHeaders: false})
	fr.WriteContinuation(3, true, block[3:])
	fr.WriteRSTStream(3, http2.ErrCodeCancel)
	fr.WriteWindowUpdate(0, 100)
	fr.WritePing(false, [8]byte{})
	f.Add(append([]byte(nil), b.Bytes()...))
	f.Fuzz(func(t *testing.T, p []byte) {
		h := newHarness(t, Settings{MaxConcurrentStreams: 8})
		h.handshake()
		for len(p) > 0 {
			n := min(len(p), 1+int(p[0])%64)
			h.sendBytes(p[:n])
			p = p[n:]
		}
		for f := h.next(); f != nil; f = h.next() {
		}
		if n := len(h.sc.streams); n > 8 {
			t.Fatalf("%d streams open with a limit of 8", n)
		}
	})
}

func TestServerIdleTimeout(t *testing.T) {
	h := newHarness(t, Settings{IdleTimeout: 30 * time.Millisecond, Timers: timer.New(5 * time.Millisecond)})
	h.handshake()
	h.get(1)
	h.expect(http2.FrameHeaders)
	h.expect(http2.FrameData)
	deadline := time.Now().Add(2 * time.Second)
	for !h.fc.writeClosed() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	g := h.expectGoAway(http2.ErrCodeNo)
	if g.LastStreamID != 1 || !h.fc.writeClosed() {
		t.Fatalf("last stream %d, closed %v", g.LastStreamID, h.fc.writeClosed())
	}
}

// TestServerHPACKBomb: a small header block that expands (one large
// dynamic-table entry referenced many times) is stopped at the header list
// limit and answered 431, without decoding it all into memory.
func TestServerHPACKBomb(t *testing.T) {
	h := newHarness(t, Settings{MaxHeaderListSize: 16 << 10})
	h.handshake()
	var block bytes.Buffer
	block.Write(http2.NewEncoder().Encode(h2test.Fields(":method", "GET", ":scheme", "http", ":path", "/", "x-bomb", strings.Repeat("b", 3000))))
	// 0xbe: indexed field 62, the newest dynamic-table entry (x-bomb).
	block.Write(bytes.Repeat([]byte{0xbe}, 5000))
	if block.Len() > 9000 {
		t.Fatalf("block of %d bytes is not a bomb", block.Len())
	}
	h.fr.WriteHeaders(http2.HeadersParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: true})
	h.send()
	if m := h.decode(h.expect(http2.FrameHeaders)); m[":status"] != "431" {
		t.Fatalf("%v", m)
	}
	if len(h.sc.fields) > 16 || h.sc.set.Stats.HeaderListTooLarge.Load() != 1 {
		t.Fatalf("%d fields kept, counted %d", len(h.sc.fields), h.sc.set.Stats.HeaderListTooLarge.Load())
	}
}

// BenchmarkServerStream is one request and its response on a long-lived
// connection through the server codec (frames in, frames out; the decoder
// answers at once): the codec's own cost per stream.
func BenchmarkServerStream(b *testing.B) {
	t := &testing.T{}
	h := newHarness(t, Settings{})
	h.handshake()
	h.app.body = []byte("01234567890123456789")
	// Requests with the same fields encode to the same block once HPACK
	// has indexed them: send the first encoding, then repeat the second.
	encode := func() []byte {
		return bytes.Clone(h.henc.Encode(h2test.Fields(":method", "GET", ":scheme", "http", ":path", "/bench", ":authority", "example.com", "user-agent", "bench", "accept", "*/*")))
	}
	h.fr.WriteWindowUpdate(0, 1<<31-1-65535) // the client grants all it can
	h.send()
	h.fc.mu.Lock()
	h.fc.out.Reset()
	h.fc.mu.Unlock()
	h.fc.readOff = 0
	var frame bytes.Buffer
	fr := http2.Writer{W: &frame}
	fr.WriteHeaders(http2.HeadersParam{StreamID: 3, BlockFragment: encode(), EndHeaders: true, EndStream: true})
	h.sendBytes(frame.Bytes())
	if f := h.next(); f == nil || f.Type != http2.FrameHeaders {
		b.Fatalf("warm-up request not answered: %v", f)
	}
	block := encode()
	id := uint32(5)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		frame.Reset()
		fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: block, EndHeaders: true, EndStream: true})
		id += 2
		h.sendBytes(frame.Bytes())
		h.fc.mu.Lock()
		h.fc.out.Reset()
		h.fc.mu.Unlock()
		h.fc.readOff = 0
		h.app.streams = h.app.streams[:0]
	}
	b.StopTimer()
	if len(h.sc.streams) != 0 || h.fc.closed {
		b.Fatalf("%d streams left, closed=%v", len(h.sc.streams), h.fc.closed)
	}
}
