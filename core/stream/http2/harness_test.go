package http2

import (
	"bytes"
	"net"
	"sync"
	"testing"

	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/protocol/http2/h2test"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// fakeConn is a transport.Conn that records what is written and lets the
// test deliver bytes: the raw-frame harness's wire.
type fakeConn struct {
	mu          sync.Mutex
	h           transport.Handler
	out         bytes.Buffer
	closed      bool
	wclosed     bool
	readOff     int
	queueReport int // what Write reports as still queued
	// readDisabled nests ReadDisable calls (> 0: not reading).
	readDisabled int
}

var _ transport.Conn = (*fakeConn)(nil)

func (f *fakeConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (f *fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (f *fakeConn) Start(h transport.Handler) {
	f.h = h
}
func (f *fakeConn) Write(bufs ...*buffer.Buf) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bufs {
		f.out.Write(b.Bytes())
		b.Release()
	}
	return f.queueReport, nil
}
func (f *fakeConn) ReadDisable(d bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d {
		f.readDisabled++
	} else {
		f.readDisabled--
	}
}

// writeClosed reports whether CloseWrite was called.
func (f *fakeConn) writeClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wclosed
}
func (f *fakeConn) CloseWrite() error {
	f.mu.Lock()
	f.wclosed = true
	f.mu.Unlock()
	return nil
}
func (f *fakeConn) Close() error {
	f.mu.Lock()
	was := f.closed
	f.closed = true
	f.mu.Unlock()
	if !was && f.h != nil {
		f.h.OnClose(f, nil)
	}
	return nil
}

// testApp is the proxy side of the harness: it records each stream and
// answers when told.
type testApp struct {
	streams []*testStream
	// auto answers every complete request with 200 and body "ok".
	auto bool
	// hold read-disables every stream at its head (its window is never
	// returned).
	hold bool
	// body, when set, is the auto answer's body.
	body []byte
}

type testStream struct {
	app     *testApp
	enc     stream.ResponseEncoder
	head    protocol.Head
	arena   []byte
	body    bytes.Buffer
	trl     []string
	ended   bool
	reset   error
	above   int
	belowed int
}

func (a *testApp) NewStream(enc stream.ResponseEncoder) stream.RequestDecoder {
	s := &testStream{app: a, enc: enc}
	a.streams = append(a.streams, s)
	return s
}

func (s *testStream) DecodeHead(h *stream.Head, end bool) {
	s.arena = h.CloneInto(&s.head, s.arena)
	s.ended = end
	if s.app.hold {
		s.enc.ReadDisable(true)
	}
	s.maybeAnswer()
}
func (s *testStream) DecodeData(p []byte, end bool) {
	s.body.Write(p)
	s.ended = end
	s.maybeAnswer()
}
func (s *testStream) DecodeTrailers(t *protocol.Headers) {
	for _, f := range t.Fields {
		s.trl = append(s.trl, string(f.Name)+"="+string(f.Value))
	}
	s.ended = true
	s.maybeAnswer()
}
func (s *testStream) OnAboveWriteHighWatermark() { s.above++ }
func (s *testStream) OnBelowWriteLowWatermark()  { s.belowed++ }
func (s *testStream) OnReset(err error)          { s.reset = err }
func (s *testStream) maybeAnswer() {
	if s.app.auto && s.ended {
		body := s.app.body
		if body == nil {
			body = []byte("ok")
		}
		s.enc.EncodeHead(&protocol.Head{Status: 200, ContentLength: int64(len(body)), Headers: protocol.Headers{Fields: []protocol.Field{{Name: []byte("Content-Type"), Value: []byte("text/plain")}}}}, false)
		s.enc.EncodeData(body, true)
	}
}

// harness drives one ServerConn with raw frames.
type harness struct {
	t   *testing.T
	fc  *fakeConn
	nc  *network.Conn
	sc  *ServerConn
	app *testApp
	set *Settings

	wbuf bytes.Buffer
	fr   http2.Writer // writes client frames into wbuf
	henc *http2.Encoder
	rd   http2.Reader // reads server frames
	hdec *http2.Decoder
}

func newHarness(t *testing.T, set Settings) *harness {
	t.Helper()
	h := &harness{t: t, fc: &fakeConn{}, app: &testApp{auto: true}}
	h.set = set.Prepare()
	h.sc = NewServerConn(h.set, h.app)
	h.nc = network.NewConn(h.fc, []network.ReadFilter{h.sc}, nil)
	h.nc.Start()
	h.fr.W = &h.wbuf
	h.rd.MaxFrameSize = http2.MaxFrameLen
	h.henc = http2.NewEncoder()
	h.hdec = http2.NewDecoder(4096, 1<<20, 1<<20)
	return h
}

// handshake sends the preface and SETTINGS and reads the server's
// SETTINGS, connection WINDOW_UPDATE and SETTINGS ACK.
func (h *harness) handshake() {
	h.t.Helper()
	h.wbuf.WriteString(http2.ClientPreface)
	h.fr.WriteSettings()
	h.send()
	sf := h.expect(http2.FrameSettings)
	if sf.IsAck() {
		h.t.Fatal("first server frame is a SETTINGS ACK")
	}
	for {
		f := h.next()
		if f == nil {
			h.t.Fatal("no SETTINGS ACK")
		}
		if f.Type == http2.FrameSettings && f.IsAck() {
			return
		}
	}
}

// send delivers what the framer wrote as one read.
func (h *harness) send() {
	b := buffer.From(h.wbuf.Bytes())
	h.wbuf.Reset()
	h.nc.OnData(h.fc, b)
}

// sendBytes delivers raw bytes.
func (h *harness) sendBytes(p []byte) { h.nc.OnData(h.fc, buffer.From(p)) }

func (h *harness) headers(id uint32, end bool, kv ...string) {
	h.fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: h.henc.Encode(h2test.Fields(kv...)), EndStream: end, EndHeaders: true})
	h.send()
}

func (h *harness) get(id uint32, extra ...string) {
	h.headers(id, true, append([]string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "example.com"}, extra...)...)
}

// next reads the next server frame (a copy), or nil when none is waiting.
func (h *harness) next() *http2.Frame {
	h.t.Helper()
	h.fc.mu.Lock()
	rest := h.fc.out.Bytes()[h.fc.readOff:]
	h.fc.mu.Unlock()
	if len(rest) < http2.FrameHeaderLen {
		return nil
	}
	f, n, err := h.rd.ReadFrame(rest)
	if err != nil {
		h.t.Fatalf("server wrote an unreadable frame: %v", err)
	}
	if n == 0 {
		h.t.Fatalf("partial frame written: %d bytes", len(rest))
	}
	h.fc.readOff += n
	return f.Clone()
}

// expect reads the next frame and checks its type.
func (h *harness) expect(ft http2.FrameType) *http2.Frame {
	h.t.Helper()
	f := h.next()
	if f == nil {
		h.t.Fatalf("expected a %v frame, got nothing", ft)
	}
	if f.Type != ft {
		h.t.Fatalf("expected a %v frame, got %v", ft, describe(f))
	}
	return f
}

func describe(f *http2.Frame) string {
	return (&h2test.Frame{Frame: f}).String()
}

// decode reads a HEADERS frame's fields.
func (h *harness) decode(f *http2.Frame) map[string]string {
	h.t.Helper()
	fields, _, err := h.hdec.Decode(f.Data)
	if err != nil {
		h.t.Fatal(err)
	}
	m := map[string]string{}
	for _, f := range fields {
		m[f.Name] = f.Value
	}
	return m
}

// expectRST reads the next frame and checks it resets id with code.
func (h *harness) expectRST(id uint32, code http2.ErrCode) {
	h.t.Helper()
	f := h.expect(http2.FrameRSTStream)
	if f.StreamID != id || f.ErrCode != code {
		h.t.Fatalf("RST_STREAM on %d %v, want on %d %v", f.StreamID, f.ErrCode, id, code)
	}
}

// expectGoAway reads frames up to a GOAWAY and checks its code.
func (h *harness) expectGoAway(code http2.ErrCode) *http2.Frame {
	h.t.Helper()
	for {
		f := h.next()
		if f == nil {
			h.t.Fatalf("no GOAWAY %v", code)
		}
		if f.Type == http2.FrameGoAway {
			if f.ErrCode != code {
				h.t.Fatalf("GOAWAY %v (%s), want %v", f.ErrCode, f.Data, code)
			}
			return f
		}
	}
}

// headWith is a 200 response head with one extra field.
func headWith(name, value string) *protocol.Head {
	return &protocol.Head{Status: 200, ContentLength: -1, Headers: protocol.Headers{Fields: []protocol.Field{{Name: []byte(name), Value: []byte(value)}}}}
}
