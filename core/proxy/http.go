// Package proxy is the forwarding state machine: a downstream stream is
// routed, a host is picked from the route's cluster, a stream is opened on that
// host's connection pool, and the two are spliced with backpressure both ways.
// The network filters "http_proxy" and "tcp_proxy" live here.
package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/proxylab/proxylab/core/accesslog"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/offload"
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
	Log       *slog.Logger
	// Tunnels: upgrades and CONNECT (tunnel.go).
	Tunnels TunnelConfig
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

// NewHTTPFilter returns the per-connection http_proxy filter: a server
// codec (HTTP/1, HTTP/2, or either decided from the first bytes or ALPN)
// whose streams this package forwards.
func NewHTTPFilter(cfg *HTTPConfig) network.ReadFilter {
	return &httpFilter{cm: &connManager{cfg: cfg}}
}

// httpFilter picks the codec and hands it every event. With detection a
// connection speaks the codec whose ALPN id TLS negotiated, else the first
// (in registration order) that recognises its first bytes
// (stream.Detect); the bytes looked at are not consumed.
type httpFilter struct {
	cm    *connManager
	c     *network.Conn
	codec stream.ServerConn
	held  buffer.Input
	// idle closes a connection that sends nothing before the codec is
	// known, as the HTTP/1 idle timeout would.
	idle timer.Timer
	// drainSoon: Drain came while the first bytes were being detected.
	drainSoon bool
}

// Expire closes a connection still silent at its idle timeout.
func (f *httpFilter) Expire() {
	f.c.Lock()
	defer f.c.Unlock()
	if f.codec == nil && !f.c.Closed() {
		f.c.Close()
	}
}

var (
	_ network.ConnCallbacks = (*httpFilter)(nil)
	_ network.Drainer       = (*httpFilter)(nil)
	_ network.HalfCloser    = (*httpFilter)(nil)
)

func (f *httpFilter) OnNewConnection(c *network.Conn) network.FilterStatus {
	f.c = c
	f.cm.id = c.ID()
	f.cm.conn = c
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		f.cm.clientIP = []byte(ta.IP.String())
	}
	if !f.cm.cfg.Detect {
		f.use(0)
	} else if d := f.cm.cfg.Server.IdleTimeout; d > 0 && f.cm.cfg.Server.Timers != nil {
		f.idle.Init(f.cm.cfg.Server.Timers, f)
		f.idle.Reset(d)
	}
	return network.Continue
}

// use makes the connection speak the listener's i-th codec.
func (f *httpFilter) use(i int) {
	cm := f.cm
	if f.codec == nil && f.c != nil {
		f.idle.Stop()
	}
	srv := cm.cfg.Servers[i]
	cm.mux, cm.carries = srv.Multiplexed(), cm.cfg.Codecs[i].Carries()
	f.codec = srv.NewConn(cm)
	f.codec.OnNewConnection(f.c)
}

func (f *httpFilter) OnData(c *network.Conn, b *buffer.Buf) network.FilterStatus {
	if f.codec != nil {
		return f.codec.OnData(c, b)
	}
	f.held.Add(b)
	var alpn string
	if ap, ok := c.Transport().(interface{ NegotiatedProtocol() string }); ok {
		alpn = ap.NegotiatedProtocol()
	}
	i, m := stream.Detect(f.cm.cfg.Codecs, alpn, f.held.Bytes())
	switch m {
	case stream.NeedMore:
		return network.StopIteration
	case stream.NoMatch:
		c.Close() // no codec of the listener speaks this
		return network.StopIteration
	}
	f.use(i)
	st := f.codec.OnData(c, f.held.Take())
	if f.drainSoon {
		f.codec.Drain(c)
	}
	return st
}

func (f *httpFilter) HandlesHalfClose() bool { return true }

func (f *httpFilter) OnReadEOF(c *network.Conn) {
	if f.codec == nil {
		c.Close()
		return
	}
	f.codec.OnReadEOF(c)
}

func (f *httpFilter) OnDrained(c *network.Conn) {
	if f.codec != nil {
		f.codec.OnDrained(c)
	}
}

func (f *httpFilter) OnClose(c *network.Conn, err error) {
	f.held.Reset()
	f.idle.Stop()
	if f.codec != nil {
		f.codec.OnClose(c, err)
	}
}

func (f *httpFilter) Drain(c *network.Conn) {
	if f.codec == nil {
		if f.held.Len() == 0 {
			c.Close()
		} else {
			f.drainSoon = true // a request has begun: drained once its codec is known
		}
		return
	}
	f.codec.Drain(c)
}

// connManager is the per-connection state shared by its streams.
type connManager struct {
	cfg       *HTTPConfig
	id        uint64 // the connection's ID: the shard key of its metrics
	conn      *network.Conn
	remoteStr string // the client's address, made once if the access log needs it
	clientIP  []byte
	scheme    []byte
	xffBuf    []byte
	mux       bool   // streams run concurrently (HTTP/2, RPC)
	carries   string // the request protocol (stream.Codec.Carries)

	// One response timer per connection on the shared wheel, re-armed per
	// stream, when streams run one at a time (HTTP/1); multiplexed streams
	// each get their own (streamTimer).
	timer     timer.Timer
	timerInit bool
	timed     *httpStream
}

// fits reports whether cl speaks this connection's request protocol.
func (cm *connManager) fits(cl *upstream.Cluster) bool {
	return cl.Speaks() == cm.carries
}

// streamTimer is the response timer of one multiplexed stream.
type streamTimer struct {
	timer.Timer
	s *httpStream
}

// Expire runs the stream's response timeout (timer.Expirer).
func (t *streamTimer) Expire() {
	sess := t.s.cm.conn
	sess.Lock()
	defer sess.Unlock()
	if !t.s.done {
		t.s.onTimer()
	}
}

func (cm *connManager) arm(s *httpStream, d time.Duration) {
	if cm.mux {
		if s.rt.s == nil {
			s.rt.s = s
			s.rt.Init(cm.cfg.Server.Timers, &s.rt)
		}
		s.rt.Reset(d)
		return
	}
	cm.timed = s
	if !cm.timerInit {
		cm.timerInit = true
		cm.timer.Init(cm.cfg.Server.Timers, cm)
	}
	cm.timer.Reset(d)
}

func (cm *connManager) disarm(s *httpStream) {
	if s.rt.s != nil {
		s.rt.Stop()
		return
	}
	if cm.timed == s {
		cm.timed = nil
		cm.timer.Stop()
	}
}

// Expire runs the response timeout (timer.Expirer).
func (cm *connManager) Expire() {
	sess := cm.conn
	sess.Lock()
	defer sess.Unlock()
	if s := cm.timed; s != nil {
		cm.timed = nil
		s.onTimer()
	}
}

// schemeOf is the downstream scheme, decided at the first request (an
// inspector only knows once the first bytes arrived).
func (cm *connManager) schemeOf() []byte {
	if cm.scheme == nil {
		cm.scheme = schemeHTTP
		if sc, ok := cm.conn.Transport().(offload.Secure); ok && sc.IsSecure() {
			cm.scheme = schemeHTTPS
		}
	}
	return cm.scheme
}

// NewStream implements stream.ServerCallbacks.
func (cm *connManager) NewStream(enc stream.ResponseEncoder) stream.RequestDecoder {
	if st := cm.cfg.Stats; st != nil {
		st.RqTotal.Inc(cm.id)
		st.RqActive.Add(cm.id, 1)
	}
	s := &httpStream{cm: cm, enc: enc}
	if cm.cfg.Stats != nil || cm.cfg.AccessLog != nil {
		s.start = time.Now()
	}
	s.up.s = s
	return s
}

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

func (s *httpStream) DecodeHead(h *stream.Head, end bool) {
	s.reqEnd = end
	cfg := s.cm.cfg
	if al := cfg.AccessLog; al != nil {
		s.log = al.Get()
		s.log.SetRequest(h.Method, h.Target, h.Headers.Get(hdrHosts), h.Major, h.Minor, h.Headers.Get, al.Format().Headers)
	}
	s.route, s.vh = cfg.Router.RouteVH(h.Headers.Get(hdrHosts), &router.Request{Method: h.Method, Target: h.Target, Headers: &h.Headers})
	if s.grpc = isGRPC(&h.Headers); s.grpc && s.route != nil {
		s.timeout = s.route.Timeout
		if d, ok := grpcTimeout(h.Headers.Get("grpc-timeout")); ok {
			s.grpcDeadline = time.Now().Add(d)
			if s.timeout <= 0 || d < s.timeout {
				s.timeout = d
			}
		}
	} else if s.route != nil {
		s.timeout = s.route.Timeout
	}
	if s.route == nil {
		s.localReply(404, "NR", "no route for this host and path")
		return
	}
	switch {
	case s.route.Direct != nil:
		s.respondDirect(s.route.Direct.Status, s.route.Direct.Body, nil)
		return
	case s.route.Redirect != nil:
		s.redirect(h, s.route.Redirect)
		return
	}
	if s.beginTunnel(h) {
		return
	}
	end = s.reqEnd
	var pick uint32
	if tw := s.route.TotalWeight(); tw > 0 {
		pick = rand.Uint32N(tw)
	}
	name := s.route.PickCluster(pick, h.Headers.Get)
	cl := cfg.Clusters.Get(name)
	if cl == nil {
		s.localReply(503, "NC", fmt.Sprintf("cluster %q not found", name))
		return
	}
	if !s.cm.fits(cl) {
		// Never write a request upstream in another protocol (codec auto,
		// cluster_header: what config validation cannot see).
		s.localReply(503, "NC", fmt.Sprintf("cluster %q speaks another protocol", name))
		return
	}
	if !cl.AdmitRequest() {
		if st := cl.Stats; st != nil {
			st.UpstreamRqOverflow.Inc(s.cm.id)
		}
		s.localReply(503, "UO", "upstream max requests reached (circuit breaker)")
		return
	}
	s.cluster, s.admitted = cl, true
	s.bodyless = end
	if s.route.RetryOn != 0 {
		s.retriesLeft = s.route.NumRetries
	}
	if len(s.route.HashPolicy) > 0 {
		s.lb.Hash, s.lb.HasHash = s.requestHash(h)
	}
	s.lb.Subset = s.route.Subset
	host := cl.Choose(&s.lb)
	if host == nil {
		s.localReply(503, "UH", "no healthy upstream")
		return
	}
	s.host, s.upHost = host, host
	host.ActiveRequests.Add(1)
	host.RqTotal.Inc(s.cm.id)
	if st := cl.Stats; st != nil {
		st.UpstreamRqTotal.Inc(s.cm.id)
		s.upStart = time.Now()
	}
	if s.tun != nil && !s.tunnelUpstreamOK() {
		return
	}
	s.rewrite(h)
	s.startTimers(end)
	if len(s.route.Mirrors) > 0 && s.tun == nil {
		s.startShadows(h, end)
	}
	s.openUpstream(h)
}

// headerOps applies the listener's, the virtual host's and the route's header
// changes, in that order (the most specific wins).
func (s *httpStream) headerOps(hs *protocol.Headers, request bool) {
	for _, ops := range [...]*router.HeaderOps{&s.cm.cfg.HeaderOps, &s.vh.HeaderOps, &s.route.HeaderOps} {
		if request {
			router.Apply(hs, ops.RequestRemove, ops.RequestAdd)
		} else {
			router.Apply(hs, ops.ResponseRemove, ops.ResponseAdd)
		}
	}
}

// respondDirect answers with a response of the route's own (no upstream).
func (s *httpStream) respondDirect(status int, body []byte, location []byte) {
	var h protocol.Head
	h.Status, h.ContentLength = status, int64(len(body))
	if len(body) > 0 {
		h.Headers.Add("Content-Type", []byte("text/plain"))
	}
	if location != nil {
		h.Headers.Add("Location", location)
	}
	s.headerOps(&h.Headers, false)
	s.status = status
	s.txBytes = int64(len(body))
	s.finish()
	s.enc.EncodeHead(&h, len(body) == 0)
	if len(body) > 0 {
		s.enc.EncodeData(body, true)
	}
}

// redirect answers with a Location made from the request and the route.
func (s *httpStream) redirect(h *stream.Head, rd *router.Redirect) {
	path, query, hasQuery := bytes.Cut(h.Target, []byte("?"))
	scheme := rd.Scheme
	if scheme == "" {
		scheme = string(s.cm.schemeOf())
	}
	host := rd.Host
	if host == "" {
		host = string(h.Headers.Get(hdrHosts))
	}
	loc := make([]byte, 0, 64+len(h.Target))
	loc = append(append(append(loc, scheme...), "://"...), host...)
	switch {
	case rd.Path != "":
		loc = append(loc, rd.Path...)
	case rd.PrefixRewrite != "" && s.route.Prefix != "":
		loc = append(append(loc, rd.PrefixRewrite...), path[len(s.route.Prefix):]...)
	default:
		loc = append(loc, path...)
	}
	if hasQuery && !rd.StripQuery {
		loc = append(append(loc, '?'), query...)
	}
	code := rd.Code
	if code == 0 {
		code = 301
	}
	s.respondDirect(code, nil, loc)
}

// requestHash applies the route's hash policies: the first that finds a
// value gives the hash consistent load balancers use.
func (s *httpStream) requestHash(h *stream.Head) (uint64, bool) {
	for _, p := range s.route.HashPolicy {
		switch {
		case p.Header != "":
			if v := h.Headers.Get(p.Header); v != nil {
				return upstream.HashKey(v), true
			}
		case p.Cookie != "":
			if v := cookieValue(h.Headers.Get("cookie"), p.Cookie); v != nil {
				return upstream.HashKey(v), true
			}
		case p.SourceIP:
			if len(s.cm.clientIP) > 0 {
				return upstream.HashKey(s.cm.clientIP), true
			}
		}
	}
	return 0, false
}

func randPercent() int { return rand.IntN(100) }

// cookieValue finds name's value in a Cookie header ("a=1; b=2").
func cookieValue(header []byte, name string) []byte {
	for len(header) > 0 {
		var part []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			part, header = header, nil
		}
		part = bytes.TrimSpace(part)
		if len(part) > len(name) && part[len(name)] == '=' && string(part[:len(name)]) == name {
			return part[len(name)+1:]
		}
	}
	return nil
}

// rewrite applies the proxy's request header changes in place.
func (s *httpStream) rewrite(h *stream.Head) {
	cm := s.cm
	if len(cm.clientIP) > 0 {
		if prev := h.Headers.Get(hdrXFFs); prev != nil {
			cm.xffBuf = append(append(append(cm.xffBuf[:0], prev...), ", "...), cm.clientIP...)
			h.Headers.Del(hdrXFFs)
			h.Headers.Append(hdrXFF, cm.xffBuf)
		} else {
			h.Headers.Append(hdrXFF, cm.clientIP)
		}
	}
	h.Headers.Del(hdrXFPs)
	h.Headers.Append(hdrXFP, cm.schemeOf())
	if !h.Headers.Has(hdrHosts) {
		// HTTP/1.0 requests may lack Host; HTTP/1.1 upstreams require it.
		h.Headers.Append(hdrHost, s.host.AddressBytes)
	}
	if p := s.route.PrefixRewrite; p != "" && s.route.Prefix != "" {
		t := make([]byte, 0, len(h.Target)+len(p))
		t = append(append(t, p...), h.Target[len(s.route.Prefix):]...)
		h.Target = t
	}
	if rw := s.route.RegexRewrite; rw != nil {
		path, query, hasQuery := bytes.Cut(h.Target, []byte("?"))
		t := rw.Pattern.ReplaceAll(path, []byte(rw.Substitution))
		if hasQuery {
			sep := byte('?')
			if bytes.IndexByte(t, '?') >= 0 {
				sep = '&' // the substitution made a query of its own
			}
			t = append(append(t, sep), query...)
		}
		h.Target = t
	}
	if hr := s.route.HostRewrite; hr != "" {
		h.Headers.Set("Host", []byte(hr))
	}
	s.headerOps(&h.Headers, true)
}

func (s *httpStream) openUpstream(h *stream.Head) {
	s.up.cancel = s.host.HTTPPool().NewStream(&s.up, s.enc.Session(), &s.up)
	switch {
	case s.done: // the pool failed synchronously and replied
	case s.up.enc == nil:
		// Not ready yet: keep an owned copy of the head for OnPoolReady.
		s.saveHead(h)
	default:
		if s.replayable() {
			// A reused connection may have been closed by the server while
			// idle, or the route may retry: keep the head to send it again.
			s.saveHead(h)
		}
		s.up.enc.EncodeHead(h, s.reqEnd)
		s.armTryTimer()
	}
}

// headStore is reusable storage for a saved request head.
type headStore struct {
	arena  []byte
	fields []protocol.Field
}

// headStores keeps saved-head storage between requests without tying it to
// a connection, so idle connections hold none.
var headStores = sync.Pool{New: func() any { return new(headStore) }}

func (s *httpStream) saveHead(h *stream.Head) {
	if s.store == nil {
		s.store = headStores.Get().(*headStore)
		s.head.Headers.Fields = s.store.fields
	}
	s.store.arena = h.CloneInto(&s.head, s.store.arena)
	s.headSaved = true
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

// OnPoolReady sends the request on the new upstream stream.
func (u *upstreamRequest) OnPoolReady(enc stream.RequestEncoder, reused bool) {
	s := u.s
	u.cancel = nil
	if s.done {
		enc.Reset()
		return
	}
	u.enc, u.reused = enc, reused
	if !s.headSaved {
		return // synchronous first try: openUpstream encodes the live head
	}
	if s.tun != nil {
		enc.EncodeHead(&s.head, false) // its bytes wait for the upgrade
		s.armTryTimer()
		return
	}
	enc.EncodeHead(&s.head, s.reqEnd && len(s.pending) == 0 && s.pendingTrl == nil && !s.pendingEnd)
	for _, b := range s.pending {
		enc.EncodeData(b.Bytes(), false)
		b.Release()
	}
	s.pending, s.pendingLen = nil, 0
	switch {
	case s.pendingTrl != nil:
		enc.EncodeTrailers(s.pendingTrl)
	case s.pendingEnd:
		enc.EncodeData(nil, true)
	}
	if s.bufDisabled {
		s.bufDisabled = false
		s.enc.ReadDisable(false)
	}
	if !s.replayable() {
		s.headSaved = false // no retry possible: the copy is no longer needed
	}
	s.armTryTimer()
}

// replayable: the whole request is held (it ended with its head) and a
// retry could want it — a stale reused connection, or the route's policy.
func (s *httpStream) replayable() bool {
	return s.reqEnd && (s.up.reused || s.route.RetryOn&^router.RetryConnectFailure != 0)
}

// takeRetry reserves a retry within the request's, the cluster's and the
// budget's limits.
func (s *httpStream) takeRetry() bool {
	if s.retriesLeft <= 0 || !s.headSaved || s.done {
		return false
	}
	if !s.retrySlot {
		if !s.cluster.AdmitRetry() {
			if st := s.cluster.Stats; st != nil {
				st.UpstreamRqRetryOverflow.Inc(s.cm.id)
			}
			return false
		}
		s.retrySlot = true
	}
	s.retriesLeft--
	if st := s.cluster.Stats; st != nil {
		st.UpstreamRqRetry.Inc(s.cm.id)
	}
	return true
}

// sendElsewhere sends the held request to another host of the cluster (the
// same one only if the balancer has no other to give).
func (s *httpStream) sendElsewhere() {
	old, next := s.host, s.host
	for i := 0; i < len(s.cluster.Hosts()) && next == old; i++ {
		next = s.cluster.Choose(&s.lb)
	}
	if next == nil {
		next = old
	}
	old.ActiveRequests.Add(-1)
	next.ActiveRequests.Add(1)
	next.RqTotal.Inc(s.cm.id)
	s.host, s.upHost = next, next
	s.up = upstreamRequest{s: s}
	s.up.cancel = next.HTTPPool().NewStream(&s.up, s.enc.Session(), &s.up)
}

// retryElsewhere retries at once (the request never reached an upstream, or
// the connection broke before any response).
func (s *httpStream) retryElsewhere() bool {
	if !s.takeRetry() {
		return false
	}
	s.sendElsewhere()
	return true
}

// retryAfterBackoff abandons the current attempt and retries after an
// exponential backoff with full jitter.
func (s *httpStream) retryAfterBackoff() bool {
	if !s.takeRetry() {
		return false
	}
	s.abandonAttempt()
	ceiling := s.route.BackoffBase << min(s.attempt-1, 10)
	if ceiling > s.route.BackoffMax || ceiling <= 0 {
		ceiling = s.route.BackoffMax
	}
	attempt := s.attempt
	time.AfterFunc(rand.N(ceiling)+1, func() {
		sess := s.enc.Session()
		sess.Lock()
		defer sess.Unlock()
		if !s.done && s.attempt == attempt {
			s.sendElsewhere()
		}
	})
	return true
}

// abandonAttempt drops the current upstream attempt (its connection is
// closed; an HTTP/1 response cannot be skipped otherwise).
func (s *httpStream) abandonAttempt() {
	if s.tryTimer != nil {
		s.tryTimer.Stop()
	}
	if s.up.disabled {
		s.enc.ReadDisable(false)
	}
	if s.up.cancel != nil {
		s.up.cancel.Cancel()
	}
	if enc := s.up.enc; enc != nil {
		s.up.enc = nil
		enc.Reset()
	}
	s.up = upstreamRequest{s: s}
}

// armTryTimer starts the per-try timeout of the attempt just sent.
func (s *httpStream) armTryTimer() {
	s.attempt++
	d := s.route.PerTryTimeout
	if d <= 0 {
		return
	}
	attempt := s.attempt
	s.tryTimer = time.AfterFunc(d, func() {
		sess := s.enc.Session()
		sess.Lock()
		defer sess.Unlock()
		if s.done || s.attempt != attempt || s.up.gotHead {
			return
		}
		if s.takeRetry() {
			s.abandonAttempt()
			s.sendElsewhere()
			return
		}
		s.timedOut("upstream per-try timeout")
	})
}

func (u *upstreamRequest) OnPoolFailure(f stream.PoolFailure, err error) {
	u.cancel = nil
	s := u.s
	slog.Debug("proxy: upstream pool failure", "host", s.host.Address, "err", err)
	if f == stream.ConnectFailure || f == stream.ConnectTimeout {
		s.cluster.ReportConnectFailure(s.host)
	}
	if (f == stream.ConnectFailure || f == stream.ConnectTimeout) && s.route.RetryOn&router.RetryConnectFailure != 0 && s.retryElsewhere() {
		return // never sent: safe to send elsewhere, body included
	}
	flags := "UF"
	switch f {
	case stream.Overflow:
		flags = "UO"
		if st := s.cluster.Stats; st != nil {
			st.UpstreamRqPendingOverflow.Inc(s.cm.id)
		}
	case stream.CxOverflow:
		flags = "UO"
		if st := s.cluster.Stats; st != nil {
			st.UpstreamCxOverflow.Inc(s.cm.id)
		}
	}
	s.localReply(503, flags, f.String())
}

func (u *upstreamRequest) DecodeInterim(h *stream.Head) {
	if !u.s.done {
		u.s.enc.EncodeInterim(h)
	}
}

func (u *upstreamRequest) DecodeHead(h *stream.Head, end bool) {
	s := u.s
	if s.done {
		return
	}
	if s.tun != nil && u.tunnelResponse(h) {
		return
	}
	s.cluster.ReportResponse(s.host, h.Status)
	if s.bodyless && s.route.RetriesStatus(h.Status) && s.retryAfterBackoff() {
		return // this response is dropped; the retry's answers the client
	}
	if s.tryTimer != nil {
		s.tryTimer.Stop()
	}
	u.gotHead = true
	s.respStarted = true
	s.headSaved = false
	s.respAt, s.reqAt = time.Time{}, time.Time{}
	if !end { // (finish disarms otherwise)
		s.touch()
		s.schedule()
	}
	s.status = h.Status
	s.headerOps(&h.Headers, false)
	if st := s.cluster.Stats; st != nil && h.Status >= 100 && h.Status < 600 {
		st.UpstreamRqXX[h.Status/100].Inc(s.cm.id)
	}
	if end {
		s.finish()
	}
	s.enc.EncodeHead(h, end)
}

func (u *upstreamRequest) DecodeData(p []byte, end bool) {
	s := u.s
	if s.done {
		return
	}
	if s.tun != nil {
		u.tunnelUp(p, end)
		return
	}
	s.txBytes += int64(len(p))
	s.touch()
	if end {
		s.finish()
	}
	s.enc.EncodeData(p, end)
}

func (u *upstreamRequest) DecodeTrailers(t *protocol.Headers) {
	s := u.s
	if s.done {
		return
	}
	s.finish()
	s.enc.EncodeTrailers(t)
}

func (u *upstreamRequest) OnAboveWriteHighWatermark() {
	if !u.disabled && !u.s.done {
		u.disabled = true
		u.s.enc.ReadDisable(true)
	}
}

func (u *upstreamRequest) OnBelowWriteLowWatermark() {
	if u.disabled {
		u.disabled = false
		u.s.enc.ReadDisable(false)
	}
}

// OnReset: the upstream failed. Before any response byte a stale reused
// connection is retried once on the pool; otherwise the client gets a 502, or
// a reset if the response had started.
// resetDownstream aborts a response already under way, saying why when the
// codec can (an upstream cancellation stays a cancellation).
func resetDownstream(enc stream.ResponseEncoder, reason error) {
	if rr, ok := enc.(stream.ReasonResetter); ok {
		rr.ResetWith(reason)
		return
	}
	enc.Reset()
}

func (u *upstreamRequest) OnReset(reason error) {
	s := u.s
	s.flags = "UC"
	if s.done {
		if s.respStarted {
			resetDownstream(s.enc, reason)
		}
		return
	}
	if u.disabled {
		u.disabled = false
		s.enc.ReadDisable(false)
	}
	u.enc = nil
	stale := u.reused && errors.Is(reason, stream.ErrUpstreamReset) || errors.Is(reason, stream.ErrRefused)
	if !u.gotHead && stale && s.headSaved && !s.retried {
		s.retried = true
		if st := s.cluster.Stats; st != nil {
			st.UpstreamRqRetry.Inc(s.cm.id)
		}
		u.reused = false
		u.cancel = s.host.HTTPPool().NewStream(u, s.enc.Session(), u)
		return
	}
	if u.gotHead {
		s.finish()
		resetDownstream(s.enc, reason)
		return
	}
	if s.grpc && !s.grpcDeadline.IsZero() && !time.Now().Before(s.grpcDeadline) {
		// The upstream gave up on the call's deadline (gRPC servers reset
		// the stream when it passes): that is the deadline, not a failure.
		s.timedOut("gRPC deadline exceeded")
		return
	}
	if errors.Is(reason, stream.ErrUnencodable) {
		// The request cannot be written upstream as it is (e.g. an HTTP/2
		// request field HTTP/1.1 cannot carry): the client's fault, 400 like
		// Envoy's malformed request; no host is blamed, no retry.
		s.localReply(400, "DPE", "request not encodable for the upstream")
		return
	}
	s.cluster.ReportResponse(s.host, 0) // a reset before any response counts like a 5xx
	if s.bodyless && s.route.RetryOn&router.RetryReset != 0 && s.retryElsewhere() {
		return
	}
	var pe *protocol.Error
	if errors.As(reason, &pe) {
		s.localReply(502, "UPE", "upstream protocol error: "+pe.Reason)
		return
	}
	s.localReply(502, "UC", "upstream connection reset before response")
}
