package engineconn

import (
	"iter"
	"sync"
	"time"
)

// Handshakers runs the handshakes of one engine side, in one of two modes.
//
// Inline (servers whose keys are in memory): a handshake is a coroutine
// (iter.Pull) resumed by whoever delivers its ciphertext, the transport's
// callback, so it runs on the event loop's goroutine like an nginx or
// haproxy handshake; when it needs more input it yields back. A coroutine
// switch costs far less than waking a goroutine on another thread, and
// nothing else is scheduled. The coroutines are pooled: crypto code grows
// a stack to tens of KiB, and a fresh one would pay that growth every time.
// The price: a slow private-key operation stalls the loop while it runs,
// which is why keys that may live in hardware or behind a remote signer
// use workers.
//
// Workers (clients, and servers with keys outside the process): the
// handshake runs on a pooled goroutine reading ciphertext the transport
// hands over through a condition variable. A cache, not a bound: when no
// idle worker waits, a new one starts, so slow peers never queue.
type Handshakers struct {
	inline bool
	jobs   chan *Conn

	mu   sync.Mutex
	idle []*coro

	fails failLog // failed handshakes of the pool's connections
}

// idleFor is how long an idle worker waits for the next handshake.
const idleFor = 30 * time.Second

// maxIdleCoros bounds the parked coroutines kept for reuse.
const maxIdleCoros = 256

// NewHandshakers returns an empty pool running handshakes on worker
// goroutines.
func NewHandshakers() *Handshakers { return &Handshakers{jobs: make(chan *Conn)} }

// NewInlineHandshakers returns an empty pool running handshakes as
// coroutines of the goroutine that delivers their input.
func NewInlineHandshakers() *Handshakers { return &Handshakers{inline: true} }

// Inline reports the mode.
func (w *Handshakers) Inline() bool { return w.inline }

func (w *Handshakers) run(c *Conn) {
	select {
	case w.jobs <- c: // an idle worker took it
	default:
		go w.worker(c)
	}
}

func (w *Handshakers) worker(c *Conn) {
	t := time.NewTimer(idleFor)
	defer t.Stop()
	for {
		c.handshakeOnWorker()
		t.Reset(idleFor)
		select {
		case c = <-w.jobs:
		case <-t.C:
			return
		}
	}
}

// step is what a handshake coroutine reports when it yields.
type step uint8

const (
	stepInput step = iota // waiting for ciphertext
	stepKey               // waiting for an asynchronous key operation (Await)
	stepDone              // HandshakeContext returned; coro.err is its result
)

// coro is a pooled handshake coroutine. Lifecycle: get sets c, resumes run
// it until stepDone, then put clears c and parks it (inside yield) for the
// next handshake. Never resumed by two goroutines at once: every resume
// happens under the Conn's dmu.
type coro struct {
	next  func() (step, bool)
	stop  func()
	yield func(step) bool
	c     *Conn
	err   error
}

func (w *Handshakers) get(c *Conn) *coro {
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		co := w.idle[n-1]
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		co.c = c
		return co
	}
	w.mu.Unlock()
	co := &coro{c: c}
	co.next, co.stop = iter.Pull(func(yield func(step) bool) {
		co.yield = yield
		for {
			co.err = co.c.proto.HandshakeContext(connCtx{co.c})
			if !yield(stepDone) {
				return
			}
		}
	})
	return co
}

func (w *Handshakers) put(co *coro) {
	co.c, co.err = nil, nil
	w.mu.Lock()
	if len(w.idle) < maxIdleCoros {
		w.idle = append(w.idle, co)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	co.stop()
}
