package http2

import "encoding/binary"

// Reader decodes frames from buffered bytes, one connection's inbound
// direction. It keeps the one piece of framing state RFC 9113 has: a
// header block (HEADERS or PUSH_PROMISE without END_HEADERS) must go on
// with CONTINUATION frames of the same stream and nothing else (§6.10).
type Reader struct {
	// MaxFrameSize is the largest payload accepted (the
	// SETTINGS_MAX_FRAME_SIZE this side advertised; 0 means 16384).
	MaxFrameSize uint32

	blockStream uint32 // the stream whose header block is open, or 0
	f           Frame
}

// ReadFrame decodes the frame at the start of p. With fewer bytes than a
// whole frame it returns (nil, 0, nil). n is how many bytes the frame took;
// it is set with a *StreamError too, so the caller can skip the frame and
// go on. Any other error is a *ConnError and ends the connection. The
// frame and its slices (which alias p) are valid until the next call.
func (r *Reader) ReadFrame(p []byte) (f *Frame, n int, err error) {
	if len(p) < FrameHeaderLen {
		return nil, 0, nil
	}
	h := ParseFrameHeader(p)
	max := r.MaxFrameSize
	if max == 0 {
		max = 16 << 10
	}
	if h.Length > max {
		return nil, 0, connErr(ErrCodeFrameSize, "frame of %d bytes exceeds SETTINGS_MAX_FRAME_SIZE %d", h.Length, max) // §4.2
	}
	n = FrameHeaderLen + int(h.Length)
	if len(p) < n {
		return nil, 0, nil
	}
	if err := r.checkOrder(h); err != nil {
		return nil, n, err
	}
	r.f = Frame{FrameHeader: h}
	if k := h.Type.kind(); k != nil {
		if err := k.parse(&r.f, p[FrameHeaderLen:n]); err != nil {
			return nil, n, err
		}
	} else {
		r.f.Data = p[FrameHeaderLen:n] // §5.5: unknown types are ignored
	}
	return &r.f, n, nil
}

// checkOrder enforces §6.10: only CONTINUATION of the same stream inside
// an open header block, and CONTINUATION nowhere else.
func (r *Reader) checkOrder(h FrameHeader) error {
	if r.blockStream != 0 {
		if h.Type != FrameContinuation {
			return connErr(ErrCodeProtocol, "got %v for stream %d; expected CONTINUATION following HEADERS for stream %d", h.Type, h.StreamID, r.blockStream)
		}
		if h.StreamID != r.blockStream {
			return connErr(ErrCodeProtocol, "got CONTINUATION for stream %d; expected stream %d", h.StreamID, r.blockStream)
		}
	} else if h.Type == FrameContinuation {
		return connErr(ErrCodeProtocol, "unexpected CONTINUATION for stream %d", h.StreamID)
	}
	switch h.Type {
	case FrameHeaders, FramePushPromise, FrameContinuation:
		if h.Flags.Has(FlagHeadersEndHeaders) {
			r.blockStream = 0
		} else {
			r.blockStream = h.StreamID
		}
	}
	return nil
}

// tooShort is §4.2: a frame too small for its mandatory fields.
func tooShort(f *Frame) error {
	return connErr(ErrCodeFrameSize, "%v frame of %d bytes is too short", f.Type, f.Length)
}

// unpad strips the Pad Length octet and the padding (§6.1, §6.2, §6.6):
// padding as long as the rest or longer is a PROTOCOL_ERROR.
func unpad(f *Frame, p []byte, fixed int) (body, rest []byte, err error) {
	var pad int
	if f.Flags.Has(FlagDataPadded) { // the same bit for HEADERS and PUSH_PROMISE
		if len(p) < 1 {
			return nil, nil, tooShort(f)
		}
		pad, p = int(p[0]), p[1:]
	}
	if len(p) < fixed {
		return nil, nil, tooShort(f)
	}
	if pad > len(p)-fixed {
		return nil, nil, connErr(ErrCodeProtocol, "%v padding of %d bytes exceeds the payload", f.Type, pad)
	}
	return p[:fixed], p[fixed : len(p)-pad], nil
}

func needStream(f *Frame) error {
	if f.StreamID == 0 {
		return connErr(ErrCodeProtocol, "%v frame with stream ID 0", f.Type)
	}
	return nil
}

func noStream(f *Frame) error {
	if f.StreamID != 0 {
		return connErr(ErrCodeProtocol, "%v frame with stream ID %d", f.Type, f.StreamID)
	}
	return nil
}

func exactLen(f *Frame, p []byte, n int) error {
	if len(p) != n {
		return connErr(ErrCodeFrameSize, "%v frame of %d bytes; want %d", f.Type, len(p), n)
	}
	return nil
}

func parseData(f *Frame, p []byte) (err error) {
	if err := needStream(f); err != nil {
		return err
	}
	_, f.Data, err = unpad(f, p, 0)
	return err
}

func parseHeaders(f *Frame, p []byte) error {
	if err := needStream(f); err != nil {
		return err
	}
	fixed := 0
	if f.Flags.Has(FlagHeadersPriority) {
		fixed = 5
	}
	prio, block, err := unpad(f, p, fixed)
	if err != nil {
		return err
	}
	if fixed > 0 {
		f.Priority = priorityParam(prio)
	}
	f.Data = block
	return nil
}

func priorityParam(p []byte) PriorityParam {
	v := binary.BigEndian.Uint32(p)
	return PriorityParam{StreamDep: v & (1<<31 - 1), Exclusive: v>>31 == 1, Weight: p[4]}
}

// parsePriority: a wrong length is a stream error (§6.3).
func parsePriority(f *Frame, p []byte) error {
	if err := needStream(f); err != nil {
		return err
	}
	if len(p) != 5 {
		return &StreamError{StreamID: f.StreamID, Code: ErrCodeFrameSize, Reason: "PRIORITY frame of " + itoa(uint32(len(p))) + " bytes; want 5"}
	}
	f.Priority = priorityParam(p)
	return nil
}

func parseRSTStream(f *Frame, p []byte) error {
	if err := exactLen(f, p, 4); err != nil {
		return err
	}
	if err := needStream(f); err != nil {
		return err
	}
	f.ErrCode = ErrCode(binary.BigEndian.Uint32(p))
	return nil
}

// parseSettings checks the frame's shape and every value (§6.5, §6.5.2).
func parseSettings(f *Frame, p []byte) error {
	if f.Flags.Has(FlagSettingsAck) && len(p) > 0 {
		return connErr(ErrCodeFrameSize, "SETTINGS ACK with a payload")
	}
	if err := noStream(f); err != nil {
		return err
	}
	if len(p)%6 != 0 {
		return connErr(ErrCodeFrameSize, "SETTINGS frame of %d bytes is not a multiple of 6", len(p))
	}
	f.settings = p
	for i := range f.NumSettings() {
		if err := f.Setting(i).Valid(); err != nil {
			return err
		}
	}
	return nil
}

func parsePushPromise(f *Frame, p []byte) error {
	if err := needStream(f); err != nil {
		return err
	}
	id, block, err := unpad(f, p, 4)
	if err != nil {
		return err
	}
	f.PromiseID = binary.BigEndian.Uint32(id) & (1<<31 - 1)
	f.Data = block
	return nil
}

func parsePing(f *Frame, p []byte) error {
	if err := exactLen(f, p, 8); err != nil {
		return err
	}
	if err := noStream(f); err != nil {
		return err
	}
	copy(f.PingData[:], p)
	return nil
}

func parseGoAway(f *Frame, p []byte) error {
	if err := noStream(f); err != nil {
		return err
	}
	if len(p) < 8 {
		return tooShort(f)
	}
	f.LastStreamID = binary.BigEndian.Uint32(p) & (1<<31 - 1)
	f.ErrCode = ErrCode(binary.BigEndian.Uint32(p[4:]))
	f.Data = p[8:]
	return nil
}

// parseWindowUpdate: a zero increment is a stream error on a stream, a
// connection error on the connection (§6.9).
func parseWindowUpdate(f *Frame, p []byte) error {
	if err := exactLen(f, p, 4); err != nil {
		return err
	}
	f.Increment = binary.BigEndian.Uint32(p) & (1<<31 - 1)
	if f.Increment == 0 {
		if f.StreamID == 0 {
			return connErr(ErrCodeProtocol, "WINDOW_UPDATE of 0 on the connection")
		}
		return &StreamError{StreamID: f.StreamID, Code: ErrCodeProtocol, Reason: "WINDOW_UPDATE of 0"}
	}
	return nil
}

func parseContinuation(f *Frame, p []byte) error {
	if err := needStream(f); err != nil {
		return err
	}
	f.Data = p
	return nil
}

// parsePriorityUpdate checks the frame's shape (RFC 9218 §7.1); Data is
// the Priority Field Value.
func parsePriorityUpdate(f *Frame, p []byte) error {
	if err := noStream(f); err != nil {
		return err
	}
	if len(p) < 4 {
		return tooShort(f)
	}
	f.Prioritized = binary.BigEndian.Uint32(p) & (1<<31 - 1)
	if f.Prioritized == 0 {
		return connErr(ErrCodeProtocol, "PRIORITY_UPDATE for stream 0")
	}
	f.Data = p[4:]
	return nil
}
