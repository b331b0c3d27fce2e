// Package netconn adapts a blocking net.Conn (a userspace TCP stack's
// connection, which has no file descriptor) to the transport contract: a
// goroutine per connection reads and calls the handler, and a writer
// goroutine, started when a write has to wait, flushes the queue so Write
// never blocks. A net.Conn that can also write without blocking
// (TryWriter) is written inline by the caller while nothing is queued, so
// the writer goroutine runs only when the peer's window or the send buffer
// is full.
package netconn

import (
	"errors"
	"io"
	"net"
	"sync"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// halfCloser is what a TCP connection offers for CloseWrite.
type halfCloser interface{ CloseWrite() error }

// TryWriter is a connection that can write without blocking: TryWrite
// takes as much of p as fits now (possibly nothing) and returns how much;
// an error means the connection cannot be written any more. Conn calls it
// under its write lock, never concurrently with itself.
type TryWriter interface {
	TryWrite(p []byte) (int, error)
}

// Conn is a transport.Conn over a net.Conn.
type Conn struct {
	nc      net.Conn
	tw      TryWriter // nc, when it can write without blocking
	bufSize int
	h       transport.Handler

	rmu      sync.Mutex
	rcond    *sync.Cond
	disabled int
	closed   bool

	wmu       sync.Mutex
	queue     []*buffer.Buf
	queued    int
	writing   bool // the writer goroutine runs
	notify    bool // a Write returned queued > 0: OnDrained when empty
	shutAfter bool
	werr      error

	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

var _ transport.Conn = (*Conn)(nil)

// New wraps nc; reads use buffers of bufSize from the pool.
func New(nc net.Conn, bufSize int) *Conn {
	c := &Conn{nc: nc, bufSize: bufSize, done: make(chan struct{})}
	c.tw, _ = nc.(TryWriter)
	c.rcond = sync.NewCond(&c.rmu)
	return c
}

func (c *Conn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Start runs the read loop.
func (c *Conn) Start(h transport.Handler) {
	c.h = h
	go c.readLoop()
}

func (c *Conn) readLoop() {
	for {
		c.rmu.Lock()
		for c.disabled > 0 && !c.closed {
			c.rcond.Wait()
		}
		closed := c.closed
		c.rmu.Unlock()
		if closed {
			c.finish(nil)
			return
		}
		b := buffer.Get(c.bufSize)
		n, err := c.nc.Read(b.Free())
		if n > 0 {
			b.Commit(n)
			c.h.OnData(c, b)
		} else {
			b.Release()
		}
		if errors.Is(err, io.EOF) {
			c.h.OnReadEOF(c)
			c.rmu.Lock()
			for !c.closed {
				c.rcond.Wait()
			}
			c.rmu.Unlock()
			c.finish(nil)
			return
		}
		if err != nil {
			c.rmu.Lock()
			local := c.closed
			c.rmu.Unlock()
			if local {
				err = nil
			}
			c.finish(err)
			return
		}
	}
}

// finish reports the end once, from the read goroutine.
func (c *Conn) finish(err error) {
	c.closeOnce.Do(func() {
		c.nc.Close()
		c.dropQueue()
		close(c.done)
		c.h.OnClose(c, err)
	})
}

func (c *Conn) ReadDisable(disable bool) {
	c.rmu.Lock()
	if disable {
		c.disabled++
	} else if c.disabled > 0 {
		c.disabled--
		if c.disabled == 0 {
			c.rcond.Broadcast()
		}
	}
	c.rmu.Unlock()
}

// Write queues bufs and has the writer goroutine send them.
func (c *Conn) Write(bufs ...*buffer.Buf) (int, error) {
	c.wmu.Lock()
	if c.werr != nil || c.isClosed() {
		err := c.werr
		c.wmu.Unlock()
		for _, b := range bufs {
			b.Release()
		}
		if err == nil {
			err = transport.ErrClosed
		}
		return 0, err
	}
	if c.tw != nil && !c.writing && len(c.queue) == 0 {
		// Nothing ahead of these bytes: write what fits now, inline.
		for len(bufs) > 0 {
			b := bufs[0]
			n, err := c.tw.TryWrite(b.Bytes())
			if err != nil {
				c.werr = err
				c.wmu.Unlock()
				for _, b := range bufs {
					b.Release()
				}
				c.Close()
				return 0, err
			}
			if n < b.Len() {
				b.Consume(n)
				break
			}
			b.Release()
			bufs = bufs[1:]
		}
	}
	for _, b := range bufs {
		c.queued += b.Len()
	}
	c.queue = append(c.queue, bufs...)
	q := c.queued
	if q > 0 {
		c.notify = true
	}
	if !c.writing && q > 0 {
		c.writing = true
		go c.writeLoop()
	}
	c.wmu.Unlock()
	return q, nil
}

func (c *Conn) isClosed() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.closed
}

func (c *Conn) writeLoop() {
	for {
		c.wmu.Lock()
		if len(c.queue) == 0 {
			c.writing = false
			notify, shut := c.notify, c.shutAfter
			c.notify, c.shutAfter = false, false
			c.wmu.Unlock()
			if shut {
				if hc, ok := c.nc.(halfCloser); ok {
					hc.CloseWrite()
				}
			}
			if notify {
				c.h.OnDrained(c)
			}
			return
		}
		bufs := c.queue
		c.queue = nil
		c.wmu.Unlock()
		var err error
		for i, b := range bufs {
			if err == nil {
				_, err = c.nc.Write(b.Bytes())
			}
			c.wmu.Lock()
			c.queued -= b.Len()
			c.wmu.Unlock()
			b.Release()
			bufs[i] = nil
		}
		if err != nil {
			c.wmu.Lock()
			c.werr = err
			c.writing = false
			c.wmu.Unlock()
			c.dropQueue()
			c.Close()
			return
		}
	}
}

func (c *Conn) dropQueue() {
	c.wmu.Lock()
	for _, b := range c.queue {
		b.Release()
	}
	c.queue, c.queued = nil, 0
	c.wmu.Unlock()
}

// CloseWrite sends FIN once the queue has drained.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writing || len(c.queue) > 0 {
		c.shutAfter = true
		return nil
	}
	if hc, ok := c.nc.(halfCloser); ok {
		return hc.CloseWrite()
	}
	return nil
}

// Close ends both directions; the read goroutine reports OnClose.
func (c *Conn) Close() error {
	c.rmu.Lock()
	if c.closed {
		c.rmu.Unlock()
		return nil
	}
	c.closed = true
	c.rcond.Broadcast()
	c.rmu.Unlock()
	c.nc.Close() // unblocks a Read in progress
	return nil
}
