package main

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/proxylab/proxylab/core/xds/xdstest"
)

// twoClusters is a listener on web routing "/" to cluster root, with
// clusters a and b on their upstreams.
func twoClusters(web, a, b, root string) map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ClusterType:  {xdstest.EDSCluster("a"), xdstest.EDSCluster("b")},
		resource.EndpointType: {xdstest.Endpoints("a", a), xdstest.Endpoints("b", b)},
		resource.ListenerType: {xdstest.HTTPListener("web", web, "main")},
		resource.RouteType:    {xdstest.Routes("main", xdstest.Prefix("/", root))},
	}
}

// TestXDSRouteChangeUnderLoad: route pushes under steady load (25
// HTTP/1.1 and 25 h2c connections) fail no request.
func TestXDSRouteChangeUnderLoad(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		cp := xdstest.New(t)
		a, b := startUpstream(t, named("A")), startUpstream(t, named("B"))
		web := freePort(t)
		cp.Set(t, "n1", "v0", twoClusters(web, a.addr, b.addr, "a"))
		startProxy(t, xdsBase, "--transport", tr, "--xds", cp.Addr, "--node-id", "n1", "--xds-debounce", "5ms")
		url := "http://" + web + "/"
		eventually(t, "the xDS listener", func() bool { return body(h1Client(), url) == "A HTTP/1.1" })

		var ok, failed, sawA, sawB atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			c := h1Client()
			if i%2 == 1 {
				c = h2cClient() // its own transport: one connection each
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					got := body(c, url)
					switch got {
					case "A HTTP/1.1":
						sawA.Add(1)
						ok.Add(1)
					case "B HTTP/1.1":
						sawB.Add(1)
						ok.Add(1)
					default:
						failed.Add(1)
						firstErr.CompareAndSwap(nil, got)
					}
				}
			}()
		}
		for i := 1; i <= 20; i++ {
			root := "a"
			if i%2 == 1 {
				root = "b"
			}
			cp.Set(t, "n1", "v"+itoa(i), twoClusters(web, a.addr, b.addr, root))
			time.Sleep(50 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		t.Logf("%s: %d requests, %d failed, A %d, B %d", tr, ok.Load()+failed.Load(), failed.Load(), sawA.Load(), sawB.Load())
		if failed.Load() != 0 {
			t.Fatalf("%d requests failed during route pushes; first: %q", failed.Load(), firstErr.Load())
		}
		if sawA.Load() == 0 || sawB.Load() == 0 {
			t.Fatal("the route pushes did not move traffic")
		}
	})
}

// TestXDSPushLatency measures the time from a push (SetSnapshot on the
// control plane) to the first request served by the new config, over 100
// EDS pushes alternating the cluster's host.
func TestXDSPushLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	for _, tr := range []string{"netpoll", "rawepoll"} {
		if !slices.Contains(transports, tr) {
			continue
		}
		t.Run(tr, func(t *testing.T) {
			cp := xdstest.New(t)
			a, b := startUpstream(t, named("A")), startUpstream(t, named("B"))
			web := freePort(t)
			cp.Set(t, "n1", "p0", twoClusters(web, a.addr, b.addr, "a"))
			startProxy(t, xdsBase, "--transport", tr, "--xds", cp.Addr, "--node-id", "n1", "--xds-debounce", "1ms")
			url := "http://" + web + "/"
			c := h1Client()
			eventually(t, "the xDS listener", func() bool { return body(c, url) == "A HTTP/1.1" })
			var lat []time.Duration
			for i := 1; i <= 100; i++ {
				host, want := b.addr, "B HTTP/1.1"
				if i%2 == 0 {
					host, want = a.addr, "A HTTP/1.1"
				}
				res := twoClusters(web, a.addr, b.addr, "a")
				res[resource.EndpointType][0] = xdstest.Endpoints("a", host)
				start := time.Now()
				cp.Set(t, "n1", "p"+itoa(i), res)
				for body(c, url) != want {
					if time.Since(start) > 20*time.Second {
						t.Fatalf("push %d not served within 20s", i)
					}
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			t.Logf("push to first request served by the new config (%s, 100 EDS pushes): p50 %v, p99 %v, max %v",
				tr, lat[49].Round(10*time.Microsecond), lat[98].Round(10*time.Microsecond), lat[99].Round(10*time.Microsecond))
		})
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
