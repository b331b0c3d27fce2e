package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/proxy"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/timer"
)

// Chain tests run the http_proxy with a chain of scripted filters over
// real loopback sockets and a real upstream; each script says what its
// filter returns per event and how it resumes (a timer, then Post).

type factoryFunc func(s filter.Stream) filter.Filter

func (f factoryFunc) NewFilter(s filter.Stream) filter.Filter { return f(s) }

// script is one scripted filter's behaviour.
type script struct {
	name                    string
	decHead, decData        filter.Status
	encHead, encData        filter.Status
	upper                   bool // a buffering filter upper-cases the whole body at its end
	reply                   *filter.LocalReply
	panicIn                 string // "decode" or "encode": panic in that headers call
	seen                    *events
	encodeHeader            string // EncodeHeaders adds x-<name>: 1
	destroyed, postedRan    *atomic.Int32
	postAfterDestroyDelay   time.Duration
	addOnEncTrailers        string // EncodeTrailers passes these bytes on first (AddEncodedData)
	stopForeverAndPostLater bool
}

type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.log, " ")
}

type scripted struct {
	sc          *script
	s           filter.Stream
	dataStopped [2]bool // by direction: encode 0, decode 1
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (f *scripted) resumeLater(dec bool) {
	time.AfterFunc(20*time.Millisecond, func() {
		f.s.Post(func() {
			if dec {
				f.s.ContinueDecoding()
			} else {
				f.s.ContinueEncoding()
			}
		})
	})
}

func (f *scripted) OnDestroy() {
	f.sc.seen.add(f.sc.name + ":destroy")
	if f.sc.destroyed != nil {
		f.sc.destroyed.Add(1)
	}
}

func (f *scripted) DecodeHeaders(h *protocol.Head, end bool) filter.Status {
	f.sc.seen.add(f.sc.name + ":dh")
	if f.sc.panicIn == "decode" {
		panic("scripted panic")
	}
	if r := f.sc.reply; r != nil {
		f.s.SendLocalReply(*r)
		return filter.Stop
	}
	if f.sc.stopForeverAndPostLater {
		time.AfterFunc(f.sc.postAfterDestroyDelay, func() { f.s.Post(func() { f.sc.postedRan.Add(1) }) })
		return filter.Stop
	}
	if f.sc.decHead == filter.Stop {
		f.resumeLater(true)
	}
	return f.sc.decHead
}

func (f *scripted) DecodeData(b *filter.Body, end bool) filter.Status {
	f.sc.seen.add(fmt.Sprintf("%s:dd%d", f.sc.name, len(b.Bytes)))
	return f.bodyStatus(b, end, f.sc.decData, true)
}

func (f *scripted) bodyStatus(b *filter.Body, end bool, st filter.Status, dec bool) filter.Status {
	switch {
	case st == filter.Stop && !f.dataStopped[btoi(dec)]:
		// Hold the first piece; a timer resumes the direction.
		f.dataStopped[btoi(dec)] = true
		f.resumeLater(dec)
		return filter.Stop
	case st == filter.StopAndBuffer && !end:
		return filter.StopAndBuffer
	case st == filter.StopAndBuffer && end && f.sc.upper:
		b.Bytes = bytes.ToUpper(b.Bytes)
	}
	return filter.Continue
}

func (f *scripted) DecodeTrailers(*protocol.Headers) filter.Status {
	f.sc.seen.add(f.sc.name + ":dt")
	return filter.Continue
}

func (f *scripted) EncodeHeaders(h *protocol.Head, end bool) filter.Status {
	f.sc.seen.add(f.sc.name + ":eh")
	if f.sc.panicIn == "encode" {
		panic("scripted panic")
	}
	if f.sc.encodeHeader != "" {
		h.Headers.Set("x-"+f.sc.name, []byte(f.sc.encodeHeader))
	}
	if f.sc.encHead == filter.Stop {
		f.resumeLater(false)
	}
	return f.sc.encHead
}

func (f *scripted) EncodeData(b *filter.Body, end bool) filter.Status {
	f.sc.seen.add(fmt.Sprintf("%s:ed%d", f.sc.name, len(b.Bytes)))
	return f.bodyStatus(b, end, f.sc.encData, false)
}

func (f *scripted) EncodeTrailers(*protocol.Headers) filter.Status {
	f.sc.seen.add(f.sc.name + ":et")
	if f.sc.addOnEncTrailers != "" {
		f.s.AddEncodedData([]byte(f.sc.addOnEncTrailers))
	}
	return filter.Continue
}

// chainProxy serves an http_proxy whose chain runs the scripts, in front
// of an upstream that echoes "body=<request body>" (or, on /big, 64 KiB).
func chainProxy(t *testing.T, limit int, scripts ...*script) (string, *proxy.HTTPStats, *atomic.Int32) {
	t.Helper()
	return chainProxyCodec(t, h1s.Codec{}, limit, 0, scripts...)
}

// chainProxyCodec is chainProxy with another downstream codec.
func chainProxyCodec(t *testing.T, codec stream.Codec, limit int, idle time.Duration, scripts ...*script) (string, *proxy.HTTPStats, *atomic.Int32) {
	t.Helper()
	tr := newTransport(t)
	var upHits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upHits.Add(1)
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/trailers" {
			w.Header().Set("Trailer", "X-T")
			io.WriteString(w, "body="+string(b))
			w.Header().Set("X-T", "req-trailer="+r.Trailer.Get("X-Req"))
			return
		}
		if r.URL.Path == "/big" {
			w.Write(bytes.Repeat([]byte("x"), 64<<10))
			return
		}
		w.Header().Set("X-Upstream", "1")
		io.WriteString(w, "body="+string(b))
	}))
	t.Cleanup(up.Close)
	mgr := upstream.NewManager([]*upstream.Cluster{newCluster(t, tr, "api", up.Listener.Addr().String())})
	timers := timer.New(10 * time.Millisecond)
	so := &stream.ServerOptions{MaxRequestLine: h1.DefaultLimits.MaxRequestLine, MaxHeaderBytes: h1.DefaultLimits.MaxHeaderBytes,
		MaxHeaders: h1.DefaultLimits.MaxHeaders, HeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, Linger: time.Second,
		HighWatermark: 256 << 10, Timers: timers, Blocks: map[string]any{h2s.OptionsKey: &h2s.Options{MaxConcurrentStreams: 128,
			InitialStreamWindowSize: 256 << 10, InitialConnectionWindowSize: 4 << 20, MaxHeaderListSize: 64 << 10, MaxResetsPerSecond: 100, ResetBurst: 400}}}
	st := &proxy.HTTPStats{}
	hc := &proxy.HTTPConfig{
		Router: router.New([]router.VirtualHost{{Name: "site", Domains: []string{"*"}, Routes: []router.Route{
			{Prefix: "/", Cluster: "api", Timeout: 10 * time.Second},
		}}}),
		Clusters: mgr, Server: *so, Stats: st, StreamIdle: idle,
		Codecs:           []stream.Codec{codec},
		Servers:          []stream.Server{codec.NewServer(so)},
		MaxRequestBuffer: 64 << 10,
		Log:              slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	var specs []proxy.FilterSpec
	for _, sc := range scripts {
		sc := sc
		specs = append(specs, proxy.FilterSpec{Name: sc.name, Kinds: filter.HTTP, Factory: factoryFunc(func(s filter.Stream) filter.Filter {
			return &scripted{sc: sc, s: s}
		})})
	}
	hc.SetFilters(specs, limit)
	return serve(t, tr, func() network.ReadFilter { return proxy.NewHTTPFilter(hc) }), st, &upHits
}

func roundTrip(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, req)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

const postHello = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"

// TestChainStatuses: every status in both directions delivers the message
// whole (resumed from a timer through Post), a buffering filter sees and
// may replace the whole body, and the response passes the encoders.
func TestChainStatuses(t *testing.T) {
	C, S, B := filter.Continue, filter.Stop, filter.StopAndBuffer
	for _, tc := range []struct {
		name                               string
		decHead, decData, encHead, encData filter.Status
		upper                              bool
		req, wantBody                      string
	}{
		{"continue", C, C, C, C, false, postHello, "body=hello"},
		{"decode stop headers", S, C, C, C, false, postHello, "body=hello"},
		{"decode buffer headers", B, B, C, C, true, postHello, "body=HELLO"},
		{"decode buffer data", C, B, C, C, true, postHello, "body=HELLO"},
		{"decode buffer chunked", B, B, C, C, true,
			"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "body=ABCDE"},
		{"encode stop headers", C, C, S, C, false, postHello, "body=hello"},
		{"encode buffer headers", C, C, B, B, true, postHello, "BODY=HELLO"},
		{"encode buffer data", C, C, C, B, true, postHello, "BODY=HELLO"},
		{"all stop", S, C, S, C, false, postHello, "body=hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &events{}
			var destroyed atomic.Int32
			first := &script{name: "a", seen: ev, encodeHeader: "1", destroyed: &destroyed}
			mid := &script{name: "b", seen: ev, decHead: tc.decHead, decData: tc.decData, encHead: tc.encHead, encData: tc.encData,
				upper: tc.upper, destroyed: &destroyed}
			last := &script{name: "c", seen: ev, destroyed: &destroyed}
			addr, _, _ := chainProxy(t, 1<<20, first, mid, last)
			resp, body := roundTrip(t, addr, tc.req)
			if resp.StatusCode != 200 || body != tc.wantBody {
				t.Fatalf("%d %q, want 200 %q (events %s)", resp.StatusCode, body, tc.wantBody, ev)
			}
			if resp.Header.Get("x-a") != "1" {
				t.Fatalf("the first filter's encoder did not see the response (events %s)", ev)
			}
			waitFor(t, func() bool { return destroyed.Load() == 3 }, "OnDestroy of the 3 filters")
		})
	}
}

// TestChainTrailers: request trailers pass a buffering decoder after the
// whole body; a filter adds bytes before the response trailers.
func TestChainTrailers(t *testing.T) {
	ev := &events{}
	B := filter.StopAndBuffer
	addr, _, _ := chainProxy(t, 1<<20, &script{name: "a", seen: ev, addOnEncTrailers: "+tail"},
		&script{name: "b", seen: ev, decHead: B, decData: B, upper: true})
	resp, body := roundTrip(t, addr, "POST /trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n"+
		"3\r\nabc\r\n0\r\nX-Req: r1\r\n\r\n")
	if resp.StatusCode != 200 || body != "body=abc+tail" || resp.Trailer.Get("X-T") != "req-trailer=r1" {
		t.Fatalf("%d %q trailer %q (events %s)", resp.StatusCode, body, resp.Trailer.Get("X-T"), ev)
	}
	if !strings.Contains(ev.String(), "b:dt") || !strings.Contains(ev.String(), "a:et") {
		t.Fatalf("trailers calls missing: %s", ev)
	}
}

// TestChainBufferLimit: over the limit a request gets 413 (never reaching
// the upstream), a response 500.
func TestChainBufferLimit(t *testing.T) {
	B := filter.StopAndBuffer
	ev := &events{}
	addr, _, hits := chainProxy(t, 1024, &script{name: "a", seen: ev, decHead: B, decData: B})
	resp, _ := roundTrip(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"+strings.Repeat("y", 2000))
	if resp.StatusCode != 413 || hits.Load() != 0 {
		t.Fatalf("request over the limit: %d, upstream hits %d; want 413, 0", resp.StatusCode, hits.Load())
	}
	addr, _, _ = chainProxy(t, 1024, &script{name: "a", seen: ev, encHead: B, encData: B})
	resp, _ = roundTrip(t, addr, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 500 {
		t.Fatalf("response over the limit: %d, want 500", resp.StatusCode)
	}
}

// TestChainLocalReplyMidChain: a local reply from the second filter passes
// the encoders of it and the first (not the third's), and neither the third
// filter nor the upstream sees the request.
func TestChainLocalReplyMidChain(t *testing.T) {
	ev := &events{}
	a := &script{name: "a", seen: ev, encodeHeader: "1"}
	b := &script{name: "b", seen: ev, encodeHeader: "1", reply: &filter.LocalReply{Status: 429, Body: "slow down", Headers: hdrs("x-ratelimit-limit", "5")}}
	c := &script{name: "c", seen: ev, encodeHeader: "1"}
	addr, st, hits := chainProxy(t, 1<<20, a, b, c)
	resp, body := roundTrip(t, addr, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 429 || body != "slow down" || resp.Header.Get("x-ratelimit-limit") != "5" {
		t.Fatalf("%d %q %v, want 429 \"slow down\" with x-ratelimit-limit", resp.StatusCode, body, resp.Header)
	}
	if resp.Header.Get("x-a") != "1" || resp.Header.Get("x-b") != "1" || resp.Header.Get("x-c") != "" {
		t.Fatalf("encoders seen: a=%q b=%q c=%q, want a and b only", resp.Header.Get("x-a"), resp.Header.Get("x-b"), resp.Header.Get("x-c"))
	}
	if strings.Contains(ev.String(), "c:dh") || hits.Load() != 0 {
		t.Fatalf("the request went past the reply: events %s, upstream hits %d", ev, hits.Load())
	}
	if st.LocalReplies.Value() != 1 || st.RqXX[4].Value() != 1 {
		t.Fatalf("counted local replies %d, 4xx %d; want 1, 1", st.LocalReplies.Value(), st.RqXX[4].Value())
	}
}

func hdrs(kv ...string) *protocol.Headers {
	h := &protocol.Headers{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], []byte(kv[i+1]))
	}
	return h
}

// TestChainPostAfterDestroy: a function posted after the stream ended (the
// client went away while a filter held the request) is dropped.
func TestChainPostAfterDestroy(t *testing.T) {
	ev := &events{}
	var destroyed, ran atomic.Int32
	addr, _, _ := chainProxy(t, 1<<20, &script{name: "a", seen: ev, destroyed: &destroyed, postedRan: &ran,
		stopForeverAndPostLater: true, postAfterDestroyDelay: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, func() bool { return strings.Contains(ev.String(), "a:dh") }, "the filter to see the request")
	c.(*net.TCPConn).SetLinger(0) // a reset: HTTP/1 would keep answering a half-closed client
	c.Close()
	waitFor(t, func() bool { return destroyed.Load() == 1 }, "OnDestroy after the client left")
	time.Sleep(600 * time.Millisecond) // past the post
	if ran.Load() != 0 {
		t.Fatal("a function posted after OnDestroy ran")
	}
}

// TestChainHeldRequestIdles: a request a filter holds and never resumes is
// ended by the stream idle timeout (408), its filters destroyed.
func TestChainHeldRequestIdles(t *testing.T) {
	ev := &events{}
	var destroyed, ran atomic.Int32
	addr, st, hits := chainProxyCodec(t, h1s.Codec{}, 1<<20, 300*time.Millisecond, &script{name: "a", seen: ev, destroyed: &destroyed,
		postedRan: &ran, stopForeverAndPostLater: true, postAfterDestroyDelay: time.Hour})
	start := time.Now()
	resp, _ := roundTrip(t, addr, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 408 || time.Since(start) < 250*time.Millisecond || st.RqIdleTimeout.Value() != 1 || hits.Load() != 0 {
		t.Fatalf("%d after %v, idle timeouts %d, upstream hits %d; want 408 after the 300ms idle timeout", resp.StatusCode,
			time.Since(start), st.RqIdleTimeout.Value(), hits.Load())
	}
	waitFor(t, func() bool { return destroyed.Load() == 1 }, "OnDestroy of the holding filter")
}

// TestChainPanic: a filter panicking ends its stream with a 500 that is
// counted; the connection's next request is served.
func TestChainPanic(t *testing.T) {
	for _, where := range []string{"decode", "encode"} {
		t.Run(where, func(t *testing.T) {
			ev := &events{}
			addr, st, _ := chainProxy(t, 1<<20, &script{name: "a", seen: ev, panicIn: where})
			resp, _ := roundTrip(t, addr, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp.StatusCode != 500 || st.FilterFailures.Value() != 1 {
				t.Fatalf("%d, failures counted %d; want 500, 1", resp.StatusCode, st.FilterFailures.Value())
			}
		})
	}
}

// TestChainPanicGRPC: over HTTP/2, a gRPC call whose filter panics gets
// a trailers-only INTERNAL, counted.
func TestChainPanicGRPC(t *testing.T) {
	addr, st, hits := chainProxyCodec(t, h2s.Codec{}, 1<<20, 0, &script{name: "a", seen: &events{}, panicIn: "decode"})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
	req, _ := http.NewRequest("POST", "http://"+addr+"/svc/Method", strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("grpc-status") != "13" || st.FilterFailures.Value() != 1 || hits.Load() != 0 {
		t.Fatalf("%d grpc-status %q, failures %d, upstream hits %d; want 200 13 1 0", resp.StatusCode, resp.Header.Get("grpc-status"),
			st.FilterFailures.Value(), hits.Load())
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestChainRandomStatuses: three filters with random statuses in every
// call of both directions (holds at several places at once, resumed by
// timers) still deliver the request and the response whole and in order.
func TestChainRandomStatuses(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 7))
	statuses := []filter.Status{filter.Continue, filter.Stop, filter.StopAndBuffer}
	pick := func() filter.Status { return statuses[rng.IntN(len(statuses))] }
	for i := 0; i < 24; i++ {
		ev := &events{}
		var scripts []*script
		var desc []string
		for _, name := range []string{"a", "b", "c"} {
			sc := &script{name: name, seen: ev, decHead: pick(), decData: pick(), encHead: pick(), encData: pick()}
			scripts = append(scripts, sc)
			desc = append(desc, fmt.Sprintf("%s:%d%d%d%d", name, sc.decHead, sc.decData, sc.encHead, sc.encData))
		}
		t.Run(strings.Join(desc, ","), func(t *testing.T) {
			addr, _, _ := chainProxy(t, 1<<20, scripts...)
			body := strings.Repeat("0123456789", 2000)
			req := fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n",
				len(body)/2, body[:len(body)/2], len(body)/2, body[len(body)/2:])
			resp, got := roundTrip(t, addr, req)
			if resp.StatusCode != 200 || got != "body="+body {
				t.Fatalf("%d, %d bytes back (want %d) (events %s)", resp.StatusCode, len(got), len(body)+5, ev)
			}
		})
	}
}
