package http2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// raw is one frame's bytes, built by hand so that any of them may lie.
func raw(t FrameType, fl Flags, id uint32, payload ...byte) []byte {
	b := AppendFrameHeader(nil, FrameHeader{Length: uint32(len(payload)), Type: t, Flags: fl, StreamID: id})
	return append(b, payload...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func setting(id SettingID, v uint32) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(id)), u32(v)...)
}

// readAll reads frames from p until an error or the end.
func readAll(r *Reader, p []byte) ([]*Frame, error) {
	var fs []*Frame
	for len(p) > 0 {
		f, n, err := r.ReadFrame(p)
		if err != nil {
			return fs, err
		}
		if n == 0 {
			return fs, errors.New("partial frame")
		}
		fs = append(fs, f.Clone())
		p = p[n:]
	}
	return fs, nil
}

// TestFrameRoundTrip: every frame type the Writer encodes reads back with
// the same fields.
func TestFrameRoundTrip(t *testing.T) {
	prio := PriorityParam{StreamDep: 7, Exclusive: true, Weight: 200}
	cases := []struct {
		name  string
		write func(w *Writer)
		check func(f *Frame) bool
	}{
		{"DATA", func(w *Writer) { w.WriteData(1, true, []byte("hello")) },
			func(f *Frame) bool { return f.Type == FrameData && f.StreamEnded() && string(f.Data) == "hello" }},
		{"DATA empty", func(w *Writer) { w.WriteData(3, false, nil) },
			func(f *Frame) bool { return f.Type == FrameData && !f.StreamEnded() && len(f.Data) == 0 }},
		{"HEADERS", func(w *Writer) {
			w.WriteHeaders(HeadersParam{StreamID: 5, BlockFragment: []byte{0x82, 0x86}, EndStream: true, EndHeaders: true})
		}, func(f *Frame) bool {
			return f.Type == FrameHeaders && f.StreamEnded() && f.HeadersEnded() && !f.HasPriority() && bytes.Equal(f.Data, []byte{0x82, 0x86})
		}},
		{"HEADERS padded with priority", func(w *Writer) {
			w.WriteHeaders(HeadersParam{StreamID: 5, BlockFragment: []byte{0x82}, EndHeaders: true, PadLength: 9, Priority: prio})
		}, func(f *Frame) bool {
			return f.HasPriority() && f.Priority == prio && bytes.Equal(f.Data, []byte{0x82}) && f.Length == 1+5+1+9
		}},
		{"PRIORITY", func(w *Writer) { w.WritePriority(9, prio) },
			func(f *Frame) bool { return f.Type == FramePriority && f.StreamID == 9 && f.Priority == prio }},
		{"RST_STREAM", func(w *Writer) { w.WriteRSTStream(11, ErrCodeCancel) },
			func(f *Frame) bool { return f.Type == FrameRSTStream && f.StreamID == 11 && f.ErrCode == ErrCodeCancel }},
		{"SETTINGS", func(w *Writer) {
			w.WriteSettings(Setting{SettingMaxFrameSize, 1 << 20}, Setting{SettingEnableConnectProtocol, 1}, Setting{0x99, 7})
		}, func(f *Frame) bool {
			return f.Type == FrameSettings && !f.IsAck() && f.NumSettings() == 3 &&
				f.Setting(0) == Setting{SettingMaxFrameSize, 1 << 20} && f.Setting(2) == Setting{0x99, 7}
		}},
		{"SETTINGS ACK", func(w *Writer) { w.WriteSettingsAck() },
			func(f *Frame) bool { return f.Type == FrameSettings && f.IsAck() && f.NumSettings() == 0 }},
		{"PUSH_PROMISE", func(w *Writer) { w.WritePushPromise(1, 2, true, []byte{0x82}) },
			func(f *Frame) bool {
				return f.Type == FramePushPromise && f.PromiseID == 2 && f.HeadersEnded() && bytes.Equal(f.Data, []byte{0x82})
			}},
		{"PING", func(w *Writer) { w.WritePing(true, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}) },
			func(f *Frame) bool {
				return f.Type == FramePing && f.IsAck() && f.PingData == [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
			}},
		{"GOAWAY", func(w *Writer) { w.WriteGoAway(13, ErrCodeEnhanceYourCalm, []byte("calm")) },
			func(f *Frame) bool {
				return f.Type == FrameGoAway && f.LastStreamID == 13 && f.ErrCode == ErrCodeEnhanceYourCalm && string(f.Data) == "calm"
			}},
		{"WINDOW_UPDATE", func(w *Writer) { w.WriteWindowUpdate(0, MaxWindow) },
			func(f *Frame) bool { return f.Type == FrameWindowUpdate && f.StreamID == 0 && f.Increment == MaxWindow }},
		{"HEADERS + CONTINUATION", func(w *Writer) {
			w.WriteHeaders(HeadersParam{StreamID: 7, BlockFragment: []byte{0x82}})
			w.WriteContinuation(7, true, []byte{0x86})
		}, func(f *Frame) bool {
			return f.Type == FrameContinuation && f.HeadersEnded() && bytes.Equal(f.Data, []byte{0x86})
		}},
		{"PRIORITY_UPDATE", func(w *Writer) { w.WriteRaw(FramePriorityUpdate, 0, 0, append(u32(3), "u=1"...)) },
			func(f *Frame) bool {
				return f.Type == FramePriorityUpdate && f.Prioritized == 3 && string(f.Data) == "u=1"
			}},
		{"unknown type", func(w *Writer) { w.WriteRaw(0xfa, 0x3, 1, []byte("whatever")) },
			func(f *Frame) bool { return f.Type == 0xfa && f.Flags == 0x3 && string(f.Data) == "whatever" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			tc.write(&Writer{W: &b})
			fs, err := readAll(&Reader{}, b.Bytes())
			if err != nil || len(fs) == 0 {
				t.Fatalf("read back: %v (%d frames)", err, len(fs))
			}
			if f := fs[len(fs)-1]; !tc.check(f) {
				t.Fatalf("read back %+v", f)
			}
		})
	}
}

// TestFrameReaderErrors: each malformed frame gets the connection or
// stream error RFC 9113 names for it (§4.2, §5.4, §6).
func TestFrameReaderErrors(t *testing.T) {
	headersOpen := raw(FrameHeaders, 0, 1, 0x82)
	cases := []struct {
		name   string
		in     []byte
		code   ErrCode
		stream bool // a stream error (the connection goes on)
	}{
		{"frame over SETTINGS_MAX_FRAME_SIZE (§4.2)", raw(FrameData, 0, 1, make([]byte, 16<<10+1)...), ErrCodeFrameSize, false},
		{"DATA on stream 0 (§6.1)", raw(FrameData, 0, 0, 'x'), ErrCodeProtocol, false},
		{"DATA padding longer than payload (§6.1)", raw(FrameData, FlagDataPadded, 1, 3, 'a', 'b'), ErrCodeProtocol, false},
		{"DATA padding as long as payload (§6.1)", raw(FrameData, FlagDataPadded, 1, 1), ErrCodeProtocol, false},
		{"DATA padded without Pad Length (§4.2)", raw(FrameData, FlagDataPadded, 1), ErrCodeFrameSize, false},
		{"HEADERS on stream 0 (§6.2)", raw(FrameHeaders, FlagHeadersEndHeaders, 0, 0x82), ErrCodeProtocol, false},
		{"HEADERS padding longer than payload (§6.2)", raw(FrameHeaders, FlagHeadersEndHeaders|FlagHeadersPadded, 1, 5, 0x82), ErrCodeProtocol, false},
		{"HEADERS priority cut short (§4.2)", raw(FrameHeaders, FlagHeadersEndHeaders|FlagHeadersPriority, 1, 0, 0, 1), ErrCodeFrameSize, false},
		{"PRIORITY on stream 0 (§6.3)", raw(FramePriority, 0, 0, 0, 0, 0, 1, 16), ErrCodeProtocol, false},
		{"PRIORITY of 4 bytes (§6.3)", raw(FramePriority, 0, 1, 0, 0, 0, 1), ErrCodeFrameSize, true},
		{"PRIORITY of 6 bytes (§6.3)", raw(FramePriority, 0, 1, 0, 0, 0, 1, 16, 0), ErrCodeFrameSize, true},
		{"RST_STREAM of 3 bytes (§6.4)", raw(FrameRSTStream, 0, 1, 0, 0, 8), ErrCodeFrameSize, false},
		{"RST_STREAM on stream 0 (§6.4)", raw(FrameRSTStream, 0, 0, u32(8)...), ErrCodeProtocol, false},
		{"SETTINGS of 5 bytes (§6.5)", raw(FrameSettings, 0, 0, 0, 3, 0, 0, 1), ErrCodeFrameSize, false},
		{"SETTINGS ACK with payload (§6.5)", raw(FrameSettings, FlagSettingsAck, 0, setting(SettingMaxConcurrentStreams, 1)...), ErrCodeFrameSize, false},
		{"SETTINGS on stream 1 (§6.5)", raw(FrameSettings, 0, 1), ErrCodeProtocol, false},
		{"SETTINGS_ENABLE_PUSH 2 (§6.5.2)", raw(FrameSettings, 0, 0, setting(SettingEnablePush, 2)...), ErrCodeProtocol, false},
		{"SETTINGS_INITIAL_WINDOW_SIZE 2^31 (§6.5.2)", raw(FrameSettings, 0, 0, setting(SettingInitialWindowSize, 1<<31)...), ErrCodeFlowControl, false},
		{"SETTINGS_MAX_FRAME_SIZE below 2^14 (§6.5.2)", raw(FrameSettings, 0, 0, setting(SettingMaxFrameSize, 16383)...), ErrCodeProtocol, false},
		{"SETTINGS_MAX_FRAME_SIZE 2^24 (§6.5.2)", raw(FrameSettings, 0, 0, setting(SettingMaxFrameSize, 1<<24)...), ErrCodeProtocol, false},
		{"SETTINGS_ENABLE_CONNECT_PROTOCOL 2 (RFC 8441 §3)", raw(FrameSettings, 0, 0, setting(SettingEnableConnectProtocol, 2)...), ErrCodeProtocol, false},
		{"PUSH_PROMISE on stream 0 (§6.6)", raw(FramePushPromise, FlagPushPromiseEndHeads, 0, u32(2)...), ErrCodeProtocol, false},
		{"PUSH_PROMISE without promised id (§4.2)", raw(FramePushPromise, FlagPushPromiseEndHeads, 1, 0, 0, 2), ErrCodeFrameSize, false},
		{"PUSH_PROMISE padding too long (§6.6)", raw(FramePushPromise, FlagPushPromiseEndHeads|FlagPushPromisePadded, 1, append([]byte{4}, u32(2)...)...), ErrCodeProtocol, false},
		{"PING of 7 bytes (§6.7)", raw(FramePing, 0, 0, 1, 2, 3, 4, 5, 6, 7), ErrCodeFrameSize, false},
		{"PING of 9 bytes (§6.7)", raw(FramePing, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9), ErrCodeFrameSize, false},
		{"PING on stream 1 (§6.7)", raw(FramePing, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8), ErrCodeProtocol, false},
		{"GOAWAY on stream 1 (§6.8)", raw(FrameGoAway, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0), ErrCodeProtocol, false},
		{"GOAWAY of 7 bytes (§6.8)", raw(FrameGoAway, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrCodeFrameSize, false},
		{"WINDOW_UPDATE of 3 bytes (§6.9)", raw(FrameWindowUpdate, 0, 0, 0, 0, 1), ErrCodeFrameSize, false},
		{"WINDOW_UPDATE of 5 bytes (§6.9)", raw(FrameWindowUpdate, 0, 1, 0, 0, 0, 1, 0), ErrCodeFrameSize, false},
		{"WINDOW_UPDATE of 0 on the connection (§6.9)", raw(FrameWindowUpdate, 0, 0, u32(0)...), ErrCodeProtocol, false},
		{"WINDOW_UPDATE of 0 on a stream (§6.9)", raw(FrameWindowUpdate, 0, 3, u32(0)...), ErrCodeProtocol, true},
		{"CONTINUATION without HEADERS (§6.10)", raw(FrameContinuation, FlagContinuationEndHeads, 1, 0x82), ErrCodeProtocol, false},
		{"CONTINUATION on stream 0 (§6.10)", append(raw(FrameHeaders, 0, 1, 0x82), raw(FrameContinuation, FlagContinuationEndHeads, 0)...), ErrCodeProtocol, false},
		{"DATA inside a header block (§6.10)", append(bytes.Clone(headersOpen), raw(FrameData, 0, 1, 'x')...), ErrCodeProtocol, false},
		{"CONTINUATION of another stream (§6.10)", append(bytes.Clone(headersOpen), raw(FrameContinuation, FlagContinuationEndHeads, 3)...), ErrCodeProtocol, false},
		{"PRIORITY_UPDATE on stream 1 (RFC 9218 §7.1)", raw(FramePriorityUpdate, 0, 1, u32(3)...), ErrCodeProtocol, false},
		{"PRIORITY_UPDATE for stream 0 (RFC 9218 §7.1)", raw(FramePriorityUpdate, 0, 0, u32(0)...), ErrCodeProtocol, false},
		{"PRIORITY_UPDATE of 3 bytes (RFC 9218 §7.1)", raw(FramePriorityUpdate, 0, 0, 0, 0, 3), ErrCodeFrameSize, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(&Reader{}, tc.in)
			var ce *ConnError
			var se *StreamError
			switch {
			case err == nil:
				t.Fatalf("accepted; want %v", tc.code)
			case errors.As(err, &se):
				if !tc.stream || se.Code != tc.code {
					t.Fatalf("stream error %v; want %v (stream=%v)", se, tc.code, tc.stream)
				}
			case errors.As(err, &ce):
				if tc.stream || ce.Code != tc.code {
					t.Fatalf("connection error %v; want %v (stream=%v)", ce, tc.code, tc.stream)
				}
			default:
				t.Fatalf("error %v of type %T", err, err)
			}
		})
	}
}

// TestFrameReaderPartial: a frame arriving in pieces is read only once
// whole; a stream error still reports the frame's length.
func TestFrameReaderPartial(t *testing.T) {
	full := raw(FramePing, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8)
	var r Reader
	for i := range full {
		if f, n, err := r.ReadFrame(full[:i]); f != nil || n != 0 || err != nil {
			t.Fatalf("%d bytes: %v %d %v", i, f, n, err)
		}
	}
	if f, n, err := r.ReadFrame(full); err != nil || n != len(full) || f.PingData[7] != 8 {
		t.Fatalf("whole: %v %d %v", f, n, err)
	}
	bad := raw(FrameWindowUpdate, 0, 5, u32(0)...)
	if _, n, err := r.ReadFrame(bad); n != len(bad) || err == nil {
		t.Fatalf("stream error: n=%d err=%v", n, err)
	}
	big := Reader{MaxFrameSize: 1 << 20}
	if f, _, err := big.ReadFrame(raw(FrameData, 0, 1, make([]byte, 100<<10)...)); err != nil || len(f.Data) != 100<<10 {
		t.Fatalf("MaxFrameSize 1 MiB: %v", err)
	}
}

// FuzzFrameReader: any input reads as frames or a connection/stream error,
// never a panic; n stays within the input, a frame's slices within its
// payload, and a frame read back after WriteRaw of its bytes is the same.
func FuzzFrameReader(f *testing.F) {
	var b bytes.Buffer
	w := &Writer{W: &b}
	w.WriteSettings(Setting{SettingMaxFrameSize, 1 << 14})
	w.WriteHeaders(HeadersParam{StreamID: 1, BlockFragment: []byte{0x82}, PadLength: 3, Priority: PriorityParam{StreamDep: 3, Weight: 1}})
	w.WriteContinuation(1, true, []byte{0x86})
	w.WriteData(1, true, []byte("body"))
	w.WriteGoAway(1, ErrCodeNo, nil)
	f.Add(b.Bytes())
	f.Add(raw(FrameData, FlagDataPadded, 1, 3, 'a', 'b'))
	f.Add(raw(FrameWindowUpdate, 0, 3, u32(0)...))
	f.Fuzz(func(t *testing.T, p []byte) {
		var r Reader
		for len(p) > 0 {
			open := r.blockStream
			fr, n, err := r.ReadFrame(p)
			if n < 0 || n > len(p) {
				t.Fatalf("n=%d of %d", n, len(p))
			}
			if err != nil {
				var ce *ConnError
				var se *StreamError
				if errors.As(err, &se) {
					if n == 0 {
						t.Fatal("stream error without the frame's length")
					}
					p = p[n:]
					continue
				}
				if !errors.As(err, &ce) {
					t.Fatalf("error %T %v", err, err)
				}
				return
			}
			if n == 0 {
				return
			}
			if fr.Length != uint32(n-FrameHeaderLen) || len(fr.Data) > int(fr.Length) {
				t.Fatalf("frame %+v from %d bytes", fr.FrameHeader, n)
			}
			var out bytes.Buffer
			(&Writer{W: &out}).WriteRaw(fr.Type, fr.Flags, fr.StreamID, p[FrameHeaderLen:n])
			r2 := Reader{blockStream: open}
			again, _, err := r2.ReadFrame(out.Bytes())
			if err != nil || !bytes.Equal(again.Data, fr.Data) || again.FrameHeader != fr.FrameHeader {
				t.Fatalf("re-read %+v: %v", fr.FrameHeader, err)
			}
			p = p[n:]
		}
	})
}

// BenchmarkFrameRead reads a request's frames: HEADERS, DATA,
// WINDOW_UPDATE and a PING.
func BenchmarkFrameRead(b *testing.B) {
	var buf bytes.Buffer
	w := &Writer{W: &buf}
	w.WriteHeaders(HeadersParam{StreamID: 1, BlockFragment: bytes.Repeat([]byte{0x82}, 40), EndHeaders: true})
	w.WriteData(1, true, make([]byte, 1024))
	w.WriteWindowUpdate(0, 1024)
	w.WritePing(false, [8]byte{})
	p := buf.Bytes()
	var r Reader
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		q := p
		for len(q) > 0 {
			_, n, err := r.ReadFrame(q)
			if err != nil || n == 0 {
				b.Fatal(err)
			}
			q = q[n:]
		}
	}
}

// BenchmarkFrameWrite writes the frames a response takes: HEADERS, DATA,
// WINDOW_UPDATE.
func BenchmarkFrameWrite(b *testing.B) {
	var buf bytes.Buffer
	w := &Writer{W: &buf}
	block, body := bytes.Repeat([]byte{0x88}, 20), make([]byte, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		w.WriteHeaders(HeadersParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
		w.WriteData(1, true, body)
		w.WriteWindowUpdate(0, 1024)
	}
}
