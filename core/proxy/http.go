// Package proxy is the forwarding state machine: a downstream stream is
// routed, a host is picked from the route's cluster, a stream is opened on that
// host's connection pool, and the two are spliced with backpressure both ways.
// The network filters "http_proxy" and "tcp_proxy" live here.
package proxy

import (
	"log/slog"
	"time"

	"github.com/proxylab/proxylab/core/accesslog"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/stats"
)

// HTTPConfig is the shared, read-only configuration of an http_proxy filter.
type HTTPConfig struct {
	Router   *router.Router
	Clusters *upstream.Manager
	// Server are the listener's settings every server codec was built
	// from; the proxy reads its timers, idle timeout and watermark.
	Server stream.ServerOptions
	// Codecs are the codecs the listener speaks and Servers their server
	// sides (same index). With Detect, a connection's codec is found by
	// ALPN or first bytes among them, in order (stream.Detect); without,
	// every connection speaks Codecs[0].
	Codecs  []stream.Codec
	Servers []stream.Server
	Detect  bool
	// MaxRequestBuffer bounds request body bytes held while no upstream
	// connection is ready yet; beyond it reading pauses.
	MaxRequestBuffer int
	// StreamIdle ends a stream with no bytes either way that long (0: off);
	// RequestTimeout bounds receiving the request from its head until the
	// response starts (0: off).
	StreamIdle, RequestTimeout time.Duration
	// Stats, when not nil, counts this listener's requests.
	Stats *HTTPStats
	// AccessLog, when not nil, gets one entry per request.
	AccessLog *accesslog.Logger
	// HeaderOps apply to every request and response of the listener.
	HeaderOps router.HeaderOps
	// Identity, when not nil: x-request-id and trace context (identity.go).
	Identity *Identity
	Log      *slog.Logger
	// Tunnels: upgrades and CONNECT (tunnel.go).
	Tunnels TunnelConfig
	// Filters is the listener's http_filters chain and FilterBufferLimit
	// what it may hold per direction of a stream (chain.go; SetFilters).
	Filters             []FilterSpec
	FilterBufferLimit   int
	httpChain, rpcChain []int
}

// HTTPStats are a listener's request metrics (Envoy's http.downstream_rq_*).
type HTTPStats struct {
	RqTotal      stats.Counter
	RqActive     stats.Gauge
	RqXX         [6]stats.Counter // by status class: RqXX[2] counts 2xx
	RqTime       stats.Histogram  // request head received → response complete
	LocalReplies stats.Counter
	// RqIdleTimeout and RqTimeout count streams ended by StreamIdle and
	// RequestTimeout.
	RqIdleTimeout, RqTimeout stats.Counter
	// FilterFailures counts streams ended because an http filter panicked.
	FilterFailures stats.Counter
	// TraceMalformed counts requests whose trace headers were malformed
	// (replaced by a fresh trace).
	TraceMalformed stats.Counter
	TunnelStats
}

func (st *HTTPStats) countStatus(key uint64, code int) {
	if st != nil && code >= 100 && code < 600 {
		st.RqXX[code/100].Inc(key)
	}
}

var (
	hdrXFF      = []byte("X-Forwarded-For")
	hdrXFP      = []byte("X-Forwarded-Proto")
	hdrXFFs     = "x-forwarded-for"
	hdrXFPs     = "x-forwarded-proto"
	hdrHosts    = "host"
	schemeHTTP  = []byte("http")
	schemeHTTPS = []byte("https")
	hdrHost     = []byte("Host")
)

// httpStream forwards one request. Every method runs under the downstream
// session.
type httpStream struct {
	cm  *connManager
	enc stream.ResponseEncoder

	route *router.Route
	vh    *router.VirtualHost
	host  *upstream.Host
	up    upstreamRequest

	head        protocol.Head // owned copy, kept while the upstream is not ready or for a retry
	store       *headStore    // the bytes head aliases, from a pool
	headSaved   bool
	lb          upstream.LBContext
	reqEnd      bool // downstream request complete
	pending     []*buffer.Buf
	pendingLen  int
	pendingEnd  bool
	pendingTrl  *protocol.Headers
	bufDisabled bool
	retried     bool // the free stale-connection retry was used
	retriesLeft int  // the route's retry policy budget for this request
	bodyless    bool // the request ended with its head
	admitted    bool // holds a max_requests slot
	retrySlot   bool // holds a max_retries / retry budget slot
	shadows     []*shadow
	attempt     int // upstream attempts made so far
	tryTimer    *time.Timer
	rt          streamTimer   // the stream's timer, when streams are multiplexed (bound on first use)
	reqAt       time.Time     // request_timeout deadline (zero: none); see timeouts.go
	respAt      time.Time     // response timeout deadline (zero: none)
	lastIO      time.Time     // the last byte either way, with a stream idle timeout
	idle        time.Duration // the stream idle timeout in force (0: off)

	respStarted  bool
	grpc         bool          // a gRPC call: local replies are gRPC-shaped
	timeout      time.Duration // the response timeout: the route's, or a shorter grpc-timeout
	grpcDeadline time.Time     // when the call's grpc-timeout runs out (zero: none)
	done         bool
	timerArmed   bool

	// For metrics and the access log.
	start   time.Time
	upStart time.Time
	status  int
	flags   string // Envoy response flags
	rxBytes int64  // request body bytes
	txBytes int64  // response body bytes
	log     *accesslog.Entry
	cluster *upstream.Cluster
	upHost  *upstream.Host
	tun     *tunnel // set for an accepted upgrade or CONNECT (tunnel.go)
	ids     identState
}

// upstreamRequest is the httpStream's upstream half: pool callbacks and the
// response decoder.
type upstreamRequest struct {
	s        *httpStream
	enc      stream.RequestEncoder
	cancel   stream.Cancellable
	reused   bool
	gotHead  bool
	disabled bool // we paused the downstream because this side is full
}

var (
	_ stream.RequestDecoder  = (*httpStream)(nil)
	_ stream.ResponseDecoder = (*upstreamRequest)(nil)
	_ stream.PoolCallbacks   = (*upstreamRequest)(nil)
)

// localReply answers with a response of the proxy's own; flags are the
// Envoy response flags that say why (NR, UH, UF, UO, UT, UC, UPE …).
func (s *httpStream) localReply(status int, flags, reason string) {
	if s.done {
		return
	}
	if st := s.cm.cfg.Stats; st != nil {
		st.LocalReplies.Inc(s.cm.id)
	}
	s.status, s.flags = status, flags
	s.finish()
	if s.grpc && !s.respStarted {
		s.grpcReply(status, flags, reason)
		return
	}
	s.enc.LocalReply(status, reason)
}

// abort ends the router's side of a stream the filter chain answered or
// ended (a filter's local reply, a failure): recorded with status and
// flags, the upstream request reset; the chain writes the response.
func (s *httpStream) abort(status int, flags string) {
	if s.done {
		return
	}
	if st := s.cm.cfg.Stats; st != nil {
		st.LocalReplies.Inc(s.cm.id)
	}
	s.status, s.flags = status, flags
	enc := s.up.enc
	s.finish()
	if enc != nil {
		enc.Reset()
	}
}

// record counts the finished stream and hands its access log entry over.
func (s *httpStream) record() {
	cm := s.cm
	if cm.cfg.Stats == nil && s.log == nil {
		return
	}
	now := time.Now()
	if st := cm.cfg.Stats; st != nil {
		st.RqActive.Add(cm.id, -1)
		st.countStatus(cm.id, s.status)
		st.RqTime.Observe(cm.id, now.Sub(s.start))
	}
	if s.cluster != nil && s.cluster.Stats != nil && s.respStarted {
		s.cluster.Stats.UpstreamRqTime.Observe(cm.id, now.Sub(s.upStart))
	}
	if e := s.log; e != nil {
		s.log = nil
		e.Start, e.Status, e.Flags = s.start, s.status, s.flags
		e.BytesReceived, e.BytesSent, e.Duration = s.rxBytes, s.txBytes, now.Sub(s.start)
		if s.upHost != nil {
			e.UpstreamHost = s.upHost.Address
		}
		if s.cluster != nil {
			e.Cluster = s.cluster.Name
		}
		if cm.remoteStr == "" {
			cm.remoteStr = cm.conn.RemoteAddr().String()
		}
		e.RemoteAddr = cm.remoteStr
		e.TraceID = s.ids.trace.TraceID
		cm.cfg.AccessLog.Log(e)
	}
}

// finish releases what the stream holds and records it; the response is
// (being) completed, or the stream was reset.
func (s *httpStream) finish() {
	s.done = true
	if s.tun != nil {
		s.tun.end()
	}
	if s.ids.spans != nil {
		s.endSpans()
	}
	s.record()
	s.cm.disarm(s)
	s.headSaved = false
	if st := s.store; st != nil {
		st.fields = s.head.Headers.Fields[:0]
		clear(st.fields[:cap(st.fields)])
		headStores.Put(st)
		s.store, s.head = nil, protocol.Head{}
	}
	for _, b := range s.pending {
		b.Release()
	}
	s.pending = nil
	if s.up.cancel != nil {
		s.up.cancel.Cancel()
		s.up.cancel = nil
	}
	if s.host != nil {
		s.host.ActiveRequests.Add(-1)
		s.host = nil
	}
	if s.admitted {
		s.admitted = false
		s.cluster.ReleaseRequest()
	}
	if s.retrySlot {
		s.retrySlot = false
		s.cluster.ReleaseRetry()
	}
	if s.tryTimer != nil {
		s.tryTimer.Stop()
	}
}

func (s *httpStream) DecodeData(p []byte, end bool) {
	for _, sh := range s.shadows {
		sh.data(p, end)
	}
	if s.done {
		return
	}
	if s.tun != nil {
		s.tunnelDown(p, end)
		return
	}
	s.rxBytes += int64(len(p))
	s.touch()
	if end {
		s.reqEnd = true
		s.armTimer()
	}
	if s.up.enc != nil {
		s.up.enc.EncodeData(p, end)
		return
	}
	if len(p) > 0 {
		s.pending = append(s.pending, buffer.From(p))
		s.pendingLen += len(p)
	}
	s.pendingEnd = s.pendingEnd || end
	if s.pendingLen > s.cm.cfg.MaxRequestBuffer && !s.bufDisabled {
		s.bufDisabled = true
		s.enc.ReadDisable(true)
	}
}

func (s *httpStream) DecodeTrailers(t *protocol.Headers) {
	for _, sh := range s.shadows {
		sh.data(nil, true) // shadows end without the trailers
	}
	if s.done {
		return
	}
	if s.tun != nil {
		s.tunnelDown(nil, true) // a tunnel has no trailers: they end it
		return
	}
	s.reqEnd = true
	s.armTimer()
	if s.up.enc != nil {
		s.up.enc.EncodeTrailers(t)
		return
	}
	var h protocol.Head
	(&protocol.Head{Headers: *t}).CloneInto(&h, nil)
	s.pendingTrl = &h.Headers
}

func (s *httpStream) OnAboveWriteHighWatermark() {
	if s.up.enc != nil {
		s.up.enc.ReadDisable(true)
	}
}

func (s *httpStream) OnBelowWriteLowWatermark() {
	if s.up.enc != nil {
		s.up.enc.ReadDisable(false)
	}
}

// OnReset: the downstream went away or sent garbage mid-request.
func (s *httpStream) OnReset(error) {
	for _, sh := range s.shadows {
		if !sh.reqEnd {
			sh.drop() // its request can never complete
		}
	}
	if s.done {
		return
	}
	s.flags = "DC"
	enc := s.up.enc
	s.finish()
	if enc != nil {
		enc.Reset()
	}
}

// armTimer starts the response timeout once the request is whole (and
// ends its request_timeout).
func (s *httpStream) armTimer() {
	if s.done {
		return
	}
	changed := !s.reqAt.IsZero()
	s.reqAt = time.Time{}
	if d := s.timeout; d > 0 && !s.timerArmed && !s.up.gotHead {
		s.timerArmed, changed = true, true
		s.respAt = time.Now().Add(d)
	}
	if changed {
		s.schedule()
	}
}

// timedOut answers 504 for a response that did not start in time (counted
// on the cluster) and resets the upstream stream it was waiting on.
func (s *httpStream) timedOut(reason string) {
	enc := s.up.enc
	if st := s.cluster.Stats; st != nil {
		st.UpstreamRqTimeout.Inc(s.cm.id)
	}
	s.localReply(504, "UT", reason)
	if enc != nil {
		enc.Reset()
	}
}
