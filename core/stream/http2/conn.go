// Package http2 drives HTTP/2 (RFC 9113) over connections: ServerConn serves
// downstream streams (a network read filter), Pool and ClientConn multiplex
// upstream requests. The wire format (frames, HPACK, the field checks and
// the head ⇄ field-list mapping) is core/protocol/http2's; the stream state
// machine, flow control, settings negotiation and flood limits are here.
//
// The engine here (conn) is role-neutral and not safe for concurrent use:
// the server runs it under the downstream session, the client under the
// upstream connection's own mutex.
package http2

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/foundation/buffer"
)

// RFC 9113 §6.9.1: a window may not exceed 2^31-1.
const maxWindow = http2.MaxWindow

// initialWindow is every stream's send window until the peer's SETTINGS
// say otherwise (RFC 9113 §6.9.2).
const initialWindow = 65535

// connError is a connection error: GOAWAY with Code, then close.
type connError = http2.ConnError

// StreamError is how a peer's (or our) RST_STREAM reaches a decoder.
type StreamError struct {
	Code   http2.ErrCode
	Remote bool // the peer sent it
}

func (e *StreamError) Error() string {
	if e.Remote {
		return fmt.Sprintf("http2: stream reset by peer: %v", e.Code)
	}
	return fmt.Sprintf("http2: stream reset: %v", e.Code)
}

// roleEvents are what the engine calls into its role (server or client).
// All run with the engine's lock held.
type roleEvents interface {
	// onHeaders: a complete header block for id (fields in c.fields); st is
	// nil when the stream does not exist yet.
	onHeaders(id uint32, st *h2stream, end bool) error
	onData(st *h2stream, p []byte, end bool)
	// onRSTStream: the peer reset st.
	onRSTStream(st *h2stream, code http2.ErrCode)
	onGoAway(last uint32, code http2.ErrCode)
	// onSendReady: st's pending data fell below the low watermark.
	onSendReady(st *h2stream)
	// wantFlush: frames are waiting in c.out.
	wantFlush()
	// isIdle reports whether id names a stream the peer has not opened yet.
	isIdle(id uint32) bool
	isServer() bool
	// onForget: the engine dropped st (both directions done, or reset).
	onForget(st *h2stream)
	// onLocalReset: the engine reset st (flow control, malformed message).
	onLocalReset(st *h2stream, err error)
}

// h2stream is the engine's part of one stream.
type h2stream struct {
	id      uint32
	sendWin int32 // what the peer lets us send
	recvWin int32 // what we let the peer send, not yet used
	credit  int32 // bytes taken by the reader, not yet returned

	pend       []byte // data waiting for send window
	pendEnd    bool   // END_STREAM after pend
	pendTrl    []http2.HeaderField
	hasPendTrl bool
	sending    bool // on c.sending
	above      bool // pend crossed the high watermark

	remoteDone bool // END_STREAM or RST received
	localDone  bool // END_STREAM or RST sent
	holds      int  // read-disables: window returns wait while > 0

	wantLen, gotLen int64 // content-length check (-1: none)
	owner           any
}

// conn is the role-neutral engine of one HTTP/2 connection.
type conn struct {
	set  *Settings
	role roleEvents
	fw   http2.Writer // writes to out
	rd   http2.Reader
	out  outBuf
	in   buffer.Input

	henc http2.Encoder
	hdec http2.Decoder

	// the header block being decoded; fields is the last decoded list
	// (the decoder's, valid until the next block)
	fields    []http2.HeaderField
	listLarge bool // fields were dropped past MaxHeaderListSize
	cont      struct {
		id     uint32
		end    bool
		frames int
		bytes  int
		block  []byte
		active bool
		// selfDep: the HEADERS frame's priority names its own stream
		// (RFC 9113 §5.3.1), a stream error once the block is decoded.
		selfDep bool
	}

	needPreface bool // server: the client preface is not read yet
	gotSettings bool
	streams     map[uint32]*h2stream
	sending     []*h2stream

	peerMaxFrame   uint32
	peerInitWin    int32
	peerMaxStreams uint32
	sendWin        int32
	recvWin        int32
	connCredit     int32

	goAwaySent bool
	goAwayRecv bool
	blocked    bool // the transport's queue is above the watermark

	resetTokens float64
	resetLast   time.Time

	// ctlQueued counts control frames (PING and SETTINGS acks, RST_STREAM)
	// queued since the transport last reported its queue empty; the
	// server role resets it (Flush, OnDrained). Past maxQueuedControl the
	// peer is not reading what it provokes: a flood (CVE-2019-9512, -9514,
	// -9515), answered with GOAWAY ENHANCE_YOUR_CALM.
	ctlQueued int
	// empties counts consecutive frames without payload or effect
	// (CVE-2019-9518); past maxEmptyFrames the connection is closed.
	empties int

	// ids of the streams we reset last: frames the peer sent before it
	// saw the reset are ignored (RFC 9113 §5.4.2), not errors.
	resetIDs [32]uint32
	resetPos int
}

func (c *conn) wasReset(id uint32) bool {
	for _, x := range c.resetIDs {
		if x == id {
			return true
		}
	}
	return false
}

func (c *conn) init(set *Settings, role roleEvents, server bool) {
	c.set, c.role = set, role
	c.fw.W = &c.out
	c.rd.MaxFrameSize = set.MaxFrameSize
	c.henc.Init()
	// No string can be longer than the header block the flood guard lets
	// through; a list over the limit is answered (431), not a failure.
	c.hdec.Init(set.HeaderTableSize, set.MaxHeaderListSize, 2*int(set.MaxHeaderListSize)+16<<10)
	c.needPreface = server
	c.streams = make(map[uint32]*h2stream)
	c.peerMaxFrame, c.peerInitWin, c.peerMaxStreams = 16<<10, initialWindow, 1<<31-1
	c.sendWin, c.recvWin = initialWindow, initialWindow
	c.resetTokens = float64(set.ResetBurst)
	set.Stats.Connections.Add(1)
}

// start queues our SETTINGS and the connection window raise; a client
// first writes the preface.
func (c *conn) start(client bool) {
	if client {
		c.out.Write([]byte(http2.ClientPreface))
	}
	settings := [...]http2.Setting{
		{ID: http2.SettingMaxConcurrentStreams, Val: c.set.MaxConcurrentStreams},
		{ID: http2.SettingInitialWindowSize, Val: uint32(c.set.InitialStreamWindow)},
		{ID: http2.SettingMaxFrameSize, Val: c.set.MaxFrameSize},
		{ID: http2.SettingMaxHeaderListSize, Val: c.set.MaxHeaderListSize},
		{ID: http2.SettingHeaderTableSize, Val: c.set.HeaderTableSize},
		{ID: http2.SettingEnablePush, Val: 0},
		{ID: http2.SettingEnableConnectProtocol, Val: 1},
	}
	n := len(settings) - 1
	if !client && c.set.EnableConnectProtocol {
		n++
	}
	c.fw.WriteSettings(settings[:n]...)
	if inc := c.set.ConnWindow - initialWindow; inc > 0 {
		c.fw.WriteWindowUpdate(0, uint32(inc))
		c.recvWin += inc
	}
	c.role.wantFlush()
}

func (c *conn) newStream(id uint32) *h2stream {
	st := &h2stream{id: id, sendWin: c.peerInitWin, recvWin: c.set.InitialStreamWindow, wantLen: -1}
	c.streams[id] = st
	c.set.Stats.Streams.Add(1)
	c.set.Stats.ActiveStreams.Add(1)
	return st
}

// forget removes a stream both sides are done with.
func (c *conn) forget(st *h2stream) {
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
		c.set.Stats.ActiveStreams.Add(-1)
		c.role.onForget(st)
	}
	st.pend, st.pendTrl = nil, nil
}

// feed parses the buffered input; a returned error is a connection error
// whose GOAWAY is already queued.
func (c *conn) feed() error {
	for {
		p := c.in.Bytes()
		if c.needPreface {
			n := min(len(p), len(http2.ClientPreface))
			if string(p[:n]) != http2.ClientPreface[:n] {
				return c.fail(http2.ErrCodeProtocol, "bad client preface")
			}
			if n < len(http2.ClientPreface) {
				return nil
			}
			c.in.Consume(n)
			c.needPreface = false
			continue
		}
		f, n, err := c.rd.ReadFrame(p)
		if n == 0 && err == nil {
			return nil
		}
		if err == nil {
			c.countEmpty(f)
			err = c.frame(f)
		}
		c.in.Consume(n)
		if err == nil {
			err = c.flooded()
		}
		if err != nil {
			var se *http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			return c.connFailure(err)
		}
	}
}

// connFailure turns an error from the frame reader or a frame handler into
// a GOAWAY.
func (c *conn) connFailure(err error) error {
	var ce *connError
	if errors.As(err, &ce) {
		return c.fail(ce.Code, ce.Reason)
	}
	return c.fail(http2.ErrCodeProtocol, err.Error())
}

// fail queues GOAWAY(code) and returns the connection error.
func (c *conn) fail(code http2.ErrCode, reason string) error {
	switch code {
	case http2.ErrCodeFlowControl:
		c.set.Stats.FlowControlErrors.Add(1)
	case http2.ErrCodeEnhanceYourCalm:
	default:
		c.set.Stats.ProtocolErrors.Add(1)
	}
	c.goAway(code, reason)
	return &connError{Code: code, Reason: reason}
}

func (c *conn) goAway(code http2.ErrCode, debug string) {
	if c.goAwaySent && code == http2.ErrCodeNo {
		return
	}
	c.goAwaySent = true
	c.set.Stats.TxGoAway.Add(1)
	c.fw.WriteGoAway(c.lastPeerStream(), code, []byte(debug))
	c.role.wantFlush()
}

// lastPeerStream is the highest stream id the peer opened.
func (c *conn) lastPeerStream() uint32 {
	var last uint32
	for id := range c.streams {
		if id%2 == 1 && id > last {
			last = id
		}
	}
	if r, ok := c.role.(interface{ lastOpened() uint32 }); ok {
		last = max(last, r.lastOpened())
	}
	return last
}

// frame handles one frame: the frame-type table of RFC 9113 §6, unknown
// types ignored (§4.1, §5.5). The reader already checked each frame's
// shape and the CONTINUATION order (§6.10).
func (c *conn) frame(f *http2.Frame) error {
	if c.cont.active {
		if f.Type == http2.FrameContinuation {
			return c.continuation(f)
		}
		return &connError{Code: http2.ErrCodeProtocol, Reason: "expected CONTINUATION"} // the reader checks it too
	}
	if !c.gotSettings && (f.Type != http2.FrameSettings || f.IsAck()) {
		return &connError{Code: http2.ErrCodeProtocol, Reason: "first frame is not SETTINGS"} // §3.4
	}
	switch f.Type {
	case http2.FrameData: // §6.1
		return c.data(f)
	case http2.FrameHeaders: // §6.2
		return c.headers(f)
	case http2.FramePriority: // §6.3: deprecated, ignored but for §5.3.1
		if f.Priority.StreamDep == f.StreamID {
			c.set.Stats.ProtocolErrors.Add(1)
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil
	case http2.FrameRSTStream: // §6.4
		return c.rstStream(f)
	case http2.FrameSettings: // §6.5
		return c.settings(f)
	case http2.FramePushPromise: // §6.6: we never enable push
		return &connError{Code: http2.ErrCodeProtocol, Reason: "PUSH_PROMISE with push disabled"}
	case http2.FramePing: // §6.7
		if !f.IsAck() {
			c.set.Stats.Pings.Add(1)
			c.queuedControl()
			c.fw.WritePing(true, f.PingData)
			c.role.wantFlush()
		}
		return nil
	case http2.FrameGoAway: // §6.8
		c.goAwayRecv = true
		c.set.Stats.RxGoAway.Add(1)
		c.role.onGoAway(f.LastStreamID, f.ErrCode)
		return nil
	case http2.FrameWindowUpdate: // §6.9
		return c.windowUpdate(f)
	case http2.FrameContinuation: // §6.10: only after HEADERS
		return &connError{Code: http2.ErrCodeProtocol, Reason: "CONTINUATION without HEADERS"}
	default: // §5.5: unknown frame types are ignored
		return nil
	}
}

// headers starts a header block; it is decoded once complete.
func (c *conn) headers(f *http2.Frame) error {
	c.cont.id, c.cont.end, c.cont.frames, c.cont.bytes = f.StreamID, f.StreamEnded(), 1, len(f.Data)
	c.cont.selfDep = f.HasPriority() && f.Priority.StreamDep == f.StreamID
	c.cont.block = append(c.cont.block[:0], f.Data...)
	if !f.HeadersEnded() {
		c.cont.active = true
		return c.contLimit()
	}
	return c.headerBlock()
}

// contLimit guards against CONTINUATION floods: a header block may span at
// most what the header list limit allows, counting each frame's header.
func (c *conn) contLimit() error {
	if c.cont.bytes+9*c.cont.frames > 2*int(c.set.MaxHeaderListSize)+16<<10 {
		c.set.Stats.ContinuationFloods.Add(1)
		return &connError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "header block too large (CONTINUATION flood)"}
	}
	return nil
}

func (c *conn) continuation(f *http2.Frame) error {
	c.cont.frames++
	c.cont.bytes += len(f.Data)
	c.cont.block = append(c.cont.block, f.Data...)
	if err := c.contLimit(); err != nil {
		return err
	}
	if !f.HeadersEnded() {
		return nil
	}
	c.cont.active = false
	return c.headerBlock()
}

// headerBlock decodes a complete header block and hands it to the role;
// a list over MaxHeaderListSize arrives truncated, counted here and
// answered by the role (431, reset).
func (c *conn) headerBlock() error {
	fields, large, err := c.hdec.Decode(c.cont.block)
	if err != nil {
		return err // COMPRESSION_ERROR, §4.3
	}
	c.fields, c.listLarge = fields, large
	if len(c.cont.block) > 64<<10 {
		c.cont.block = nil
	}
	id := c.cont.id
	st := c.streams[id]
	if large {
		c.set.Stats.HeaderListTooLarge.Add(1)
	}
	return c.role.onHeaders(id, st, c.cont.end)
}

func (c *conn) data(f *http2.Frame) error {
	n := int32(f.Length)
	if n > c.recvWin {
		return &connError{Code: http2.ErrCodeFlowControl, Reason: "DATA beyond the connection window"}
	}
	c.recvWin -= n
	c.returnConn(n)
	st := c.streams[f.StreamID]
	if st == nil {
		if c.role.isIdle(f.StreamID) {
			return &connError{Code: http2.ErrCodeProtocol, Reason: "DATA on an idle stream"} // §5.1
		}
		if !c.wasReset(f.StreamID) {
			c.resetStream(f.StreamID, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	if st.remoteDone {
		c.resetStream(f.StreamID, http2.ErrCodeStreamClosed) // §5.1 half-closed (remote)
		return nil
	}
	if n > st.recvWin {
		c.set.Stats.FlowControlErrors.Add(1)
		c.resetStream(st.id, http2.ErrCodeFlowControl)
		return nil
	}
	st.recvWin -= n
	p := f.Data
	if pad := n - int32(len(p)); pad > 0 {
		c.returnStream(st, pad)
	}
	st.gotLen += int64(len(p))
	end := f.StreamEnded()
	if st.wantLen >= 0 && (st.gotLen > st.wantLen || end && st.gotLen != st.wantLen) {
		c.malformed(st, "DATA does not match content-length") // §8.1.1
		return nil
	}
	if end {
		st.remoteDone = true
	}
	c.role.onData(st, p, end)
	if end {
		c.maybeForget(st)
	}
	return nil
}

// malformed resets a stream whose message broke §8.1.1.
func (c *conn) malformed(st *h2stream, why string) {
	if c.role.isServer() {
		c.set.Stats.MalformedRequests.Add(1)
	} else {
		c.set.Stats.MalformedResponses.Add(1)
	}
	slog.Debug("http2: malformed message", "stream", st.id, "why", why)
	c.resetStream(st.id, http2.ErrCodeProtocol)
}

func (c *conn) rstStream(f *http2.Frame) error {
	if c.role.isIdle(f.StreamID) {
		return &connError{Code: http2.ErrCodeProtocol, Reason: "RST_STREAM on an idle stream"} // §6.4
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil
	}
	c.set.Stats.RxReset.Add(1)
	st.remoteDone, st.localDone = true, true
	c.forget(st)
	c.role.onRSTStream(st, f.ErrCode)
	return nil
}

// takeResetToken charges one peer cancellation to the rapid-reset bucket.
func (c *conn) takeResetToken() bool {
	now := time.Now()
	if !c.resetLast.IsZero() {
		c.resetTokens = min(float64(c.set.ResetBurst), c.resetTokens+now.Sub(c.resetLast).Seconds()*c.set.ResetRate)
	}
	c.resetLast = now
	if c.resetTokens < 1 {
		return false
	}
	c.resetTokens--
	return true
}

// resetStream sends RST_STREAM and forgets the stream; its owner is told by
// the role when the reset was ours to decide (see onLocalReset).
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.set.Stats.TxReset.Add(1)
	c.queuedControl()
	c.resetIDs[c.resetPos] = id
	c.resetPos = (c.resetPos + 1) % len(c.resetIDs)
	c.fw.WriteRSTStream(id, code)
	c.role.wantFlush()
	if st := c.streams[id]; st != nil {
		st.localDone, st.remoteDone = true, true
		c.forget(st)
		if st.owner != nil {
			c.role.onLocalReset(st, &StreamError{Code: code})
		}
	}
}

// maybeForget drops a stream once both directions ended.
func (c *conn) maybeForget(st *h2stream) {
	if st.localDone && st.remoteDone && len(st.pend) == 0 && !st.hasPendTrl {
		c.forget(st)
	}
}
