package proxy_test

// Package tests run the http_proxy and tcp_proxy filters on a netpoll
// listener over real loopback sockets, in front of real upstreams: a
// route forwards to a cluster, the proxy answers locally what it cannot
// forward, and tcp_proxy carries bytes both ways with the half-close.

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/proxy"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

func TestMain(m *testing.M) {
	upstream.RegisterLB(upstream.DefaultLB, upstream.NewWeightedRoundRobin)
	os.Exit(m.Run())
}

func newTransport(t *testing.T) transport.Transport {
	t.Helper()
	tr, err := netpoll.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func newCluster(t *testing.T, tr transport.Transport, name string, addrs ...string) *upstream.Cluster {
	t.Helper()
	codec := h1s.Codec{}
	cc := upstream.ClusterConfig{Name: name, Carries: codec.Carries(),
		Codec: codec.NewClient(&stream.ClientOptions{ConnectTimeout: 5 * time.Second, IdleTimeout: time.Minute,
			MaxConnections: 1024, MaxPending: 1024, HighWatermark: 256 << 10}),
		Breakers: upstream.Breakers{MaxConnections: 1024, MaxPending: 1024, MaxRequests: 1024, MaxRetries: 3}}
	for _, a := range addrs {
		cc.Hosts = append(cc.Hosts, upstream.HostConfig{Address: a, Weight: 1})
	}
	c, err := upstream.NewCluster(cc, tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Drain)
	return c
}

// serve runs filters from chain on a netpoll loopback listener.
func serve(t *testing.T, tr transport.Transport, chain func() network.ReadFilter) string {
	t.Helper()
	ln, err := network.NewListener("test", tr, "127.0.0.1:0", nil, func() ([]network.ReadFilter, []network.WriteFilter) {
		return []network.ReadFilter{chain()}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ln.Start()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestHTTPProxyRoutes: requests reach the cluster their route names (with
// the path and a body intact, forwarding headers added), and what cannot be
// forwarded is answered by the proxy with the right status.
func TestHTTPProxyRoutes(t *testing.T) {
	tr := newTransport(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Upstream", "api")
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" host="+r.Host+" xff="+r.Header.Get("X-Forwarded-For")+" body="+string(b))
	}))
	defer up.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	mgr := upstream.NewManager([]*upstream.Cluster{
		newCluster(t, tr, "api", up.Listener.Addr().String()),
		newCluster(t, tr, "down", deadAddr),
	})
	timers := timer.New(10 * time.Millisecond)
	so := &stream.ServerOptions{MaxRequestLine: h1.DefaultLimits.MaxRequestLine, MaxHeaderBytes: h1.DefaultLimits.MaxHeaderBytes,
		MaxHeaders: h1.DefaultLimits.MaxHeaders, HeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, Linger: time.Second,
		HighWatermark: 256 << 10, Timers: timers}
	hc := &proxy.HTTPConfig{
		Router: router.New([]router.VirtualHost{{Name: "site", Domains: []string{"example.com"}, Routes: []router.Route{
			{Prefix: "/api/", Cluster: "api", Timeout: 10 * time.Second},
			{Prefix: "/down", Cluster: "down", Timeout: 10 * time.Second},
			{Prefix: "/ghost", Cluster: "ghost", Timeout: 10 * time.Second},
			{Path: "/ping", Direct: &router.DirectResponse{Status: 200, Body: []byte("pong")}},
		}}}),
		Clusters:         mgr,
		Server:           *so,
		Codecs:           []stream.Codec{h1s.Codec{}},
		Servers:          []stream.Server{h1s.Codec{}.NewServer(so)},
		MaxRequestBuffer: 64 << 10,
		Log:              slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	addr := serve(t, tr, func() network.ReadFilter { return proxy.NewHTTPFilter(hc) })

	for _, tc := range []struct {
		name, req  string
		status     int
		body       string // substring
		fromUpstrm bool
	}{
		{"route to cluster", "GET /api/users?id=7 HTTP/1.1\r\nHost: example.com\r\n\r\n", 200,
			"GET /api/users?id=7 host=example.com xff=127.0.0.1 body=", true},
		{"body forwarded", "POST /api/echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello", 200,
			"POST /api/echo host=example.com xff=127.0.0.1 body=hello", true},
		{"chunked body forwarded", "POST /api/c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200,
			"body=abc", true},
		{"direct response", "GET /ping HTTP/1.1\r\nHost: example.com\r\n\r\n", 200, "pong", false},
		{"no route for the path", "GET /else HTTP/1.1\r\nHost: example.com\r\n\r\n", 404, "", false},
		{"no virtual host", "GET /api/x HTTP/1.1\r\nHost: other.org\r\n\r\n", 404, "", false},
		{"cluster not found", "GET /ghost HTTP/1.1\r\nHost: example.com\r\n\r\n", 503, "", false},
		{"upstream refuses", "GET /down HTTP/1.1\r\nHost: example.com\r\n\r\n", 503, "upstream connect error", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(15 * time.Second))
			io.WriteString(c, tc.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) {
				t.Fatalf("%d %q, want %d with %q", resp.StatusCode, b, tc.status, tc.body)
			}
			if got := resp.Header.Get("X-Upstream") == "api"; got != tc.fromUpstrm {
				t.Fatalf("answered by the upstream: %v, want %v", got, tc.fromUpstrm)
			}
		})
	}

	// Keep-alive: three requests on one connection, all forwarded.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		io.WriteString(c, "GET /api/k HTTP/1.1\r\nHost: example.com\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on a kept-alive connection: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
}

// TestTCPProxyBytes: tcp_proxy carries bytes both ways unchanged, passes a
// half-close on, and counts the upstream side.
func TestTCPProxyBytes(t *testing.T) {
	tr := newTransport(t)
	// An upstream that uppercases until the client's FIN, then says "bye"
	// and closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						c.Write([]byte(strings.ToUpper(string(buf[:n]))))
					}
					if err != nil {
						c.Write([]byte("bye"))
						return
					}
				}
			}()
		}
	}()
	st := &proxy.TCPStats{}
	timers := timer.New(10 * time.Millisecond)
	tc := &proxy.TCPConfig{Cluster: newCluster(t, tr, "echo", ln.Addr().String()), Transport: tr, ConnectTimeout: 5 * time.Second,
		ConnectAttempts: 1, HighWatermark: 256 << 10, Timers: timers, Stats: st}
	addr := serve(t, tr, func() network.ReadFilter { return proxy.NewTCPFilter(tc) })

	for _, size := range []int{1, 4096, 1 << 20} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		payload := strings.Repeat("abcdefgh", size/8+1)[:size]
		go func() {
			io.WriteString(c, payload)
			c.(*net.TCPConn).CloseWrite() // the FIN must reach the upstream
		}()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if want := strings.ToUpper(payload) + "bye"; string(got) != want {
			t.Fatalf("%d bytes: got %d bytes back (%q…), want %d", size, len(got), got[:min(len(got), 16)], len(want))
		}
	}
	if st.UpstreamCxTotal.Value() != 3 {
		t.Fatalf("upstream connections counted %d, want 3", st.UpstreamCxTotal.Value())
	}
	if tx := st.UpstreamTxBytes.Value(); tx != 1+4096+1<<20 {
		t.Fatalf("bytes sent upstream counted %d, want %d", tx, 1+4096+1<<20)
	}
}
