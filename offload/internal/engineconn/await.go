package engineconn

import (
	"context"
	"net"
	"time"
)

// connCtx is the context a handshake runs with: it carries the Conn, so
// a key operation can suspend the handshake (Await). A one-pointer value:
// converting it to context.Context does not allocate.
type connCtx struct{ c *Conn }

type connKey struct{}

func (connCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (connCtx) Done() <-chan struct{}       { return nil }
func (connCtx) Err() error                  { return nil }
func (x connCtx) Value(k any) any {
	if k == (connKey{}) {
		return x.c
	}
	return nil
}

// Await runs an asynchronous key operation for the handshake ctx belongs
// to: start begins it and arranges for done to be called once with the
// result, from any goroutine. An inline handshake yields its coroutine
// until done is called — the event loop goes on serving other connections
// and no goroutine waits — and is resumed by done (on a short-lived
// goroutine, where the rest of that flight is computed; later input
// resumes it on the loop again). A handshake on a worker, or a ctx from
// elsewhere, blocks its goroutine instead.
func Await(ctx context.Context, start func(done func(out []byte, err error))) ([]byte, error) {
	c, _ := ctx.Value(connKey{}).(*Conn)
	if c == nil || c.co == nil {
		type result struct {
			out []byte
			err error
		}
		ch := make(chan result, 1)
		start(func(out []byte, err error) { ch <- result{out, err} })
		r := <-ch
		return r.out, r.err
	}
	co := c.co
	w := &keyWait{}
	c.mu.Lock()
	c.key = w
	c.mu.Unlock()
	start(func(out []byte, err error) { c.keyDone(w, out, err) })
	c.mu.Lock()
	defer func() { c.key = nil; c.mu.Unlock() }()
	for !w.done {
		if c.eof {
			return nil, net.ErrClosed // the connection went away meanwhile
		}
		c.mu.Unlock()
		ok := co.yield(stepKey)
		c.mu.Lock()
		if !ok {
			return nil, net.ErrClosed
		}
	}
	return w.out, w.err
}

// keyWait is one pending key operation of an inline handshake.
type keyWait struct {
	done bool
	out  []byte
	err  error
}

// keyDone records w's result and resumes the handshake waiting on it (if
// it still waits: a connection closed meanwhile has moved on).
func (c *Conn) keyDone(w *keyWait, out []byte, err error) {
	c.mu.Lock()
	if c.key != w {
		c.mu.Unlock()
		return
	}
	w.done, w.out, w.err = true, out, err
	c.mu.Unlock()
	// Off the completer's goroutine (a token worker, a key server
	// reader): the rest of the flight must not delay its other answers.
	go func() {
		c.dmu.Lock()
		defer c.dmu.Unlock()
		c.mu.Lock()
		st := c.state
		c.mu.Unlock()
		if st == handshaking && c.co != nil {
			c.resume()
		}
	}()
}
