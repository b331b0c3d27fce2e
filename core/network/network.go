// Package network is the connection layer: a Conn wraps a transport.Conn and
// runs its read and write filter chains; a Listener accepts through a
// transport, runs listener filters and builds each connection's filter chain.
//
// Locking: every event of a downstream Conn (its transport callbacks, and any
// event of upstream connections serving its streams) runs holding the Conn's
// session lock (Lock/Unlock). Code holding it may call Write, Close and
// ReadDisable on any connection, because transports never call back from
// inside those methods; it must not block.
package network

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
)

// FilterStatus says whether a filter chain goes on to the next filter.
type FilterStatus int

const (
	// Continue passes the data (and its ownership) to the next filter.
	Continue FilterStatus = iota
	// StopIteration ends the chain; the filter now owns the data.
	StopIteration
)

// ReadFilter sees the bytes read from a connection, in chain order. The last
// filter of a chain is terminal (http_proxy, tcp_proxy) and consumes them.
type ReadFilter interface {
	// OnNewConnection runs once, before any data; StopIteration here means
	// the filter closed or took over the connection.
	OnNewConnection(c *Conn) FilterStatus
	// OnData gets ownership of b; Continue hands it on.
	OnData(c *Conn, b *buffer.Buf) FilterStatus
}

// WriteFilter sees bytes before they are written, in chain order.
type WriteFilter interface {
	// OnWrite may inspect or replace bufs; StopIteration means it took
	// ownership of them and nothing is written now.
	OnWrite(c *Conn, bufs []*buffer.Buf) FilterStatus
}

// ConnCallbacks are the rest of a connection's events, for filters that want
// them (terminal filters do).
type ConnCallbacks interface {
	OnReadEOF(c *Conn)
	OnDrained(c *Conn)
	OnClose(c *Conn, err error)
}

// HalfCloser is implemented by filters that take charge of the peer's
// half-close (FIN) themselves. Without one in the chain a connection is
// closed when its peer sends FIN, as in Envoy, so a chain that ignores
// OnReadEOF cannot leak half-open connections.
type HalfCloser interface {
	HandlesHalfClose() bool
}

// Drainer is implemented by filters that can wind a connection down
// gracefully: finish what is in flight, accept nothing new, then close.
type Drainer interface {
	Drain(c *Conn)
}

// ListenerFilter runs on an accepted connection before it gets a filter
// chain. It returns the connection to go on with: tc itself, or a wrapper
// (a crypto engine's plaintext side, a protocol inspector); nil rejects
// (closes) the connection.
type ListenerFilter interface {
	OnAccept(tc transport.Conn) transport.Conn
}

// BaseFilter implements ReadFilter and ConnCallbacks with no-ops (OnData
// passes data on); embed it to override only what matters.
type BaseFilter struct{}

func (BaseFilter) OnNewConnection(*Conn) FilterStatus     { return Continue }
func (BaseFilter) OnData(*Conn, *buffer.Buf) FilterStatus { return Continue }
func (BaseFilter) OnReadEOF(*Conn)                        {}
func (BaseFilter) OnDrained(*Conn)                        {}
func (BaseFilter) OnClose(*Conn, error)                   {}

var (
	_ ReadFilter    = BaseFilter{}
	_ ConnCallbacks = BaseFilter{}
)

var connIDs atomic.Uint64

// ListenerStats are a listener's connection metrics (Envoy's
// listener.downstream_cx_* and the connection byte counters). A nil
// *ListenerStats disables them.
type ListenerStats struct {
	CxTotal, CxDestroyLocal, CxDestroyRemote stats.Counter
	CxActive                                 stats.Gauge
	RxBytes, TxBytes                         stats.Counter
}

// Conn is a downstream connection with its filter chains.
type Conn struct {
	mu  SessionLock
	tc  transport.Conn
	id  uint64
	l   *Listener
	gen uint64 // the listener generation whose chain it runs (set before it is listed)

	read       []ReadFilter
	write      []WriteFilter
	events     []ConnCallbacks
	closed     bool
	peerClosed bool // the peer sent FIN or reset before we closed
	stats      *ListenerStats
	mig        *migration // hot upgrade hand-over under way (migrate.go)
	// gotData: a byte arrived; drainOnData: drainWhenActive came before
	// (update.go).
	gotData, drainOnData bool
}

var _ transport.Handler = (*Conn)(nil)

// NewConn wraps tc; Start begins delivering its events to the filters.
func NewConn(tc transport.Conn, read []ReadFilter, write []WriteFilter) *Conn {
	c := &Conn{tc: tc, id: connIDs.Add(1), read: read, write: write}
	for _, f := range read {
		if cb, ok := f.(ConnCallbacks); ok {
			c.events = append(c.events, cb)
		}
	}
	return c
}

// ID is unique per process.
func (c *Conn) ID() uint64                { return c.id }
func (c *Conn) RemoteAddr() net.Addr      { return c.tc.RemoteAddr() }
func (c *Conn) LocalAddr() net.Addr       { return c.tc.LocalAddr() }
func (c *Conn) Transport() transport.Conn { return c.tc }

// Lock takes the session lock; see the package comment.
func (c *Conn) Lock() { c.mu.Lock() }

// TryLock takes the session if it is free, without blocking (an upstream
// pool serves a waiting stream this way from under another session).
func (c *Conn) TryLock() bool { return c.mu.TryLock() }

// Unlock runs the deferred flushes, releases the session lock, then runs
// work posted meanwhile (SessionLock).
func (c *Conn) Unlock() { c.mu.Unlock() }

// DeferFlush queues f to run at Unlock. Call with the lock held.
func (c *Conn) DeferFlush(f Flusher) { c.mu.DeferFlush(f) }

// Post runs f under the session without blocking the caller: now if the
// session is free, else at its holder's Unlock (SessionLock.Post).
func (c *Conn) Post(f Flusher) { c.mu.Post(f) }

var _ Session = (*Conn)(nil)

// Start runs OnNewConnection on the chain, then starts the transport.
func (c *Conn) Start() {
	c.mu.Lock()
	for _, f := range c.read {
		if f.OnNewConnection(c) == StopIteration {
			break
		}
	}
	c.Unlock()
	c.tc.Start(c)
}

// Write runs the write filters and hands bufs to the transport; see
// transport.Conn.Write for ownership and the queued result.
func (c *Conn) Write(bufs ...*buffer.Buf) (int, error) {
	if c.mig != nil && c.mig.detaching {
		return c.mig.refuseWrite(bufs)
	}
	if c.stats != nil {
		n := 0
		for _, b := range bufs {
			n += b.Len()
		}
		c.stats.TxBytes.Add(c.id, uint64(n))
	}
	for _, f := range c.write {
		if f.OnWrite(c, bufs) == StopIteration {
			return 0, nil
		}
	}
	return c.tc.Write(bufs...)
}

func (c *Conn) ReadDisable(d bool) { c.tc.ReadDisable(d) }
func (c *Conn) CloseWrite() error  { return c.tc.CloseWrite() }
func (c *Conn) Close() error       { return c.tc.Close() }

// Closed reports whether OnClose has run. Call with the lock held.
func (c *Conn) Closed() bool { return c.closed }

func (c *Conn) OnData(_ transport.Conn, b *buffer.Buf) {
	c.mu.Lock()
	c.gotData = true
	if c.stats != nil {
		c.stats.RxBytes.Add(c.id, uint64(b.Len()))
	}
	if c.mig != nil && c.mig.detaching {
		c.mig.carry.Add(b) // read while handing over: goes with the socket
		c.Unlock()
		return
	}
	taken := false
	for _, f := range c.read {
		if f.OnData(c, b) == StopIteration {
			taken = true
			break
		}
	}
	if c.drainOnData {
		c.drainOnData = false
		c.drainLocked()
	}
	c.Unlock()
	if !taken {
		b.Release() // no filter wanted it
	}
}

func (c *Conn) OnReadEOF(transport.Conn) {
	c.mu.Lock()
	c.peerClosed = true
	handled := false
	for _, cb := range c.events {
		cb.OnReadEOF(c)
	}
	for _, f := range c.read {
		if h, ok := f.(HalfCloser); ok && h.HandlesHalfClose() {
			handled = true
		}
	}
	if !handled {
		c.tc.Close()
	}
	c.Unlock()
}

func (c *Conn) OnDrained(transport.Conn) {
	c.mu.Lock()
	if c.mig != nil && c.mig.drained(c) {
		c.Unlock()
		return
	}
	if !c.closed {
		for _, cb := range c.events {
			cb.OnDrained(c)
		}
	}
	c.Unlock()
}

func (c *Conn) OnClose(_ transport.Conn, err error) {
	c.mu.Lock()
	c.closed = true
	if err != nil {
		c.peerClosed = true
	}
	if st := c.stats; st != nil {
		st.CxActive.Add(c.id, -1)
		if c.peerClosed {
			st.CxDestroyRemote.Inc(c.id)
		} else {
			st.CxDestroyLocal.Inc(c.id)
		}
	}
	for _, cb := range c.events {
		cb.OnClose(c, err)
	}
	var gone *migration // moving, but closed before its hand-over
	if c.mig != nil && !c.mig.delivered {
		gone = c.mig
	}
	c.Unlock()
	gone.gaveUp(c)
	if c.l != nil {
		c.l.remove(c)
	}
}

// drain asks the chain's Drainers to wind down.
func (c *Conn) drain() {
	c.mu.Lock()
	c.drainLocked()
	c.Unlock()
}

func (c *Conn) drainLocked() {
	if !c.closed && c.mig == nil { // a migrating connection moves or closes by itself
		for _, f := range c.read {
			if d, ok := f.(Drainer); ok {
				d.Drain(c)
			}
		}
	}
}

// Session serializes the events of one downstream connection and the
// upstream connections serving it. Writes made while it is held are queued by
// the encoders and flushed when it is released, so a head and the body bytes
// that arrived with it leave in one vectored write.
type Session interface {
	sync.Locker
	// TryLock takes the session if it is free, without blocking.
	TryLock() bool
	// DeferFlush arranges f.Flush to run before the lock is released.
	// Call with the lock held.
	DeferFlush(f Flusher)
	// Post runs f under the session from any goroutine (one holding
	// another session included) without blocking: now if the session is
	// free, otherwise when its holder releases it. SessionLock implements
	// the whole interface.
	Post(f Flusher)
}

// Flusher writes what an encoder has queued.
type Flusher interface {
	Flush()
}

// ChainFactory builds a fresh filter chain for each accepted connection.
type ChainFactory func() ([]ReadFilter, []WriteFilter)

// Listener accepts connections through a transport.
type Listener struct {
	Name string
	tl   transport.Listener

	mu       sync.Mutex
	filters  []ListenerFilter // of generation gen; replaced by Update
	chain    ChainFactory
	gen      uint64
	conns    map[*Conn]struct{}
	draining bool
	empty    chan struct{} // closed when draining and no connection is left
	accepted atomic.Uint64

	// Stats, when not nil, counts this listener's connections.
	Stats *ListenerStats
}

// NewListener binds address with tr.
func NewListener(name string, tr transport.Transport, address string, filters []ListenerFilter, chain ChainFactory) (*Listener, error) {
	tl, err := tr.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	return &Listener{Name: name, tl: tl, filters: filters, chain: chain, conns: map[*Conn]struct{}{}, empty: make(chan struct{})}, nil
}

// Addr is the bound address.
func (l *Listener) Addr() net.Addr { return l.tl.Addr() }

// Accepted counts accepted connections.
func (l *Listener) Accepted() uint64 { return l.accepted.Load() }

// Start begins accepting.
func (l *Listener) Start() { l.tl.Start(l.accept) }

func (l *Listener) accept(tc transport.Conn) {
	l.mu.Lock()
	filters, chain, gen := l.filters, l.chain, l.gen
	l.mu.Unlock()
	for _, f := range filters {
		next := f.OnAccept(tc)
		if next == nil {
			tc.Close()
			return
		}
		tc = next
	}
	read, write := chain()
	c := NewConn(tc, read, write)
	c.l, c.gen = l, gen
	l.mu.Lock()
	// Accepted after stop (a transport accept in flight, or a connection
	// migrated here after this process itself handed over): served once,
	// in drain mode, never refused; the drain waits for it.
	late := l.draining
	if late {
		l.reopenLocked()
	}
	l.conns[c] = struct{}{}
	stale := late || gen != l.gen // Update ran meanwhile: it runs an old chain
	l.mu.Unlock()
	if st := l.Stats; st != nil {
		c.stats = st
		st.CxTotal.Inc(c.id)
		st.CxActive.Add(c.id, 1)
	}
	l.accepted.Add(1)
	c.Start()
	if stale {
		c.drainWhenActive()
	}
}

func (l *Listener) remove(c *Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	if l.draining && len(l.conns) == 0 {
		select {
		case <-l.empty:
		default:
			close(l.empty)
		}
	}
	l.mu.Unlock()
}

// Active is the number of open connections.
func (l *Listener) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// stop stops accepting and returns the connections open at that moment.
func (l *Listener) stop() []*Conn {
	l.tl.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.draining = true
	conns := make([]*Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	if len(l.conns) == 0 {
		select {
		case <-l.empty:
		default:
			close(l.empty)
		}
	}
	return conns
}

// Drain stops accepting and asks every connection to finish gracefully. The
// returned channel closes when none is left.
func (l *Listener) Drain() <-chan struct{} {
	for _, c := range l.stop() {
		c.drain()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.empty
}

// reopenLocked makes the drain wait again for a connection accepted after
// stop found none left; l.mu held.
func (l *Listener) reopenLocked() {
	select {
	case <-l.empty:
		l.empty = make(chan struct{})
	default:
	}
}

// Close stops accepting and closes every connection at once.
func (l *Listener) Close() {
	for _, c := range l.stop() {
		c.Close()
	}
}
