// Package filter is the L7 stream filter API: code that sees each request
// and response of an http_proxy listener on its way through (head, body,
// trailers) and may pass it on, hold it, buffer it, change it or answer
// locally. It is Envoy's decoder/encoder filter model: a listener has an
// ordered chain (config `http_filters`); requests pass it first to last
// (decoder filters), responses last to first (encoder filters); the router
// (the forwarding to an upstream) is the chain's terminal step.
//
// The same chain runs for HTTP/1.1, HTTP/2, gRPC and the RPC codecs (bolt,
// dubbo) for the filters whose Module says they support the request's kind.
// For an RPC request the head only describes the frame (Head.Frame is the
// message itself): header changes do not reach the wire.
//
// # Lifecycle of one stream's filter
//
//	Factory.NewFilter(s)                 after routing, before the first event
//	DecodeHeaders [DecodeData…] [DecodeTrailers]   request, chain order
//	EncodeHeaders [EncodeData…] [EncodeTrailers]   response, reverse order
//	OnDestroy                            exactly once, last
//
// Each direction's calls come in that order and stop at the end flag (a
// trailers call always ends its direction). The response direction may
// start before the request ended (an upstream answering early, a local
// reply). After a filter returned a Stop status, no later filter sees the
// held event (nor anything after it in that direction) until the filter
// calls Stream.ContinueDecoding / ContinueEncoding. Nothing is called after
// OnDestroy; a filter that started asynchronous work must let it find the
// stream gone (Stream.Post drops its function then).
//
// # Threads, blocking, ownership
//
// Every call runs under the downstream connection's session (the event loop
// or the goroutine holding it): none may block. Asynchronous work (a timer,
// a gRPC call) runs elsewhere and comes back with Stream.Post. A *Head, a
// *Body and trailers passed to a call are valid only during the call; a
// filter may modify them in place (slices it sets must stay valid until the
// call returns and are copied by the chain when it has to keep them). A
// filter that changes a body's length sets Head.ContentLength to -1 and
// deletes the content-length field: codecs frame from ContentLength.
//
// A filter that panics ends its stream with a 500 (gRPC: INTERNAL) counted
// as a filter failure; the process goes on. That recover is a safety net
// around foreign code, not a way to signal.
package filter

import (
	"crypto/x509"
	"net"

	"github.com/proxylab/proxylab/core/protocol"
)

// Status is what a filter returns from an event.
type Status uint8

const (
	// Continue passes the event to the next filter.
	Continue Status = iota
	// Stop holds the event here: the chain keeps it (and buffers what
	// follows in the same direction, up to the buffer limit) without
	// calling this filter again for that direction, until the filter calls
	// ContinueDecoding / ContinueEncoding. Envoy's StopAllIterationAndBuffer
	// for headers, StopIterationNoBuffer-with-hold for data.
	Stop
	// StopAndBuffer (from a headers or data call) holds the head and buffers
	// the body: this filter's Data call is made again at each new piece with
	// the whole body buffered so far, until it returns Continue or Stop.
	// Over the buffer limit the stream ends: 413 for a request, 500 for a
	// response (Envoy's behaviour).
	StopAndBuffer
)

// Body is a piece of a message body passing the chain. Bytes is valid only
// during the call. A filter may replace Bytes (with a slice it owns and keeps
// valid until its next call or OnDestroy) to change what later filters and
// the peer see; an empty Bytes passes nothing on but the end flag.
type Body struct {
	Bytes []byte
}

// Filter is what a Factory makes for a stream: a DecoderFilter, an
// EncoderFilter, or one value that is both.
type Filter interface {
	// OnDestroy: the stream is over (completed, reset or answered
	// locally); release what the filter holds. Called once, last.
	OnDestroy()
}

// DecoderFilter sees the request.
type DecoderFilter interface {
	Filter
	DecodeHeaders(h *protocol.Head, end bool) Status
	DecodeData(b *Body, end bool) Status
	DecodeTrailers(t *protocol.Headers) Status
}

// EncoderFilter sees the response (including local replies made by filters
// after it in the chain and by the router).
type EncoderFilter interface {
	Filter
	EncodeHeaders(h *protocol.Head, end bool) Status
	EncodeData(b *Body, end bool) Status
	EncodeTrailers(t *protocol.Headers) Status
}

// Factory is one configured filter of a listener's chain, made from its
// validated config: shared, read-only, used from every loop at once.
type Factory interface {
	// NewFilter makes the filter of one stream; s stays valid until its
	// OnDestroy. A filter with no per-stream state may return one shared
	// value for every stream (no allocation per request).
	NewFilter(s Stream) Filter
}

// LocalReply is a response made by a filter instead of the upstream's.
type LocalReply struct {
	Status int
	// Body is sent as text/plain (for gRPC: in grpc-message).
	Body string
	// Headers are added to the reply (e.g. x-ratelimit-*); may be nil.
	Headers *protocol.Headers
	// GRPCStatus, for a gRPC request, is the grpc-status to answer with;
	// 0 derives it from Status as Envoy does (403 → PERMISSION_DENIED 7,
	// 429 → UNAVAILABLE 14, …).
	GRPCStatus int
	// Flags are the response flags logged for it (Envoy's: "FI" fault
	// injected, "RL" rate limited, "UAEX" unauthorized external, …).
	Flags string
}

// Stream is a filter's view of its stream and what it may do to it. Methods
// other than Post run under the stream's session only.
type Stream interface {
	// ContinueDecoding resumes the request after this filter returned a
	// Stop status for it; ContinueEncoding likewise for the response.
	ContinueDecoding()
	ContinueEncoding()
	// SendLocalReply ends the request here: later decoder filters and the
	// router do not see it; the reply passes the encoder filters of this
	// filter and those before it (from an encoder call: those before it;
	// a response being encoded is dropped). If a response head was already
	// sent, the stream is reset instead.
	SendLocalReply(r LocalReply)
	// AddDecodedData / AddEncodedData, from a trailers call, pass p (copied)
	// to the later filters and the peer before the trailers (e.g. a
	// compressor's final block).
	AddDecodedData(p []byte)
	AddEncodedData(p []byte)
	// ClearRouteCache makes the route be looked up again after a decoder
	// filter changed what routing reads (host, path, headers).
	ClearRouteCache()
	// Post runs f under the stream's session; any goroutine may call it
	// (an async answer, a timer). If the stream was destroyed first, f is
	// not run. Post does not wait for f.
	Post(f func())

	Info() Info
	// State is per-stream data filters share by key (Envoy's filter
	// state); allocated on first use.
	State() map[string]any
}

// Info describes the stream and its connection to filters.
type Info interface {
	// RemoteAddr is the downstream peer's address; LocalAddr the
	// listener's address the connection arrived on.
	RemoteAddr() net.Addr
	LocalAddr() net.Addr
	// SNI is the server name the client asked for over TLS ("" without).
	SNI() string
	// PeerCertificate is the client's verified certificate (mTLS), nil
	// without one. Its URI SANs carry SPIFFE ids.
	PeerCertificate() *x509.Certificate
	// GRPC reports a gRPC request (local replies are gRPC-shaped).
	GRPC() bool
	// RPC reports a request of an RPC codec (bolt, dubbo).
	RPC() bool
	// Route is the matched route, nil when none matched (the router
	// answers 404 after the decoder filters ran).
	Route() Route
	// PerRouteConfig is this filter's override for the matched route
	// (the route's, else its virtual host's), as decoded by
	// Module.DecodePerRoute; nil when there is none.
	PerRouteConfig() any
}

// Route is what a filter may read of the matched route.
type Route interface {
	Name() string
	VirtualHost() string
	// Cluster is the cluster the route sends to ("" for a direct
	// response or redirect; the first of weighted clusters).
	Cluster() string
}

// PassThrough is a filter that does nothing; embed it and override what you
// need.
type PassThrough struct{}

func (PassThrough) OnDestroy()                                {}
func (PassThrough) DecodeHeaders(*protocol.Head, bool) Status { return Continue }
func (PassThrough) DecodeData(*Body, bool) Status             { return Continue }
func (PassThrough) DecodeTrailers(*protocol.Headers) Status   { return Continue }
func (PassThrough) EncodeHeaders(*protocol.Head, bool) Status { return Continue }
func (PassThrough) EncodeData(*Body, bool) Status             { return Continue }
func (PassThrough) EncodeTrailers(*protocol.Headers) Status   { return Continue }

var (
	_ DecoderFilter = PassThrough{}
	_ EncoderFilter = PassThrough{}
)
