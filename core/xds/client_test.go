package xds

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/proxylab/proxylab/core/config"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
	"github.com/proxylab/proxylab/core/xds/xdstest"
)

func testKnown() config.Known {
	return config.Known{Transports: []string{"netpoll"}, DefaultTransport: "netpoll",
		LBs: []string{"round_robin", "least_request", "random", "ring_hash", "maglev"}, DefaultLB: "round_robin",
		Engines: []string{"gotls"}, DefaultEngine: "gotls", DefaultProtocol: "http1",
		Codecs: []config.Codec{{Name: "http1", Carries: "http"}, {Name: "http2", Carries: "http", Options: h2Options()}}}
}

// recorder is an Applier that keeps what it was given, for the client's
// own tests (the binary's tests apply to the real server).
type recorder struct {
	mu   sync.Mutex
	cfgs []*config.Config
	ch   chan struct{}
}

func (r *recorder) Apply(c *config.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfgs = append(r.cfgs, c)
	close(r.ch)
	r.ch = make(chan struct{})
	return nil
}

// wait waits until the last applied config satisfies f.
func (r *recorder) wait(t *testing.T, what string, f func(*config.Config) bool) *config.Config {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		var last *config.Config
		if len(r.cfgs) > 0 {
			last = r.cfgs[len(r.cfgs)-1]
		}
		ch := r.ch
		r.mu.Unlock()
		if last != nil && f(last) {
			return last
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for an applied config with %s", what)
		}
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cfgs)
}

func hostsOf(c *config.Config, cluster string) string {
	var hs []string
	for _, h := range c.ClusterByName(cluster).Hosts {
		hs = append(hs, h.Address)
	}
	return strings.Join(hs, ",")
}

func resources(t *testing.T, endpoint, routeCluster string) map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ClusterType:  {edsCluster("c")},
		resource.EndpointType: {cla("c", endpoint)},
		resource.ListenerType: {httpListener(t, "l", "127.0.0.1", 0, "rc", nil)},
		resource.RouteType:    {routeCfg("rc", prefixRoute("/", routeCluster))},
	}
}

func TestClientADS(t *testing.T) {
	for _, delta := range []bool{false, true} {
		name := "sotw"
		if delta {
			name = "delta"
		}
		t.Run(name, func(t *testing.T) { testClientADS(t, delta) })
	}
}

func testClientADS(t *testing.T, delta bool) {
	cp := xdstest.New(t)
	cp.Set(t, "n1", "v1", resources(t, "127.0.0.1:7001", "c"))
	base, err := config.ParseWith([]byte("listeners: []\n"), testKnown(), config.BuildOptions{Dynamic: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{ch: make(chan struct{})}
	c := New(Options{Address: cp.Addr, Delta: delta, Node: xdstest.Node("n1"), Base: base, Known: testKnown(), Apply: rec,
		Files: DirStore{Dir: t.TempDir()}, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Debounce: 5 * time.Millisecond, BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Everything arrives, the listener only with its routes and cluster.
	cfg := rec.wait(t, "listener l", func(c *config.Config) bool { return len(c.Listeners) == 1 })
	if hostsOf(cfg, "c") != "127.0.0.1:7001" || cfg.Listeners[0].HTTP.VirtualHosts[0] != "rc/vh" {
		t.Fatalf("first config: hosts %q, vhosts %v", hostsOf(cfg, "c"), cfg.Listeners[0].HTTP.VirtualHosts)
	}
	for _, typ := range []string{ClusterType, EndpointType, ListenerType, RouteType} {
		cp.WaitACK(t, typ, "v1", 10*time.Second)
	}
	// Warming order: no listener request before the clusters answered.
	var sawCDS bool
	for _, r := range cp.Requests() {
		if r.TypeURL == ClusterType {
			sawCDS = true
		}
		if r.TypeURL == ListenerType && !sawCDS {
			t.Fatal("listeners were requested before clusters")
		}
	}

	// An EDS change moves the hosts in one push.
	cp.Set(t, "n1", "v2", resources(t, "127.0.0.1:7002", "c"))
	rec.wait(t, "host 7002", func(c *config.Config) bool { return hostsOf(c, "c") == "127.0.0.1:7002" })

	// A route to a cluster never announced is NACKed, naming resource and
	// field; nothing is applied.
	before := rec.count()
	cp.Set(t, "n1", "v3", resources(t, "127.0.0.1:7002", "nope"))
	nack := cp.WaitFor(t, 10*time.Second, "NACK of the route", func(r xdstest.Request) bool { return r.TypeURL == RouteType && r.Error != "" })
	if !strings.Contains(nack.Error, `RouteConfiguration "rc"`) || !strings.Contains(nack.Error, `routes[0].cluster: unknown cluster "nope"`) {
		t.Fatalf("NACK error_detail does not name the resource and field: %s", nack.Error)
	}
	if !delta && nack.Version != "v2" {
		t.Fatalf("NACK carries version %q, want the last accepted v2", nack.Version)
	}
	if rec.count() != before {
		t.Fatal("a NACKed update was applied")
	}
	if c.Stats().of(RouteType).rejections.Load() == 0 {
		t.Fatal("rejection not counted")
	}

	// Control plane dies; a fixed version waits in its cache; it comes back
	// and the client catches up on its own.
	cp.Stop()
	time.Sleep(100 * time.Millisecond)
	cp.Set(t, "n1", "v4", resources(t, "127.0.0.1:7004", "c"))
	cp.Restart(t)
	rec.wait(t, "host 7004 after the restart", func(c *config.Config) bool { return hostsOf(c, "c") == "127.0.0.1:7004" })
	if c.Stats().reconnects.Load() == 0 {
		t.Fatal("reconnect not counted")
	}
	// The version is recorded with the ACK, which may come just after the
	// config was applied.
	for deadline := time.Now().Add(10 * time.Second); !delta; time.Sleep(10 * time.Millisecond) {
		v := c.Stats().of(EndpointType).Version()
		if v == "v4" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EDS version after catch-up: %q", v)
		}
	}

	// Resources removed: the listener goes away.
	cp.Set(t, "n1", "v5", map[resource.Type][]types.Resource{
		resource.ClusterType: {edsCluster("c")}, resource.EndpointType: {cla("c", "127.0.0.1:7004")},
	})
	rec.wait(t, "no listener", func(c *config.Config) bool { return len(c.Listeners) == 0 })
}

// TestClientDebounce: a flood of pushes is coalesced into few Applies and
// the last version always wins.
func TestClientDebounce(t *testing.T) {
	cp := xdstest.New(t)
	cp.Set(t, "n1", "f0", resources(t, "127.0.0.1:8000", "c"))
	base, _ := config.ParseWith([]byte("listeners: []\n"), testKnown(), config.BuildOptions{Dynamic: true})
	rec := &recorder{ch: make(chan struct{})}
	c := New(Options{Address: cp.Addr, Node: xdstest.Node("n1"), Base: base, Known: testKnown(), Apply: rec,
		Files: DirStore{Dir: t.TempDir()}, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Debounce: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	rec.wait(t, "the first config", func(c *config.Config) bool { return len(c.Listeners) == 1 })
	before := rec.count()
	for i := 1; i <= 60; i++ {
		cp.Set(t, "n1", "f"+strconv.Itoa(i), resources(t, "127.0.0.1:"+strconv.Itoa(8000+i), "c"))
		time.Sleep(5 * time.Millisecond)
	}
	rec.wait(t, "the last push", func(c *config.Config) bool { return hostsOf(c, "c") == "127.0.0.1:8060" })
	if n := rec.count() - before; n >= 30 {
		t.Fatalf("60 pushes in ~0.3s gave %d Applies: not coalesced", n)
	} else {
		t.Logf("60 pushes → %d Applies", n)
	}
}

// h2Options describes the HTTP/2 codec's option blocks as the binary does.
func h2Options() []config.CodecOption {
	var out []config.CodecOption
	for _, b := range (h2s.Codec{}).OptionBlocks() {
		out = append(out, config.CodecOption{Key: b.Key, Listener: b.Listener, Decode: b.Decode})
	}
	return out
}
