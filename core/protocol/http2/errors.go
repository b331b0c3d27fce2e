// Package http2 is the HTTP/2 wire format (RFC 9113): the connection
// preface, frames (header, per-type decode and encode), SETTINGS
// parameters, HPACK header blocks (RFC 7541, coded with
// golang.org/x/net/http2/hpack) and the mapping between a decoded field
// list and a protocol.Head (§8). Stream and connection state, flow
// control and flood limits are core/stream/http2's.
//
// Nothing here is safe for concurrent use: a Reader, Writer, Encoder or
// Decoder belongs to one connection, used under that connection's lock.
package http2

import (
	"errors"
	"fmt"
	"strconv"
)

// ClientPreface is what a client sends first (RFC 9113 §3.4).
const ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// ErrCode is an error code of RST_STREAM and GOAWAY (RFC 9113 §7).
type ErrCode uint32

// Error codes, RFC 9113 §7.
const (
	ErrCodeNo                 ErrCode = 0x0
	ErrCodeProtocol           ErrCode = 0x1
	ErrCodeInternal           ErrCode = 0x2
	ErrCodeFlowControl        ErrCode = 0x3
	ErrCodeSettingsTimeout    ErrCode = 0x4
	ErrCodeStreamClosed       ErrCode = 0x5
	ErrCodeFrameSize          ErrCode = 0x6
	ErrCodeRefusedStream      ErrCode = 0x7
	ErrCodeCancel             ErrCode = 0x8
	ErrCodeCompression        ErrCode = 0x9
	ErrCodeConnect            ErrCode = 0xa
	ErrCodeEnhanceYourCalm    ErrCode = 0xb
	ErrCodeInadequateSecurity ErrCode = 0xc
	ErrCodeHTTP11Required     ErrCode = 0xd
)

var errCodeNames = [...]string{
	"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
	"SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM",
	"CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
	"INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
}

func (e ErrCode) String() string {
	if int(e) < len(errCodeNames) {
		return errCodeNames[e]
	}
	return "unknown error code 0x" + strconv.FormatUint(uint64(e), 16)
}

// ConnError is a connection error (RFC 9113 §5.4.1): the receiver sends
// GOAWAY with Code and closes.
type ConnError struct {
	Code   ErrCode
	Reason string
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("http2: connection error %v: %s", e.Code, e.Reason)
}

// StreamError is a stream error (RFC 9113 §5.4.2) found while decoding a
// frame: the receiver resets StreamID with Code and goes on.
type StreamError struct {
	StreamID uint32
	Code     ErrCode
	Reason   string
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("http2: stream error on %d %v: %s", e.StreamID, e.Code, e.Reason)
}

// CodeOf is the error code err carries: a ConnError's or StreamError's,
// PROTOCOL_ERROR for anything else.
func CodeOf(err error) ErrCode {
	var ce *ConnError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var se *StreamError
	if errors.As(err, &se) {
		return se.Code
	}
	return ErrCodeProtocol
}

func connErr(code ErrCode, format string, args ...any) error {
	return &ConnError{Code: code, Reason: fmt.Sprintf(format, args...)}
}
