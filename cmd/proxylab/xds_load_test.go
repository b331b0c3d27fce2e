package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
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

// cpuTicks is the process's user+system CPU time in clock ticks (1/100 s).
func cpuTicks(t *testing.T, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// TestXDSChurnCPU compares the proxy's CPU per request under steady load
// with no pushes and with 10 EDS pushes a second (host set changing each
// time), interleaved in one run.
func TestXDSChurnCPU(t *testing.T) {
	if testing.Short() || runtime.GOOS != "linux" {
		t.Skip("measurement (Linux /proc)")
	}
	cp := xdstest.New(t)
	a, b := startUpstream(t, named("A")), startUpstream(t, named("B"))
	web := freePort(t)
	cp.Set(t, "n1", "c0", twoClusters(web, a.addr, b.addr, "a"))
	p := startProxy(t, xdsBase, "--transport", "netpoll", "--xds", cp.Addr, "--node-id", "n1", "--log-level", "info")
	url := "http://" + web + "/"
	eventually(t, "the xDS listener", func() bool { return strings.HasPrefix(body(h1Client(), url), "A ") })
	version := 0
	round := func(churn bool) (cpuPerReq time.Duration, reqs int64) {
		var n atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			c := h1Client()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if body(c, url) != "" {
						n.Add(1)
					}
				}
			}()
		}
		t0 := cpuTicks(t, p.cmd.Process.Pid)
		end := time.Now().Add(2 * time.Second)
		for time.Now().Before(end) {
			if churn {
				version++
				res := twoClusters(web, a.addr, b.addr, "a")
				hosts := []string{a.addr}
				if version%2 == 1 {
					hosts = append(hosts, b.addr)
				}
				res[resource.EndpointType][0] = xdstest.Endpoints("a", hosts...)
				cp.Set(t, "n1", "c"+itoa(version), res)
			}
			time.Sleep(100 * time.Millisecond)
		}
		ticks := cpuTicks(t, p.cmd.Process.Pid) - t0
		close(stop)
		wg.Wait()
		return time.Duration(ticks) * 10 * time.Millisecond / time.Duration(max(n.Load(), 1)), n.Load()
	}
	var quiet, churn []time.Duration
	for i := 0; i < 2; i++ {
		q, nq := round(false)
		c, nc := round(true)
		quiet, churn = append(quiet, q), append(churn, c)
		t.Logf("round %d: no pushes %v CPU/request (%d requests); 10 EDS pushes/s %v CPU/request (%d requests)", i, q, nq, c, nc)
	}
	t.Logf("proxy CPU per request, netpoll, 8 HTTP/1.1 connections: no pushes %v / %v, 10 EDS pushes/s %v / %v", quiet[0], quiet[1], churn[0], churn[1])
}
