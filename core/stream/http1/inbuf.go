// Package http1 drives the HTTP/1 codec over connections: ServerConn serves
// downstream requests as streams (a network read filter), Pool and ClientConn
// send upstream requests on pooled keep-alive connections.
package http1

import (
	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
)

// inbuf holds bytes read but not yet parsed.
type inbuf = buffer.Input

// outq collects an encoder's writes until its session flushes them.
type outq struct {
	bufs   []*buffer.Buf
	arr    [4]*buffer.Buf // backing for bufs in the common case
	queued bool           // registered with the session for a flush
}

func (o *outq) push(b *buffer.Buf) {
	if o.bufs == nil {
		o.bufs = o.arr[:0]
	}
	o.bufs = append(o.bufs, b)
}

// appendBytes copies p, into the last buffer if it has room.
func (o *outq) appendBytes(p []byte) {
	if n := len(o.bufs); n > 0 {
		last := o.bufs[n-1]
		if len(last.Free()) >= len(p) {
			last.Append(p)
			return
		}
	}
	o.push(buffer.From(p))
}

func (o *outq) drop() {
	for _, b := range o.bufs {
		b.Release()
	}
	clear(o.bufs)
	o.bufs = o.bufs[:0]
}

// sink is where an encoder writes: a network.Conn downstream, a
// transport.Conn upstream.
type sink interface {
	Write(bufs ...*buffer.Buf) (int, error)
	ReadDisable(disable bool)
}

// encoder is the write half both stream kinds share: output queued until the
// session flushes it, body framing (length-delimited or chunked), and the
// watermark and read-disable bookkeeping.
type encoder struct {
	out      outq
	sess     stream.Session
	self     stream.Flusher // the stream embedding this encoder
	conn     sink
	hw       int
	chunked  bool
	aboveHW  bool
	queued   bool // the connection held bytes queued after the last write
	disabled int
}

func (e *encoder) queue(b *buffer.Buf) {
	e.out.push(b)
	e.schedule()
}

func (e *encoder) schedule() {
	if !e.out.queued {
		e.out.queued = true
		e.sess.DeferFlush(e.self)
	}
}

// body frames p as the message's body bytes.
func (e *encoder) body(p []byte) {
	if len(p) == 0 {
		return
	}
	if e.chunked {
		e.queue(h1.EncodeChunk(p))
		return
	}
	e.out.appendBytes(p)
	e.schedule()
}

// end closes a chunked body, with trailers if any; other framings end by
// length (trailers cannot be sent and are dropped).
func (e *encoder) end(t *protocol.Headers) {
	if e.chunked {
		e.queue(h1.EncodeLastChunk(t))
	}
}

// flush writes the queued output and reports whether the connection just
// went above the high watermark.
func (e *encoder) flush() (crossedHigh bool) {
	e.out.queued = false
	if len(e.out.bufs) == 0 {
		return false
	}
	q, _ := e.conn.Write(e.out.bufs...)
	e.queued = q > 0
	clear(e.out.bufs)
	e.out.bufs = e.out.bufs[:0]
	if q > e.hw && !e.aboveHW {
		e.aboveHW = true
		return true
	}
	return false
}

// drained reports whether the stream was above the high watermark (and
// clears it), on the connection's OnDrained.
func (e *encoder) drained() bool {
	was := e.aboveHW
	e.aboveHW = false
	return was
}

// readDisable nests read-disables of the connection this stream reads from.
func (e *encoder) readDisable(d bool) {
	if d {
		e.disabled++
	} else if e.disabled > 0 {
		e.disabled--
	} else {
		return
	}
	e.conn.ReadDisable(d)
}

// undoReadDisable lifts every read-disable this stream made, when it ends.
func (e *encoder) undoReadDisable() {
	for ; e.disabled > 0; e.disabled-- {
		e.conn.ReadDisable(false)
	}
}
