// Package xprotocol is the framework for RPC protocols carried over TCP as
// frames with a request ID — SOFARPC bolt, Dubbo, and private protocols. A
// protocol is one package implementing Codec plus one line in the binary's
// built-ins, stream.Register(rpc.Codec{Wire: …}); the stream layer
// (core/stream/rpc) then serves it downstream, multiplexes it upstream (requests matched by ID), answers
// heartbeats, and the proxy routes, retries, balances and counts its requests
// like HTTP ones.
//
// A frame travels through the proxy whole: the request ID is rewritten in
// place between the downstream and upstream connections, nothing else is
// re-encoded. Routing sees the fields a codec extracts (service, method,
// version and the protocol's own headers) without deserialising bodies.
package xprotocol

import (
	"errors"
	"fmt"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
)

// Kind is what a frame is.
type Kind uint8

const (
	Request        Kind = iota // a call that expects a response
	Oneway                     // a call without a response
	Response                   // the answer to a Request, same ID
	Heartbeat                  // a keep-alive probe, answered by whoever receives it
	HeartbeatReply             // the answer to a Heartbeat, same ID
)

func (k Kind) String() string {
	switch k {
	case Request:
		return "request"
	case Oneway:
		return "oneway"
	case Response:
		return "response"
	case Heartbeat:
		return "heartbeat"
	case HeartbeatReply:
		return "heartbeat-reply"
	}
	return "unknown"
}

// Routing field names every codec fills when the protocol has them.
const (
	FieldService = "service"
	FieldMethod  = "method"
	FieldVersion = "version"
)

// Frame is one decoded frame. Raw and the Headers' bytes alias the buffer
// Decode was given and are valid only as long as it is.
type Frame struct {
	Kind Kind
	ID   uint64
	// Status is a response's status in the protocol's own codes.
	Status uint32
	// Headers are the routing fields (FieldService, FieldMethod,
	// FieldVersion) and the protocol's own header map, if any.
	Headers protocol.Headers
	// Timeout is the request's own deadline, when the protocol carries one.
	Timeout time.Duration
	// Meta is codec-private (version, serialization id …), carried so an
	// error response can be made for the request.
	Meta uint32
	// Raw is the whole frame.
	Raw []byte
}

// MatchResult says whether a connection's first bytes belong to a codec.
type MatchResult int

const (
	NoMatch  MatchResult = iota
	NeedMore             // too few bytes to tell
	Match
)

// Codec is one RPC protocol's wire format. Implementations are stateless
// and safe for concurrent use.
type Codec interface {
	// Name is the registered name ("bolt", "dubbo").
	Name() string
	// Match looks at a connection's first bytes (protocol auto-detection).
	Match(p []byte) MatchResult
	// Decode parses the frame at the start of p into f and returns its
	// length; 0 with a nil error when p holds only part of it. An error
	// (bad magic, oversized or malformed frame) is fatal to the connection
	// and says why, for counting.
	Decode(p []byte, f *Frame) (n int, err error)
	// SetID rewrites the request ID of a whole frame in place.
	SetID(raw []byte, id uint64)
	// MaxID is the largest request ID the protocol carries.
	MaxID() uint64
	// AppendHeartbeat appends a heartbeat request with id.
	AppendHeartbeat(dst []byte, id uint64) []byte
	// AppendHeartbeatReply appends the answer to the heartbeat hb.
	AppendHeartbeatReply(dst []byte, hb *Frame) []byte
	// AppendError appends an error response to req for an HTTP-like
	// status (404 no route, 503 no upstream, 504 timeout …) in the
	// protocol's closest code, with msg where the protocol has room.
	AppendError(dst []byte, req *Frame, httpStatus int, msg string) []byte
	// HTTPStatus maps a response's status to an HTTP-like code, for
	// metrics, outlier detection and retry policies.
	HTTPStatus(resp *Frame) int
}

// ErrFrame is the class of decode errors; wrap it with the reason.
var ErrFrame = errors.New("xprotocol: bad frame")

// Errorf makes a decode error of codec name.
func Errorf(name, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", name, ErrFrame, fmt.Sprintf(format, args...))
}
