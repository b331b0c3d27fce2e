package http2

import (
	"encoding/binary"
	"io"
)

// Writer encodes frames, each with exactly one Write to W. It checks
// nothing the caller chose (stream ids, lengths beyond the peer's limit):
// the connection decides what to send, and a tester may send anything.
type Writer struct {
	W   io.Writer
	buf []byte // the frame being built, reused
}

func (w *Writer) start(t FrameType, fl Flags, id uint32) {
	w.buf = AppendFrameHeader(w.buf[:0], FrameHeader{Type: t, Flags: fl, StreamID: id})
}

// finish fills in the length and writes the frame.
func (w *Writer) finish() error {
	n := len(w.buf) - FrameHeaderLen
	if n > MaxFrameLen {
		return connErr(ErrCodeFrameSize, "%v frame of %d bytes does not fit the length field", FrameType(w.buf[3]), n)
	}
	w.buf[0], w.buf[1], w.buf[2] = byte(n>>16), byte(n>>8), byte(n)
	_, err := w.W.Write(w.buf)
	return err
}

// WriteRaw writes a frame of any type, flags and payload as given.
func (w *Writer) WriteRaw(t FrameType, fl Flags, id uint32, payload []byte) error {
	w.start(t, fl, id)
	w.buf = append(w.buf, payload...)
	return w.finish()
}

// WriteData writes a DATA frame (§6.1).
func (w *Writer) WriteData(id uint32, end bool, data []byte) error {
	var fl Flags
	if end {
		fl = FlagDataEndStream
	}
	return w.WriteRaw(FrameData, fl, id, data)
}

// HeadersParam is what a HEADERS frame carries (§6.2).
type HeadersParam struct {
	StreamID      uint32
	BlockFragment []byte
	EndStream     bool
	EndHeaders    bool
	// PadLength adds that many padding octets (with the PADDED flag)
	// when non-zero.
	PadLength uint8
	// Priority, when non-zero, is sent with the PRIORITY flag.
	Priority PriorityParam
}

// WriteHeaders writes a HEADERS frame (§6.2).
func (w *Writer) WriteHeaders(p HeadersParam) error {
	var fl Flags
	if p.EndStream {
		fl |= FlagHeadersEndStream
	}
	if p.EndHeaders {
		fl |= FlagHeadersEndHeaders
	}
	if p.PadLength > 0 {
		fl |= FlagHeadersPadded
	}
	if p.Priority != (PriorityParam{}) {
		fl |= FlagHeadersPriority
	}
	w.start(FrameHeaders, fl, p.StreamID)
	if p.PadLength > 0 {
		w.buf = append(w.buf, p.PadLength)
	}
	if fl.Has(FlagHeadersPriority) {
		w.buf = appendPriority(w.buf, p.Priority)
	}
	w.buf = append(w.buf, p.BlockFragment...)
	for range p.PadLength {
		w.buf = append(w.buf, 0)
	}
	return w.finish()
}

func appendPriority(b []byte, p PriorityParam) []byte {
	v := p.StreamDep
	if p.Exclusive {
		v |= 1 << 31
	}
	return append(binary.BigEndian.AppendUint32(b, v), p.Weight)
}

// WritePriority writes a PRIORITY frame (§6.3).
func (w *Writer) WritePriority(id uint32, p PriorityParam) error {
	w.start(FramePriority, 0, id)
	w.buf = appendPriority(w.buf, p)
	return w.finish()
}

// WriteRSTStream writes a RST_STREAM frame (§6.4).
func (w *Writer) WriteRSTStream(id uint32, code ErrCode) error {
	w.start(FrameRSTStream, 0, id)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(code))
	return w.finish()
}

// WriteSettings writes a SETTINGS frame with the parameters given (§6.5).
func (w *Writer) WriteSettings(settings ...Setting) error {
	w.start(FrameSettings, 0, 0)
	for _, s := range settings {
		w.buf = binary.BigEndian.AppendUint16(w.buf, uint16(s.ID))
		w.buf = binary.BigEndian.AppendUint32(w.buf, s.Val)
	}
	return w.finish()
}

// WriteSettingsAck writes an empty SETTINGS with ACK (§6.5.3).
func (w *Writer) WriteSettingsAck() error {
	return w.WriteRaw(FrameSettings, FlagSettingsAck, 0, nil)
}

// WritePushPromise writes a PUSH_PROMISE frame (§6.6).
func (w *Writer) WritePushPromise(id, promised uint32, endHeaders bool, block []byte) error {
	var fl Flags
	if endHeaders {
		fl = FlagPushPromiseEndHeads
	}
	w.start(FramePushPromise, fl, id)
	w.buf = binary.BigEndian.AppendUint32(w.buf, promised)
	w.buf = append(w.buf, block...)
	return w.finish()
}

// WritePing writes a PING frame (§6.7).
func (w *Writer) WritePing(ack bool, data [8]byte) error {
	var fl Flags
	if ack {
		fl = FlagPingAck
	}
	return w.WriteRaw(FramePing, fl, 0, data[:])
}

// WriteGoAway writes a GOAWAY frame (§6.8).
func (w *Writer) WriteGoAway(last uint32, code ErrCode, debug []byte) error {
	w.start(FrameGoAway, 0, 0)
	w.buf = binary.BigEndian.AppendUint32(w.buf, last)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(code))
	w.buf = append(w.buf, debug...)
	return w.finish()
}

// WriteWindowUpdate writes a WINDOW_UPDATE frame (§6.9).
func (w *Writer) WriteWindowUpdate(id, inc uint32) error {
	w.start(FrameWindowUpdate, 0, id)
	w.buf = binary.BigEndian.AppendUint32(w.buf, inc)
	return w.finish()
}

// WriteContinuation writes a CONTINUATION frame (§6.10).
func (w *Writer) WriteContinuation(id uint32, endHeaders bool, block []byte) error {
	var fl Flags
	if endHeaders {
		fl = FlagContinuationEndHeads
	}
	return w.WriteRaw(FrameContinuation, fl, id, block)
}
