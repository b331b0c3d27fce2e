package http2

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/protocol/http2/h2test"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/stream/pool"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// rawServer is a scripted HTTP/2 upstream on a real loopback socket: each
// accepted connection is handed to serve with a framer after the preface
// and SETTINGS exchange.
type rawServer struct {
	ln    net.Listener
	conns chan struct{}
}

func startRawServer(t *testing.T, serve func(fr *h2test.Conn, enc func(end bool, id uint32, kv ...string))) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, conns: make(chan struct{}, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- struct{}{}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				pre := make([]byte, len(http2.ClientPreface))
				if _, err := c.Read(pre); err != nil || string(pre) != http2.ClientPreface {
					return
				}
				fr := h2test.New(c)
				fr.WriteSettings()
				var mu sync.Mutex
				enc := func(end bool, id uint32, kv ...string) {
					mu.Lock()
					defer mu.Unlock()
					fr.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: fr.Block(h2test.Fields(kv...)), EndHeaders: true, EndStream: end})
				}
				serve(fr, enc)
			}()
		}
	}()
	return s
}

// recorder is a response decoder and pool callback under a real session.
type recorder struct {
	sess   *testSession
	enc    stream.RequestEncoder
	status int
	body   bytes.Buffer
	trl    int
	done   chan error
	reused bool
}

// testSession is a session like network.Conn's: flushes run at Unlock.
type testSession struct{ sessionLock }

func newRecorder() *recorder { return &recorder{sess: &testSession{}, done: make(chan error, 1)} }

func (r *recorder) OnPoolReady(enc stream.RequestEncoder, reused bool) {
	r.enc, r.reused = enc, reused
	h := &protocol.Head{Method: []byte("GET"), Target: []byte("/"), ContentLength: -1}
	h.Headers.Append([]byte("Host"), []byte("up"))
	enc.EncodeHead(h, true)
}
func (r *recorder) OnPoolFailure(f stream.PoolFailure, err error) { r.done <- err }
func (r *recorder) DecodeInterim(*stream.Head)                    {}
func (r *recorder) DecodeHead(h *stream.Head, end bool) {
	r.status = h.Status
	if end {
		r.done <- nil
	}
}
func (r *recorder) DecodeData(p []byte, end bool) {
	r.body.Write(p)
	if end {
		r.done <- nil
	}
}
func (r *recorder) DecodeTrailers(*protocol.Headers) { r.trl++; r.done <- nil }
func (r *recorder) OnAboveWriteHighWatermark()       {}
func (r *recorder) OnBelowWriteLowWatermark()        {}
func (r *recorder) OnReset(err error)                { r.done <- err }

func (r *recorder) start(p *pool.Pool) {
	r.sess.Lock()
	p.NewStream(r, r.sess, r)
	r.sess.Unlock()
}

func (r *recorder) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no response")
		return nil
	}
}

func newTestPool(t *testing.T, addr string) *pool.Pool {
	t.Helper()
	tr, err := netpoll.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	set := (&Settings{}).Prepare()
	p := NewPool(tr, addr, &ClientSettings{H2: set, ConnectTimeout: time.Second, Scheme: "http"})
	t.Cleanup(p.Drain)
	return p
}

// readRequests reads frames until n request HEADERS arrived; it returns
// their stream ids.
func readRequests(fr *h2test.Conn, n int) []uint32 {
	var ids []uint32
	for len(ids) < n {
		f, err := fr.ReadFrame()
		if err != nil {
			return ids
		}
		switch {
		case f.Type == http2.FrameHeaders:
			ids = append(ids, f.StreamID)
		case f.Type == http2.FrameSettings && !f.IsAck():
			fr.WriteSettingsAck()
		}
	}
	return ids
}

func TestClientGoAwayRefusesLaterStreams(t *testing.T) {
	var first sync.Once
	srv := startRawServer(t, func(fr *h2test.Conn, enc func(bool, uint32, ...string)) {
		isFirst := false
		first.Do(func() { isFirst = true })
		if !isFirst { // later connections answer everything
			for _, id := range readRequests(fr, 1) {
				enc(true, id, ":status", "204")
			}
			time.Sleep(300 * time.Millisecond)
			return
		}
		ids := readRequests(fr, 2)
		if len(ids) != 2 {
			return
		}
		// Only the first stream will be processed.
		fr.WriteGoAway(ids[0], http2.ErrCodeNo, nil)
		enc(true, ids[0], ":status", "204")
		time.Sleep(500 * time.Millisecond)
	})
	p := newTestPool(t, srv.ln.Addr().String())
	a, b := newRecorder(), newRecorder()
	a.start(p)
	b.start(p)
	errA, errB := a.wait(t), b.wait(t)
	if errA != nil || a.status != 204 {
		t.Fatalf("stream below GOAWAY: %v %d", errA, a.status)
	}
	if !errors.Is(errB, stream.ErrRefused) {
		t.Fatalf("stream above GOAWAY: %v (want refused, safe to retry)", errB)
	}
	// A new request does not use the connection that is going away.
	c := newRecorder()
	c.start(p)
	if err := c.wait(t); err != nil || c.status != 204 || c.reused {
		t.Fatalf("after GOAWAY: %v %d reused=%v", err, c.status, c.reused)
	}
	if n := len(srv.conns); n != 2 {
		t.Fatalf("%d connections, want a second one after GOAWAY", n)
	}
}

func TestClientResetsAndMalformedResponses(t *testing.T) {
	cases := []struct {
		name  string
		reply func(fr *h2test.Conn, enc func(bool, uint32, ...string), id uint32)
		check func(err error) bool
	}{
		{"REFUSED_STREAM is retriable", func(fr *h2test.Conn, _ func(bool, uint32, ...string), id uint32) {
			fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		}, func(err error) bool { return errors.Is(err, stream.ErrRefused) }},
		{"CANCEL stays a cancel", func(fr *h2test.Conn, _ func(bool, uint32, ...string), id uint32) {
			fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}, func(err error) bool {
			var se *StreamError
			return errors.As(err, &se) && se.Code == http2.ErrCodeCancel && se.Remote
		}},
		{"uppercase response field is malformed", func(_ *h2test.Conn, enc func(bool, uint32, ...string), id uint32) {
			enc(true, id, ":status", "200", "X-Bad", "1")
		}, func(err error) bool {
			var pe *protocol.Error
			return errors.As(err, &pe) && pe.Status == 502
		}},
		{"missing :status is malformed", func(_ *h2test.Conn, enc func(bool, uint32, ...string), id uint32) {
			enc(true, id, "x", "1")
		}, func(err error) bool {
			var pe *protocol.Error
			return errors.As(err, &pe)
		}},
		{"DATA beyond content-length is malformed", func(fr *h2test.Conn, enc func(bool, uint32, ...string), id uint32) {
			enc(false, id, ":status", "200", "content-length", "2")
			fr.WriteData(id, true, []byte("toolong"))
		}, func(err error) bool {
			var pe *protocol.Error
			return errors.As(err, &pe)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startRawServer(t, func(fr *h2test.Conn, enc func(bool, uint32, ...string)) {
				ids := readRequests(fr, 1)
				if len(ids) == 1 {
					tc.reply(fr, enc, ids[0])
				}
				time.Sleep(300 * time.Millisecond)
			})
			p := newTestPool(t, srv.ln.Addr().String())
			r := newRecorder()
			r.start(p)
			if err := r.wait(t); !tc.check(err) {
				t.Fatalf("reset reason %v", err)
			}
		})
	}
}

func TestClientMultiplexesOnOneConnection(t *testing.T) {
	srv := startRawServer(t, func(fr *h2test.Conn, enc func(bool, uint32, ...string)) {
		for _, id := range readRequests(fr, 20) {
			enc(false, id, ":status", "200")
			fr.WriteData(id, true, []byte("hi"))
		}
		time.Sleep(300 * time.Millisecond)
	})
	p := newTestPool(t, srv.ln.Addr().String())
	var rs []*recorder
	for range 20 {
		r := newRecorder()
		r.start(p)
		rs = append(rs, r)
	}
	for _, r := range rs {
		if err := r.wait(t); err != nil || r.status != 200 || r.body.String() != "hi" {
			t.Fatalf("%v %d %q", err, r.status, r.body.String())
		}
	}
	if n := len(srv.conns); n != 1 {
		t.Fatalf("20 streams used %d connections", n)
	}
}
