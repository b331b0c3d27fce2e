package http2

import (
	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/foundation/buffer"
)

// outBuf collects frames until the role writes them.
type outBuf struct{ buffer.Chain }

// dataHeader writes a DATA frame's header; the payload follows (written by
// the caller, one copy instead of the Framer's two).
func (o *outBuf) dataHeader(id uint32, n int, end bool) {
	var fl http2.Flags
	if end {
		fl = http2.FlagDataEndStream
	}
	var h [http2.FrameHeaderLen]byte
	o.Write(http2.AppendFrameHeader(h[:0], http2.FrameHeader{Length: uint32(n), Type: http2.FrameData, Flags: fl, StreamID: id}))
}

// writeHeaders encodes fields as one header block: HEADERS, then
// CONTINUATION frames if it exceeds the peer's max frame size. A block with
// END_STREAM ends st's sending side here (endSent), whichever path sent it,
// so a response that ends on its HEADERS (204, 304, HEAD, trailers-only
// gRPC, trailers) releases the stream like one ending on DATA.
func (c *conn) writeHeaders(st *h2stream, fields []http2.HeaderField, end bool) {
	id := st.id
	block := c.henc.Encode(fields)
	max := int(c.peerMaxFrame)
	first := block
	if len(first) > max {
		first = block[:max]
	}
	block = block[len(first):]
	c.fw.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		n := min(len(block), max)
		c.fw.WriteContinuation(id, n == len(block), block[:n])
		block = block[n:]
	}
	c.role.wantFlush()
	if end {
		c.endSent(st)
	}
}

// sendData sends p on st as far as the windows allow and keeps the rest;
// it reports whether st just crossed the high watermark.
func (c *conn) sendData(st *h2stream, p []byte, end bool) (crossed bool) {
	if len(st.pend) == 0 && !st.hasPendTrl {
		n := c.writable(st, len(p))
		c.writeData(st, p[:n], end && n == len(p))
		p = p[n:]
		if len(p) == 0 {
			if end {
				c.maybeForget(st)
			}
			return false
		}
	}
	st.pend = append(st.pend, p...)
	st.pendEnd = end
	c.queueSending(st)
	if len(st.pend) > c.set.HighWatermark && !st.above {
		st.above = true
		return true
	}
	return false
}

// sendTrailers sends trailers (ending the stream) after any pending data.
func (c *conn) sendTrailers(st *h2stream, t []http2.HeaderField) {
	if len(st.pend) == 0 {
		c.writeHeaders(st, t, true)
		return
	}
	st.pendTrl, st.hasPendTrl = append(st.pendTrl[:0], t...), true
	c.queueSending(st)
}

func (c *conn) queueSending(st *h2stream) {
	if !st.sending {
		st.sending = true
		c.sending = append(c.sending, st)
	}
}

// writable is how many of n bytes the windows let st send now.
func (c *conn) writable(st *h2stream, n int) int {
	if c.blocked {
		return 0
	}
	return max(0, min(n, int(st.sendWin), int(c.sendWin)))
}

// writeData frames p (within the windows) into DATA frames.
func (c *conn) writeData(st *h2stream, p []byte, end bool) {
	st.sendWin -= int32(len(p))
	c.sendWin -= int32(len(p))
	for {
		n := min(len(p), int(c.peerMaxFrame))
		last := n == len(p)
		if n > 0 || (last && end) {
			c.out.dataHeader(st.id, n, last && end)
			c.out.Write(p[:n])
		}
		p = p[n:]
		if last {
			break
		}
	}
	if end {
		st.localDone = true
	}
	c.role.wantFlush()
}

// endSent marks st's sending side done (after the last frame left pend).
func (c *conn) endSent(st *h2stream) {
	st.localDone = true
	c.maybeForget(st)
}

// pump sends pending data of waiting streams, in the order they started
// waiting, while the windows allow.
func (c *conn) pump() {
	kept := c.sending[:0]
	for _, st := range c.sending {
		if c.streams[st.id] != st {
			st.sending = false
			continue
		}
		n := c.writable(st, len(st.pend))
		if n > 0 || (len(st.pend) == 0 && st.pendEnd) {
			end := st.pendEnd && n == len(st.pend) && !st.hasPendTrl
			c.writeData(st, st.pend[:n], end)
			st.pend = st.pend[:copy(st.pend, st.pend[n:])]
			if end {
				st.pendEnd = false
			}
		}
		if len(st.pend) == 0 && st.hasPendTrl {
			st.hasPendTrl = false
			c.writeHeaders(st, st.pendTrl, true)
		}
		if st.above && len(st.pend) <= c.set.HighWatermark/2 {
			st.above = false
			c.role.onSendReady(st)
		}
		if len(st.pend) > 0 || st.hasPendTrl {
			kept = append(kept, st)
		} else {
			st.sending = false
			if cap(st.pend) > 64<<10 {
				st.pend = nil
			}
			c.maybeForget(st)
		}
	}
	clear(c.sending[len(kept):])
	c.sending = kept
}
