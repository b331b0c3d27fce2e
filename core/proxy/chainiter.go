package proxy

import (
	"net/http"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
)

// Iteration of the chain (chain.go): decoder events go first to last,
// encoder events last to first; dec says which direction a helper works in.

// hold is what one entry holds of one direction after its filter stopped.
type hold struct {
	on          bool // the filter stopped this direction here
	buffer      bool // StopAndBuffer: its Data call is made again per piece
	headPending bool // the head is held (not yet passed on)
	headEnd     bool
	head        protocol.Head
	arena       []byte
	dataSeen    bool // a data event (maybe empty, with end) is held
	body        []byte
	end         bool
	trl         *protocol.Headers
}

func (e *entry) has(dec bool) bool {
	if dec {
		return e.dec != nil
	}
	return e.enc != nil
}

// hold returns the entry's hold of a direction, made on first use.
func (e *entry) hold(dec bool) *hold {
	h := &e.eh
	if dec {
		h = &e.dh
	}
	if *h == nil {
		*h = new(hold)
	}
	return *h
}

// holding reports whether the entry holds the direction.
func (e *entry) holding(dec bool) bool {
	if dec {
		return e.dh != nil && e.dh.on
	}
	return e.eh != nil && e.eh.on
}

// body is the entry's Body for a data call of the direction, set to p.
func (e *entry) body(dec bool, p []byte) *filter.Body {
	b := &e.ebody
	if dec {
		b = &e.dbody
	}
	b.Bytes = p
	return b
}

func (e *entry) callHeaders(dec bool, h *protocol.Head, end bool) filter.Status {
	if dec {
		return e.dec.DecodeHeaders(h, end)
	}
	e.c.encCalling++
	defer func() { e.c.encCalling-- }()
	return e.enc.EncodeHeaders(h, end)
}

func (e *entry) callData(dec bool, b *filter.Body, end bool) filter.Status {
	if dec {
		return e.dec.DecodeData(b, end)
	}
	e.c.encCalling++
	defer func() { e.c.encCalling-- }()
	return e.enc.EncodeData(b, end)
}

func (e *entry) callTrailers(dec bool, t *protocol.Headers) filter.Status {
	if dec {
		return e.dec.DecodeTrailers(t)
	}
	e.c.encCalling++
	defer func() { e.c.encCalling-- }()
	return e.enc.EncodeTrailers(t)
}

// next is the entry after i in the direction; ok false past the end.
func (c *chain) next(dec bool, i int) int {
	if dec {
		return i + 1
	}
	return i - 1
}

func (c *chain) in(i int) bool { return i >= 0 && i < len(c.entries) }

// halted: the direction must not go on (the stream ended, a local reply
// replaced the request, or the response being encoded was replaced).
func (c *chain) halted(dec bool, gen uint32) bool {
	if c.stopped() {
		return true
	}
	if dec {
		return c.replied
	}
	return c.encGen != gen
}

func (c *chain) passHeaders(dec bool, from int, h *protocol.Head, end bool) {
	gen := c.encGen
	for i := from; c.in(i); i = c.next(dec, i) {
		e := &c.entries[i]
		if !e.has(dec) {
			continue
		}
		if dec {
			c.head = h
		}
		st := e.callHeaders(dec, h, end)
		if c.halted(dec, gen) {
			return
		}
		if st != filter.Continue {
			hd := e.hold(dec)
			hd.on, hd.buffer, hd.headPending, hd.headEnd = true, st == filter.StopAndBuffer, true, end
			hd.arena = h.CloneInto(&hd.head, hd.arena)
			c.head = nil
			if dec && !c.forwarded && !c.timersHeld {
				c.timersHeld = true
				c.r.holdTimers(end)
			}
			return
		}
	}
	if !dec {
		c.toCodecHead(h, end)
		return
	}
	c.head = nil
	c.forwarded = true
	if c.reroute {
		c.reroute = false
		c.r.reroute(h)
	}
	c.r.forward(h, end)
	if c.tunnel && !c.stopped() && (len(c.tunBuf) > 0 || c.tunEnd) {
		buf, end := c.tunBuf, c.tunEnd
		c.tunBuf, c.decBuffered = nil, 0
		c.r.DecodeData(buf, end)
	}
}

func (c *chain) passData(dec bool, from int, p []byte, end bool) {
	gen := c.encGen
	for i := from; c.in(i); i = c.next(dec, i) {
		e := &c.entries[i]
		if !e.has(dec) {
			continue
		}
		if e.holding(dec) {
			c.holdData(e, dec, p, end)
			return
		}
		b := e.body(dec, p)
		st := e.callData(dec, b, end)
		if c.halted(dec, gen) {
			return
		}
		p, b.Bytes = b.Bytes, nil
		if st != filter.Continue {
			hd := e.hold(dec)
			hd.on, hd.buffer = true, st == filter.StopAndBuffer
			c.addHeld(dec, hd, p, end)
			return
		}
	}
	if dec {
		c.r.DecodeData(p, end)
		return
	}
	c.toCodecData(p, end)
}

func (c *chain) passTrailers(dec bool, from int, t *protocol.Headers) {
	gen := c.encGen
	for i := from; c.in(i); i = c.next(dec, i) {
		e := &c.entries[i]
		if !e.has(dec) {
			continue
		}
		if e.holding(dec) {
			hd := e.hold(dec)
			hd.trl = cloneTrailers(t)
			if hd.buffer {
				c.afterBufferCall(e, dec, e.callTrailers(dec, hd.trl), gen)
			}
			return
		}
		st := e.callTrailers(dec, t)
		if c.halted(dec, gen) {
			return
		}
		if st != filter.Continue {
			hd := e.hold(dec)
			hd.on, hd.trl = true, cloneTrailers(t)
			return
		}
	}
	if dec {
		c.r.DecodeTrailers(t)
		return
	}
	c.respSent = true
	c.enc.EncodeTrailers(t)
	c.finishAfter()
}

// holdData takes a piece reaching an entry that holds its direction; a
// buffering filter sees the whole body so far.
func (c *chain) holdData(e *entry, dec bool, p []byte, end bool) {
	hd := e.hold(dec)
	if !c.addHeld(dec, hd, p, end) || !hd.buffer {
		return
	}
	gen := c.encGen
	b := e.body(dec, hd.body)
	st := e.callData(dec, b, end)
	if c.halted(dec, gen) {
		return
	}
	nb := b.Bytes
	b.Bytes = nil
	c.setHeldBody(dec, hd, nb)
	c.afterBufferCall(e, dec, st, gen)
}

// afterBufferCall acts on what a buffering filter returned.
func (c *chain) afterBufferCall(e *entry, dec bool, st filter.Status, gen uint32) {
	if c.halted(dec, gen) {
		return
	}
	switch st {
	case filter.Continue:
		c.release(e, dec)
	case filter.Stop:
		e.hold(dec).buffer = false
	}
}

// addHeld appends p to what hd holds; false when that went over the
// buffer limit (the stream is ended then).
func (c *chain) addHeld(dec bool, hd *hold, p []byte, end bool) bool {
	hd.body = append(hd.body, p...)
	hd.dataSeen, hd.end = true, end
	total := &c.encBuffered
	if dec {
		total = &c.decBuffered
	}
	*total += len(p)
	if *total > c.r.cm.cfg.FilterBufferLimit {
		c.overflow(dec)
		return false
	}
	return true
}

// setHeldBody replaces the held body with what a buffering filter made of it.
func (c *chain) setHeldBody(dec bool, hd *hold, nb []byte) {
	if len(nb) == len(hd.body) && (len(nb) == 0 || &nb[0] == &hd.body[0]) {
		return
	}
	total := &c.encBuffered
	if dec {
		total = &c.decBuffered
	}
	*total += len(nb) - len(hd.body)
	hd.body = append(hd.body[:0], nb...)
}

// release passes on what e holds of a direction (its filter continued).
func (c *chain) release(e *entry, dec bool) {
	if !e.holding(dec) {
		return
	}
	hd := e.hold(dec)
	taken := *hd
	*hd = hold{}
	if dec {
		c.decBuffered -= len(taken.body)
	} else {
		c.encBuffered -= len(taken.body)
	}
	gen := c.encGen
	nx := c.next(dec, e.pos)
	if taken.headPending {
		c.passHeaders(dec, nx, &taken.head, taken.headEnd)
		if c.halted(dec, gen) {
			return
		}
	}
	if taken.dataSeen {
		c.passData(dec, nx, taken.body, taken.end)
		if c.halted(dec, gen) {
			return
		}
	}
	if taken.trl != nil {
		c.passTrailers(dec, nx, taken.trl)
	}
}

// overflow ends a stream whose chain buffered more than its limit: 413 for
// a request (through the encoder filters), 500 for a response (straight to
// the codec: the encoder filters hold the response being replaced).
func (c *chain) overflow(dec bool) {
	if dec {
		c.localReplyFrom(len(c.entries)-1, filter.LocalReply{Status: 413, Body: "request body too large\n"})
		return
	}
	c.dropResponse()
	c.r.abort(500, "")
	c.endPending = true
	if c.respSent {
		resetDownstream(c.enc, errFilterFailure)
		return
	}
	c.respSent = true
	if c.r.grpc {
		h := grpcHead(grpcInternal, "response buffer limit exceeded")
		c.enc.EncodeHead(&h, true)
		return
	}
	c.enc.LocalReply(500, "response buffer limit exceeded")
}

// dropResponse forgets the response being encoded (a local reply replaces
// it): encoder holds are cleared and running encoder loops stop.
func (c *chain) dropResponse() {
	c.encGen++
	for i := range c.entries {
		c.entries[i].eh = nil
	}
	c.encBuffered = 0
}

// localReplyFrom ends the request with r, passing the encoder filters from
// entry from down to the first.
func (c *chain) localReplyFrom(from int, r filter.LocalReply) {
	if c.stopped() {
		return
	}
	if c.respSent {
		c.r.abort(r.Status, r.Flags)
		resetDownstream(c.enc, errFilterFailure)
		c.finishAfter()
		return
	}
	c.replied = true
	c.r.abort(r.Status, r.Flags)
	c.dropResponse()
	switch {
	case c.r.cm.carries != "http":
		c.replyRPC = true
		c.replyText = r.Body
		h := protocol.Head{Status: r.Status}
		c.passHeaders(false, from, &h, true)
	case c.r.grpc:
		gs := r.GRPCStatus
		if gs == 0 {
			gs = grpcStatus(r.Status, r.Flags)
		}
		h := grpcHead(gs, r.Body)
		addHeaders(&h.Headers, r.Headers)
		c.passHeaders(false, from, &h, true)
	default:
		c.replyHTTP(from, r.Status, r.Body, r.Headers)
	}
}

// replyHTTP sends a text/plain reply through the encoder filters from from.
func (c *chain) replyHTTP(from, status int, body string, extra *protocol.Headers) {
	h := protocol.Head{Status: status, ContentLength: int64(len(body)), Major: 1, Minor: 1}
	if len(body) > 0 {
		h.Headers.Add("Content-Type", []byte("text/plain"))
	}
	addHeaders(&h.Headers, extra)
	gen := c.encGen
	c.passHeaders(false, from, &h, len(body) == 0)
	if len(body) > 0 && !c.halted(false, gen) {
		c.passData(false, from, []byte(body), true)
	}
}

func addHeaders(dst, src *protocol.Headers) {
	if src == nil {
		return
	}
	for _, f := range src.Fields {
		dst.Append(f.Name, f.Value)
	}
}

// httpReplyBody is the body the codecs give a local reply.
func httpReplyBody(status int, reason string) string {
	if reason == "" {
		return http.StatusText(status) + "\n"
	}
	return http.StatusText(status) + ": " + reason + "\n"
}

func cloneTrailers(t *protocol.Headers) *protocol.Headers {
	var h protocol.Head
	(&protocol.Head{Headers: *t}).CloneInto(&h, nil)
	return &h.Headers
}

// toCodecHead, toCodecData: the encoder direction's terminal step.
func (c *chain) toCodecHead(h *protocol.Head, end bool) {
	c.respSent = true
	if c.replyRPC {
		c.enc.LocalReply(h.Status, c.replyText)
		c.finishAfter()
		return
	}
	c.enc.EncodeHead(h, end)
	if end {
		c.finishAfter()
	}
}

func (c *chain) toCodecData(p []byte, end bool) {
	c.enc.EncodeData(p, end)
	if end {
		c.finishAfter()
	}
}

// RequestHead implements filter.HeadStore: the request head this entry
// holds while its filter has the request stopped, nil when it holds none.
func (e *entry) RequestHead() *protocol.Head {
	if e.dh == nil || !e.dh.headPending {
		return nil
	}
	return &e.dh.head
}
