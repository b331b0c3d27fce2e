package http2

import "github.com/proxylab/proxylab/core/protocol/http2"

// Flood bounds (see conn.ctlQueued, conn.empties): Go's x/net server
// allows 10000 queued control frames; Envoy 1 consecutive empty frame,
// nghttp2 more — 100 leaves room for odd but honest peers.
const (
	maxQueuedControl = 10000
	maxEmptyFrames   = 100
)

// queuedControl counts one queued control frame (see ctlQueued).
func (c *conn) queuedControl() { c.ctlQueued++ }

// flooded reports whether the peer exceeded a frame-flood bound.
func (c *conn) flooded() error {
	switch {
	case c.ctlQueued > maxQueuedControl && c.role.isServer():
		c.set.Stats.ControlFloods.Add(1)
		return &connError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "control frame flood: peer does not read the replies"}
	case c.empties > maxEmptyFrames:
		c.set.Stats.ControlFloods.Add(1)
		return &connError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "flood of empty frames"}
	}
	return nil
}

// countEmpty tracks runs of frames that carry nothing (CVE-2019-9518):
// DATA without payload or END_STREAM, HEADERS/CONTINUATION fragments
// without bytes that do not end the block.
func (c *conn) countEmpty(f *http2.Frame) {
	empty := false
	switch f.Type {
	case http2.FrameData:
		empty = f.Length == 0 && !f.StreamEnded()
	case http2.FrameHeaders, http2.FrameContinuation:
		empty = len(f.Data) == 0 && !f.HeadersEnded()
	}
	if empty {
		c.empties++
	} else {
		c.empties = 0
	}
}
