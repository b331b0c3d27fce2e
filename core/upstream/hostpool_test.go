package upstream

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
	"github.com/proxylab/proxylab/transport/rawepoll"
)

// getter sends GET / on the stream the pool gives and reports the end of
// the response (or a failure) on done.
type getter struct {
	done chan error
}

func (g *getter) OnPoolReady(enc stream.RequestEncoder, _ bool) {
	h := &stream.Head{Method: []byte("GET"), Target: []byte("/"), Minor: 1, ContentLength: -1}
	h.Headers.Append([]byte("Host"), []byte("up"))
	enc.EncodeHead(h, true)
}
func (g *getter) OnPoolFailure(f stream.PoolFailure, err error) { g.done <- err }
func (g *getter) DecodeInterim(*stream.Head)                    {}
func (g *getter) DecodeHead(_ *stream.Head, end bool) {
	if end {
		g.done <- nil
	}
}
func (g *getter) DecodeData(_ []byte, end bool) {
	if end {
		g.done <- nil
	}
}
func (g *getter) DecodeTrailers(*protocol.Headers) { g.done <- nil }
func (g *getter) OnAboveWriteHighWatermark()       {}
func (g *getter) OnBelowWriteLowWatermark()        {}
func (g *getter) OnReset(err error)                { g.done <- err }

// get runs one request through h's pools under sess.
func get(t *testing.T, h *Host, sess stream.Session) {
	t.Helper()
	g := &getter{done: make(chan error, 2)}
	sess.Lock()
	h.HTTPPool().NewStream(g, sess, g)
	sess.Unlock()
	select {
	case err := <-g.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no response")
	}
}

// downstream returns a session on a real connection of tr (dialled to a
// throwaway listener), and its loop (-1 without one).
func downstream(t *testing.T, tr transport.Transport) (*network.Conn, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		if c, err := ln.Accept(); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	ch := make(chan transport.Conn, 1)
	tr.Dial("tcp", ln.Addr().String(), 5*time.Second, func(c transport.Conn, err error) {
		if err != nil {
			t.Error(err)
		}
		ch <- c
	})
	tc := <-ch
	if tc == nil {
		t.FailNow()
	}
	t.Cleanup(func() { tc.Close() })
	loop := -1
	if l, ok := tc.(transport.Looper); ok {
		loop = l.Loop()
	}
	return network.NewConn(tc, nil, nil), loop
}

var registerTestLB sync.Once

// A host keeps one pool per event loop of the downstream transport, so
// requests from two loops use two upstream connections even one after the
// other; without loops (netpoll), or under a connection limit, one pool
// serves every downstream connection.
func TestHostPoolPerLoop(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer up.Close()
	addr := up.Listener.Addr().String()
	registerTestLB.Do(func() { RegisterLB("hostpool-test", NewRoundRobin) })
	cases := []struct {
		name      string
		transport string
		maxConns  int
		wantConns uint64
	}{
		{"rawepoll: one pool per loop", "rawepoll", 0, 2},
		{"rawepoll with max_connections: one pool", "rawepoll", 4, 1},
		{"netpoll: one pool", "netpoll", 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tr transport.Transport
			var err error
			if tc.transport == "rawepoll" {
				tr, err = rawepoll.New(transport.Options{Workers: 2})
			} else {
				tr, err = netpoll.New(transport.Options{})
			}
			if err != nil {
				t.Skip(err)
			}
			defer tr.Close()
			cfg := ClusterConfig{Name: "c", LB: "hostpool-test", Hosts: []HostConfig{{Address: addr}}, Carries: "http",
				Codec: h1s.Codec{}.NewClient(&stream.ClientOptions{ConnectTimeout: 5 * time.Second, MaxConnections: tc.maxConns})}
			c, err := NewCluster(cfg, tr)
			if err != nil {
				t.Fatal(err)
			}
			h := c.Hosts()[0]
			a, la := downstream(t, tr)
			b, lb := downstream(t, tr)
			if tc.transport == "rawepoll" && (la < 0 || lb < 0 || la == lb) {
				t.Fatalf("downstream loops %d and %d: want two distinct loops", la, lb)
			}
			// The decoder hears the end of a response before its connection
			// is released (same event): wait for the release each time.
			waitIdle := func(n int) {
				t.Helper()
				for deadline := time.Now().Add(5 * time.Second); h.HTTPPool().Idle() != n; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%d idle connections, want %d", h.HTTPPool().Idle(), n)
					}
				}
			}
			get(t, h, a)
			waitIdle(1)
			get(t, h, b)
			waitIdle(int(tc.wantConns))
			get(t, h, a) // reuses its loop's connection
			waitIdle(int(tc.wantConns))
			ps := h.HTTPPool().Counters()
			if n := ps.ConnectsTotal.Load(); n != tc.wantConns {
				t.Fatalf("%d upstream connections, want %d", n, tc.wantConns)
			}
			if n := ps.Reuses.Load(); n != 3-tc.wantConns {
				t.Fatalf("%d reuses, want %d", n, 3-tc.wantConns)
			}
			h.HTTPPool().Drain()
			waitIdle(0)
		})
	}
}
