// Package http2 drives HTTP/2 (RFC 9113) over connections: ServerConn serves
// downstream streams (a network read filter), Pool and ClientConn multiplex
// upstream requests. Frames are read and written with golang.org/x/net/http2's
// Framer and header blocks coded with its hpack; the stream state machine,
// flow control, limits and the mapping to stream.Head are ours.
//
// The engine here (conn) is role-neutral and not safe for concurrent use:
// the server runs it under the downstream session, the client under the
// upstream connection's own mutex.
package http2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/timer"
)

// ClientPreface is what a client sends first (RFC 9113 §3.4).
const ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Settings configure one side's HTTP/2 connections. Zero fields take the
// defaults of DefaultSettings.
type Settings struct {
	// MaxConcurrentStreams is advertised to the peer (server) or bounds the
	// streams opened on one connection (client, with the peer's own limit).
	MaxConcurrentStreams uint32
	// InitialStreamWindow is the receive window of each stream; a stream's
	// window is only returned once its reader took the data, so a slow
	// reader stalls its stream and no other.
	InitialStreamWindow int32
	// ConnWindow is the connection-level receive window.
	ConnWindow int32
	// MaxFrameSize is the largest frame payload accepted.
	MaxFrameSize uint32
	// MaxHeaderListSize bounds a decoded header list (RFC 9113 §6.5.2);
	// larger requests get 431, larger responses reset the stream.
	MaxHeaderListSize uint32
	// HeaderTableSize is the HPACK dynamic table size the peer may use.
	HeaderTableSize uint32
	// HighWatermark bounds the bytes a stream holds waiting for send
	// window before it asks its source to stop reading.
	HighWatermark int
	// IdleTimeout closes a connection without streams for that long.
	IdleTimeout time.Duration
	// ResetBurst and ResetRate bound streams the peer cancels (a token
	// bucket: ResetBurst tokens, ResetRate per second); beyond them the
	// connection is closed with ENHANCE_YOUR_CALM (CVE-2023-44487).
	ResetBurst int
	ResetRate  float64
	// Timers is the wheel connection timeouts run on (server side).
	Timers *timer.Wheel
	// Stats, when set, counts events of every connection using these
	// settings.
	Stats *Stats
	// EnableConnectProtocol (server): advertise RFC 8441 extended CONNECT
	// and accept requests with :protocol (connect.go).
	EnableConnectProtocol bool
}

// DefaultSettings are the values zero fields take.
var DefaultSettings = Settings{
	MaxConcurrentStreams: 128,
	InitialStreamWindow:  256 << 10,
	ConnWindow:           4 << 20,
	MaxFrameSize:         16 << 10,
	MaxHeaderListSize:    64 << 10,
	HeaderTableSize:      4096,
	HighWatermark:        256 << 10,
	IdleTimeout:          5 * time.Minute,
	ResetBurst:           400,
	ResetRate:            100,
}

func (s *Settings) withDefaults() *Settings {
	d := DefaultSettings
	o := *s
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if o.InitialStreamWindow <= 0 {
		o.InitialStreamWindow = d.InitialStreamWindow
	}
	if o.ConnWindow <= 0 {
		o.ConnWindow = d.ConnWindow
	}
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = d.MaxFrameSize
	}
	if o.MaxHeaderListSize == 0 {
		o.MaxHeaderListSize = d.MaxHeaderListSize
	}
	if o.HeaderTableSize == 0 {
		o.HeaderTableSize = d.HeaderTableSize
	}
	if o.HighWatermark <= 0 {
		o.HighWatermark = d.HighWatermark
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = d.IdleTimeout
	}
	if o.ResetBurst == 0 {
		o.ResetBurst = d.ResetBurst
	}
	if o.ResetRate == 0 {
		o.ResetRate = d.ResetRate
	}
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	return &o
}

// Stats count protocol events; every field is safe for concurrent use.
type Stats struct {
	Connections, Streams                   atomic.Uint64
	RxReset, TxReset                       atomic.Uint64
	RxGoAway, TxGoAway                     atomic.Uint64
	ProtocolErrors, FlowControlErrors      atomic.Uint64
	RefusedStreams, HeaderListTooLarge     atomic.Uint64
	RapidResets, ContinuationFloods, Pings atomic.Uint64
	MalformedRequests, MalformedResponses  atomic.Uint64
	TrailerFieldsDropped, ControlFloods    atomic.Uint64
	ActiveStreams                          atomic.Int64
}

// Each calls f with every counter's metric name and value.
func (st *Stats) Each(f func(event string, v uint64)) {
	for _, c := range []struct {
		name string
		v    *atomic.Uint64
	}{
		{"connections", &st.Connections}, {"streams", &st.Streams},
		{"rx_reset", &st.RxReset}, {"tx_reset", &st.TxReset},
		{"rx_goaway", &st.RxGoAway}, {"tx_goaway", &st.TxGoAway},
		{"protocol_error", &st.ProtocolErrors}, {"flow_control_error", &st.FlowControlErrors},
		{"refused_stream", &st.RefusedStreams}, {"header_list_too_large", &st.HeaderListTooLarge},
		{"rapid_reset", &st.RapidResets}, {"continuation_flood", &st.ContinuationFloods},
		{"ping", &st.Pings}, {"malformed_request", &st.MalformedRequests},
		{"malformed_response", &st.MalformedResponses},
		{"trailer_field_dropped", &st.TrailerFieldsDropped}, {"control_flood", &st.ControlFloods},
	} {
		f(c.name, c.v.Load())
	}
}

// RFC 9113 §6.9.1: a window may not exceed 2^31-1.
const maxWindow = 1<<31 - 1

// initialWindow is every stream's send window until the peer's SETTINGS
// say otherwise (RFC 9113 §6.9.2).
const initialWindow = 65535

// connError is a connection error: GOAWAY with Code, then close.
type connError struct {
	Code   http2.ErrCode
	Reason string
}

func (e *connError) Error() string {
	return fmt.Sprintf("http2: connection error %v: %s", e.Code, e.Reason)
}

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
	pendTrl    []hpack.HeaderField
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
	fr   *http2.Framer
	rd   frameReader
	out  outBuf
	in   buffer.Input

	henc *hpack.Encoder
	hbuf bytes.Buffer
	hdec *hpack.Decoder

	// the header block being decoded
	fields    []hpack.HeaderField
	listSize  uint32
	listLarge bool
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
	c.fr = http2.NewFramer(&c.out, &c.rd)
	c.fr.SetMaxReadFrameSize(set.MaxFrameSize)
	c.fr.MaxHeaderListSize = set.MaxHeaderListSize
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.hdec = hpack.NewDecoder(set.HeaderTableSize, c.emit)
	// No string can be longer than the header block the flood guard lets
	// through; a list over the limit is answered (431), not a failure.
	c.hdec.SetMaxStringLength(2*int(set.MaxHeaderListSize) + 16<<10)
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
		c.out.Write([]byte(ClientPreface))
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
	c.fr.WriteSettings(settings[:n]...)
	if inc := c.set.ConnWindow - initialWindow; inc > 0 {
		c.fr.WriteWindowUpdate(0, uint32(inc))
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

// frameReader serves ReadFrame exactly one buffered frame.
type frameReader struct{ p []byte }

func (r *frameReader) Read(b []byte) (int, error) {
	if len(r.p) == 0 {
		return 0, errors.New("http2: short frame")
	}
	n := copy(b, r.p)
	r.p = r.p[n:]
	return n, nil
}

// outBuf collects frames until the role writes them.
type outBuf struct{ buffer.Chain }

// dataHeader writes a DATA frame's header; the payload follows (written by
// the caller, one copy instead of the Framer's two).
func (o *outBuf) dataHeader(id uint32, n int, end bool) {
	var h [9]byte
	h[0], h[1], h[2] = byte(n>>16), byte(n>>8), byte(n)
	h[3] = byte(http2.FrameData)
	if end {
		h[4] = byte(http2.FlagDataEndStream)
	}
	binary.BigEndian.PutUint32(h[5:], id)
	o.Write(h[:])
}

// feed parses the buffered input; a returned error is a connection error
// whose GOAWAY is already queued.
func (c *conn) feed() error {
	for {
		p := c.in.Bytes()
		if c.needPreface {
			n := min(len(p), len(ClientPreface))
			if string(p[:n]) != ClientPreface[:n] {
				return c.fail(http2.ErrCodeProtocol, "bad client preface")
			}
			if n < len(ClientPreface) {
				return nil
			}
			c.in.Consume(n)
			c.needPreface = false
			continue
		}
		if len(p) < 9 {
			return nil
		}
		length := uint32(p[0])<<16 | uint32(p[1])<<8 | uint32(p[2])
		if length > c.set.MaxFrameSize {
			return c.fail(http2.ErrCodeFrameSize, fmt.Sprintf("frame of %d bytes exceeds SETTINGS_MAX_FRAME_SIZE %d", length, c.set.MaxFrameSize))
		}
		if len(p) < 9+int(length) {
			return nil
		}
		c.rd.p = p[:9+length]
		f, err := c.fr.ReadFrame()
		if err == nil {
			c.countEmpty(f)
			err = c.frame(f)
		}
		c.in.Consume(9 + int(length))
		if err == nil {
			err = c.flooded()
		}
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			return c.connFailure(err)
		}
	}
}

// connFailure turns an error from ReadFrame or a frame handler into a GOAWAY.
func (c *conn) connFailure(err error) error {
	var ce *connError
	if errors.As(err, &ce) {
		return c.fail(ce.Code, ce.Reason)
	}
	var hce http2.ConnectionError
	if errors.As(err, &hce) {
		return c.fail(http2.ErrCode(hce), err.Error())
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
	c.fr.WriteGoAway(c.lastPeerStream(), code, []byte(debug))
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
// types ignored (§4.1, §5.5).
func (c *conn) frame(f http2.Frame) error {
	if c.cont.active {
		if cf, ok := f.(*http2.ContinuationFrame); ok {
			return c.continuation(cf)
		}
		// The Framer enforces this order too; belt and braces.
		return &connError{http2.ErrCodeProtocol, "expected CONTINUATION"}
	}
	if !c.gotSettings {
		if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
			return &connError{http2.ErrCodeProtocol, "first frame is not SETTINGS"} // §3.4
		}
	}
	switch f := f.(type) {
	case *http2.DataFrame: // §6.1
		return c.data(f)
	case *http2.HeadersFrame: // §6.2
		c.cont.id, c.cont.end, c.cont.frames, c.cont.bytes = f.StreamID, f.StreamEnded(), 1, len(f.HeaderBlockFragment())
		c.cont.selfDep = f.HasPriority() && f.Priority.StreamDep == f.StreamID
		c.cont.block = append(c.cont.block[:0], f.HeaderBlockFragment()...)
		if !f.HeadersEnded() {
			c.cont.active = true
			return c.contLimit()
		}
		return c.headerBlock()
	case *http2.PriorityFrame: // §6.3: deprecated, ignored but for §5.3.1
		if f.StreamDep == f.StreamID {
			c.set.Stats.ProtocolErrors.Add(1)
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil
	case *http2.RSTStreamFrame: // §6.4
		return c.rstStream(f)
	case *http2.SettingsFrame: // §6.5
		return c.settings(f)
	case *http2.PushPromiseFrame: // §6.6: we never enable push
		return &connError{http2.ErrCodeProtocol, "PUSH_PROMISE with push disabled"}
	case *http2.PingFrame: // §6.7
		if !f.IsAck() {
			c.set.Stats.Pings.Add(1)
			c.queuedControl()
			c.fr.WritePing(true, f.Data)
			c.role.wantFlush()
		}
		return nil
	case *http2.GoAwayFrame: // §6.8
		c.goAwayRecv = true
		c.set.Stats.RxGoAway.Add(1)
		c.role.onGoAway(f.LastStreamID, f.ErrCode)
		return nil
	case *http2.WindowUpdateFrame: // §6.9
		return c.windowUpdate(f)
	case *http2.ContinuationFrame: // §6.10: only after HEADERS
		return &connError{http2.ErrCodeProtocol, "CONTINUATION without HEADERS"}
	default: // §5.5: unknown frame types are ignored
		return nil
	}
}

// contLimit guards against CONTINUATION floods: a header block may span at
// most what the header list limit allows, counting each frame's header.
func (c *conn) contLimit() error {
	if c.cont.bytes+9*c.cont.frames > 2*int(c.set.MaxHeaderListSize)+16<<10 {
		c.set.Stats.ContinuationFloods.Add(1)
		return &connError{http2.ErrCodeEnhanceYourCalm, "header block too large (CONTINUATION flood)"}
	}
	return nil
}

func (c *conn) continuation(f *http2.ContinuationFrame) error {
	c.cont.frames++
	c.cont.bytes += len(f.HeaderBlockFragment())
	c.cont.block = append(c.cont.block, f.HeaderBlockFragment()...)
	if err := c.contLimit(); err != nil {
		return err
	}
	if !f.HeadersEnded() {
		return nil
	}
	c.cont.active = false
	return c.headerBlock()
}

// emit collects decoded fields, counting the list size (RFC 9113 §6.5.2:
// name + value + 32 per field); past the limit fields are dropped but
// decoding goes on, to keep the HPACK context in step.
func (c *conn) emit(f hpack.HeaderField) {
	c.listSize += uint32(len(f.Name) + len(f.Value) + 32)
	if c.listSize > c.set.MaxHeaderListSize {
		c.listLarge = true
		return
	}
	c.fields = append(c.fields, f)
}

// headerBlock decodes a complete header block and hands it to the role.
func (c *conn) headerBlock() error {
	clear(c.fields)
	c.fields, c.listSize, c.listLarge = c.fields[:0], 0, false
	if _, err := c.hdec.Write(c.cont.block); err != nil {
		return &connError{http2.ErrCodeCompression, "HPACK: " + err.Error()} // §4.3
	}
	if err := c.hdec.Close(); err != nil {
		return &connError{http2.ErrCodeCompression, "HPACK: " + err.Error()}
	}
	if len(c.cont.block) > 64<<10 {
		c.cont.block = nil
	}
	id := c.cont.id
	st := c.streams[id]
	if c.listLarge {
		c.set.Stats.HeaderListTooLarge.Add(1)
	}
	return c.role.onHeaders(id, st, c.cont.end)
}

func (c *conn) data(f *http2.DataFrame) error {
	n := int32(f.Length)
	if n > c.recvWin {
		return &connError{http2.ErrCodeFlowControl, "DATA beyond the connection window"}
	}
	c.recvWin -= n
	c.returnConn(n)
	st := c.streams[f.StreamID]
	if st == nil {
		if c.role.isIdle(f.StreamID) {
			return &connError{http2.ErrCodeProtocol, "DATA on an idle stream"} // §5.1
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
	p := f.Data()
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

// returnConn credits the connection window back in batches: the bytes are
// accounted per stream, so the connection never stalls on one stream.
func (c *conn) returnConn(n int32) {
	c.connCredit += n
	if c.connCredit >= c.set.ConnWindow/4 {
		c.fr.WriteWindowUpdate(0, uint32(c.connCredit))
		c.recvWin += c.connCredit
		c.connCredit = 0
		c.role.wantFlush()
	}
}

// returnStream credits a stream's window for bytes its reader took, unless
// the reader holds it (read-disabled), in batches.
func (c *conn) returnStream(st *h2stream, n int32) {
	st.credit += n
	if st.holds > 0 || st.remoteDone || st.credit < c.set.InitialStreamWindow/4 {
		return
	}
	c.fr.WriteWindowUpdate(st.id, uint32(st.credit))
	st.recvWin += st.credit
	st.credit = 0
	c.role.wantFlush()
}

// hold nests read-disables of a stream: while held, its window is not
// returned and the peer stops once it is used up.
func (c *conn) hold(st *h2stream, disable bool) {
	if disable {
		st.holds++
		return
	}
	if st.holds > 0 {
		st.holds--
		if st.holds == 0 {
			c.returnStream(st, 0)
		}
	}
}

func (c *conn) rstStream(f *http2.RSTStreamFrame) error {
	if c.role.isIdle(f.StreamID) {
		return &connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"} // §6.4
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

func (c *conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.gotSettings = true
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			// §6.9.2: the change applies to every open stream.
			delta := int32(s.Val) - c.peerInitWin
			c.peerInitWin = int32(s.Val)
			for _, st := range c.streams {
				if int64(st.sendWin)+int64(delta) > maxWindow {
					return &connError{http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window"}
				}
				st.sendWin += delta
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = s.Val
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSize(min(s.Val, 4096))
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.queuedControl()
	c.fr.WriteSettingsAck()
	c.role.wantFlush()
	c.pump()
	return nil
}

func (c *conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if int64(c.sendWin)+inc > maxWindow {
			return &connError{http2.ErrCodeFlowControl, "connection window overflow"}
		}
		c.sendWin += int32(inc)
		c.pump()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if c.role.isIdle(f.StreamID) {
			return &connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
		}
		return nil
	}
	if int64(st.sendWin)+inc > maxWindow {
		c.set.Stats.FlowControlErrors.Add(1)
		c.resetStream(st.id, http2.ErrCodeFlowControl)
		return nil
	}
	st.sendWin += int32(inc)
	c.pump()
	return nil
}

// resetStream sends RST_STREAM and forgets the stream; its owner is told by
// the role when the reset was ours to decide (see onLocalReset).
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.set.Stats.TxReset.Add(1)
	c.queuedControl()
	c.resetIDs[c.resetPos] = id
	c.resetPos = (c.resetPos + 1) % len(c.resetIDs)
	c.fr.WriteRSTStream(id, code)
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

// writeHeaders encodes fields as one header block: HEADERS, then
// CONTINUATION frames if it exceeds the peer's max frame size. A block with
// END_STREAM ends st's sending side here (endSent), whichever path sent it,
// so a response that ends on its HEADERS (204, 304, HEAD, trailers-only
// gRPC, trailers) releases the stream like one ending on DATA.
func (c *conn) writeHeaders(st *h2stream, fields []hpack.HeaderField, end bool) {
	id := st.id
	c.hbuf.Reset()
	for _, f := range fields {
		c.henc.WriteField(f)
	}
	block := c.hbuf.Bytes()
	max := int(c.peerMaxFrame)
	first := block
	if len(first) > max {
		first = block[:max]
	}
	block = block[len(first):]
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		n := min(len(block), max)
		c.fr.WriteContinuation(id, n == len(block), block[:n])
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
func (c *conn) sendTrailers(st *h2stream, t []hpack.HeaderField) {
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
