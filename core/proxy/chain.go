package proxy

import (
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
)

// The stream filter chain (core/filter is the API). A connection whose
// listener has filters for its request kind gets a chain per stream, placed
// between the codec and the router (httpStream):
//
//	codec ──RequestDecoder──▶ chain ──decoder filters──▶ router.forward
//	codec ◀──ResponseEncoder── chain ◀──encoder filters── router (its enc)
//
// Without filters the codec talks to the router directly: the chain costs
// nothing then. Everything here runs under the downstream session; the
// chain is owned by its stream and dropped with it.
//
// Holding: a filter that returns Stop or StopAndBuffer holds the event at
// its entry (hold); what follows in that direction and reaches the entry is
// buffered there (up to FilterBufferLimit per direction: 413 for a request,
// 500 for a response) until the filter resumes, when it passes on to the
// next entry, which may hold it again. Events that arrive later enter the
// chain at its start: filters before a hold see them as they come.
//
// Tunnels (upgrades, CONNECT) pass the decoder filters' headers phase only:
// their bytes, and the upstream's response to them, bypass the filters; a
// local reply to a tunnel request passes the encoder filters as any other.

// FilterSpec is one configured filter of a listener's chain.
type FilterSpec struct {
	Name    string
	Kinds   filter.Kinds
	Factory filter.Factory
}

// SetFilters installs the listener's chain; limit bounds the bytes the
// chain holds per direction of a stream. Call before the config is used.
func (c *HTTPConfig) SetFilters(specs []FilterSpec, limit int) {
	c.Filters, c.FilterBufferLimit = specs, limit
	c.httpChain, c.rpcChain = nil, nil
	for i, sp := range specs {
		if sp.Kinds&filter.HTTP != 0 {
			c.httpChain = append(c.httpChain, i)
		}
		if sp.Kinds&filter.RPC != 0 {
			c.rpcChain = append(c.rpcChain, i)
		}
	}
}

// chainFor is the chain (indices into Filters) of a codec carrying proto.
func (c *HTTPConfig) chainFor(proto string) []int {
	if proto == "http" {
		return c.httpChain
	}
	return c.rpcChain
}

// chain is one stream's filter chain.
type chain struct {
	r       *httpStream
	enc     stream.ResponseEncoder // the codec's
	entries []entry
	inline  [4]entry // entries' storage for chains of up to 4 filters
	state   map[string]any
	head    *protocol.Head // the request head during its headers phase
	tunBuf  []byte         // a tunnel's early bytes, until its head is forwarded
	tunEnd  bool
	rv      routeView // what Info.Route returns, without an allocation

	encGen     uint32 // bumped when a local reply replaces the response
	encCalling int    // encoder filter calls on the stack

	decBuffered, encBuffered int

	depth      int  // nested chain calls on the stack
	forwarded  bool // the request head reached the router
	timersHeld bool // the router's timers run for a held head
	reroute    bool // ClearRouteCache before the head reached the router
	tunnel     bool
	replied    bool // a local reply replaced the request
	replyRPC   bool // the reply in progress is an RPC codec's LocalReply
	replyText  string
	respSent   bool // a response head went to the codec
	endPending bool // destroy when the outermost call returns
	destroyed  bool
	failed     bool
}

// entry is one filter of a stream's chain and its view of the stream.
type entry struct {
	c   *chain
	pos int
	idx int // in HTTPConfig.Filters
	f   filter.Filter
	dec filter.DecoderFilter
	enc filter.EncoderFilter
	cfg any
	// What the entry holds per direction, made when it first holds; the
	// Body handed to its data calls (kept here: no allocation per call).
	dh, eh       *hold
	dbody, ebody filter.Body
}

var (
	_ stream.RequestDecoder  = (*chain)(nil)
	_ stream.ResponseEncoder = (*chain)(nil)
	_ filter.Stream          = (*entry)(nil)
	_ filter.Info            = (*entry)(nil)
	_ filter.HeadStore       = (*entry)(nil)
)

func newChain(r *httpStream, enc stream.ResponseEncoder) *chain {
	return &chain{r: r, enc: enc}
}

// enter and exit bracket every call into the chain from outside (codec,
// router, Post): exit is the safety net for a panicking filter and runs a
// destroy that was asked for while calls were on the stack.
func (c *chain) enter() { c.depth++ }

func (c *chain) exit() {
	if p := recover(); p != nil {
		c.onPanic(p)
	}
	c.depth--
	if c.depth == 0 && c.endPending {
		c.destroy()
	}
}

// onPanic ends a stream whose filter (or the router under it) panicked:
// 500 (gRPC INTERNAL) if no response started, else a reset; counted.
func (c *chain) onPanic(p any) {
	if st := c.r.cm.cfg.Stats; st != nil {
		st.FilterFailures.Inc(c.r.cm.id)
	}
	slog.Error("proxy: http filter panicked; stream ended", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	if c.failed || c.destroyed {
		return
	}
	c.failed, c.endPending = true, true
	c.r.abort(500, "FP")
	if c.respSent {
		resetDownstream(c.enc, errFilterFailure)
		return
	}
	c.respSent = true
	switch {
	case c.r.cm.carries != "http":
		c.enc.LocalReply(500, "filter failure")
	case c.r.grpc:
		h := grpcHead(grpcInternal, "filter failure")
		c.enc.EncodeHead(&h, true)
	default:
		c.enc.LocalReply(500, "filter failure")
	}
}

var errFilterFailure = fmt.Errorf("proxy: http filter failure")

// stopped: nothing more may pass the chain.
func (c *chain) stopped() bool { return c.destroyed || c.endPending || c.failed }

// build makes the stream's filters once the request is routed, leaving out
// those its route or virtual host disables.
func (c *chain) build() {
	cm := c.r.cm
	idx := cm.chain
	c.entries = c.inline[:0]
	if len(idx) > len(c.inline) {
		c.entries = make([]entry, 0, len(idx))
	}
	c.entries = c.entries[:len(idx)]
	n := 0
	for _, i := range idx {
		ov := router.FilterOverrideOf(c.r.route, c.r.vh, i)
		if ov.Disabled {
			continue
		}
		e := &c.entries[n]
		e.c, e.pos, e.idx, e.cfg = c, n, i, ov.Config
		n++
		e.f = cm.cfg.Filters[i].Factory.NewFilter(e)
		e.dec, _ = e.f.(filter.DecoderFilter)
		e.enc, _ = e.f.(filter.EncoderFilter)
	}
	c.entries = c.entries[:n]
}

// destroy ends every filter once (OnDestroy) and drops what the chain holds.
func (c *chain) destroy() {
	if c.destroyed {
		return
	}
	c.destroyed, c.endPending = true, false
	for i := range c.entries {
		e := &c.entries[i]
		if e.f != nil {
			c.safeDestroy(e.f)
		}
		e.dh, e.eh = nil, nil
	}
	c.tunBuf = nil
}

func (c *chain) safeDestroy(f filter.Filter) {
	defer func() {
		if p := recover(); p != nil {
			if st := c.r.cm.cfg.Stats; st != nil {
				st.FilterFailures.Inc(c.r.cm.id)
			}
			slog.Error("proxy: http filter panicked in OnDestroy", "panic", fmt.Sprint(p))
		}
	}()
	f.OnDestroy()
}

// finishAfter marks the stream over once the current calls return.
func (c *chain) finishAfter() {
	if c.depth == 0 {
		c.destroy()
		return
	}
	c.endPending = true
}

// --- stream.RequestDecoder: the codec's request events ---

func (c *chain) DecodeHead(h *stream.Head, end bool) {
	c.enter()
	defer c.exit()
	c.r.begin(h)
	c.tunnel = stream.UpgradeType(h) != nil
	c.build()
	c.passHeaders(true, 0, h, end)
}

func (c *chain) DecodeData(p []byte, end bool) {
	if c.stopped() || c.replied {
		c.r.DecodeData(p, end) // shadows still get the body; the router ignores it
		return
	}
	c.enter()
	defer c.exit()
	if !c.forwarded {
		c.r.touch() // bytes held in the chain are activity for the idle timeout
	}
	if c.tunnel {
		if c.forwarded {
			c.r.DecodeData(p, end)
		} else if c.decBuffered += len(p); c.decBuffered > c.r.cm.cfg.FilterBufferLimit {
			c.overflow(true)
		} else {
			c.tunBuf = append(c.tunBuf, p...)
			c.tunEnd = c.tunEnd || end
		}
		return
	}
	c.passData(true, 0, p, end)
}

func (c *chain) DecodeTrailers(t *protocol.Headers) {
	if c.tunnel && !c.forwarded && !c.stopped() && !c.replied {
		c.tunEnd = true // a tunnel has no trailers: they end it (tunnel.go)
		return
	}
	if c.stopped() || c.replied || c.tunnel {
		c.r.DecodeTrailers(t)
		return
	}
	c.enter()
	defer c.exit()
	c.passTrailers(true, 0, t)
}

func (c *chain) OnAboveWriteHighWatermark() { c.r.OnAboveWriteHighWatermark() }
func (c *chain) OnBelowWriteLowWatermark()  { c.r.OnBelowWriteLowWatermark() }

// OnReset: the downstream went away; the router and the filters end.
func (c *chain) OnReset(reason error) {
	c.enter()
	defer c.exit()
	c.r.OnReset(reason)
	c.finishAfter()
}

// --- stream.ResponseEncoder: the router's response, through the encoder filters ---

func (c *chain) EncodeInterim(h *stream.Head) {
	if !c.stopped() {
		c.enc.EncodeInterim(h)
	}
}

func (c *chain) EncodeHead(h *stream.Head, end bool) {
	if c.stopped() {
		return
	}
	c.enter()
	defer c.exit()
	if c.tunnel && !c.replied {
		c.toCodecHead(h, end)
		return
	}
	c.passHeaders(false, len(c.entries)-1, h, end)
}

func (c *chain) EncodeData(p []byte, end bool) {
	if c.stopped() {
		return
	}
	c.enter()
	defer c.exit()
	if c.tunnel && !c.replied {
		c.toCodecData(p, end)
		return
	}
	c.passData(false, len(c.entries)-1, p, end)
}

func (c *chain) EncodeTrailers(t *protocol.Headers) {
	if c.stopped() {
		return
	}
	c.enter()
	defer c.exit()
	c.passTrailers(false, len(c.entries)-1, t)
}

// LocalReply is the router's own reply (no route, upstream failure,
// timeout …): it passes every encoder filter.
func (c *chain) LocalReply(status int, reason string) {
	if c.stopped() {
		return
	}
	c.enter()
	defer c.exit()
	if c.respSent || !c.hasEncoders() {
		c.respSent = true
		c.enc.LocalReply(status, reason)
		c.finishAfter()
		return
	}
	c.dropResponse()
	if c.r.cm.carries != "http" {
		c.replyRPC, c.replyText = true, reason
		h := protocol.Head{Status: status}
		c.passHeaders(false, len(c.entries)-1, &h, true)
		return
	}
	c.replyHTTP(len(c.entries)-1, status, httpReplyBody(status, reason), nil)
}

// Reset aborts the stream downstream (the router gave up on it).
func (c *chain) Reset() {
	if c.destroyed {
		return
	}
	c.enc.Reset()
	c.finishAfter()
}

func (c *chain) ReadDisable(disable bool) { c.enc.ReadDisable(disable) }
func (c *chain) Session() stream.Session  { return c.enc.Session() }

// ResetWith passes the router's reset reason on when the codec takes one.
func (c *chain) ResetWith(reason error) {
	if c.destroyed {
		return
	}
	resetDownstream(c.enc, reason)
	c.finishAfter()
}

var _ stream.ReasonResetter = (*chain)(nil)

func (c *chain) hasEncoders() bool {
	for i := range c.entries {
		if c.entries[i].enc != nil {
			return true
		}
	}
	return false
}
