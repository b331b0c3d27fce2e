package http2

import (
	"strconv"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/stream"
)

// serverStream is one request/response exchange: the proxy's encoder.
type serverStream struct {
	sc       *ServerConn
	st       *h2stream
	dec      stream.RequestDecoder
	headReq  bool
	headSent bool
	finished bool
	// CONNECT and extended CONNECT (connect.go).
	tunnel, ext, tunOn, respEnded bool
}

var _ stream.ResponseEncoder = (*serverStream)(nil)

func (s *serverStream) Session() stream.Session { return s.sc.c }

func (s *serverStream) EncodeInterim(h *stream.Head) {
	if s.finished || s.headSent || h.Status == 101 {
		return
	}
	sc := s.sc
	sc.encFields = http2.AppendRegular(append(sc.encFields[:0], http2.HeaderField{Name: ":status", Value: http2.StatusString(h.Status)}), &h.Headers, false)
	sc.writeHeaders(s.st, sc.encFields, false)
}

func (s *serverStream) EncodeHead(h *stream.Head, end bool) {
	if s.finished || s.headSent {
		return
	}
	if s.tunnel && s.encodeTunnelHead(h) {
		return
	}
	s.headSent = true
	sc := s.sc
	sc.encFields = http2.ResponseFields(sc.encFields[:0], h)
	sc.writeHeaders(s.st, sc.encFields, end)
	if end {
		s.complete()
	}
}

func (s *serverStream) EncodeData(p []byte, end bool) {
	if s.finished || !s.headSent {
		return
	}
	if s.tunOn {
		s.tunnelData(p, end)
		return
	}
	if s.headReq {
		p = nil
		if !end {
			return
		}
	}
	if s.sc.sendData(s.st, p, end) {
		s.dec.OnAboveWriteHighWatermark()
	}
	if end {
		s.complete()
	}
}

func (s *serverStream) EncodeTrailers(t *protocol.Headers) {
	if s.finished || !s.headSent {
		return
	}
	sc := s.sc
	sc.encFields = http2.TrailerList(sc.encFields[:0], t)
	if len(sc.encFields) == 0 {
		sc.sendData(s.st, nil, true)
	} else {
		sc.sendTrailers(s.st, sc.encFields)
	}
	s.complete()
}

func (s *serverStream) LocalReply(status int, reason string) {
	if s.finished {
		return
	}
	if s.headSent {
		s.Reset()
		return
	}
	s.reply(status, reason)
}

// reply sends a whole response of the proxy's own.
func (s *serverStream) reply(status int, reason string) {
	s.headSent = true
	sc := s.sc
	body := reason + "\n"
	sc.encFields = append(sc.encFields[:0],
		http2.HeaderField{Name: ":status", Value: http2.StatusString(status)},
		http2.HeaderField{Name: "content-type", Value: "text/plain"},
		http2.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))},
	)
	if s.headReq {
		sc.writeHeaders(s.st, sc.encFields, true)
	} else {
		sc.writeHeaders(s.st, sc.encFields, false)
		sc.sendData(s.st, []byte(body), true)
	}
	s.complete()
}

// complete ends the exchange from the proxy's side. A response complete
// before its request asks the client to stop sending (RFC 9113 §8.1) —
// but only if the request is still open after the input already read
// (a local reply to a POST whose body is in the same read must not be
// followed by RST_STREAM: stopSenders decides once feed is done).
func (s *serverStream) complete() {
	s.finished = true
	st := s.st
	if !st.remoteDone && s.sc.streams[st.id] == st {
		if s.sc.inData {
			s.sc.answered = append(s.sc.answered, st)
		} else {
			s.sc.stopSender(st)
		}
	}
	s.sc.maybeClose()
	s.sc.updateTimer()
}

// stopSender resets st with NO_ERROR if its request is still open and its
// response fully sent — unless the rest of a body of known length fits in
// the stream's window: the client then finishes it without waiting on us,
// so the request is not really still open, and the stream ends cleanly
// when it does (clients such as curl fail on the reset otherwise).
func (sc *ServerConn) stopSender(st *h2stream) {
	if st.wantLen >= 0 && st.wantLen-st.gotLen <= int64(st.recvWin) {
		return
	}
	if !st.remoteDone && st.localDone && len(st.pend) == 0 && !st.hasPendTrl && sc.streams[st.id] == st {
		st.owner = nil
		sc.resetStream(st.id, http2.ErrCodeNo)
	}
}

// stopSenders runs stopSender for the streams answered during feed.
func (sc *ServerConn) stopSenders() {
	if len(sc.answered) == 0 {
		return
	}
	for _, st := range sc.answered {
		sc.stopSender(st)
	}
	clear(sc.answered)
	sc.answered = sc.answered[:0]
}

// Reset aborts the stream with RST_STREAM; the connection lives on.
func (s *serverStream) Reset() {
	if s.finished {
		return
	}
	s.finished = true
	s.st.owner = nil
	s.sc.resetStream(s.st.id, http2.ErrCodeInternal)
	s.sc.maybeClose()
}

// ResetWith resets with the code a peer's reset carried (CANCEL passes on
// as CANCEL), so cancellation propagates (stream.ReasonResetter).
func (s *serverStream) ResetWith(reason error) {
	if s.finished {
		return
	}
	code := http2.ErrCodeInternal
	if se, ok := reason.(*StreamError); ok && se.Code == http2.ErrCodeCancel {
		code = http2.ErrCodeCancel
	}
	s.finished = true
	s.st.owner = nil
	s.sc.resetStream(s.st.id, code)
	s.sc.maybeClose()
}

func (s *serverStream) ReadDisable(d bool) {
	if !s.finished {
		s.sc.hold(s.st, d)
	}
}
