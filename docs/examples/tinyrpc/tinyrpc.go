// Package tinyrpc is an example RPC codec: a made-up protocol small enough
// to read in one sitting, carried by the proxy like bolt and Dubbo — detected
// on an http_proxy port by its first bytes, routed by service and method,
// multiplexed upstream by request ID, heartbeats answered, errors in its own
// frames.
//
// A frame is a 14-byte header and two variable parts:
//
//	0   0xA7 'T'        magic (0xA7 is no ASCII: never the start of HTTP)
//	2   kind            0 request, 1 oneway, 2 response, 3 heartbeat, 4 heartbeat reply
//	3   status          responses: 0 ok, 1 not found, 2 busy, 3 timeout, 4 error
//	4   id              uint32, big-endian
//	8   route length    uint16: "service/method" of a request
//	10  body length     uint32
//	14  route, then body
//
// Registered with one line in cmd/proxylab/builtins.go, before the HTTP/1
// codec (which takes whatever no codec before it claims):
//
//	stream.Register(rpc.Codec{Wire: tinyrpc.Codec{}})
package tinyrpc

import (
	"bytes"
	"encoding/binary"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
)

// Name is the codec's name: a listener's codec, a cluster's protocol.
const Name = "tinyrpc"

const (
	magic0, magic1 = 0xA7, 'T'
	headerLen      = 14
	maxFrame       = 1 << 20
)

// Kinds and statuses on the wire.
const (
	kindRequest, kindOneway, kindResponse, kindHeartbeat, kindHeartbeatReply = 0, 1, 2, 3, 4

	StatusOK, StatusNotFound, StatusBusy, StatusTimeout, StatusError = 0, 1, 2, 3, 4
)

var kinds = [...]xprotocol.Kind{xprotocol.Request, xprotocol.Oneway, xprotocol.Response, xprotocol.Heartbeat, xprotocol.HeartbeatReply}

// Codec implements xprotocol.Codec; it is stateless.
type Codec struct{}

var _ xprotocol.Codec = Codec{}

func (Codec) Name() string  { return Name }
func (Codec) MaxID() uint64 { return 1<<32 - 1 }

// Match claims a connection whose first bytes are the magic.
func (Codec) Match(p []byte) xprotocol.MatchResult {
	switch {
	case len(p) == 0:
		return xprotocol.NeedMore
	case p[0] != magic0:
		return xprotocol.NoMatch
	case len(p) < 2:
		return xprotocol.NeedMore
	case p[1] != magic1:
		return xprotocol.NoMatch
	}
	return xprotocol.Match
}

// Decode reads one frame; a request's route becomes the service and method
// headers the proxy routes on (path /service/method).
func (Codec) Decode(p []byte, f *xprotocol.Frame) (int, error) {
	if len(p) < headerLen {
		if len(p) > 0 && p[0] != magic0 || len(p) > 1 && p[1] != magic1 {
			return 0, xprotocol.Errorf(Name, "bad magic")
		}
		return 0, nil
	}
	if p[0] != magic0 || p[1] != magic1 {
		return 0, xprotocol.Errorf(Name, "bad magic")
	}
	if int(p[2]) >= len(kinds) {
		return 0, xprotocol.Errorf(Name, "unknown kind %d", p[2])
	}
	rlen, blen := int(binary.BigEndian.Uint16(p[8:])), int(binary.BigEndian.Uint32(p[10:]))
	n := headerLen + rlen + blen
	if blen > maxFrame || n > maxFrame {
		return 0, xprotocol.Errorf(Name, "frame of %d bytes", n)
	}
	if len(p) < n {
		return 0, nil
	}
	*f = xprotocol.Frame{Kind: kinds[p[2]], ID: uint64(binary.BigEndian.Uint32(p[4:])), Status: uint32(p[3]),
		Headers: f.Headers, Raw: p[:n]}
	f.Headers.Fields = f.Headers.Fields[:0]
	if f.Kind == xprotocol.Request || f.Kind == xprotocol.Oneway {
		route := p[headerLen : headerLen+rlen]
		service, method, _ := bytes.Cut(route, []byte("/"))
		f.Headers.Add(xprotocol.FieldService, service)
		f.Headers.Add(xprotocol.FieldMethod, method)
	}
	return n, nil
}

// SetID rewrites the ID in place (the proxy's upstream IDs are its own).
func (Codec) SetID(raw []byte, id uint64) { binary.BigEndian.PutUint32(raw[4:], uint32(id)) }

func (Codec) AppendHeartbeat(dst []byte, id uint64) []byte {
	return appendFrame(dst, kindHeartbeat, 0, uint32(id), "", nil)
}

func (Codec) AppendHeartbeatReply(dst []byte, hb *xprotocol.Frame) []byte {
	return appendFrame(dst, kindHeartbeatReply, 0, uint32(hb.ID), "", nil)
}

// AppendError answers req with the closest status and msg as the body.
func (Codec) AppendError(dst []byte, req *xprotocol.Frame, httpStatus int, msg string) []byte {
	st := byte(StatusError)
	switch httpStatus {
	case 404:
		st = StatusNotFound
	case 503:
		st = StatusBusy
	case 504:
		st = StatusTimeout
	}
	return appendFrame(dst, kindResponse, st, uint32(req.ID), "", []byte(msg))
}

// HTTPStatus maps a response's status for metrics, retries and outlier
// detection.
func (Codec) HTTPStatus(resp *xprotocol.Frame) int {
	switch resp.Status {
	case StatusOK:
		return 200
	case StatusNotFound:
		return 404
	case StatusBusy:
		return 503
	case StatusTimeout:
		return 504
	}
	return 500
}

// AppendRequest appends a request (a oneway one when oneway) to
// service/method: for clients and test peers.
func AppendRequest(dst []byte, id uint32, service, method string, body []byte, oneway bool) []byte {
	kind := byte(kindRequest)
	if oneway {
		kind = kindOneway
	}
	return appendFrame(dst, kind, 0, id, service+"/"+method, body)
}

// AppendResponse appends a response: for servers and test peers.
func AppendResponse(dst []byte, id uint32, status byte, body []byte) []byte {
	return appendFrame(dst, kindResponse, status, id, "", body)
}

func appendFrame(dst []byte, kind, status byte, id uint32, route string, body []byte) []byte {
	dst = append(dst, magic0, magic1, kind, status)
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(route)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(append(dst, route...), body...)
}
