package proxy

import (
	"log/slog"
	"time"

	"github.com/proxylab/proxylab/core/accesslog"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/transport"
)

// TCPConfig is the shared configuration of a tcp_proxy filter.
type TCPConfig struct {
	Cluster        *upstream.Cluster
	Transport      transport.Transport
	ConnectTimeout time.Duration
	// ConnectAttempts is how many hosts are tried before giving up.
	ConnectAttempts int
	// HighWatermark: queued bytes on one side above which the other side
	// stops being read.
	HighWatermark int
	// IdleTimeout closes a pair with no bytes either way that long (0: off);
	// Timers runs it.
	IdleTimeout time.Duration
	Timers      *timer.Wheel
	Stats       *TCPStats
	// ProxyProtocol, 1 or 2, writes a PROXY header with the downstream's
	// addresses first on each upstream connection (0: none).
	ProxyProtocol int
	// OriginalDst, when set, replaces Cluster: each connection goes to its
	// downstream's original destination (origdst.go).
	OriginalDst *OriginalDst
	// AccessLog, when not nil, gets one entry per connection (tcplog.go).
	AccessLog *accesslog.Logger
}

// TCPStats are a tcp_proxy listener's upstream-side metrics (Envoy's
// tcp.<prefix>.*); downstream connections and bytes are the listener's.
type TCPStats struct {
	UpstreamCxTotal, UpstreamCxConnectFail stats.Counter
	UpstreamTxBytes, UpstreamRxBytes       stats.Counter
	IdleTimeout                            stats.Counter // pairs closed by the idle timeout
}

// NewTCPFilter returns the per-connection tcp_proxy filter.
func NewTCPFilter(cfg *TCPConfig) network.ReadFilter {
	f := &tcpFilter{cfg: cfg}
	f.upH.f = f
	return f
}

const (
	down = 0 // the downstream (client) side
	up   = 1 // the upstream side
)

// tcpFilter splices a downstream connection with an upstream one. Bytes are
// forwarded without copying: the buffer read on one side is the one written
// on the other. Every event of both sides runs under the downstream session.
type tcpFilter struct {
	network.BaseFilter
	cfg *TCPConfig
	c   *network.Conn
	u   transport.Conn
	upH tcpUpstream

	attempts int
	upHost   *upstream.Host
	origDst  string        // the original destination acquired (origdst.go)
	pending  []*buffer.Buf // read before the upstream connected
	eof      [2]bool       // side sent FIN
	queued   [2]int        // bytes queued for writing to side
	paused   [2]bool       // reading side paused by backpressure
	closed   [2]bool

	// Spliced: the transport forwards both ways in the kernel
	// (transport.Splicer); tried once both write queues are empty.
	spliceTried, spliced, accounted bool

	// The idle timeout (tcpidle.go).
	idle        timer.Timer
	idleArmed   bool
	lastIO      time.Time
	splicedSeen uint64

	log tcpLog
}

func (f *tcpFilter) OnNewConnection(c *network.Conn) network.FilterStatus {
	f.c = c
	if f.cfg.AccessLog != nil {
		f.log.start = time.Now()
	}
	f.startIdle()
	f.connect()
	return network.StopIteration
}

func (f *tcpFilter) connect() {
	if f.cfg.OriginalDst != nil {
		f.connectOriginal()
		return
	}
	h := f.cfg.Cluster.Choose(&upstream.LBContext{})
	if h == nil {
		slog.Debug("tcp_proxy: no upstream host", "cluster", f.cfg.Cluster.Name)
		f.ended("UH", "no_healthy_upstream")
		f.c.Close()
		return
	}
	f.attempts++
	if st := f.cfg.Stats; st != nil {
		st.UpstreamCxTotal.Inc(f.c.ID())
	}
	f.upHost = h
	// On the downstream's event loop where the transport can: the pair's
	// callbacks never overlap, which a kernel splice needs.
	if nd, ok := f.cfg.Transport.(transport.NearDialer); ok {
		nd.DialNear(f.c.Transport(), "tcp", h.Address, f.cfg.ConnectTimeout, f.onConnect)
		return
	}
	f.cfg.Transport.Dial("tcp", h.Address, f.cfg.ConnectTimeout, f.onConnect)
}

func (f *tcpFilter) onConnect(tc transport.Conn, err error) {
	f.c.Lock()
	defer f.c.Unlock()
	if f.closed[down] {
		if tc != nil {
			tc.Close()
		}
		return
	}
	if err != nil {
		if st := f.cfg.Stats; st != nil {
			st.UpstreamCxConnectFail.Inc(f.c.ID())
		}
		if od := f.cfg.OriginalDst; od != nil {
			od.Stats.ConnectFail.Inc(f.c.ID())
			slog.Debug("tcp_proxy: original destination unreachable: reset", "dst", f.origDst, "err", err)
			f.c.Close()
			return
		}
		if f.attempts < max(f.cfg.ConnectAttempts, 1) {
			f.connect()
			return
		}
		slog.Debug("tcp_proxy: upstream connect failed", "err", err)
		f.ended("UF", "upstream_connect_failed")
		f.c.Close()
		return
	}
	if v := f.cfg.ProxyProtocol; v != 0 { // before TLS: the header is on the socket
		var a [128]byte // a v1 line is at most 107 bytes, a v2 header we send 52
		h := network.AppendProxyHeader(a[:0], v, f.c.RemoteAddr(), f.c.LocalAddr())
		hb := buffer.Get(len(h))
		hb.Append(h)
		tc.Write(hb)
	}
	if h := f.upHost; h != nil && h.TLS != nil {
		tc = h.TLS.Wrap(tc, h.Address)
	}
	f.u = tc
	tc.Start(&f.upH)
	if len(f.pending) > 0 {
		f.write(up, f.pending...)
		clear(f.pending)
		f.pending = nil
	}
	if f.paused[down] && f.queued[up] <= f.cfg.HighWatermark {
		f.paused[down] = false
		f.c.ReadDisable(false)
	}
	if f.eof[down] {
		f.u.CloseWrite()
	}
	f.trySplice()
}

// trySplice hands the pair to the transport when it can forward in the
// kernel, once nothing is queued either way (what user space already read
// goes out first) and neither side has ended.
func (f *tcpFilter) trySplice() {
	if f.spliceTried || f.u == nil || f.queued[up] > 0 || f.queued[down] > 0 ||
		f.eof[down] || f.eof[up] || f.closed[down] || f.closed[up] || len(f.pending) > 0 {
		return
	}
	f.spliceTried = true
	s, ok := f.c.Transport().(transport.Splicer)
	if !ok {
		return
	}
	if err := s.Splice(f.u); err != nil {
		slog.Debug("tcp_proxy: pair stays in user space", "err", err)
		return
	}
	f.spliced = true
}

// closeWrite half-closes side. Spliced, the transport first lets what it
// forwards into the side out, then reports OnDrained: until then the side
// counts as having bytes queued, so nothing closes early.
func (f *tcpFilter) closeWrite(side int) {
	if f.spliced {
		f.queued[side] = max(f.queued[side], 1)
	}
	if side == up {
		f.u.CloseWrite()
	} else {
		f.c.CloseWrite()
	}
}

// accountSpliced adds what the transport forwarded itself (in the kernel,
// or while setting a splice up) to the byte counters, once.
func (f *tcpFilter) accountSpliced() {
	if !f.spliceTried || f.accounted || f.u == nil {
		return
	}
	f.accounted = true
	st := f.cfg.Stats
	if st == nil {
		return
	}
	if s, ok := f.c.Transport().(transport.Splicer); ok {
		st.UpstreamTxBytes.Add(f.c.ID(), s.SplicedBytes())
	}
	if s, ok := f.u.(transport.Splicer); ok {
		st.UpstreamRxBytes.Add(f.c.ID(), s.SplicedBytes())
	}
}

// write sends bufs to side and pauses the other side when it backs up.
func (f *tcpFilter) write(side int, bufs ...*buffer.Buf) {
	var q int
	if side == up {
		f.log.rx += int64(bufsLen(bufs))
		if st := f.cfg.Stats; st != nil {
			st.UpstreamTxBytes.Add(f.c.ID(), uint64(bufsLen(bufs)))
		}
		q, _ = f.u.Write(bufs...)
	} else {
		f.log.tx += int64(bufsLen(bufs))
		if st := f.cfg.Stats; st != nil {
			st.UpstreamRxBytes.Add(f.c.ID(), uint64(bufsLen(bufs)))
		}
		q, _ = f.c.Write(bufs...)
	}
	f.queued[side] = q
	if q > f.cfg.HighWatermark && !f.paused[1-side] {
		f.paused[1-side] = true
		f.readDisable(1-side, true)
	}
}

// bufsLen sums the bytes in bufs.
func bufsLen(bufs []*buffer.Buf) int {
	n := 0
	for _, b := range bufs {
		n += b.Len()
	}
	return n
}

func (f *tcpFilter) readDisable(side int, d bool) {
	if side == down {
		f.c.ReadDisable(d)
	} else if f.u != nil {
		f.u.ReadDisable(d)
	}
}

func (f *tcpFilter) onData(side int, b *buffer.Buf) {
	f.touch()
	other := 1 - side
	if f.closed[other] {
		b.Release()
		return
	}
	if other == up && f.u == nil {
		f.pending = append(f.pending, b)
		f.queued[up] += b.Len()
		if f.queued[up] > f.cfg.HighWatermark && !f.paused[down] {
			f.paused[down] = true
			f.c.ReadDisable(true)
		}
		return
	}
	f.write(other, b)
}

func (f *tcpFilter) onEOF(side int) {
	f.eof[side] = true
	other := 1 - side
	if other == up && f.u == nil {
		return // sent once connected
	}
	if !f.closed[other] {
		f.closeWrite(other)
	}
	f.maybeClose()
}

func (f *tcpFilter) onDrained(side int) {
	f.queued[side] = 0
	if f.closed[1-side] {
		// The other side is gone and what it sent has now been delivered.
		f.closeSide(side)
		return
	}
	if f.paused[1-side] {
		f.paused[1-side] = false
		f.readDisable(1-side, false)
	}
	f.trySplice()
	f.maybeClose()
}

// maybeClose closes both sides once each has sent FIN and everything
// forwarded (including our FIN) has been written: no byte is lost.
func (f *tcpFilter) maybeClose() {
	if f.eof[down] && f.eof[up] && f.queued[down] == 0 && f.queued[up] == 0 {
		f.closeSide(down)
		f.closeSide(up)
	}
}

func (f *tcpFilter) closeSide(side int) {
	if f.closed[side] {
		return
	}
	if side == down {
		f.c.Close()
	} else if f.u != nil {
		f.u.Close()
	}
}

// onClose: one side is gone (reset, error or our close). What was already
// forwarded to the other side is still delivered: it is half-closed and
// closes when drained.
func (f *tcpFilter) onClose(side int) {
	f.closed[side] = true
	f.accountSpliced()
	if side == down {
		f.ended("", "downstream_closed")
	} else {
		f.ended("", "upstream_closed")
	}
	f.logClosed()
	other := 1 - side
	if f.closed[other] {
		return
	}
	if other == up && f.u == nil {
		return // onConnect sees the closed downstream
	}
	if f.queued[other] == 0 {
		f.closeSide(other)
		return
	}
	f.eof[side] = true
	f.closeWrite(other)
}

// HandlesHalfClose: a FIN is forwarded, not a reason to close.
func (f *tcpFilter) HandlesHalfClose() bool { return true }

// network callbacks for the downstream side.
func (f *tcpFilter) OnData(_ *network.Conn, b *buffer.Buf) network.FilterStatus {
	f.onData(down, b)
	return network.StopIteration
}
func (f *tcpFilter) OnReadEOF(*network.Conn) { f.onEOF(down) }
func (f *tcpFilter) OnDrained(*network.Conn) { f.onDrained(down) }
func (f *tcpFilter) OnClose(*network.Conn, error) {
	for _, b := range f.pending {
		b.Release()
	}
	f.pending = nil
	f.stopIdle()
	if f.origDst != "" {
		f.cfg.OriginalDst.release(f.origDst)
		f.origDst = ""
	}
	f.onClose(down)
}

// connectOriginal dials the downstream's original destination.
func (f *tcpFilter) connectOriginal() {
	od, dst := f.cfg.OriginalDst, f.c.LocalAddr().String()
	if !od.acquire(dst, f.c.ID()) {
		slog.Debug("tcp_proxy: original_dst max_hosts reached", "cluster", od.Name, "dst", dst)
		f.c.Close()
		return
	}
	f.origDst = dst
	f.attempts++
	if st := f.cfg.Stats; st != nil {
		st.UpstreamCxTotal.Inc(f.c.ID())
	}
	if nd, ok := f.cfg.Transport.(transport.NearDialer); ok {
		nd.DialNear(f.c.Transport(), "tcp", dst, f.cfg.ConnectTimeout, f.onConnect)
		return
	}
	f.cfg.Transport.Dial("tcp", dst, f.cfg.ConnectTimeout, f.onConnect)
}

// tcpUpstream receives the upstream connection's events and runs them under
// the downstream session.
type tcpUpstream struct{ f *tcpFilter }

var _ transport.Handler = (*tcpUpstream)(nil)

func (h *tcpUpstream) OnData(_ transport.Conn, b *buffer.Buf) {
	h.f.c.Lock()
	h.f.onData(up, b)
	h.f.c.Unlock()
}
func (h *tcpUpstream) OnReadEOF(transport.Conn) { h.f.c.Lock(); h.f.onEOF(up); h.f.c.Unlock() }
func (h *tcpUpstream) OnDrained(transport.Conn) { h.f.c.Lock(); h.f.onDrained(up); h.f.c.Unlock() }
func (h *tcpUpstream) OnClose(transport.Conn, error) {
	h.f.c.Lock()
	h.f.onClose(up)
	h.f.c.Unlock()
}
