// Package rpc drives xprotocol codecs over connections: ServerConn serves a
// downstream connection's requests as concurrent streams (a network read
// filter), NewPool multiplexes upstream requests over few connections,
// matched by request ID. A request's frame travels whole in Head.Frame with
// its ID rewritten on each side; heartbeats are answered where they arrive.
package rpc

import (
	"net/http"
	"sync/atomic"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
)

// Stats count a codec's events on one side; safe for concurrent use.
// Codec names the codec in the exported metrics.
type Stats struct {
	Codec                                                      string
	Requests, Oneways, Heartbeats, BadFrames, UnknownResponses atomic.Uint64
}

// Each calls f with every counter's metric name and value.
func (st *Stats) Each(f func(event string, v uint64)) {
	f("requests", st.Requests.Load())
	f("oneway", st.Oneways.Load())
	f("heartbeats", st.Heartbeats.Load())
	f("bad_frames", st.BadFrames.Load())
	f("unknown_responses", st.UnknownResponses.Load())
}

// ServerSettings configure downstream connections of one codec.
type ServerSettings struct {
	Codec xprotocol.Codec
	// MaxInFlight bounds a connection's requests waiting for responses;
	// beyond it reading pauses. 1024 by default.
	MaxInFlight int
	Stats       *Stats
}

// ServerConn is the terminal read filter of a downstream RPC connection.
// Every event runs under the connection's session; responses queued while
// handling one leave together when the session is released.
type ServerConn struct {
	network.BaseFilter
	set *ServerSettings
	cbs stream.ServerCallbacks
	c   *network.Conn
	in  buffer.Input
	out buffer.Chain

	f           xprotocol.Frame
	head        protocol.Head
	target      []byte
	name        []byte
	inFlight    int
	paused      bool
	draining    bool
	migrating   bool // hot upgrade: hand over once nothing is in flight (migrate.go)
	handing     bool // HandOver called
	flushQueued bool
	streams     map[*serverStream]struct{}
}

var (
	_ network.ReadFilter    = (*ServerConn)(nil)
	_ network.ConnCallbacks = (*ServerConn)(nil)
	_ network.Drainer       = (*ServerConn)(nil)
	_ stream.Flusher        = (*ServerConn)(nil)
)

// NewServerConn returns the filter for one connection.
func NewServerConn(set *ServerSettings, cbs stream.ServerCallbacks) *ServerConn {
	if set.Stats == nil {
		set.Stats = &Stats{}
	}
	return &ServerConn{set: set, cbs: cbs, name: []byte(set.Codec.Name()), streams: map[*serverStream]struct{}{}}
}

func (sc *ServerConn) maxInFlight() int {
	if sc.set.MaxInFlight > 0 {
		return sc.set.MaxInFlight
	}
	return 1024
}

func (sc *ServerConn) OnNewConnection(c *network.Conn) network.FilterStatus {
	sc.c = c
	return network.Continue
}

func (sc *ServerConn) OnData(_ *network.Conn, b *buffer.Buf) network.FilterStatus {
	sc.in.Add(b)
	if sc.migrating {
		return network.StopIteration // the next process parses it
	}
	codec := sc.set.Codec
	for sc.in.Len() > 0 && !sc.c.Closed() {
		n, err := codec.Decode(sc.in.Bytes(), &sc.f)
		if err != nil {
			// What was answered before the bad frame (heartbeats, local
			// replies) is written first; requests in flight are reset.
			sc.set.Stats.BadFrames.Add(1)
			sc.in.Reset()
			sc.Flush()
			sc.c.Close()
			break
		}
		if n == 0 {
			break
		}
		sc.frame(&sc.f)
		sc.in.Consume(n)
	}
	sc.maybePause()
	return network.StopIteration
}

// frame handles one downstream frame.
func (sc *ServerConn) frame(f *xprotocol.Frame) {
	switch f.Kind {
	case xprotocol.Heartbeat:
		sc.set.Stats.Heartbeats.Add(1)
		sc.queue(sc.set.Codec.AppendHeartbeatReply(nil, f))
		return
	case xprotocol.Request, xprotocol.Oneway:
	default: // a response or heartbeat reply from a client: ignored
		sc.set.Stats.UnknownResponses.Add(1)
		return
	}
	if sc.draining {
		sc.queue(sc.set.Codec.AppendError(nil, f, 503, "proxy is draining"))
		return
	}
	sc.set.Stats.Requests.Add(1)
	ss := &serverStream{sc: sc, id: f.ID, kind: f.Kind, meta: f.Meta}
	if f.Kind == xprotocol.Oneway {
		sc.set.Stats.Oneways.Add(1)
	}
	sc.streams[ss] = struct{}{}
	sc.inFlight++
	// The head routes like an HTTP request: Host is the service, the path
	// /service/method, the codec's fields are headers; the frame rides in
	// Frame.
	h := &sc.head
	fields := h.Headers.Fields[:0]
	*h = protocol.Head{Method: sc.name, Minor: 1, Frame: f.Raw}
	h.Headers.Fields = append(fields, f.Headers.Fields...)
	service := f.Headers.Get(xprotocol.FieldService)
	sc.target = append(append(append(append(sc.target[:0], '/'), service...), '/'), f.Headers.Get(xprotocol.FieldMethod)...)
	h.Target = sc.target
	if service != nil {
		h.Headers.Append([]byte("host"), service)
	}
	ss.dec = sc.cbs.NewStream(ss)
	ss.dec.DecodeHead(h, true)
}

// maybePause stops reading while too many requests wait for responses.
func (sc *ServerConn) maybePause() {
	switch over := sc.inFlight >= sc.maxInFlight(); {
	case over && !sc.paused:
		sc.paused = true
		sc.c.ReadDisable(true)
	case !over && sc.paused:
		sc.paused = false
		sc.c.ReadDisable(false)
	}
}

func (sc *ServerConn) queue(p []byte) {
	sc.out.Write(p)
	sc.scheduleFlush()
}

func (sc *ServerConn) scheduleFlush() {
	if !sc.flushQueued {
		sc.flushQueued = true
		sc.c.DeferFlush(sc)
	}
}

// Flush writes the queued responses (stream.Flusher).
func (sc *ServerConn) Flush() {
	sc.flushQueued = false
	sc.out.WriteTo(sc.c)
	if sc.migrating {
		sc.handOver()
	}
}

func (sc *ServerConn) OnReadEOF(*network.Conn) { sc.c.Close() }

func (sc *ServerConn) OnClose(*network.Conn, error) {
	for ss := range sc.streams {
		ss.finish()
		ss.dec.OnReset(stream.ErrDownstreamReset)
	}
	sc.in.Reset()
	sc.out.Drop()
}

// Drain answers new requests with an error and closes once the ones in
// flight are answered.
func (sc *ServerConn) Drain(*network.Conn) {
	sc.draining = true
	if sc.inFlight == 0 {
		sc.Flush()
		sc.c.CloseWrite()
	}
}

// serverStream is one request: the proxy's encoder for its response.
type serverStream struct {
	sc       *ServerConn
	dec      stream.RequestDecoder
	id       uint64
	kind     xprotocol.Kind
	meta     uint32
	finished bool
	disabled int
}

var _ stream.ResponseEncoder = (*serverStream)(nil)

func (s *serverStream) Session() stream.Session { return s.sc.c }

// finish ends the stream's bookkeeping.
func (s *serverStream) finish() {
	s.finished = true
	sc := s.sc
	delete(sc.streams, s)
	sc.inFlight--
	for ; s.disabled > 0; s.disabled-- {
		sc.c.ReadDisable(false)
	}
	if !sc.c.Closed() {
		sc.maybePause()
		if sc.migrating && sc.inFlight == 0 {
			sc.scheduleFlush() // Flush hands over, after this answer
		}
		if sc.draining && sc.inFlight == 0 {
			sc.Flush()
			sc.c.CloseWrite()
		}
	}
}

func (s *serverStream) request() *xprotocol.Frame {
	return &xprotocol.Frame{Kind: s.kind, ID: s.id, Meta: s.meta}
}

func (s *serverStream) EncodeInterim(*stream.Head) {}

// EncodeHead sends the upstream's response frame under the downstream ID,
// or an error response when the answer is not a frame (a non-RPC upstream
// or a direct response).
func (s *serverStream) EncodeHead(h *stream.Head, _ bool) {
	if s.finished {
		return
	}
	s.finish()
	if s.kind == xprotocol.Oneway {
		return
	}
	sc := s.sc
	if h.Frame == nil {
		status := h.Status
		if status < 300 {
			status = 502
		}
		sc.queue(sc.set.Codec.AppendError(nil, s.request(), status, "upstream answered "+http.StatusText(h.Status)))
		return
	}
	sc.out.Write(h.Frame)
	sc.set.Codec.SetID(sc.out.Tail(len(h.Frame)), s.id)
	sc.scheduleFlush()
}

func (s *serverStream) EncodeData([]byte, bool)          {}
func (s *serverStream) EncodeTrailers(*protocol.Headers) {}

// LocalReply answers with the protocol's error response.
func (s *serverStream) LocalReply(status int, reason string) {
	if s.finished {
		return
	}
	s.finish()
	if s.kind != xprotocol.Oneway {
		s.sc.queue(s.sc.set.Codec.AppendError(nil, s.request(), status, reason))
	}
}

// Reset answers with an error response: the connection carries other
// requests and stays.
func (s *serverStream) Reset() { s.LocalReply(502, "stream reset") }

// ReadDisable pauses the whole connection (RPC protocols have no
// per-request flow control); undone when the stream ends.
func (s *serverStream) ReadDisable(d bool) {
	if s.finished {
		return
	}
	if d {
		s.disabled++
	} else if s.disabled > 0 {
		s.disabled--
	} else {
		return
	}
	s.sc.c.ReadDisable(d)
}
