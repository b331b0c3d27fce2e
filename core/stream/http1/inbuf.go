// Package http1 drives the HTTP/1 codec over connections: ServerConn serves
// downstream requests as streams (a network read filter), Pool and ClientConn
// send upstream requests on pooled keep-alive connections.
package http1

import "github.com/proxylab/proxylab/core/buffer"

// inbuf holds bytes read but not yet parsed. In the common case it is the
// transport's read buffer itself (no copy); bytes are copied only when a head
// or chunk line spans reads.
type inbuf struct{ b *buffer.Buf }

func (in *inbuf) add(b *buffer.Buf) {
	if in.b == nil {
		in.b = b
		return
	}
	if len(in.b.Free()) < b.Len() {
		in.b.Compact()
	}
	if len(in.b.Free()) < b.Len() {
		nb := buffer.Get(in.b.Len() + b.Len())
		nb.Append(in.b.Bytes())
		in.b.Release()
		in.b = nb
	}
	in.b.Append(b.Bytes())
	b.Release()
}

func (in *inbuf) bytes() []byte {
	if in.b == nil {
		return nil
	}
	return in.b.Bytes()
}

func (in *inbuf) len() int {
	if in.b == nil {
		return 0
	}
	return in.b.Len()
}

func (in *inbuf) consume(n int) {
	if in.b == nil {
		return
	}
	in.b.Consume(n)
	if in.b.Len() == 0 {
		in.b.Release()
		in.b = nil
	}
}

func (in *inbuf) reset() {
	in.b.Release()
	in.b = nil
}

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
