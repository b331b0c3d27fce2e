// Package engineconn runs a TLS-like record protocol (crypto/tls, TLCP)
// over a non-blocking transport.Conn for the crypto engines: the handshake on
// a pooled goroutine fed by the transport's ciphertext, records inline
// afterwards. An engine supplies the Protocol; everything else is shared.
package engineconn

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/ktls"
	"github.com/proxylab/proxylab/transport"
)

// Protocol is the engine's record protocol over the net.Conn Adapter gives:
// its Read must be resumable after a temporary error (no ciphertext yet).
type Protocol interface {
	HandshakeContext(ctx context.Context) error
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	CloseWrite() error
	// Negotiated describes the established session.
	Negotiated() Negotiated
	// FailureReason names a handshake error the protocol recognises (an
	// alert, a certificate failure), or "".
	FailureReason(err error) string
}

// Negotiated is what a handshake agreed on, for metrics and ALPN.
type Negotiated struct {
	ALPN, Version, Suite string
	Resumed              bool
	// ServerName is the SNI the client sent (server side); PeerCertificate
	// the peer's verified leaf certificate, nil without one.
	ServerName      string
	PeerCertificate *x509.Certificate
}

// Conn runs a Protocol over a non-blocking transport.Conn.
//
// The handshake is a sequential function (in crypto/tls) that cannot be
// resumed after a read error, so it runs where it can wait for input: as a
// coroutine resumed by the transport's callbacks, or on a worker goroutine
// waiting on a condition variable (see Handshakers for the two modes). Once
// established, records are decrypted inline on each OnData: tls.Conn's reads
// are resumable after a temporary "would block" error, so nothing stays
// with the connection.
//
// Lifecycle of the ciphertext side (inline mode):
//
//	Attach           arm the handshake timeout
//	OnData/ReadEOF   append input, resume the coroutine (its first resume
//	                 starts it); it runs until it needs input or is done
//	done             established: queued plaintext written, plaintext
//	                 delivered; failed: counted, connection closed
//	timeout          the connection is closed; OnClose ends the handshake
//	OnClose          input ends; a handshake still running is resumed to
//	                 fail, then the handler's OnClose
//
// Locks: dmu serialises delivery to the plaintext handler and every resume
// of the coroutine (transport callbacks, the worker's final delivery); mu
// guards the ciphertext input and the state, and is never held while
// calling out or yielding.
type Conn struct {
	inner   transport.Conn
	proto   Protocol
	hs      *Handshakers
	h       transport.Handler
	stats   *offload.Stats
	server  bool
	timeout time.Duration
	id      uint64

	dmu      sync.Mutex
	mu       sync.Mutex
	cond     *sync.Cond
	state    int // handshaking, established, failed
	in       []byte
	eof      bool
	gone     bool // OnClose delivered
	hsErr    error
	timedOut bool
	co       *coro       // inline: the running handshake coroutine
	key      *keyWait    // inline: the key operation it waits for (Await)
	timer    *time.Timer // the handshake timeout
	onHS     func(err error)

	// Plaintext written before the handshake completed.
	pending []*buffer.Buf

	wmu      sync.Mutex // serialises tls.Conn writes and the batch
	batch    []*buffer.Buf
	batching bool
	queued   int

	disabled atomic.Int32
	alpn     atomic.Value // string
	peer     atomic.Pointer[peerInfo]
}

// peerInfo is what the handshake said about the peer, for L7 filters.
type peerInfo struct {
	sni  string
	cert *x509.Certificate
}

const (
	handshaking = iota
	established
	failed
)

var connIDs atomic.Uint64

// New wraps inner; the engine then sets the Protocol (built on Adapter)
// with SetProtocol before the Conn is started.
func New(inner transport.Conn, server bool, timeout time.Duration, st *offload.Stats, hs *Handshakers) *Conn {
	c := &Conn{inner: inner, server: server, timeout: timeout, stats: st, id: connIDs.Add(1), hs: hs}
	c.cond = sync.NewCond(&c.mu)
	c.alpn.Store("")
	return c
}

var (
	_ offload.Conn      = (*Conn)(nil)
	_ transport.Handler = (*cipherSide)(nil)
	_ net.Conn          = (*adapter)(nil)
)

func (c *Conn) LocalAddr() net.Addr { return c.inner.LocalAddr() }

// Loop is the event loop of the connection underneath (transport.Looper),
// -1 when it has none: a secured connection runs on its transport's loop.
func (c *Conn) Loop() int {
	if l, ok := c.inner.(transport.Looper); ok {
		return l.Loop()
	}
	return -1
}
func (c *Conn) RemoteAddr() net.Addr       { return c.inner.RemoteAddr() }
func (c *Conn) NegotiatedProtocol() string { return c.alpn.Load().(string) }

// ServerName is the SNI of an established server-side connection ("" before
// the handshake or without one).
func (c *Conn) ServerName() string {
	if p := c.peer.Load(); p != nil {
		return p.sni
	}
	return ""
}

// PeerCertificate is the peer's verified leaf certificate (nil before the
// handshake or without one).
func (c *Conn) PeerCertificate() *x509.Certificate {
	if p := c.peer.Load(); p != nil {
		return p.cert
	}
	return nil
}

func (c *Conn) Start(h transport.Handler) {
	c.inner.Start(c.Attach(h))
}

func (c *Conn) Attach(h transport.Handler) transport.Handler {
	c.h = h
	if c.timeout > 0 {
		c.timer = time.AfterFunc(c.timeout, c.onTimeout)
	}
	if !c.hs.inline {
		c.hs.run(c)
	}
	return (*cipherSide)(c)
}

// OnHandshake sets f to be called once when the handshake ends, with nil
// on success (the plaintext queued so far is written) or the error that
// failed it (before the connection is closed). Set it before Start; f runs
// on the connection's event path and must not block.
func (c *Conn) OnHandshake(f func(err error)) { c.onHS = f }

// onTimeout ends a handshake that took too long, in either mode: the
// connection is closed, its OnClose ends the input, and the handshake fails
// and is counted as a timeout.
func (c *Conn) onTimeout() {
	c.mu.Lock()
	late := c.state == handshaking
	if late {
		c.timedOut = true
	}
	c.mu.Unlock()
	if late {
		c.inner.Close()
	}
}

// resume runs the inline handshake until it needs input or ends (starting
// it on the first call). Caller holds dmu; the state is handshaking.
func (c *Conn) resume() {
	if c.co == nil {
		c.co = c.hs.get(c)
	}
	co := c.co
	if s, _ := co.next(); s != stepDone {
		return
	}
	err := co.err
	c.co = nil
	c.hs.put(co)
	c.finish(err)
}

// handshakeOnWorker runs the whole handshake on a worker goroutine.
func (c *Conn) handshakeOnWorker() {
	err := c.proto.HandshakeContext(connCtx{c})
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.finish(err)
}

// finish records the handshake's end: on success the queued plaintext is
// written and whatever plaintext arrived delivered; on failure it is
// counted and the connection closed. Caller holds dmu.
func (c *Conn) finish(err error) {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Lock()
	if err != nil {
		c.state, c.hsErr = failed, err
		c.mu.Unlock()
		reason := c.failureReason(err)
		c.stats.Failed(reason)
		c.logFailure(reason, err)
		if c.onHS != nil {
			c.mu.Lock()
			if c.timedOut {
				err = timeoutError{err}
			}
			c.mu.Unlock()
			c.onHS(err)
		}
		c.inner.Close()
		return
	}
	c.mu.Unlock()
	ng := c.proto.Negotiated()
	c.alpn.Store(ng.ALPN)
	c.peer.Store(&peerInfo{sni: ng.ServerName, cert: ng.PeerCertificate})
	c.stats.Negotiated(c.id, ng.Version, ng.Suite, ng.Resumed)
	c.stats.Offload("ktls", "result", ktls.Outcome())
	// Established and the queued plaintext written in one step under wmu,
	// so no Write can slip its bytes in ahead of what was queued (HTTP/2
	// frames from other streams would otherwise overtake the preface).
	c.wmu.Lock()
	c.mu.Lock()
	c.state = established
	c.mu.Unlock()
	pending := c.pending
	c.pending = nil
	if len(pending) > 0 {
		c.writeLocked(pending)
	}
	c.wmu.Unlock()
	if c.onHS != nil {
		c.onHS(nil)
	}
	if !c.gone {
		c.deliver()
	}
}

// logFailure logs a failed handshake with its peer, reason (the alert,
// for the engines that name them) and error, rate-limited per pool.
func (c *Conn) logFailure(reason string, err error) {
	side, peer := "client", ""
	if c.server {
		side = "server"
	}
	if a := c.inner.RemoteAddr(); a != nil {
		peer = a.String()
	}
	c.hs.fails.log(side, peer, reason, err)
}

// failureReason names a handshake failure for metrics: the protocol's own
// reasons first, then timeouts and closed connections.
func (c *Conn) failureReason(err error) string {
	c.mu.Lock()
	timedOut := c.timedOut
	c.mu.Unlock()
	if timedOut {
		return "timeout"
	}
	if r := c.proto.FailureReason(err); r != "" {
		return r
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection_closed"
	}
	return "handshake_error"
}

// deliver decrypts what has arrived and hands plaintext to the handler.
// Caller holds dmu.
func (c *Conn) deliver() {
	for !c.gone && c.disabled.Load() == 0 {
		b := buffer.Get(16 << 10)
		n, err := c.proto.Read(b.Free())
		if n > 0 {
			b.Commit(n)
			c.h.OnData(c, b)
		} else {
			b.Release()
		}
		if err == nil {
			continue
		}
		if errors.Is(err, errWouldBlock) {
			return
		}
		if errors.Is(err, io.EOF) {
			c.h.OnReadEOF(c)
			return
		}
		// A bad record or an unexpected EOF: the connection is done.
		c.hsErr = err
		c.inner.Close()
		return
	}
}

// cipherSide is the handler of the inner connection.
type cipherSide Conn

func (s *cipherSide) OnData(_ transport.Conn, b *buffer.Buf) {
	c := (*Conn)(s)
	c.dmu.Lock()
	c.mu.Lock()
	c.in = append(c.in, b.Bytes()...)
	st := c.state
	if st == handshaking {
		c.cond.Broadcast()
	}
	c.mu.Unlock()
	b.Release()
	c.advance(st)
	c.dmu.Unlock()
}

// advance moves on what new input (or its end) unblocks: plaintext to the
// handler once established, an inline handshake while handshaking (a worker
// was woken by the broadcast). Caller holds dmu.
func (c *Conn) advance(st int) {
	switch {
	case st == established:
		c.deliver()
	case st == handshaking && c.hs.inline:
		c.resume()
	}
}

func (s *cipherSide) OnReadEOF(transport.Conn) {
	c := (*Conn)(s)
	c.dmu.Lock()
	c.mu.Lock()
	c.eof = true
	st := c.state
	c.cond.Broadcast()
	c.mu.Unlock()
	c.advance(st)
	c.dmu.Unlock()
}

func (s *cipherSide) OnDrained(transport.Conn) {
	c := (*Conn)(s)
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == established {
		c.h.OnDrained(c)
	}
}

func (s *cipherSide) OnClose(_ transport.Conn, err error) {
	c := (*Conn)(s)
	c.mu.Lock()
	c.eof = true
	c.cond.Broadcast()
	if err == nil {
		err = c.hsErr
	}
	st := c.state
	c.mu.Unlock()
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if st == handshaking && c.hs.inline {
		c.resume() // input ended: the handshake fails (and its coroutine is freed)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.gone = true
	c.wmu.Lock()
	for _, b := range c.pending {
		b.Release()
	}
	c.pending = nil
	c.wmu.Unlock()
	c.h.OnClose(c, err)
}

// Write encrypts bufs (taking ownership). Before the handshake completes the
// plaintext is queued; afterwards small buffers are coalesced into one
// record and the records of one call leave in one vectored write.
func (c *Conn) Write(bufs ...*buffer.Buf) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch st {
	case failed:
		for _, b := range bufs {
			b.Release()
		}
		return 0, transport.ErrClosed
	case handshaking:
		n := 0
		for _, b := range bufs {
			n += b.Len()
		}
		c.pending = append(c.pending, bufs...)
		return n, nil
	}
	return c.writeLocked(bufs)
}

// writeLocked encrypts and writes bufs; the caller holds wmu.
func (c *Conn) writeLocked(bufs []*buffer.Buf) (int, error) {
	c.batching = true
	var err error
	total := 0
	for _, b := range bufs {
		total += b.Len()
	}
	if len(bufs) > 1 && total <= 16<<10 {
		// A head and a short body: one record, not one per buffer.
		scratch := buffer.Get(total)
		for _, b := range bufs {
			scratch.Append(b.Bytes())
			b.Release()
		}
		_, err = c.proto.Write(scratch.Bytes())
		scratch.Release()
	} else {
		for _, b := range bufs {
			if err == nil {
				_, err = c.proto.Write(b.Bytes())
			}
			b.Release()
		}
	}
	c.batching = false
	batch := c.batch
	c.batch = c.batch[:0]
	if len(batch) > 0 {
		q, werr := c.inner.Write(batch...)
		clear(batch)
		c.queued = q
		if werr != nil && err == nil {
			err = werr
		}
	}
	return c.queued, err
}

func (c *Conn) ReadDisable(d bool) {
	if d {
		c.disabled.Add(1)
		c.inner.ReadDisable(true)
		return
	}
	if c.disabled.Add(-1) == 0 {
		c.inner.ReadDisable(false)
		// Plaintext may be waiting in tls.Conn's buffers with no new
		// ciphertext to trigger it: deliver it off this caller's stack
		// (callbacks never run inside a Conn method).
		go func() {
			c.dmu.Lock()
			c.mu.Lock()
			st := c.state
			c.mu.Unlock()
			if st == established {
				c.deliver()
			}
			c.dmu.Unlock()
		}()
	}
}

// CloseWrite sends close_notify, then FIN.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == established {
		c.wmu.Lock()
		c.proto.CloseWrite()
		c.wmu.Unlock()
	}
	return c.inner.CloseWrite()
}

func (c *Conn) Close() error { return c.inner.Close() }

// timeoutError is a handshake that failed because its timeout closed the
// connection: a net.Error whose Timeout is true.
type timeoutError struct{ err error }

func (e timeoutError) Error() string   { return "handshake timeout: " + e.err.Error() }
func (e timeoutError) Unwrap() error   { return e.err }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return false }

// errWouldBlock is the temporary net.Error the adapter returns when no
// ciphertext is buffered; tls.Conn keeps its state and Read resumes later.
var errWouldBlock wouldBlock

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "engineconn: would block" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// SetProtocol sets the record protocol, built on Adapter().
func (c *Conn) SetProtocol(p Protocol) { c.proto = p }

// Adapter is the net.Conn the Protocol reads ciphertext from and writes
// records to.
func (c *Conn) Adapter() net.Conn { return adapter{c} }

// adapter is the net.Conn the Protocol sees.
type adapter struct{ c *Conn }

func (a adapter) Read(p []byte) (int, error) {
	c := a.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.in) == 0 {
		switch {
		case c.eof:
			return 0, io.EOF
		case c.state != handshaking:
			return 0, errWouldBlock
		}
		if co := c.co; co != nil {
			// Inline: back to whoever resumed us until more input came.
			c.mu.Unlock()
			ok := co.yield(stepInput)
			c.mu.Lock()
			if !ok {
				return 0, net.ErrClosed
			}
			continue
		}
		c.cond.Wait()
	}
	n := copy(p, c.in)
	c.in = c.in[:copy(c.in, c.in[n:])]
	return n, nil
}

func (a adapter) Write(p []byte) (int, error) {
	c := a.c
	b := buffer.From(p)
	if c.batching {
		c.batch = append(c.batch, b) // flushed by Conn.Write in one writev
		return len(p), nil
	}
	if _, err := c.inner.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (a adapter) Close() error                     { return a.c.inner.Close() }
func (a adapter) LocalAddr() net.Addr              { return a.c.inner.LocalAddr() }
func (a adapter) RemoteAddr() net.Addr             { return a.c.inner.RemoteAddr() }
func (a adapter) SetDeadline(time.Time) error      { return nil }
func (a adapter) SetReadDeadline(time.Time) error  { return nil }
func (a adapter) SetWriteDeadline(time.Time) error { return nil }
