package http2

import "encoding/binary"

// FrameType is a frame's type octet (RFC 9113 §4.1).
type FrameType uint8

// Frame types: RFC 9113 §6, PRIORITY_UPDATE RFC 9218 §7.1.
const (
	FrameData           FrameType = 0x0
	FrameHeaders        FrameType = 0x1
	FramePriority       FrameType = 0x2
	FrameRSTStream      FrameType = 0x3
	FrameSettings       FrameType = 0x4
	FramePushPromise    FrameType = 0x5
	FramePing           FrameType = 0x6
	FrameGoAway         FrameType = 0x7
	FrameWindowUpdate   FrameType = 0x8
	FrameContinuation   FrameType = 0x9
	FramePriorityUpdate FrameType = 0x10
)

// Flags are a frame's flag octet; their meaning depends on the type.
type Flags uint8

// Has reports whether f has every bit of v.
func (f Flags) Has(v Flags) bool { return f&v == v }

// Frame flags (RFC 9113 §6).
const (
	FlagDataEndStream        Flags = 0x1
	FlagDataPadded           Flags = 0x8
	FlagHeadersEndStream     Flags = 0x1
	FlagHeadersEndHeaders    Flags = 0x4
	FlagHeadersPadded        Flags = 0x8
	FlagHeadersPriority      Flags = 0x20
	FlagSettingsAck          Flags = 0x1
	FlagPingAck              Flags = 0x1
	FlagContinuationEndHeads Flags = 0x4
	FlagPushPromiseEndHeads  Flags = 0x4
	FlagPushPromisePadded    Flags = 0x8
)

// FrameHeaderLen is the size of the fixed frame header (§4.1).
const FrameHeaderLen = 9

// MaxFrameLen is the largest payload the 24-bit length can carry; frames
// are further bounded by SETTINGS_MAX_FRAME_SIZE (§4.2).
const MaxFrameLen = 1<<24 - 1

// FrameHeader is the fixed 9-octet header of every frame (§4.1).
type FrameHeader struct {
	Length   uint32 // payload length, padding included
	Type     FrameType
	Flags    Flags
	StreamID uint32 // the reserved bit cleared
}

// ParseFrameHeader reads a frame header from the first 9 bytes of p; p
// must hold them.
func ParseFrameHeader(p []byte) FrameHeader {
	_ = p[8]
	return FrameHeader{
		Length:   uint32(p[0])<<16 | uint32(p[1])<<8 | uint32(p[2]),
		Type:     FrameType(p[3]),
		Flags:    Flags(p[4]),
		StreamID: binary.BigEndian.Uint32(p[5:]) & (1<<31 - 1),
	}
}

// AppendFrameHeader appends h's 9 octets to dst.
func AppendFrameHeader(dst []byte, h FrameHeader) []byte {
	return append(dst, byte(h.Length>>16), byte(h.Length>>8), byte(h.Length),
		byte(h.Type), byte(h.Flags),
		byte(h.StreamID>>24), byte(h.StreamID>>16), byte(h.StreamID>>8), byte(h.StreamID))
}

// PriorityParam is the stream dependency of a HEADERS or PRIORITY frame
// (§5.3.2, deprecated in RFC 9113 but still parsed).
type PriorityParam struct {
	StreamDep uint32
	Exclusive bool
	Weight    uint8 // the wire value; the weight is Weight+1
}

// Frame is one decoded frame. A Reader hands out the same Frame for every
// read: its fields and slices are valid until the next ReadFrame.
type Frame struct {
	FrameHeader
	// Data is the DATA payload without padding; the header block
	// fragment of HEADERS, PUSH_PROMISE and CONTINUATION; GOAWAY's debug
	// data; the payload of a frame of unknown type.
	Data         []byte
	Priority     PriorityParam // PRIORITY; HEADERS with FlagHeadersPriority
	ErrCode      ErrCode       // RST_STREAM, GOAWAY
	LastStreamID uint32        // GOAWAY
	PromiseID    uint32        // PUSH_PROMISE
	Prioritized  uint32        // PRIORITY_UPDATE: the prioritized stream
	Increment    uint32        // WINDOW_UPDATE
	PingData     [8]byte       // PING
	settings     []byte        // SETTINGS: 6 octets each
}

// StreamEnded reports END_STREAM on a DATA or HEADERS frame.
func (f *Frame) StreamEnded() bool {
	return (f.Type == FrameData || f.Type == FrameHeaders) && f.Flags.Has(FlagDataEndStream)
}

// HeadersEnded reports END_HEADERS on a HEADERS, PUSH_PROMISE or
// CONTINUATION frame.
func (f *Frame) HeadersEnded() bool {
	return (f.Type == FrameHeaders || f.Type == FramePushPromise || f.Type == FrameContinuation) &&
		f.Flags.Has(FlagHeadersEndHeaders)
}

// IsAck reports ACK on a SETTINGS or PING frame.
func (f *Frame) IsAck() bool {
	return (f.Type == FrameSettings || f.Type == FramePing) && f.Flags.Has(FlagSettingsAck)
}

// HasPriority reports a HEADERS frame carrying priority fields.
func (f *Frame) HasPriority() bool {
	return f.Type == FrameHeaders && f.Flags.Has(FlagHeadersPriority)
}

// NumSettings is how many parameters a SETTINGS frame carries.
func (f *Frame) NumSettings() int { return len(f.settings) / 6 }

// Setting is a SETTINGS frame's i-th parameter.
func (f *Frame) Setting(i int) Setting {
	p := f.settings[i*6:]
	return Setting{ID: SettingID(binary.BigEndian.Uint16(p)), Val: binary.BigEndian.Uint32(p[2:])}
}

// frameKind is one row of the frame-type table.
type frameKind struct {
	name  string
	parse func(f *Frame, p []byte) error // p: the payload
	spec  string                         // where the type is defined
}

// frameKinds is the frame-type table; a type without a row is ignored
// (RFC 9113 §4.1, §5.5) and reaches the caller with its raw payload.
var frameKinds = [...]frameKind{
	FrameData:           {"DATA", parseData, "https://www.rfc-editor.org/rfc/rfc9113#section-6.1"},
	FrameHeaders:        {"HEADERS", parseHeaders, "https://www.rfc-editor.org/rfc/rfc9113#section-6.2"},
	FramePriority:       {"PRIORITY", parsePriority, "https://www.rfc-editor.org/rfc/rfc9113#section-6.3"},
	FrameRSTStream:      {"RST_STREAM", parseRSTStream, "https://www.rfc-editor.org/rfc/rfc9113#section-6.4"},
	FrameSettings:       {"SETTINGS", parseSettings, "https://www.rfc-editor.org/rfc/rfc9113#section-6.5"},
	FramePushPromise:    {"PUSH_PROMISE", parsePushPromise, "https://www.rfc-editor.org/rfc/rfc9113#section-6.6"},
	FramePing:           {"PING", parsePing, "https://www.rfc-editor.org/rfc/rfc9113#section-6.7"},
	FrameGoAway:         {"GOAWAY", parseGoAway, "https://www.rfc-editor.org/rfc/rfc9113#section-6.8"},
	FrameWindowUpdate:   {"WINDOW_UPDATE", parseWindowUpdate, "https://www.rfc-editor.org/rfc/rfc9113#section-6.9"},
	FrameContinuation:   {"CONTINUATION", parseContinuation, "https://www.rfc-editor.org/rfc/rfc9113#section-6.10"},
	FramePriorityUpdate: {"PRIORITY_UPDATE", parsePriorityUpdate, "https://www.rfc-editor.org/rfc/rfc9218#section-7.1"},
}

func (t FrameType) kind() *frameKind {
	if int(t) < len(frameKinds) && frameKinds[t].parse != nil {
		return &frameKinds[t]
	}
	return nil
}

func (t FrameType) String() string {
	if k := t.kind(); k != nil {
		return k.name
	}
	return "UNKNOWN_FRAME_TYPE_" + itoa(uint32(t))
}

func itoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		if v /= 10; v == 0 {
			return string(b[i:])
		}
	}
}

// Clone returns a copy of f that no longer aliases the reader's input.
func (f *Frame) Clone() *Frame {
	c := *f
	c.Data = append([]byte(nil), f.Data...)
	c.settings = append([]byte(nil), f.settings...)
	return &c
}
