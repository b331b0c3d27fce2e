package loadgen

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestClosedLoopCountsEveryRequest(t *testing.T) {
	var served atomic.Uint64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		served.Add(1)
		io.WriteString(w, "01234567890123456789")
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{Target: strings.TrimPrefix(srv.URL, "http://"), Connections: 4, Duration: 500 * time.Millisecond, RequestBody: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Requests == 0 || res.Requests != served.Load() || res.Latency.Count() != res.Requests {
		t.Fatalf("requests %d errors %d (%v), server saw %d, histogram %d", res.Requests, res.Errors, res.FirstError, served.Load(), res.Latency.Count())
	}
}

func TestOpenLoopHoldsTheRate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	res, _ := Run(context.Background(), Config{Target: strings.TrimPrefix(srv.URL, "http://"), Connections: 4, Duration: time.Second, Rate: 200})
	if res.Requests < 180 || res.Requests > 220 || res.Errors != 0 {
		t.Fatalf("200 rps for 1s sent %d (errors %d)", res.Requests, res.Errors)
	}
}

// TestCoordinatedOmissionAvoided: one 500 ms stall. Open loop charges it to
// every request that was due during it; closed loop sees one slow request.
func TestCoordinatedOmissionAvoided(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 20 {
			time.Sleep(500 * time.Millisecond)
		}
	}))
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")
	open, _ := Run(context.Background(), Config{Target: target, Connections: 1, Duration: 1500 * time.Millisecond, Rate: 100})
	if p90 := open.Latency.Quantile(0.9); p90 < 100*time.Millisecond {
		t.Errorf("open loop p90 %v: the stall was omitted", p90)
	}
	n.Store(0)
	closed, _ := Run(context.Background(), Config{Target: target, Connections: 1, Duration: 1500 * time.Millisecond})
	if p90 := closed.Latency.Quantile(0.9); p90 > 50*time.Millisecond {
		t.Errorf("closed loop p90 %v", p90)
	}
	if closed.Latency.Max() < 500*time.Millisecond {
		t.Errorf("closed loop max %v: the stall itself was not seen", closed.Latency.Max())
	}
	t.Logf("one 500ms stall: open-loop p90 %v p99 %v; closed-loop p90 %v max %v", open.Latency.Quantile(0.9), open.Latency.Quantile(0.99), closed.Latency.Quantile(0.9), closed.Latency.Max())
}

func TestTCPEchoAndErrors(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(c, c); c.Close() }()
		}
	}()
	res, _ := Run(context.Background(), Config{Target: ln.Addr().String(), Protocol: "tcp", EchoSize: 256, Connections: 2, Duration: 300 * time.Millisecond})
	if res.Errors != 0 || res.Requests == 0 {
		t.Fatalf("echo: %d requests, %d errors (%v)", res.Requests, res.Errors, res.FirstError)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer bad.Close()
	res, _ = Run(context.Background(), Config{Target: strings.TrimPrefix(bad.URL, "http://"), Connections: 1, Duration: 100 * time.Millisecond})
	if res.Errors == 0 || res.Requests != 0 || res.FirstError == nil {
		t.Fatalf("503s counted as %d ok, %d errors", res.Requests, res.Errors)
	}
}

// TestHTTP2AndTLS: HTTP/2 with several streams per connection, over h2c
// and over TLS (ALPN h2), and HTTP/1.1 over TLS; every request counted,
// non-2xx counted as errors.
func TestHTTP2AndTLS(t *testing.T) {
	var protos sync.Map
	var served atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		served.Add(1)
		if r.URL.Path == "/bad" {
			w.WriteHeader(503)
		}
		io.Copy(io.Discard, r.Body)
	})
	h2c := httptest.NewUnstartedServer(h)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	defer h2c.Close()
	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.EnableHTTP2 = true
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	for _, tc := range []struct {
		name, target, proto, path string
		tls                       bool
		wantProto                 string
		wantErrors                bool
	}{
		{"h2c", h2c.Listener.Addr().String(), "http2", "/", false, "HTTP/2.0", false},
		{"h2 over TLS", tlsSrv.Listener.Addr().String(), "http2", "/", true, "HTTP/2.0", false},
		{"HTTP/1.1 over TLS", tlsSrv.Listener.Addr().String(), "http1", "/", true, "HTTP/1.1", false},
		{"h2 non-2xx", h2c.Listener.Addr().String(), "http2", "/bad", false, "HTTP/2.0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			protos.Clear()
			before := served.Load()
			res, err := Run(context.Background(), Config{Target: tc.target, Protocol: tc.proto, Connections: 2, Streams: 4, TLS: tc.tls,
				Duration: 300 * time.Millisecond, Path: tc.path, RequestBody: 100})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := protos.Load(tc.wantProto); !ok {
				t.Fatalf("server saw no %s request", tc.wantProto)
			}
			n := served.Load() - before
			if tc.wantErrors {
				if res.Requests != 0 || res.Errors == 0 {
					t.Fatalf("%d ok, %d errors for 503s", res.Requests, res.Errors)
				}
				return
			}
			if res.Requests == 0 || res.Errors != 0 || int64(res.Requests) > n {
				t.Fatalf("%d ok, %d errors, server saw %d (first error %v)", res.Requests, res.Errors, n, res.FirstError)
			}
		})
	}
}

// The handshake protocol: every exchange is a full handshake, or with
// Resume a resumed one once a ticket is held (and a server that stops
// resuming turns into errors, not silently full handshakes).
func TestHandshakeProtocol(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.StartTLS()
	defer srv.Close()
	cfg := srv.TLS.Clone()
	cfg.SetSessionTicketKeys([][32]byte{{1}}) // one key for every connection's clone
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var full, resumed atomic.Int64
	var noResume atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := cfg.Clone()
				sc.SessionTicketsDisabled = noResume.Load()
				tc := tls.Server(c, sc)
				if tc.Handshake() != nil {
					return
				}
				if tc.ConnectionState().DidResume {
					resumed.Add(1)
				} else {
					full.Add(1)
				}
				io.Copy(io.Discard, tc)
			}()
		}
	}()
	run := func(resume bool, curves []tls.CurveID) *Result {
		t.Helper()
		full.Store(0)
		resumed.Store(0)
		res, err := Run(context.Background(), Config{Target: ln.Addr().String(), Protocol: "handshake", TLS: true, Resume: resume,
			Curves: curves, Connections: 2, Duration: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := run(false, []tls.CurveID{tls.CurveP256}); res.Requests == 0 || res.Errors != 0 || resumed.Load() != 0 || full.Load() < int64(res.Requests)-4 {
		t.Fatalf("full: %d ok, %d errors; server: %d full, %d resumed", res.Requests, res.Errors, full.Load(), resumed.Load())
	}
	if res := run(true, nil); res.Requests < 10 || res.Errors != 0 || full.Load() > 4 || resumed.Load() < int64(res.Requests)-4 {
		t.Fatalf("resumed: %d ok, %d errors; server: %d full, %d resumed", res.Requests, res.Errors, full.Load(), resumed.Load())
	}
	// The server stops resuming after the first ticket: errors, counted.
	srvTickets := make(chan struct{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		noResume.Store(true)
		close(srvTickets)
	}()
	res := run(true, nil)
	<-srvTickets
	noResume.Store(false)
	if res.Errors == 0 || res.FirstError == nil || !strings.Contains(res.FirstError.Error(), "not resumed") {
		t.Fatalf("server refusing resumption: %d ok, %d errors (%v)", res.Requests, res.Errors, res.FirstError)
	}
}
