package pool

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// fakeTransport dials instantly (on a goroutine, as the contract says),
// failing when fail is set; when hold is set the result waits until it is
// closed.
type fakeTransport struct {
	mu    sync.Mutex
	dials int
	fail  error
	hold  chan struct{}
}

func (t *fakeTransport) Name() string { return "fake" }
func (t *fakeTransport) Listen(string, string) (transport.Listener, error) {
	return nil, errors.New("no")
}
func (t *fakeTransport) Close() error { return nil }
func (t *fakeTransport) Dial(_, _ string, _ time.Duration, done func(transport.Conn, error)) {
	t.mu.Lock()
	t.dials++
	err, hold := t.fail, t.hold
	t.mu.Unlock()
	go func() {
		if hold != nil {
			<-hold
		}
		if err != nil {
			done(nil, err)
			return
		}
		done(&fakeTC{}, nil)
	}()
}

type fakeTC struct{ transport.NopHandler }

func (*fakeTC) LocalAddr() net.Addr                 { return nil }
func (*fakeTC) RemoteAddr() net.Addr                { return nil }
func (*fakeTC) Start(transport.Handler)             {}
func (*fakeTC) Write(b ...*buffer.Buf) (int, error) { return 0, nil }
func (*fakeTC) ReadDisable(bool)                    {}
func (*fakeTC) CloseWrite() error                   { return nil }
func (*fakeTC) Close() error                        { return nil }

// fakeConn carries cap streams at once.
type fakeConn struct {
	mu       sync.Mutex
	cap      int
	used     int
	retired  bool
	started  bool
	attached int
}

func (c *fakeConn) Start() { c.mu.Lock(); c.started = true; c.mu.Unlock() }
func (c *fakeConn) Reserve() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || c.retired || c.used >= c.cap {
		return false
	}
	c.used++
	return true
}
func (c *fakeConn) Unreserve() { c.mu.Lock(); c.used--; c.mu.Unlock() }
func (c *fakeConn) Attach(stream.ResponseDecoder, stream.Session) (stream.RequestEncoder, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attached++
	return nopEncoder{}, c.attached > 1
}
func (c *fakeConn) Retire()                                   { c.mu.Lock(); c.retired = true; c.mu.Unlock() }
func (c *fakeConn) Idle() bool                                { c.mu.Lock(); defer c.mu.Unlock(); return c.used == 0 }
func (c *fakeConn) CloseIfIdle(time.Time, time.Duration) bool { return false }

// free ends one stream on c and serves the waiters, as a connection event
// does (Base.Deliver), holding no lock.
func (c *fakeConn) free(p *Pool) { c.mu.Lock(); c.used--; c.mu.Unlock(); p.ServeWaiters() }

type nopEncoder struct{}

func (nopEncoder) EncodeHead(*stream.Head, bool)    {}
func (nopEncoder) EncodeData([]byte, bool)          {}
func (nopEncoder) EncodeTrailers(*protocol.Headers) {}
func (nopEncoder) Reset()                           {}
func (nopEncoder) ReadDisable(bool)                 {}

type session struct{ network.SessionLock }

// result records a pool callback.
type result struct {
	ready   chan bool
	failure chan stream.PoolFailure
}

func newResult() *result {
	return &result{ready: make(chan bool, 1), failure: make(chan stream.PoolFailure, 1)}
}
func (r *result) OnPoolReady(_ stream.RequestEncoder, reused bool) { r.ready <- reused }
func (r *result) OnPoolFailure(f stream.PoolFailure, _ error)      { r.failure <- f }

func (r *result) wait(t *testing.T) (ready bool, f stream.PoolFailure) {
	t.Helper()
	select {
	case <-r.ready:
		return true, 0
	case f := <-r.failure:
		return false, f
	case <-time.After(3 * time.Second):
		t.Fatal("no pool callback")
		return false, 0
	}
}

func newTestPool(tr *fakeTransport, set Settings, perConn int) (*Pool, *[]*fakeConn, *sync.Mutex) {
	var mu sync.Mutex
	var conns []*fakeConn
	set.Protocol = "fake"
	p := NewPool(tr, "up:1", &set, func(transport.Conn, *Pool) Conn {
		c := &fakeConn{cap: perConn}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return c
	})
	return p, &conns, &mu
}

func request(p *Pool) *result {
	r := newResult()
	s := &session{}
	s.Lock()
	p.NewStream(nil, s, r)
	s.Unlock()
	return r
}

func TestPoolFillsConnectionsBeforeDialling(t *testing.T) {
	tr := &fakeTransport{}
	p, conns, mu := newTestPool(tr, Settings{StreamsPerConn: 2}, 2)
	rs := []*result{request(p), request(p), request(p)}
	for i, r := range rs {
		if ok, f := r.wait(t); !ok {
			t.Fatalf("request %d: failure %v", i, f)
		}
	}
	mu.Lock()
	n := len(*conns)
	mu.Unlock()
	if n != 2 || tr.dials != 2 {
		t.Fatalf("3 requests with 2 streams per connection: %d connections, %d dials", n, tr.dials)
	}
	// A fourth fits on the second connection: no dial, reused.
	r := request(p)
	if ok, _ := r.wait(t); !ok || tr.dials != 2 {
		t.Fatalf("fourth request: ok=%v dials=%d", ok, tr.dials)
	}
}

func TestPoolWaitsForAFreedSlot(t *testing.T) {
	tr := &fakeTransport{}
	p, conns, mu := newTestPool(tr, Settings{StreamsPerConn: 1, MaxConnections: 1}, 1)
	first := request(p)
	first.wait(t)
	second := request(p) // the one connection is full and no other may open
	select {
	case <-second.ready:
		t.Fatal("served without a free slot")
	case <-time.After(50 * time.Millisecond):
	}
	mu.Lock()
	c := (*conns)[0]
	mu.Unlock()
	c.free(p)
	if ok, _ := second.wait(t); !ok {
		t.Fatal("not served after the slot freed")
	}
}

func TestPoolOverflowAndConnectFailure(t *testing.T) {
	tr := &fakeTransport{fail: errors.New("connection refused"), hold: make(chan struct{})}
	p, _, _ := newTestPool(tr, Settings{StreamsPerConn: 10, MaxPending: 2}, 10)
	a, b := request(p), request(p)
	if _, f := request(p).wait(t); f != stream.Overflow {
		t.Fatalf("third waiter with max_pending 2: %v", f)
	}
	close(tr.hold) // the dial fails only now: a and b were still waiting
	for _, r := range []*result{a, b} {
		if ok, f := r.wait(t); ok || f != stream.ConnectFailure {
			t.Fatalf("waiter of a failed dial: ok=%v %v", ok, f)
		}
	}
}

func TestPoolCancelAndDrain(t *testing.T) {
	tr := &fakeTransport{}
	p, conns, mu := newTestPool(tr, Settings{StreamsPerConn: 1, MaxConnections: 1}, 1)
	request(p).wait(t)
	r := newResult()
	s := &session{}
	s.Lock()
	cancel := p.NewStream(nil, s, r)
	cancel.Cancel()
	s.Unlock()
	mu.Lock()
	c := (*conns)[0]
	mu.Unlock()
	c.free(p)
	select {
	case <-r.ready:
		t.Fatal("a cancelled request was served")
	case <-time.After(50 * time.Millisecond):
	}
	p.Drain()
	if !c.retired {
		t.Fatal("drain did not retire the connection")
	}
	if p.Idle() != 1 {
		t.Fatalf("idle %d", p.Idle())
	}
}
