// Package dubbo is the Dubbo codec for the xprotocol framework.
//
// Wire format (big-endian; Apache Dubbo's ExchangeCodec): a 16-byte header
//
//	magic 0xdabb:2  flag:1  status:1  request id:8  body length:4
//
// flag bit 7 marks a request, bit 6 a two-way request (one that expects a
// response), bit 5 an event (heartbeat); the low 5 bits are the
// serialization id (2: hessian2). status is set in responses (20: OK). A
// hessian2 request body starts with four strings: the dubbo version, the
// service path, the service version and the method name; routing reads
// those and nothing more (arguments and attachments are not decoded).
package dubbo

import (
	"bytes"
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
)

// Name is the codec's registered name.
const Name = "dubbo"

const (
	magicHi, magicLo = 0xda, 0xbb
	headerLen        = 16

	flagRequest = 0x80
	flagTwoWay  = 0x40
	flagEvent   = 0x20
	serialMask  = 0x1f
	hessian2    = 2

	// Response status codes (org.apache.dubbo.remoting.exchange.Response).
	StatusOK                  = 20
	StatusClientTimeout       = 30
	StatusServerTimeout       = 31
	StatusBadRequest          = 40
	StatusBadResponse         = 50
	StatusServiceNotFound     = 60
	StatusServiceError        = 70
	StatusServerError         = 80
	StatusClientError         = 90
	StatusThreadpoolExhausted = 100
)

// MaxFrame bounds a frame (Dubbo's default payload limit is 8 MiB).
const MaxFrame = 16 << 20

// Codec is the Dubbo codec.
type Codec struct{}

var _ xprotocol.Codec = Codec{}

func (Codec) Name() string  { return Name }
func (Codec) MaxID() uint64 { return 1<<63 - 1 }

// Match: the magic number.
func (Codec) Match(p []byte) xprotocol.MatchResult {
	switch {
	case len(p) == 0 || len(p) == 1 && p[0] == magicHi:
		return xprotocol.NeedMore
	case p[0] == magicHi && p[1] == magicLo:
		return xprotocol.Match
	}
	return xprotocol.NoMatch
}

// Decode parses one frame.
func (Codec) Decode(p []byte, f *xprotocol.Frame) (int, error) {
	if len(p) < 2 {
		return 0, nil
	}
	if p[0] != magicHi || p[1] != magicLo {
		return 0, xprotocol.Errorf(Name, "bad magic 0x%02x%02x", p[0], p[1])
	}
	if len(p) < headerLen {
		return 0, nil
	}
	bodyLen := binary.BigEndian.Uint32(p[12:])
	if bodyLen > MaxFrame {
		return 0, xprotocol.Errorf(Name, "body of %d bytes exceeds %d", bodyLen, MaxFrame)
	}
	n := headerLen + int(bodyLen)
	if len(p) < n {
		return 0, nil
	}
	flag := p[2]
	*f = xprotocol.Frame{Raw: p[:n], ID: binary.BigEndian.Uint64(p[4:]), Headers: f.Headers, Meta: uint32(flag & serialMask)}
	f.Headers.Reset()
	switch {
	case flag&flagRequest == 0 && flag&flagEvent != 0:
		f.Kind, f.Status = xprotocol.HeartbeatReply, uint32(p[3])
	case flag&flagRequest == 0:
		f.Kind, f.Status = xprotocol.Response, uint32(p[3])
	case flag&flagEvent != 0:
		f.Kind = xprotocol.Heartbeat
	case flag&flagTwoWay == 0:
		f.Kind = xprotocol.Oneway
	default:
		f.Kind = xprotocol.Request
	}
	if (f.Kind == xprotocol.Request || f.Kind == xprotocol.Oneway) && flag&serialMask == hessian2 {
		if err := routingFields(p[headerLen:n], f); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// routingFields reads the four leading hessian2 strings of a request body.
func routingFields(body []byte, f *xprotocol.Frame) error {
	var fields [4][]byte
	for i := range fields {
		s, rest, err := readString(body)
		if err != nil {
			return err
		}
		fields[i], body = s, rest
	}
	if fields[1] != nil {
		f.Headers.Append([]byte(xprotocol.FieldService), fields[1])
	}
	if fields[2] != nil {
		f.Headers.Append([]byte(xprotocol.FieldVersion), fields[2])
	}
	if fields[3] != nil {
		f.Headers.Append([]byte(xprotocol.FieldMethod), fields[3])
	}
	return nil
}

// readString reads one hessian2 string (or null) without copying when it
// is a single chunk; lengths count UTF-16 units, so the UTF-8 bytes are
// walked (http://hessian.caucho.com/doc/hessian-serialization.html §3.5).
func readString(b []byte) (s, rest []byte, err error) {
	if len(b) == 0 {
		return nil, nil, xprotocol.Errorf(Name, "truncated hessian2 string")
	}
	var chunks [][]byte
	for {
		tag := b[0]
		var n int
		final := true
		switch {
		case tag == 'N':
			return nil, b[1:], nil
		case tag <= 0x1f:
			n, b = int(tag), b[1:]
		case tag >= 0x30 && tag <= 0x33:
			if len(b) < 2 {
				return nil, nil, xprotocol.Errorf(Name, "truncated hessian2 string")
			}
			n, b = int(tag-0x30)<<8|int(b[1]), b[2:]
		case tag == 'S' || tag == 'R':
			if len(b) < 3 {
				return nil, nil, xprotocol.Errorf(Name, "truncated hessian2 string")
			}
			n, b, final = int(binary.BigEndian.Uint16(b[1:])), b[3:], tag == 'S'
		default:
			return nil, nil, xprotocol.Errorf(Name, "expected a hessian2 string, got tag 0x%02x", tag)
		}
		size, ok := utf16Bytes(b, n)
		if !ok {
			return nil, nil, xprotocol.Errorf(Name, "truncated hessian2 string")
		}
		chunk := fromCESU8(b[:size])
		b = b[size:]
		if final && chunks == nil {
			return chunk, b, nil
		}
		chunks = append(chunks, chunk)
		if final {
			var joined []byte
			for _, c := range chunks {
				joined = append(joined, c...)
			}
			return joined, b, nil
		}
		if len(b) == 0 {
			return nil, nil, xprotocol.Errorf(Name, "truncated hessian2 string")
		}
	}
}

// fromCESU8 turns the surrogate pairs Java writes (each half as a 3-byte
// sequence) into UTF-8; b is returned as it is when it has none.
func fromCESU8(b []byte) []byte {
	i := bytes.IndexByte(b, 0xed)
	if i < 0 || i+1 >= len(b) || b[i+1] < 0xa0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if b[i] == 0xed && i+5 < len(b) && b[i+1] >= 0xa0 && b[i+1] <= 0xaf && b[i+3] == 0xed && b[i+4] >= 0xb0 {
			hi := rune(b[i]&0x0f)<<12 | rune(b[i+1]&0x3f)<<6 | rune(b[i+2]&0x3f)
			lo := rune(b[i+3]&0x0f)<<12 | rune(b[i+4]&0x3f)<<6 | rune(b[i+5]&0x3f)
			out = utf8.AppendRune(out, utf16.DecodeRune(hi, lo))
			i += 6
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// utf16Bytes is the byte length of the first n UTF-16 units of b.
func utf16Bytes(b []byte, n int) (int, bool) {
	i := 0
	for units := 0; units < n; {
		if i >= len(b) {
			return 0, false
		}
		c := b[i]
		switch {
		case c < 0x80:
			i++
			units++
		case c < 0xe0:
			i += 2
			units++
		case c < 0xf0:
			i += 3
			units++
		default: // a 4-byte sequence is a surrogate pair: two units
			i += 4
			units += 2
		}
	}
	return i, i <= len(b)
}

// AppendString appends s as a hessian2 string (for test peers and error
// bodies).
func AppendString(b []byte, s string) []byte {
	units := 0
	for _, r := range s {
		if r >= 0x10000 {
			units += 2
		} else {
			units++
		}
	}
	switch {
	case units <= 0x1f:
		b = append(b, byte(units))
	case units <= 0x3ff:
		b = append(b, byte(0x30+units>>8), byte(units))
	default:
		// One final chunk up to 0xffff units; longer strings are cut (the
		// proxy's messages are short).
		for units > 0xffff {
			_, size := utf8.DecodeLastRuneInString(s)
			s = s[:len(s)-size]
			units--
		}
		b = append(b, 'S', byte(units>>8), byte(units))
	}
	// Characters outside the BMP go as two 3-byte surrogates (CESU-8), as
	// Java's hessian2 writes and reads them.
	for _, r := range s {
		if r < 0x10000 {
			b = utf8.AppendRune(b, r)
			continue
		}
		hi, lo := utf16.EncodeRune(r)
		for _, u := range []rune{hi, lo} {
			b = append(b, byte(0xe0|u>>12), byte(0x80|(u>>6)&0x3f), byte(0x80|u&0x3f))
		}
	}
	return b
}

// SetID rewrites the request ID in place.
func (Codec) SetID(raw []byte, id uint64) {
	if len(raw) >= headerLen {
		binary.BigEndian.PutUint64(raw[4:], id)
	}
}

// AppendHeartbeat appends a two-way heartbeat event with a null body.
func (Codec) AppendHeartbeat(dst []byte, id uint64) []byte {
	return appendFrame(dst, flagRequest|flagTwoWay|flagEvent|hessian2, 0, id, []byte{'N'})
}

// AppendHeartbeatReply answers hb.
func (Codec) AppendHeartbeatReply(dst []byte, hb *xprotocol.Frame) []byte {
	return appendFrame(dst, flagEvent|byte(hb.Meta&serialMask), StatusOK, hb.ID, []byte{'N'})
}

// AppendError appends a response with the Dubbo status closest to
// httpStatus and msg as its (hessian2 string) body.
func (Codec) AppendError(dst []byte, req *xprotocol.Frame, httpStatus int, msg string) []byte {
	st := byte(StatusServerError)
	switch httpStatus {
	case 400:
		st = StatusBadRequest
	case 404:
		st = StatusServiceNotFound
	case 502:
		st = StatusBadResponse
	case 503:
		st = StatusThreadpoolExhausted
	case 504:
		st = StatusServerTimeout
	}
	serial := byte(req.Meta & serialMask)
	if serial == 0 {
		serial = hessian2
	}
	return appendFrame(dst, serial, st, req.ID, AppendString(nil, msg))
}

func appendFrame(dst []byte, flag, status byte, id uint64, body []byte) []byte {
	dst = append(dst, magicHi, magicLo, flag, status)
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

// HTTPStatus maps Dubbo response statuses to HTTP-like codes.
func (Codec) HTTPStatus(f *xprotocol.Frame) int {
	switch f.Status {
	case StatusOK:
		return 200
	case StatusClientTimeout, StatusServerTimeout:
		return 504
	case StatusBadRequest, StatusClientError:
		return 400
	case StatusBadResponse:
		return 502
	case StatusServiceNotFound:
		return 404
	case StatusThreadpoolExhausted:
		return 503
	}
	return 500
}

// AppendRequest appends a request whose body is given (already hessian2
// encoded: version, service, service version, method, types, args,
// attachments); twoWay false makes it oneway.
func AppendRequest(dst []byte, id uint64, twoWay bool, body []byte) []byte {
	flag := byte(flagRequest | hessian2)
	if twoWay {
		flag |= flagTwoWay
	}
	return appendFrame(dst, flag, 0, id, body)
}

// AppendResponse appends a response with status and body.
func AppendResponse(dst []byte, id uint64, status byte, body []byte) []byte {
	return appendFrame(dst, hessian2, status, id, body)
}
