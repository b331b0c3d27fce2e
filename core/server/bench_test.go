package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
	"github.com/proxylab/proxylab/core/stream"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
	"github.com/proxylab/proxylab/core/stream/rpc"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

func init() {
	// Test binaries register what the proxylab binary registers in cmd/.
	transport.Register(netpoll.Name, netpoll.New)
	upstream.RegisterLB("round_robin", upstream.NewRoundRobin)
	stream.Register(h2s.Codec{})
	stream.Register(rpc.Codec{Wire: bolt.Codec{}})
	stream.Register(rpc.Codec{Wire: dubbo.Codec{}})
	stream.Register(h1s.Codec{})
}

// known is what the binary tells validation.
func known() config.Known {
	return config.Known{Transports: transport.Names(), DefaultTransport: netpoll.Name, LBs: upstream.LBNames(), Codecs: KnownCodecs(), DefaultProtocol: "http1",
		HTTPFilter: filter.DecodeConfig, HTTPFilterOverride: filter.DecodeOverride}
}

// rawHTTPUpstream answers every request on a connection with a fixed
// 20-byte response, parsing only enough to find each request's end.
func rawHTTPUpstream(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					for {
						line, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func startBenchProxy(tb testing.TB, up string) (*Server, string) {
	return startBenchProxyWith(tb, up, "{}", "")
}

// startBenchProxyWith runs a proxy whose http_proxy block and virtual host
// extras (YAML flow mappings' inside) are given.
func startBenchProxyWith(tb testing.TB, up, httpProxy, vhExtra string) (*Server, string) {
	yml := fmt.Sprintf(`listeners:
  - {name: http, address: "127.0.0.1:0", http_proxy: %s}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]%s}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, httpProxy, vhExtra, up)
	cfg, err := config.Parse([]byte(yml), known())
	if err != nil {
		tb.Fatal(err)
	}
	tr, _ := transport.New("netpoll", transport.Options{})
	s, err := New(cfg, tr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s, s.Listeners()[0].Addr().String()
}

// BenchmarkProxyHTTP1KeepAlive is one full proxied request per op over a
// keep-alive connection on loopback: client → proxylab → upstream → back.
// allocs/op counts the whole process, but the raw client and upstream
// allocate nothing per request, so they are the proxy's.
func BenchmarkProxyHTTP1KeepAlive(b *testing.B) {
	_, addr := startBenchProxy(b, rawHTTPUpstream(b))
	benchKeepAlive(b, addr, []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n"))
}

// benchKeepAlive sends req b.N times on one connection to addr.
func benchKeepAlive(b *testing.B, addr string, req []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	readResponse := func() {
		got := 0
		for {
			n, err := c.Read(buf[got:])
			if err != nil {
				b.Fatal(err)
			}
			got += n
			if i := bytes.Index(buf[:got], []byte("\r\n\r\n")); i >= 0 {
				cl := bytes.Index(buf[:i], []byte("Content-Length: "))
				n, _ := strconv.Atoi(string(buf[cl+16 : cl+16+bytes.IndexByte(buf[cl+16:], '\r')]))
				if got >= i+4+n {
					return
				}
			}
		}
	}
	for i := 0; i < 100; i++ { // warm the pools
		c.Write(req)
		readResponse()
	}
	g0, a0 := buffer.PoolStats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		readResponse()
	}
	b.StopTimer()
	g1, a1 := buffer.PoolStats()
	if g1 > g0 {
		// Share of buffer requests served from the pool instead of allocated.
		b.ReportMetric(100*(1-float64(a1-a0)/float64(g1-g0)), "%buf-reuse")
		b.ReportMetric(float64(g1-g0)/float64(b.N), "bufs/op")
	}
}
