package http2

import "github.com/proxylab/proxylab/core/protocol/http2"

// Flow control (RFC 9113 §5.2, §6.9): receive windows are returned as
// readers take the data; send windows gate pump (send.go).

// returnConn credits the connection window back in batches: the bytes are
// accounted per stream, so the connection never stalls on one stream.
func (c *conn) returnConn(n int32) {
	c.connCredit += n
	if c.connCredit >= c.set.ConnWindow/4 {
		c.fw.WriteWindowUpdate(0, uint32(c.connCredit))
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
	c.fw.WriteWindowUpdate(st.id, uint32(st.credit))
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

func (c *conn) windowUpdate(f *http2.Frame) error {
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if int64(c.sendWin)+inc > maxWindow {
			return &connError{Code: http2.ErrCodeFlowControl, Reason: "connection window overflow"}
		}
		c.sendWin += int32(inc)
		c.pump()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if c.role.isIdle(f.StreamID) {
			return &connError{Code: http2.ErrCodeProtocol, Reason: "WINDOW_UPDATE on an idle stream"}
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
