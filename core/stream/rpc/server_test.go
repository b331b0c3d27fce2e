package rpc

// Package tests drive ServerConn over real loopback sockets and the netpoll
// transport, with bolt and Dubbo frames written by a raw client; the
// application side answers each request itself, as the proxy would.

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// app answers by the request's target (/service/method): "echo" with a
// response frame of the codec whose ID is deliberately wrong (ServerConn
// must put the downstream's back), "busy" with a local reply 503, "http"
// with a non-frame 200 head (an HTTP upstream: 502 error frame).
type app struct {
	codec    xprotocol.Codec
	response func(id uint64) []byte
	mu       sync.Mutex
	targets  []string
	hosts    []string
}

type appStream struct {
	a   *app
	enc stream.ResponseEncoder
}

func (a *app) NewStream(enc stream.ResponseEncoder) stream.RequestDecoder {
	return &appStream{a: a, enc: enc}
}

func (s *appStream) DecodeHead(h *stream.Head, end bool) {
	target := string(h.Target)
	s.a.mu.Lock()
	s.a.targets = append(s.a.targets, target)
	s.a.hosts = append(s.a.hosts, string(h.Headers.Get("host")))
	s.a.mu.Unlock()
	switch {
	case bytes.HasSuffix(h.Target, []byte("/busy")):
		s.enc.LocalReply(503, "no healthy upstream")
	case bytes.HasSuffix(h.Target, []byte("/http")):
		s.enc.EncodeHead(&stream.Head{Status: 200}, true)
	default:
		s.enc.EncodeHead(&stream.Head{Status: 200, Frame: s.a.response(424242)}, true)
	}
}
func (s *appStream) DecodeData([]byte, bool)          {}
func (s *appStream) DecodeTrailers(*protocol.Headers) {}
func (s *appStream) OnAboveWriteHighWatermark()       {}
func (s *appStream) OnBelowWriteLowWatermark()        {}
func (s *appStream) OnReset(error)                    {}

func startServer(t *testing.T, a *app, st *Stats) string {
	t.Helper()
	tr, err := netpoll.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	ln, err := tr.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	set := &ServerSettings{Codec: a.codec, Stats: st}
	ln.Start(func(c transport.Conn) {
		network.NewConn(c, []network.ReadFilter{NewServerConn(set, a)}, nil).Start()
	})
	return ln.Addr().String()
}

// readFrames reads until n whole frames arrived (or the deadline).
func readFrames(t *testing.T, c net.Conn, codec xprotocol.Codec, n int) []xprotocol.Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf []byte
	var out []xprotocol.Frame
	tmp := make([]byte, 4096)
	for len(out) < n {
		for {
			var f xprotocol.Frame
			used, err := codec.Decode(buf, &f)
			if err != nil {
				t.Fatalf("the server wrote a frame the codec refuses: %v", err)
			}
			if used == 0 {
				break
			}
			f.Raw = nil
			f.Headers = protocol.Headers{} // alias buf
			out = append(out, f)
			buf = buf[used:]
		}
		if len(out) >= n {
			break
		}
		m, err := c.Read(tmp)
		if err != nil {
			t.Fatalf("reading %d frames, got %d: %v", n, len(out), err)
		}
		buf = append(buf, tmp[:m]...)
	}
	return out
}

func boltReq(id uint32, method string, oneway bool) []byte {
	return bolt.AppendRequest(nil, false, id, oneway, time.Second, "com.alipay.sofa.rpc.core.request.SofaRequest",
		[]bolt.Header{{Key: "service", Value: "svc"}, {Key: "sofa_head_method_name", Value: method}}, []byte("body"))
}

func dubboReq(id uint64, method string, twoWay bool) []byte {
	var body []byte
	for _, s := range []string{"2.0.2", "svc", "1.0", method} {
		body = dubbo.AppendString(body, s)
	}
	return dubbo.AppendRequest(nil, id, twoWay, body)
}

// TestServerConnExchanges: per codec, requests are answered under their own
// IDs (pipelined or not), local replies and non-frame answers become the
// protocol's error frames, heartbeats are answered by the connection,
// oneways get nothing, and a malformed frame closes the connection and is
// counted.
func TestServerConnExchanges(t *testing.T) {
	codecs := []struct {
		name     string
		codec    xprotocol.Codec
		req      func(id uint64, method string) []byte
		oneway   func(id uint64) []byte
		response func(id uint64) []byte
	}{
		{"bolt", bolt.Codec{},
			func(id uint64, m string) []byte { return boltReq(uint32(id), m, false) },
			func(id uint64) []byte { return boltReq(uint32(id), "fire", true) },
			func(id uint64) []byte { return bolt.AppendResponse(nil, uint32(id), 0, "", []byte("hello")) }},
		{"dubbo", dubbo.Codec{},
			func(id uint64, m string) []byte { return dubboReq(id, m, true) },
			func(id uint64) []byte { return dubboReq(id, "fire", false) },
			func(id uint64) []byte { return dubbo.AppendResponse(nil, id, 20, dubbo.AppendString(nil, "hello")) }},
	}
	type want struct {
		id     uint64
		kind   xprotocol.Kind
		status int // codec.HTTPStatus of the answer
	}
	for _, cd := range codecs {
		t.Run(cd.name, func(t *testing.T) {
			cases := []struct {
				name   string
				write  [][]byte // each is one write
				answer []want   // in any order
			}{
				{"request", [][]byte{cd.req(7, "echo")}, []want{{7, xprotocol.Response, 200}}},
				{"pipelined in one write", [][]byte{append(cd.req(8, "echo"), cd.req(9, "echo")...)},
					[]want{{8, xprotocol.Response, 200}, {9, xprotocol.Response, 200}}},
				{"split across writes", func() [][]byte { f := cd.req(10, "echo"); return [][]byte{f[:5], f[5:]} }(),
					[]want{{10, xprotocol.Response, 200}}},
				{"local reply", [][]byte{cd.req(11, "busy")}, []want{{11, xprotocol.Response, 503}}},
				{"non-frame answer", [][]byte{cd.req(12, "http")}, []want{{12, xprotocol.Response, 502}}},
				{"heartbeat", [][]byte{cd.codec.AppendHeartbeat(nil, 13)}, []want{{13, xprotocol.HeartbeatReply, 0}}},
				{"oneway then request", [][]byte{cd.oneway(14), cd.req(15, "echo")}, []want{{15, xprotocol.Response, 200}}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					a := &app{codec: cd.codec, response: cd.response}
					addr := startServer(t, a, &Stats{})
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					for i, w := range tc.write {
						if i > 0 {
							// Give the server a read of the bytes so far, so
							// the parts arrive as separate reads (not needed
							// for correctness: the test passes either way).
							time.Sleep(5 * time.Millisecond)
						}
						if _, err := c.Write(w); err != nil {
							t.Fatal(err)
						}
					}
					got := readFrames(t, c, cd.codec, len(tc.answer))
					seen := map[uint64]bool{}
					for _, f := range got {
						seen[f.ID] = true
						var w *want
						for i := range tc.answer {
							if tc.answer[i].id == f.ID {
								w = &tc.answer[i]
							}
						}
						if w == nil {
							t.Fatalf("answer with ID %d, want IDs %v", f.ID, tc.answer)
						}
						if f.Kind != w.kind {
							t.Errorf("ID %d: kind %v, want %v", f.ID, f.Kind, w.kind)
						}
						if w.kind == xprotocol.Response {
							if st := cd.codec.HTTPStatus(&f); st != w.status {
								t.Errorf("ID %d: status %d, want %d", f.ID, st, w.status)
							}
						}
					}
					a.mu.Lock()
					defer a.mu.Unlock()
					for i, tg := range a.targets {
						if tg != "/svc/echo" && tg != "/svc/busy" && tg != "/svc/http" && tg != "/svc/fire" {
							t.Errorf("target %q, want /svc/<method>", tg)
						}
						if a.hosts[i] != "svc" {
							t.Errorf("host %q, want the service", a.hosts[i])
						}
					}
				})
			}

			t.Run("malformed frame", func(t *testing.T) {
				st := &Stats{}
				a := &app{codec: cd.codec, response: cd.response}
				c, err := net.Dial("tcp", startServer(t, a, st))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				// A good request is answered; then garbage where the next
				// frame's magic should be ends the connection.
				c.Write(cd.req(21, "echo"))
				readFrames(t, c, cd.codec, 1)
				c.Write(bytes.Repeat([]byte{0xEE}, 64))
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if n, err := c.Read(make([]byte, 64)); err == nil {
					t.Fatalf("read %d bytes after a malformed frame, want the connection closed", n)
				}
				if st.BadFrames.Load() != 1 || st.Requests.Load() != 1 {
					t.Fatalf("bad frames %d, requests %d; want 1 and 1", st.BadFrames.Load(), st.Requests.Load())
				}
			})
			// Bad input loses nothing already answered: a heartbeat and
			// garbage in one read get the heartbeat's reply, then the close.
			t.Run("reply queued before a malformed frame", func(t *testing.T) {
				st := &Stats{}
				a := &app{codec: cd.codec, response: cd.response}
				c, err := net.Dial("tcp", startServer(t, a, st))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write(append(cd.codec.AppendHeartbeat(nil, 31), bytes.Repeat([]byte{0xEE}, 64)...))
				if fs := readFrames(t, c, cd.codec, 1); fs[0].ID != 31 || fs[0].Kind != xprotocol.HeartbeatReply {
					t.Fatalf("got frame %d kind %v, want the heartbeat reply 31", fs[0].ID, fs[0].Kind)
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if n, err := c.Read(make([]byte, 64)); err == nil {
					t.Fatalf("read %d bytes after a malformed frame, want the connection closed", n)
				}
			})
		})
	}
}
