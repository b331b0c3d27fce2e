package pool

import (
	"bufio"
	"net"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/gotls"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// The tests below run the pool over real loopback sockets with a minimal
// line codec: a request is a line (its name), its response the line the
// upstream answers; a connection carries cap requests at once, matched in
// order. The upstream answers a line starting with "hold" only when the
// test lets it (gate), so slots stay busy as long as a case needs; other
// lines at once.

// lineUpstream is a real TCP server answering "ok\n" per line it reads; a
// "hold…" line when a token arrives on gate.
type lineUpstream struct {
	ln     net.Listener
	gate   chan struct{}
	accept atomic.Int32
	closed chan struct{} // one value per connection that ended
}

func newLineUpstream(t *testing.T) *lineUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &lineUpstream{ln: ln, gate: make(chan struct{}, 64), closed: make(chan struct{}, 64)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accept.Add(1)
			go u.serve(c)
		}
	}()
	return u
}

func (u *lineUpstream) serve(c net.Conn) {
	defer func() { c.Close(); u.closed <- struct{}{} }()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(line, "hold") {
			<-u.gate
		}
		if _, err := c.Write([]byte("ok\n")); err != nil {
			return
		}
	}
}

// answer lets the upstream answer n more lines.
func (u *lineUpstream) answer(n int) {
	for range n {
		u.gate <- struct{}{}
	}
}

// lineConn is the test codec's Conn.
type lineConn struct {
	Base
	tc       transport.Conn
	cap      int
	inflight []*lineStream // Mu
}

func (c *lineConn) Start() {
	c.tc.Start(c)
	c.Mu.Lock()
	c.Started = true
	c.Mu.Unlock()
}

func (c *lineConn) Reserve() bool {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return c.TryReserveLocked(c.Active+c.Reserved < c.cap)
}

func (c *lineConn) Attach(dec stream.ResponseDecoder, sess stream.Session) (stream.RequestEncoder, bool) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	r := dec.(*lineResult)
	return &lineStream{c: c, sess: sess, name: r.name, done: r.done}, c.AttachLocked()
}

func (c *lineConn) Retire() {
	c.Mu.Lock()
	c.Retiring = true
	c.MaybeCloseLocked(false)
	c.Mu.Unlock()
}

func (c *lineConn) OnData(_ transport.Conn, b *buffer.Buf) {
	c.Mu.Lock()
	for _, ch := range b.Bytes() {
		if ch != '\n' || len(c.inflight) == 0 {
			continue
		}
		s := c.inflight[0]
		c.inflight = c.inflight[1:]
		c.ReleaseLocked(&s.released, false)
		c.ScheduleLocked(s, &s.queued)
	}
	c.Mu.Unlock()
	b.Release()
	c.Deliver()
}

func (c *lineConn) OnReadEOF(transport.Conn) { c.tc.Close() }
func (c *lineConn) OnDrained(transport.Conn) {}
func (c *lineConn) OnClose(transport.Conn, error) {
	c.Mu.Lock()
	c.Closed = true
	c.Mu.Unlock()
	c.Pool.Closed(c)
}

type lineStream struct {
	c        *lineConn
	sess     stream.Session
	name     string
	done     chan struct{}
	released bool // c.Mu
	queued   bool // c.Mu
}

func (s *lineStream) EncodeHead(*stream.Head, bool) {
	s.c.Mu.Lock()
	s.c.inflight = append(s.c.inflight, s)
	s.c.Mu.Unlock()
	s.c.tc.Write(buffer.From([]byte(s.name + "\n")))
}
func (s *lineStream) Run()                             { close(s.done) }
func (s *lineStream) EncodeData([]byte, bool)          {}
func (s *lineStream) EncodeTrailers(*protocol.Headers) {}

// Reset gives the slot back at once, under the stream's session (the
// upstream's answer to it is still matched and dropped).
func (s *lineStream) Reset() {
	s.c.Mu.Lock()
	s.c.ReleaseLocked(&s.released, false)
	s.c.KickLocked(s.sess)
	s.c.Mu.Unlock()
}
func (s *lineStream) ReadDisable(bool) {}

// lineResult is one request: its pool outcome and its response.
type lineResult struct {
	name    string
	order   chan<- string // receives name when the pool serves it
	ready   chan bool     // reused
	failure chan stream.PoolFailure
	done    chan struct{} // response received
	cancel  stream.Cancellable
	enc     stream.RequestEncoder // set when served (session)
}

func (r *lineResult) DecodeInterim(*stream.Head)                  {}
func (r *lineResult) DecodeHead(*stream.Head, bool)               {}
func (r *lineResult) DecodeData([]byte, bool)                     {}
func (r *lineResult) DecodeTrailers(*protocol.Headers)            {}
func (r *lineResult) OnAboveWriteHighWatermark()                  {}
func (r *lineResult) OnBelowWriteLowWatermark()                   {}
func (r *lineResult) OnReset(error)                               {}
func (r *lineResult) OnPoolFailure(f stream.PoolFailure, _ error) { r.failure <- f }
func (r *lineResult) OnPoolReady(enc stream.RequestEncoder, reused bool) {
	r.enc = enc
	enc.EncodeHead(nil, true)
	if r.order != nil {
		r.order <- r.name
	}
	r.ready <- reused
}

func (r *lineResult) waitReady(t *testing.T) bool {
	t.Helper()
	select {
	case reused := <-r.ready:
		return reused
	case f := <-r.failure:
		t.Fatalf("%s: pool failure %v", r.name, f)
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not served", r.name)
	}
	return false
}

func (r *lineResult) waitFailure(t *testing.T) stream.PoolFailure {
	t.Helper()
	select {
	case <-r.ready:
		t.Fatalf("%s: served, want a failure", r.name)
	case f := <-r.failure:
		return f
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no failure", r.name)
	}
	return 0
}

func (r *lineResult) waitDone(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no response", r.name)
	}
}

// notServed checks r got no pool callback within a short while.
func (r *lineResult) notServed(t *testing.T) {
	t.Helper()
	select {
	case <-r.ready:
		t.Fatalf("%s: served early", r.name)
	case f := <-r.failure:
		t.Fatalf("%s: failed early: %v", r.name, f)
	case <-time.After(50 * time.Millisecond):
	}
}

type linePool struct {
	*Pool
	order chan string
}

func newLinePool(t *testing.T, addr string, set Settings, cap int) *linePool {
	t.Helper()
	tr, err := netpoll.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	set.Protocol = "line"
	if set.ConnectTimeout == 0 {
		set.ConnectTimeout = 5 * time.Second
	}
	p := NewPool(tr, addr, &set, func(tc transport.Conn, p *Pool) Conn {
		c := &lineConn{tc: tc, cap: cap}
		c.Pool, c.Closer, c.IdleSince = p, tc, time.Now()
		return c
	})
	return &linePool{Pool: p, order: make(chan string, 64)}
}

// request asks the pool for a stream under a session of its own.
func (lp *linePool) request(name string) *lineResult { return lp.requestIn(&flushSession{}, name) }

// requestIn asks under s.
func (lp *linePool) requestIn(s stream.Session, name string) *lineResult {
	r := &lineResult{name: name, order: lp.order, ready: make(chan bool, 1),
		failure: make(chan stream.PoolFailure, 1), done: make(chan struct{})}
	s.Lock()
	r.cancel = lp.NewStream(r, s, r)
	s.Unlock()
	return r
}

// flushSession is a session as network.Conn is one: deferred flushes run
// at Unlock, it can be tried without blocking and takes posted work.
type flushSession struct{ network.SessionLock }

func TestLoopbackCapacityAndOrder(t *testing.T) {
	cases := []struct {
		name      string
		cap       int
		maxConns  int
		first     int // requests served at once
		wantDials uint64
	}{
		{"one stream per connection, one connection", 1, 1, 1, 1},
		{"three streams per connection, one connection", 3, 1, 3, 1},
		{"one stream per connection, two connections", 1, 2, 2, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newLineUpstream(t)
			lp := newLinePool(t, up.ln.Addr().String(), Settings{StreamsPerConn: tc.cap, MaxConnections: tc.maxConns}, tc.cap)
			var rs []*lineResult
			for i := range tc.first + 3 {
				rs = append(rs, lp.request("hold-"+string(rune('a'+i))))
			}
			for _, r := range rs[:tc.first] {
				r.waitReady(t)
			}
			for _, r := range rs[tc.first:] {
				r.notServed(t)
			}
			for range tc.first {
				<-lp.order
			}
			// Each answer frees one slot: the oldest waiter takes it.
			for _, r := range rs[tc.first:] {
				up.answer(1)
				if reused := r.waitReady(t); !reused {
					t.Errorf("%s: served on a new connection, want a reused one", r.name)
				}
				if got := <-lp.order; got != r.name {
					t.Fatalf("served %s, want %s (waiters in order)", got, r.name)
				}
			}
			up.answer(len(rs))
			if n := lp.Counters().ConnectsTotal.Load(); n != tc.wantDials {
				t.Fatalf("%d connections dialled, want %d", n, tc.wantDials)
			}
		})
	}
}

func TestLoopbackCancel(t *testing.T) {
	up := newLineUpstream(t)
	lp := newLinePool(t, up.ln.Addr().String(), Settings{StreamsPerConn: 1, MaxConnections: 1}, 1)
	a := lp.request("hold-a")
	a.waitReady(t)
	<-lp.order
	b, c := lp.request("hold-b"), lp.request("hold-c")
	b.notServed(t)
	s := &session{}
	s.Lock()
	b.cancel.Cancel()
	s.Unlock()
	up.answer(1)
	a.waitDone(t)
	c.waitReady(t)
	if got := <-lp.order; got != "hold-c" {
		t.Fatalf("served %s after b was cancelled, want c", got)
	}
	b.notServed(t)
	up.answer(1)
	c.waitDone(t)
}

func TestLoopbackConnectFailure(t *testing.T) {
	// A port nobody listens on: every dial is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	// A server that accepts and never speaks TLS: the handshake times out.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	// A server that answers the ClientHello with garbage: the handshake fails.
	rude, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rude.Close()
	go func() {
		for {
			c, err := rude.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	eng, _ := gotls.New()
	cl, err := eng.NewClient(&offload.ClientConfig{Insecure: true, HandshakeTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wrap := func(c transport.Conn, host string) transport.Conn { return cl.Wrap(c, host) }
	cases := []struct {
		name string
		addr string
		wrap func(transport.Conn, string) transport.Conn
		cap  int
		want stream.PoolFailure
	}{
		{"refused, one stream per connection", refused, nil, 1, stream.ConnectFailure},
		{"refused, four streams per connection", refused, nil, 4, stream.ConnectFailure},
		{"TLS handshake timeout, one stream per connection", mute.Addr().String(), wrap, 1, stream.ConnectTimeout},
		{"TLS handshake timeout, four streams per connection", mute.Addr().String(), wrap, 4, stream.ConnectTimeout},
		{"TLS handshake failure, four streams per connection", rude.Addr().String(), wrap, 4, stream.ConnectFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lp := newLinePool(t, tc.addr, Settings{StreamsPerConn: tc.cap, Wrap: tc.wrap}, tc.cap)
			rs := []*lineResult{lp.request("a"), lp.request("b"), lp.request("c")}
			for _, r := range rs {
				if f := r.waitFailure(t); f != tc.want {
					t.Fatalf("%s: %v, want %v", r.name, f, tc.want)
				}
			}
			// One dial is made per cap waiters; a dial failing before the
			// next request arrives (a refused one can) makes another.
			dials := lp.Counters().ConnectsTotal.Load()
			want := uint64((3 + tc.cap - 1) / tc.cap)
			if dials < want || dials > 3 || tc.want == stream.ConnectTimeout && dials != want {
				t.Fatalf("%d dials for 3 waiters at %d per connection, want %d", dials, tc.cap, want)
			}
			if f := lp.Counters().ConnectFailures.Load(); f != dials {
				t.Fatalf("%d connect failures for %d dials", f, dials)
			}
		})
	}
}

func TestLoopbackDrain(t *testing.T) {
	for _, cap := range []int{1, 3} {
		t.Run(map[int]string{1: "one stream per connection", 3: "three streams per connection"}[cap], func(t *testing.T) {
			up := newLineUpstream(t)
			lp := newLinePool(t, up.ln.Addr().String(), Settings{StreamsPerConn: cap}, cap)
			// Two connections: one busy (cap held requests), one idle
			// (its request answered at once).
			var rs []*lineResult
			for i := range cap {
				rs = append(rs, lp.request("hold-"+string(rune('a'+i))))
			}
			for _, r := range rs {
				r.waitReady(t)
			}
			idle := lp.request("idle")
			if idle.waitReady(t) {
				t.Fatal("the request beyond a full connection reused one")
			}
			idle.waitDone(t)
			lp.Drain()
			select {
			case <-up.closed:
			case <-time.After(5 * time.Second):
				t.Fatal("drain left the idle connection open")
			}
			select {
			case <-up.closed:
				t.Fatal("drain closed a busy connection")
			case <-time.After(50 * time.Millisecond):
			}
			up.answer(cap)
			for _, r := range rs {
				r.waitDone(t)
			}
			select {
			case <-up.closed:
			case <-time.After(5 * time.Second):
				t.Fatal("the busy connection stayed open after its request")
			}
		})
	}
}

func TestLoopbackIdleTimeout(t *testing.T) {
	cases := []struct {
		name  string
		sweep bool // SweepIdle closes it; otherwise the next request finds it stale
	}{
		{"swept", true},
		{"found stale on reuse", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newLineUpstream(t)
			lp := newLinePool(t, up.ln.Addr().String(), Settings{StreamsPerConn: 1, IdleTimeout: 100 * time.Millisecond}, 1)
			a := lp.request("a")
			a.waitReady(t)
			a.waitDone(t)
			if tc.sweep {
				if n := lp.SweepIdle(time.Now()); n != 0 {
					t.Fatalf("swept %d fresh connections", n)
				}
				if n := lp.SweepIdle(time.Now().Add(time.Second)); n != 1 {
					t.Fatalf("swept %d, want 1", n)
				}
			} else {
				time.Sleep(150 * time.Millisecond) // past the idle timeout
				b := lp.request("b")
				if reused := b.waitReady(t); reused {
					t.Fatal("a connection past its idle timeout was reused")
				}
				b.waitDone(t)
			}
			select {
			case <-up.closed:
			case <-time.After(5 * time.Second):
				t.Fatal("the idle connection stayed open")
			}
		})
	}
}

// A stream reset under its session frees its slot: the waiter takes it when
// that session unlocks, before Unlock returns (no goroutine), whether it
// waits under the same session or under another that is free; only a
// waiter whose session is busy is served later, once it is free.
func TestLoopbackSlotFreedUnderSession(t *testing.T) {
	cases := []struct {
		name   string
		waiter string // "same", "free", "busy"
	}{
		{"waiter of the same session", "same"},
		{"waiter of a free session", "free"},
		{"waiter of a busy session", "busy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newLineUpstream(t)
			lp := newLinePool(t, up.ln.Addr().String(), Settings{StreamsPerConn: 1, MaxConnections: 1}, 1)
			sa := &flushSession{}
			a := lp.requestIn(sa, "hold-a")
			a.waitReady(t)
			sw := sa
			if tc.waiter != "same" {
				sw = &flushSession{}
			}
			b := lp.requestIn(sw, "b")
			b.notServed(t)
			if tc.waiter == "busy" {
				sw.Lock()
			}
			sa.Lock()
			a.enc.Reset()
			sa.Unlock()
			select {
			case <-b.ready:
				if tc.waiter == "busy" {
					t.Fatal("served while its session was held")
				}
			default:
				if tc.waiter != "busy" {
					t.Fatal("not served by the time the resetting session unlocked")
				}
				// The busy session got the waiter (Session.Post): no
				// goroutine waits for it, and its holder serves it when
				// releasing it, before Unlock returns.
				if g := poolGoroutines(); g != "" {
					t.Fatalf("a goroutine was started for the busy session's waiter:\n%s", g)
				}
				sw.Unlock()
				select {
				case <-b.ready:
				default:
					t.Fatal("not served by the time its own session unlocked")
				}
			}
			up.answer(1)
			b.waitDone(t)
		})
	}
}

// poolFrame is a frame of the pool's own code (not of the tests' helpers).
var poolFrame = regexp.MustCompile(`core/stream/pool\.\(\*(Pool|waiter|Base)\)`)

// poolGoroutines lists the goroutines other than the caller running (or
// about to run) the pool's code.
func poolGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i > 0 && poolFrame.MatchString(g) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
