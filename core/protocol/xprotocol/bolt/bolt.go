// Package bolt is the SOFARPC bolt codec (protocol v1 and v2) for the
// xprotocol framework.
//
// Wire format (big-endian; https://github.com/sofastack/sofa-bolt, the
// RpcProtocol and RpcProtocolV2 classes):
//
//	v1 request  proto=1 type cmdcode:2 ver2 id:4 codec timeout:4 classLen:2 headerLen:2 contentLen:4  (22 bytes)
//	v1 response proto=1 type cmdcode:2 ver2 id:4 codec status:2  classLen:2 headerLen:2 contentLen:4  (20 bytes)
//	v2 request  proto=2 ver1 type cmdcode:2 ver2 id:4 codec switch timeout:4 classLen:2 headerLen:2 contentLen:4  (24)
//	v2 response proto=2 ver1 type cmdcode:2 ver2 id:4 codec switch status:2  classLen:2 headerLen:2 contentLen:4  (22)
//
// then class name, header map, content; v2 appends a CRC32 of the frame
// when bit 0 of switch is set. type: 1 request, 2 oneway, 0 response;
// cmdcode: 0 heartbeat, 1 request, 2 response. The header map is a run of
// (int32 length, bytes) pairs, key then value.
package bolt

import (
	"encoding/binary"
	"hash/crc32"
	"time"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
)

// Name is the codec's registered name.
const Name = "bolt"

const (
	protoV1 = 1
	protoV2 = 2

	typeResponse = 0
	typeRequest  = 1
	typeOneway   = 2

	cmdHeartbeat = 0
	cmdRequest   = 1
	cmdResponse  = 2

	// Response status codes (com.alipay.remoting.ResponseStatus).
	StatusSuccess           = 0x0000
	StatusError             = 0x0001
	StatusServerException   = 0x0002
	StatusUnknown           = 0x0003
	StatusThreadpoolBusy    = 0x0004
	StatusErrorComm         = 0x0005
	StatusNoProcessor       = 0x0006
	StatusTimeout           = 0x0007
	StatusClientSendError   = 0x0008
	StatusCodecException    = 0x0009
	StatusConnectionClosed  = 0x0010
	StatusServerSerialExc   = 0x0011
	StatusServerDeserialExc = 0x0012

	codecHessian2 = 1
	crcSwitch     = 0x01
)

// MaxFrame bounds a frame; larger ones close the connection.
const MaxFrame = 16 << 20

// Codec is the bolt codec.
type Codec struct{}

var _ xprotocol.Codec = Codec{}

func (Codec) Name() string  { return Name }
func (Codec) MaxID() uint64 { return 1<<32 - 1 }

// Match: the first byte is the protocol version (1 or 2), the type byte a
// known type and the command code a known one.
func (Codec) Match(p []byte) xprotocol.MatchResult {
	if len(p) == 0 {
		return xprotocol.NeedMore
	}
	off := 1
	switch p[0] {
	case protoV1:
	case protoV2:
		off = 2
	default:
		return xprotocol.NoMatch
	}
	if len(p) < off+3 {
		return xprotocol.NeedMore
	}
	if p[off] > typeOneway {
		return xprotocol.NoMatch
	}
	if cmd := binary.BigEndian.Uint16(p[off+1:]); p[off+1] != 0 || cmd > cmdResponse {
		return xprotocol.NoMatch
	}
	return xprotocol.Match
}

// layout is where a frame's fields are, by version and direction.
type layout struct {
	typ, id, codec, sw, timeout, status, lens, head int
}

var (
	v1Req  = layout{typ: 1, id: 5, codec: 9, sw: -1, timeout: 10, status: -1, lens: 14, head: 22}
	v1Resp = layout{typ: 1, id: 5, codec: 9, sw: -1, timeout: -1, status: 10, lens: 12, head: 20}
	v2Req  = layout{typ: 2, id: 6, codec: 10, sw: 11, timeout: 12, status: -1, lens: 16, head: 24}
	v2Resp = layout{typ: 2, id: 6, codec: 10, sw: 11, timeout: -1, status: 12, lens: 14, head: 22}
)

func layoutOf(p []byte) (layout, bool) {
	switch p[0] {
	case protoV1:
		if p[1] == typeResponse {
			return v1Resp, true
		}
		return v1Req, true
	case protoV2:
		if p[2] == typeResponse {
			return v2Resp, true
		}
		return v2Req, true
	}
	return layout{}, false
}

// Decode parses one frame.
func (Codec) Decode(p []byte, f *xprotocol.Frame) (int, error) {
	if len(p) < 3 {
		return 0, nil
	}
	l, ok := layoutOf(p)
	if !ok {
		return 0, xprotocol.Errorf(Name, "bad protocol byte 0x%02x", p[0])
	}
	if len(p) < l.head {
		return 0, nil
	}
	typ := p[l.typ]
	cmd := binary.BigEndian.Uint16(p[l.typ+1:])
	if typ > typeOneway || cmd > cmdResponse {
		return 0, xprotocol.Errorf(Name, "bad type %d or command %d", typ, cmd)
	}
	classLen := int(binary.BigEndian.Uint16(p[l.lens:]))
	headerLen := int(binary.BigEndian.Uint16(p[l.lens+2:]))
	contentLen := int(binary.BigEndian.Uint32(p[l.lens+4:]))
	n := l.head + classLen + headerLen + contentLen
	crc := l.sw >= 0 && p[l.sw]&crcSwitch != 0
	if crc {
		n += 4
	}
	if contentLen > MaxFrame || n > MaxFrame {
		return 0, xprotocol.Errorf(Name, "frame of %d bytes exceeds %d", n, MaxFrame)
	}
	if len(p) < n {
		return 0, nil
	}
	raw := p[:n]
	if crc && crc32.ChecksumIEEE(raw[:n-4]) != binary.BigEndian.Uint32(raw[n-4:]) {
		return 0, xprotocol.Errorf(Name, "CRC32 mismatch")
	}
	*f = xprotocol.Frame{Raw: raw, ID: uint64(binary.BigEndian.Uint32(p[l.id:])), Headers: f.Headers, Meta: uint32(p[0]) | uint32(p[l.codec])<<8}
	f.Headers.Reset()
	if p[0] == protoV2 {
		f.Meta |= uint32(p[1])<<16 | uint32(p[l.sw])<<24
	}
	switch {
	case typ == typeResponse && cmd == cmdHeartbeat:
		f.Kind = xprotocol.HeartbeatReply
	case typ == typeResponse:
		f.Kind = xprotocol.Response
		f.Status = uint32(binary.BigEndian.Uint16(p[l.status:]))
	case cmd == cmdHeartbeat:
		f.Kind = xprotocol.Heartbeat
	case cmd == cmdResponse:
		return 0, xprotocol.Errorf(Name, "request type with the response command")
	case typ == typeOneway:
		f.Kind = xprotocol.Oneway
	default:
		f.Kind = xprotocol.Request
	}
	if l.timeout >= 0 {
		f.Timeout = time.Duration(binary.BigEndian.Uint32(p[l.timeout:])) * time.Millisecond
	}
	if err := decodeHeaders(raw[l.head+classLen:l.head+classLen+headerLen], f); err != nil {
		return 0, err
	}
	return n, nil
}

// decodeHeaders reads the header map and fills the routing fields from
// SOFARPC's keys. A routing field is added only when the wire has no field
// of that name already: a wire "service" is the routing field itself (one
// value for routing and for header matchers, not "svc,svc").
func decodeHeaders(h []byte, f *xprotocol.Frame) error {
	var service, method []byte
	var wireService, wireMethod bool
	for len(h) > 0 {
		var k, v []byte
		var ok bool
		if k, h, ok = lenPrefixed(h); !ok {
			return xprotocol.Errorf(Name, "truncated header key")
		}
		if v, h, ok = lenPrefixed(h); !ok {
			return xprotocol.Errorf(Name, "truncated header value")
		}
		switch string(k) {
		case "service", "sofa_head_target_service":
			if service == nil {
				service = v
			}
		case "sofa_head_method_name":
			method = v
		}
		wireService = wireService || string(k) == xprotocol.FieldService
		wireMethod = wireMethod || string(k) == xprotocol.FieldMethod
		f.Headers.Append(k, v)
	}
	if service != nil && !wireService {
		f.Headers.Append([]byte(xprotocol.FieldService), service)
	}
	if method != nil && !wireMethod {
		f.Headers.Append([]byte(xprotocol.FieldMethod), method)
	}
	return nil
}

func lenPrefixed(h []byte) (v, rest []byte, ok bool) {
	if len(h) < 4 {
		return nil, nil, false
	}
	n := int32(binary.BigEndian.Uint32(h))
	h = h[4:]
	if n < 0 { // a null string
		return nil, h, true
	}
	if int(n) > len(h) {
		return nil, nil, false
	}
	return h[:n], h[n:], true
}

// SetID rewrites the request ID (and the CRC, when the frame has one).
func (Codec) SetID(raw []byte, id uint64) {
	l, ok := layoutOf(raw)
	if !ok || len(raw) < l.head {
		return
	}
	binary.BigEndian.PutUint32(raw[l.id:], uint32(id))
	if l.sw >= 0 && raw[l.sw]&crcSwitch != 0 {
		binary.BigEndian.PutUint32(raw[len(raw)-4:], crc32.ChecksumIEEE(raw[:len(raw)-4]))
	}
}

// AppendHeartbeat appends a v1 heartbeat request.
func (Codec) AppendHeartbeat(dst []byte, id uint64) []byte {
	var b [22]byte
	b[0], b[1] = protoV1, typeRequest
	binary.BigEndian.PutUint16(b[2:], cmdHeartbeat)
	binary.BigEndian.PutUint32(b[5:], uint32(id))
	b[9] = codecHessian2
	binary.BigEndian.PutUint32(b[10:], 1000) // timeout ms
	return append(dst, b[:]...)
}

// AppendHeartbeatReply answers hb in its protocol version.
func (c Codec) AppendHeartbeatReply(dst []byte, hb *xprotocol.Frame) []byte {
	return c.appendResponse(dst, hb, cmdHeartbeat, StatusSuccess, nil)
}

// AppendError appends a response with the bolt status closest to
// httpStatus and msg in the "proxylab-error" header.
func (c Codec) AppendError(dst []byte, req *xprotocol.Frame, httpStatus int, msg string) []byte {
	st := StatusError
	switch httpStatus {
	case 404:
		st = StatusNoProcessor
	case 503:
		st = StatusThreadpoolBusy
	case 504:
		st = StatusTimeout
	case 502:
		st = StatusConnectionClosed
	}
	var h []byte
	h = appendString(h, "proxylab-error")
	h = appendString(h, msg)
	return c.appendResponse(dst, req, cmdResponse, uint16(st), h)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendResponse builds a response to req in req's version.
func (Codec) appendResponse(dst []byte, req *xprotocol.Frame, cmd, status uint16, header []byte) []byte {
	ver, codec := byte(req.Meta), byte(req.Meta>>8)
	if ver != protoV2 {
		ver = protoV1
	}
	l := v1Resp
	if ver == protoV2 {
		l = v2Resp
	}
	start := len(dst)
	dst = append(dst, make([]byte, l.head)...)
	b := dst[start:]
	b[0] = ver
	if ver == protoV2 {
		b[1] = byte(req.Meta >> 16)
		b[l.sw] = 0 // no CRC on the proxy's own replies
	}
	b[l.typ] = typeResponse
	binary.BigEndian.PutUint16(b[l.typ+1:], cmd)
	binary.BigEndian.PutUint32(b[l.id:], uint32(req.ID))
	b[l.codec] = codec
	binary.BigEndian.PutUint16(b[l.status:], status)
	binary.BigEndian.PutUint16(b[l.lens+2:], uint16(len(header)))
	return append(dst, header...)
}

// HTTPStatus maps bolt response statuses to HTTP-like codes.
func (Codec) HTTPStatus(f *xprotocol.Frame) int {
	switch f.Status {
	case StatusSuccess:
		return 200
	case StatusThreadpoolBusy:
		return 503
	case StatusTimeout:
		return 504
	case StatusNoProcessor:
		return 404
	case StatusConnectionClosed, StatusErrorComm:
		return 502
	case StatusCodecException, StatusServerDeserialExc:
		return 400
	}
	return 500
}

// Header is one entry of a bolt header map.
type Header struct{ Key, Value string }

// AppendRequest appends a bolt request (v1, or v2 without CRC) with the
// header map, class name and content given: for clients, test peers and
// load generators.
func AppendRequest(dst []byte, v2 bool, id uint32, oneway bool, timeout time.Duration, class string, headers []Header, content []byte) []byte {
	var h []byte
	for _, kv := range headers {
		h = appendString(appendString(h, kv.Key), kv.Value)
	}
	l := v1Req
	if v2 {
		l = v2Req
	}
	start := len(dst)
	dst = append(dst, make([]byte, l.head)...)
	b := dst[start:]
	b[0] = protoV1
	if v2 {
		b[0], b[1] = protoV2, 1
	}
	b[l.typ] = typeRequest
	if oneway {
		b[l.typ] = typeOneway
	}
	binary.BigEndian.PutUint16(b[l.typ+1:], cmdRequest)
	binary.BigEndian.PutUint32(b[l.id:], id)
	b[l.codec] = codecHessian2
	binary.BigEndian.PutUint32(b[l.timeout:], uint32(timeout/time.Millisecond))
	binary.BigEndian.PutUint16(b[l.lens:], uint16(len(class)))
	binary.BigEndian.PutUint16(b[l.lens+2:], uint16(len(h)))
	binary.BigEndian.PutUint32(b[l.lens+4:], uint32(len(content)))
	dst = append(dst, class...)
	dst = append(dst, h...)
	return append(dst, content...)
}

// AppendResponse appends a v1 response with status and content.
func AppendResponse(dst []byte, id uint32, status uint16, class string, content []byte) []byte {
	l := v1Resp
	start := len(dst)
	dst = append(dst, make([]byte, l.head)...)
	b := dst[start:]
	b[0], b[l.typ] = protoV1, typeResponse
	binary.BigEndian.PutUint16(b[l.typ+1:], cmdResponse)
	binary.BigEndian.PutUint32(b[l.id:], id)
	b[l.codec] = codecHessian2
	binary.BigEndian.PutUint16(b[l.status:], status)
	binary.BigEndian.PutUint16(b[l.lens:], uint16(len(class)))
	binary.BigEndian.PutUint32(b[l.lens+4:], uint32(len(content)))
	dst = append(dst, class...)
	return append(dst, content...)
}

// EnableCRC sets the CRC switch of a v2 frame and appends its CRC32.
func EnableCRC(frame []byte) []byte {
	if len(frame) == 0 || frame[0] != protoV2 {
		return frame
	}
	l, _ := layoutOf(frame)
	frame[l.sw] |= crcSwitch
	return binary.BigEndian.AppendUint32(frame, crc32.ChecksumIEEE(frame))
}
