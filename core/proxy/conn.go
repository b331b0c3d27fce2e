package proxy

import (
	"net"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/offload"
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
	cm.chain = cm.cfg.chainFor(cm.carries)
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
	chain     []int  // the filters (HTTPConfig.Filters indices) its streams pass

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
	if len(cm.chain) > 0 {
		c := newChain(s, enc)
		s.enc = c
		return c
	}
	return s
}
