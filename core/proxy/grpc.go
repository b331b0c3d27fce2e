package proxy

import (
	"bytes"
	"strconv"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
)

// gRPC over HTTP/2 (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
// requests are recognised by content-type; the proxy's own replies to them
// are trailers-only responses, and grpc-timeout bounds the wait for the
// response like a route timeout (Envoy's max_grpc_timeout with no cap).

var (
	hdrContentType = "content-type"
	grpcPrefix     = []byte("application/grpc")
)

// isGRPC reports whether a request is a gRPC call.
func isGRPC(h *protocol.Headers) bool {
	return bytes.HasPrefix(h.Get(hdrContentType), grpcPrefix)
}

// grpcTimeout parses grpc-timeout ("TimeoutValue TimeoutUnit": at most 8
// digits, then H, M, S, m, u or n); ok is false when absent or invalid.
func grpcTimeout(v []byte) (d time.Duration, ok bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v[:len(v)-1]), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// gRPC status codes the proxy answers with.
const (
	grpcUnknown          = 2
	grpcDeadlineExceeded = 4
	grpcPermissionDenied = 7
	grpcUnimplemented    = 12
	grpcInternal         = 13
	grpcUnavailable      = 14
	grpcUnauthenticated  = 16
)

// grpcStatus maps the HTTP status of a local reply to a gRPC status (the
// gRPC spec's HTTP-to-gRPC table); a response timeout is a deadline.
func grpcStatus(httpStatus int, flags string) int {
	if flags == "UT" {
		return grpcDeadlineExceeded
	}
	switch httpStatus {
	case 400:
		return grpcInternal
	case 401:
		return grpcUnauthenticated
	case 403:
		return grpcPermissionDenied
	case 404:
		return grpcUnimplemented
	case 429, 502, 503, 504:
		return grpcUnavailable
	}
	return grpcUnknown
}

// grpcMessage percent-encodes a reason for grpc-message.
func grpcMessage(s string) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
	}
	return b
}

// grpcReply answers a gRPC call with a trailers-only response.
func (s *httpStream) grpcReply(status int, flags, reason string) {
	h := grpcHead(grpcStatus(status, flags), reason)
	s.enc.EncodeHead(&h, true)
}

// grpcHead is a trailers-only response with grpc-status code.
func grpcHead(code int, reason string) protocol.Head {
	h := protocol.Head{Status: 200, ContentLength: -1}
	h.Headers.Append([]byte("content-type"), grpcPrefix)
	h.Headers.Append([]byte("grpc-status"), strconv.AppendInt(nil, int64(code), 10))
	h.Headers.Append([]byte("grpc-message"), grpcMessage(reason))
	return h
}
