// Package xdstest runs a real control plane for tests: go-control-plane's
// gRPC ADS server over its snapshot cache (SotW and delta), on a loopback
// port, recording what clients ACK and NACK.
package xdstest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// Request is one request a client sent, as the server saw it.
type Request struct {
	TypeURL, Version, Nonce string
	Names                   []string
	// Error is the NACK's error_detail message ("" for an ACK or a
	// subscription).
	Error string
	Delta bool
	At    time.Time
}

// ControlPlane is a running go-control-plane server. The cache outlives a
// Stop, so a restarted server on the same address serves the same
// snapshot.
type ControlPlane struct {
	Cache cachev3.SnapshotCache
	Addr  string

	mu       sync.Mutex
	requests []Request
	changed  chan struct{}
	grpc     *grpc.Server
	cancel   context.CancelFunc
}

// New starts a control plane on a random loopback port.
func New(t testing.TB) *ControlPlane {
	cp := &ControlPlane{Cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), changed: make(chan struct{})}
	cp.start(t, "127.0.0.1:0")
	t.Cleanup(cp.Stop)
	return cp
}

func (cp *ControlPlane) start(t testing.TB, addr string) {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger a moment on restart
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("xdstest: %v", err)
	}
	cp.Addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			cp.record(Request{TypeURL: r.GetTypeUrl(), Version: r.GetVersionInfo(), Nonce: r.GetResponseNonce(),
				Names: r.GetResourceNames(), Error: r.GetErrorDetail().GetMessage()})
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			cp.record(Request{TypeURL: r.GetTypeUrl(), Nonce: r.GetResponseNonce(), Names: r.GetResourceNamesSubscribe(),
				Error: r.GetErrorDetail().GetMessage(), Delta: true})
			return nil
		},
	}
	srv := serverv3.NewServer(ctx, cp.Cache, cb)
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	cp.mu.Lock()
	cp.grpc, cp.cancel = g, cancel
	cp.mu.Unlock()
	go g.Serve(ln)
}

// Stop kills the server (streams are cut, as when a control plane dies).
func (cp *ControlPlane) Stop() {
	cp.mu.Lock()
	g, cancel := cp.grpc, cp.cancel
	cp.grpc = nil
	cp.mu.Unlock()
	if g != nil {
		g.Stop()
		cancel()
	}
}

// Restart starts the server again on the same address.
func (cp *ControlPlane) Restart(t testing.TB) { cp.start(t, cp.Addr) }

func (cp *ControlPlane) record(r Request) {
	r.At = time.Now()
	cp.mu.Lock()
	cp.requests = append(cp.requests, r)
	close(cp.changed)
	cp.changed = make(chan struct{})
	cp.mu.Unlock()
}

// Requests returns what clients sent so far.
func (cp *ControlPlane) Requests() []Request {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]Request(nil), cp.requests...)
}

// WaitFor waits until a request satisfies f, returning it.
func (cp *ControlPlane) WaitFor(t testing.TB, timeout time.Duration, what string, f func(Request) bool) Request {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		cp.mu.Lock()
		reqs, ch := cp.requests[seen:], cp.changed
		seen = len(cp.requests)
		cp.mu.Unlock()
		for _, r := range reqs {
			if f(r) {
				return r
			}
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("xdstest: timed out waiting for %s", what)
		}
	}
}

// WaitACK waits for an ACK of version of typeURL (SotW: the request
// carries the version; delta: a request with the response's nonce and no
// error after the version was set).
func (cp *ControlPlane) WaitACK(t testing.TB, typeURL, version string, timeout time.Duration) {
	t.Helper()
	cp.WaitFor(t, timeout, fmt.Sprintf("ACK of %s version %s", typeURL, version), func(r Request) bool {
		return r.TypeURL == typeURL && r.Error == "" && r.Nonce != "" && (r.Delta || r.Version == version)
	})
}

// Set publishes a snapshot for node.
func (cp *ControlPlane) Set(t testing.TB, node, version string, res map[resource.Type][]types.Resource) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatalf("xdstest: %v", err)
	}
	if err := cp.Cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatalf("xdstest: %v", err)
	}
}

// Node is a node with id.
func Node(id string) *corev3.Node { return &corev3.Node{Id: id, Cluster: "test"} }
