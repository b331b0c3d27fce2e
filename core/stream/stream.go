// Package stream turns a connection's codec events into request/response
// streams. A codec (HTTP/1 now; HTTP/2 and RPC codecs later) implements the
// encoders and calls the decoders; the proxy implements the decoders.
//
// Order of calls on one stream, each direction independently:
//
//	Head [Data…] [Trailers]      end is signalled by the last call's end flag
//	                             (Trailers always ends the direction)
//	OnReset                      instead of, or in the middle of, the above;
//	                             nothing follows it
//
// All calls for the streams of one downstream connection run holding its
// session lock (network.Conn.Lock); none may block.
package stream

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
)

// Head is the codec-neutral message head.
type Head = protocol.Head

// RequestDecoder receives a downstream request. Implemented by the proxy.
type RequestDecoder interface {
	// DecodeHead: h and its slices are valid only during the call.
	DecodeHead(h *Head, end bool)
	// DecodeData: p is valid only during the call.
	DecodeData(p []byte, end bool)
	DecodeTrailers(t *protocol.Headers)
	WatermarkCallbacks
	// OnReset: the downstream went away or broke the protocol; the stream
	// is finished and its encoder must not be used.
	OnReset(reason error)
}

// ResponseEncoder sends the response of a downstream stream. Implemented by
// the server codec.
type ResponseEncoder interface {
	// EncodeInterim sends a 1xx response (e.g. 100 Continue).
	EncodeInterim(h *Head)
	EncodeHead(h *Head, end bool)
	EncodeData(p []byte, end bool)
	EncodeTrailers(t *protocol.Headers)
	// LocalReply sends a whole response made by the proxy; reason goes in
	// the body. If a head was already sent, the stream is reset instead.
	LocalReply(status int, reason string)
	// Reset aborts the stream (for HTTP/1: closes the connection).
	Reset()
	// ReadDisable stops/resumes reading the downstream for this stream
	// (backpressure from a slow upstream); calls nest.
	ReadDisable(disable bool)
	// Session is what every event of this stream runs under.
	Session() Session
}

// Session serializes a downstream connection's events; see network.Session.
type Session = network.Session

// Flusher writes what an encoder has queued.
type Flusher = network.Flusher

// ResponseDecoder receives an upstream response. Implemented by the proxy.
type ResponseDecoder interface {
	DecodeInterim(h *Head)
	DecodeHead(h *Head, end bool)
	DecodeData(p []byte, end bool)
	DecodeTrailers(t *protocol.Headers)
	WatermarkCallbacks
	// OnReset: the upstream connection failed or broke the protocol.
	OnReset(reason error)
}

// RequestEncoder sends a request upstream. Implemented by the client codec.
type RequestEncoder interface {
	EncodeHead(h *Head, end bool)
	EncodeData(p []byte, end bool)
	EncodeTrailers(t *protocol.Headers)
	// Reset aborts the upstream request; the connection is not reused.
	Reset()
	// ReadDisable stops/resumes reading the upstream for this stream.
	ReadDisable(disable bool)
}

// WatermarkCallbacks tell a stream that the connection it writes to has too
// much queued (stop reading the other side) or has drained (resume).
type WatermarkCallbacks interface {
	OnAboveWriteHighWatermark()
	OnBelowWriteLowWatermark()
}

// ServerCallbacks make a decoder for each new downstream stream.
type ServerCallbacks interface {
	NewStream(enc ResponseEncoder) RequestDecoder
}

// PoolFailure says why a pool could not give a stream.
type PoolFailure int

const (
	ConnectFailure PoolFailure = iota
	ConnectTimeout
	Overflow   // too many requests waiting for a connection
	CxOverflow // the cluster's connection limit is reached
)

func (f PoolFailure) String() string {
	switch f {
	case ConnectFailure:
		return "upstream connect error"
	case ConnectTimeout:
		return "upstream connect timeout"
	case Overflow:
		return "upstream connection pool overflow"
	case CxOverflow:
		return "upstream connection limit reached"
	}
	return "upstream pool failure"
}

// Handshaker is a secured upstream connection (an offload engine's client
// side) that reports when its handshake ends. A pool counts such a
// connection as connecting until then and hands it no request before: a
// failed handshake is a connect failure (the request was never sent), as
// in Envoy, where a connection is connected only once TLS is up.
type Handshaker interface {
	// OnHandshake sets f, called once with nil or the handshake's error;
	// set before the connection is started.
	OnHandshake(f func(err error))
}

// PoolCallbacks receive the result of Pool.NewStream, under the session the
// caller passed.
type PoolCallbacks interface {
	// OnPoolReady: enc is ready; reused says the connection served before
	// (so a failure before any response byte may be a stale connection).
	OnPoolReady(enc RequestEncoder, reused bool)
	OnPoolFailure(f PoolFailure, err error)
}

// Cancellable cancels a pending pool request.
type Cancellable interface {
	Cancel()
}

// Pool hands out request encoders on upstream connections to one host.
type Pool interface {
	// NewStream calls cb.OnPoolReady or cb.OnPoolFailure exactly once, under
	// s (which the caller already holds if the call is synchronous). The
	// returned Cancellable is nil when the call completed synchronously.
	NewStream(dec ResponseDecoder, s Session, cb PoolCallbacks) Cancellable
	// Drain closes idle connections and lets busy ones finish, then close.
	Drain()
}

// Reset reasons shared by codecs.
var (
	ErrUpstreamReset   = errors.New("stream: upstream connection reset")
	ErrDownstreamReset = errors.New("stream: downstream connection reset")
	// ErrRefused: the upstream refused the stream before processing it
	// (HTTP/2 REFUSED_STREAM or above a GOAWAY's last stream), so the
	// request may be retried whatever its method.
	ErrRefused = errors.New("stream: refused by upstream before processing")
	// ErrUnencodable: the request encoder refused the head as malformed
	// for its protocol, before writing anything. Retrying cannot help.
	ErrUnencodable = errors.New("stream: request head cannot be encoded")
)

// UpstreamClosed is the reset reason for streams of an upstream connection
// that closed with err (nil: closed without an error).
func UpstreamClosed(err error) error {
	if err == nil {
		return ErrUpstreamReset
	}
	return fmt.Errorf("%w: %w", ErrUpstreamReset, err)
}

// ReasonResetter is an encoder that can say why it resets; the proxy uses
// it to pass a peer's reset on (HTTP/2 keeps CANCEL as CANCEL, so a
// cancellation crosses the proxy as one).
type ReasonResetter interface {
	ResetWith(reason error)
}

// PoolStats are a connection pool's counters.
type PoolStats struct {
	ConnectsTotal, ConnectFailures, Reuses atomic.Uint64
	Active                                 atomic.Int64
}

// Breaker is a limit shared by everything that counts against it (a
// cluster's pools, its requests): TryAcquire takes a slot if one is free.
// A nil Breaker or Max <= 0 never refuses.
type Breaker struct {
	Max int64
	n   atomic.Int64
}

// TryAcquire takes a slot or reports the limit is reached.
func (b *Breaker) TryAcquire() bool {
	if b == nil || b.Max <= 0 {
		return true
	}
	if b.n.Add(1) > b.Max {
		b.n.Add(-1)
		return false
	}
	return true
}

// Release returns a slot taken by TryAcquire.
func (b *Breaker) Release() {
	if b != nil && b.Max > 0 {
		b.n.Add(-1)
	}
}

// Count is the number of slots taken.
func (b *Breaker) Count() int64 {
	if b == nil {
		return 0
	}
	return b.n.Load()
}
