package http2

import (
	"testing"

	"github.com/proxylab/proxylab/core/protocol/http2"

	"github.com/proxylab/proxylab/core/protocol"
)

// TestServerHeadersEndStreamReleasesStream: a response ending on its
// HEADERS frame (204, HEAD, trailers-only gRPC) releases the stream, so
// more of them than max_concurrent_streams succeed on one connection.
func TestServerHeadersEndStreamReleasesStream(t *testing.T) {
	h := newHarness(t, Settings{MaxConcurrentStreams: 4})
	h.app.auto = false
	h.handshake()
	for i := range 20 {
		id := uint32(2*i + 1)
		h.get(id)
		h.nc.Lock() // as the proxy does: under the session, flushed at release
		h.app.streams[i].enc.EncodeHead(&protocol.Head{Status: 204, ContentLength: -1}, true)
		h.nc.Unlock()
		f := h.expect(http2.FrameHeaders)
		if !f.StreamEnded() || f.StreamID != id {
			t.Fatalf("stream %d: %v", id, describe(f))
		}
		if n := len(h.sc.streams); n != 0 {
			t.Fatalf("%d streams held after a HEADERS-only response", n)
		}
	}
	if n := h.set.Stats.ActiveStreams.Load(); n != 0 {
		t.Fatalf("active streams %d", n)
	}
}

// TestServerControlFloodGoAway: PINGs whose acks stay queued (the
// transport reports unwritten bytes) past maxQueuedControl end the
// connection with ENHANCE_YOUR_CALM; a peer that reads may ping freely.
func TestServerControlFloodGoAway(t *testing.T) {
	for _, reading := range []bool{true, false} {
		h := newHarness(t, Settings{})
		h.handshake()
		if !reading {
			h.fc.queueReport = 1
		}
		for range maxQueuedControl/1000 + 1 {
			for range 1000 {
				h.fr.WritePing(false, [8]byte{1})
			}
			h.send()
		}
		flooded := h.set.Stats.ControlFloods.Load() == 1
		if flooded == reading {
			t.Fatalf("reading=%v: flood detected=%v", reading, flooded)
		}
		if !reading {
			h.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		}
	}
}

// TestRequestHeadDoesNotAllocate: validating and mapping a request's
// fields allocates nothing once the field slice has grown.
func TestRequestHeadDoesNotAllocate(t *testing.T) {
	fields := []http2.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "example.com:8443"}, {Name: ":path", Value: "/a/b?c=d"},
		{Name: "user-agent", Value: "test/1.0"}, {Name: "accept", Value: "*/*"},
		{Name: "host", Value: "example.com:8443"}, {Name: "te", Value: "trailers"},
	}
	var head protocol.Head
	if why := requestHead(fields, &head); why != "" {
		t.Fatal(why)
	}
	n := testing.AllocsPerRun(200, func() {
		if why := requestHead(fields, &head); why != "" {
			t.Fatal(why)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

// TestServerStopsReadingOnQueuedOutput: while more than maxQueuedBytes of
// output waits in the transport (a client that sends requests and reads no
// responses), the connection is not read; it is again once it drains.
func TestServerStopsReadingOnQueuedOutput(t *testing.T) {
	h := newHarness(t, Settings{})
	h.handshake()
	h.fc.queueReport = h.sc.maxQueuedBytes() + 1
	h.get(1)
	if h.fc.readDisabled != 1 {
		t.Fatalf("read-disabled %d with %d bytes queued", h.fc.readDisabled, h.fc.queueReport)
	}
	h.fc.queueReport = 0
	h.nc.OnDrained(h.fc)
	if h.fc.readDisabled != 0 {
		t.Fatalf("read-disabled %d after the queue drained", h.fc.readDisabled)
	}
}

// TestServerAnsweredRequestEndsDrain: a response sent before its request
// ended (a local reply to a POST whose body fits the window) is not
// followed by RST_STREAM; the stream ends with the body, and a draining
// connection then closes.
func TestServerAnsweredRequestEndsDrain(t *testing.T) {
	h := newHarness(t, Settings{})
	h.app.auto = false
	h.handshake()
	h.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a", "content-length", "5")
	h.nc.Lock()
	h.app.streams[0].enc.EncodeHead(&protocol.Head{Status: 204, ContentLength: -1}, true)
	h.sc.Drain(h.nc)
	h.nc.Unlock()
	h.expect(http2.FrameHeaders)
	h.expectGoAway(http2.ErrCodeNo)
	if f := h.next(); f != nil {
		t.Fatalf("unexpected %v", describe(f))
	}
	if h.fc.writeClosed() {
		t.Fatal("closed with the request still arriving")
	}
	h.fr.WriteData(1, true, []byte("hello"))
	h.send()
	if n := len(h.sc.streams); n != 0 {
		t.Fatalf("%d streams after the body ended", n)
	}
	if !h.fc.writeClosed() {
		t.Fatal("draining connection not closed after its last stream ended")
	}
}
