package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// collector is an OTLP/gRPC trace receiver: it keeps every span it gets
// with its resource's service.name.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	addr string
	srv  *grpc.Server
	mu   sync.Mutex
	got  []gotSpan
}

type gotSpan struct {
	service string
	span    *tracepb.Span
}

func (c *collector) Export(_ context.Context, r *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range r.ResourceSpans {
		svc := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				svc = a.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.got = append(c.got, gotSpan{svc, s})
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) spans() []gotSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]gotSpan(nil), c.got...)
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{addr: ln.Addr().String(), srv: grpc.NewServer()}
	coltrace.RegisterTraceServiceServer(c.srv, c)
	go c.srv.Serve(ln)
	t.Cleanup(c.srv.Stop)
	return c
}

func otlpBlock(service, collector string) string {
	return fmt.Sprintf("tracing: {otlp: {endpoint: %q, service_name: %s, flush_interval: 50ms, timeout: 500ms}}", collector, service)
}

func attrs(s *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, a := range s.Attributes {
		switch {
		case a.Value.GetStringValue() != "":
			m[a.Key] = a.Value.GetStringValue()
		default:
			m[a.Key] = fmt.Sprint(a.Value.GetIntValue())
		}
	}
	return m
}

// checkChainTrace: four spans of one trace, edge server <- edge client <-
// internal server <- internal client, the last named by the traceparent
// the upstream saw; the attributes as OTel's HTTP conventions name them.
func checkChainTrace(t *testing.T, col *collector, seenTraceparent, path string, status int) {
	t.Helper()
	m := traceparentRE.FindStringSubmatch(seenTraceparent)
	if m == nil {
		t.Fatalf("upstream traceparent %q", seenTraceparent)
	}
	var mine []gotSpan
	waitFor(t, 10*time.Second, "4 spans of the trace", func() bool {
		mine = mine[:0]
		for _, s := range col.spans() {
			if hex.EncodeToString(s.span.TraceId) == m[1] {
				mine = append(mine, s)
			}
		}
		return len(mine) >= 4
	})
	if len(mine) != 4 {
		t.Fatalf("%d spans in the trace", len(mine))
	}
	find := func(svc string, kind tracepb.Span_SpanKind) *tracepb.Span {
		for _, s := range mine {
			if s.service == svc && s.span.Kind == kind {
				return s.span
			}
		}
		t.Fatalf("no %s span of %s", kind, svc)
		return nil
	}
	es, ec := find("edge", tracepb.Span_SPAN_KIND_SERVER), find("edge", tracepb.Span_SPAN_KIND_CLIENT)
	is, ic := find("internal", tracepb.Span_SPAN_KIND_SERVER), find("internal", tracepb.Span_SPAN_KIND_CLIENT)
	id := func(b []byte) string { return hex.EncodeToString(b) }
	if len(es.ParentSpanId) != 0 || id(ec.ParentSpanId) != id(es.SpanId) || id(is.ParentSpanId) != id(ec.SpanId) ||
		id(ic.ParentSpanId) != id(is.SpanId) || id(ic.SpanId) != m[2] {
		t.Fatalf("parentage: edge %s/%s<-%s, internal %s<-%s/%s<-%s, upstream saw %s",
			id(es.SpanId), id(ec.SpanId), id(ec.ParentSpanId), id(is.SpanId), id(is.ParentSpanId), id(ic.SpanId), id(ic.ParentSpanId), m[2])
	}
	for _, s := range []*tracepb.Span{es, ec, is, ic} {
		a := attrs(s)
		if a["url.path"] != path || a["http.response.status_code"] != fmt.Sprint(status) || a["upstream_cluster"] != "up" || a["server.address"] == "" {
			t.Errorf("%s span attributes %v", s.Kind, a)
		}
		if s.EndTimeUnixNano < s.StartTimeUnixNano || s.StartTimeUnixNano == 0 {
			t.Errorf("%s span times %d..%d", s.Kind, s.StartTimeUnixNano, s.EndTimeUnixNano)
		}
	}
	if a := attrs(es); a["http.request.method"] == "" || a["network.peer.address"] == "" {
		t.Errorf("server span attributes %v", a)
	}
	if a := attrs(ec); a["http.request.resend_count"] != "0" {
		t.Errorf("client span attributes %v", a)
	}
}

// TestTracingSpansThroughTwoProxies: one trace across two chained
// proxylabs, reported to a real OTLP receiver, over HTTP/1.1, h2c and gRPC.
func TestTracingSpansThroughTwoProxies(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		col := startCollector(t)
		up := startH2CUpstream(t, http.HandlerFunc(traceEcho))
		internal := startProxy(t, httpConfig(tr, []string{up.addr}, otlpBlock("internal", col.addr), ""))
		edge := startProxy(t, "admin: {address: 127.0.0.1:0}\n"+httpConfig(tr, []string{internal.addr("http")}, otlpBlock("edge", col.addr), ""))
		for _, cl := range []struct {
			name string
			c    *http.Client
		}{{"http1", h1Client()}, {"h2c", h2cClient()}} {
			t.Run(cl.name, func(t *testing.T) {
				resp, err := cl.c.Get("http://" + edge.addr("http") + "/" + cl.name + "?q=1")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				checkChainTrace(t, col, resp.Header.Get("X-Seen-Traceparent"), "/"+cl.name, 200)
			})
		}
		t.Run("grpc", func(t *testing.T) {
			gaddr := startTraceGRPC(t)
			gi := startProxy(t, h2Config(tr, gaddr, true, otlpBlock("internal", col.addr)))
			ge := startProxy(t, h2Config(tr, gi.addr("http"), true, otlpBlock("edge", col.addr)))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var hdr metadata.MD
			if _, err := grpcClient(t, ge.addr("http")).UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&hdr)); err != nil {
				t.Fatal(err)
			}
			tp := hdr.Get("x-seen-traceparent")
			if len(tp) != 1 {
				t.Fatalf("server saw no traceparent: %v", hdr)
			}
			checkChainTrace(t, col, tp[0], "/grpc.testing.TestService/UnaryCall", 200)
		})
		t.Run("collector down", func(t *testing.T) {
			col.srv.Stop()
			for i := 0; i < 200; i++ {
				resp, err := h1Client().Get("http://" + edge.addr("http") + "/after")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d with the collector down", resp.StatusCode)
				}
			}
			a := adminClient{t: t, base: "http://" + edge.adminAddr()}
			waitFor(t, 10*time.Second, "failed or dropped spans counted", func() bool {
				f := a.scrape()
				lost := value(t, f, "proxylab_tracing_spans_total", map[string]string{"listener": "http", "result": "failed"}) +
					value(t, f, "proxylab_tracing_spans_total", map[string]string{"listener": "http", "result": "dropped"})
				return lost >= 400 // a server and a client span per request
			})
		})
	})
}

// traceGRPC answers UnaryCall with the traceparent it received as a header.
type traceGRPC struct {
	testpb.UnimplementedTestServiceServer
}

func (traceGRPC) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	grpc.SetHeader(ctx, metadata.Pairs("x-seen-traceparent", strings.Join(md.Get("traceparent"), ",")))
	return &testpb.SimpleResponse{}, nil
}

func startTraceGRPC(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, traceGRPC{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// TestTracingSpanPerTry: a retried request gives one client span per try,
// each named by the traceparent that try carried, with its resend count.
func TestTracingSpanPerTry(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		col := startCollector(t)
		var mu sync.Mutex
		var seen []string
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("Traceparent"))
			n := len(seen)
			mu.Unlock()
			if n == 1 {
				w.WriteHeader(503)
			}
		}))
		p := startProxy(t, httpConfig(tr, []string{up.addr}, otlpBlock("edge", col.addr),
			"retry_policy: {retry_on: [5xx], num_retries: 1, base_interval: 10ms, max_interval: 20ms}"))
		resp, err := h1Client().Get("http://" + p.addr("http") + "/retry")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		if resp.StatusCode != 200 || len(seen) != 2 {
			t.Fatalf("status %d after %d tries", resp.StatusCode, len(seen))
		}
		var tries [2][]string
		for i, tp := range seen {
			if tries[i] = traceparentRE.FindStringSubmatch(tp); tries[i] == nil {
				t.Fatalf("try %d traceparent %q", i, tp)
			}
		}
		if tries[0][1] != tries[1][1] || tries[0][2] == tries[1][2] {
			t.Fatalf("tries carried %q and %q: want one trace, two spans", seen[0], seen[1])
		}
		var clients []*tracepb.Span
		var server *tracepb.Span
		waitFor(t, 10*time.Second, "3 spans", func() bool {
			clients, server = clients[:0], nil
			for _, s := range col.spans() {
				switch {
				case hex.EncodeToString(s.span.TraceId) != tries[0][1]:
				case s.span.Kind == tracepb.Span_SPAN_KIND_CLIENT:
					clients = append(clients, s.span)
				default:
					server = s.span
				}
			}
			return len(clients) == 2 && server != nil
		})
		for _, c := range clients {
			a := attrs(c)
			i := 0
			if hex.EncodeToString(c.SpanId) == tries[1][2] {
				i = 1
			} else if hex.EncodeToString(c.SpanId) != tries[0][2] {
				t.Fatalf("client span %x was no try's", c.SpanId)
			}
			if a["http.request.resend_count"] != fmt.Sprint(i) || a["http.response.status_code"] != []string{"503", "200"}[i] ||
				hex.EncodeToString(c.ParentSpanId) != hex.EncodeToString(server.SpanId) {
				t.Errorf("try %d span %v", i, a)
			}
		}
		if a := attrs(server); a["http.request.resend_count"] != "1" || a["http.response.status_code"] != "200" {
			t.Errorf("server span %v", a)
		}
	})
}

// TestTracingReload: a reload that leaves the otlp block alone keeps the
// running exporter (spans go on); one that changes it starts a new one.
func TestTracingReload(t *testing.T) {
	col := startCollector(t)
	up := startUpstream(t, http.HandlerFunc(traceEcho))
	cfg := func(service, header string) string {
		return httpConfig(transports[0], []string{up.addr}, otlpBlock(service, col.addr)+"\nrequest_headers_to_add: [{name: x-v, value: "+header+"}]", "")
	}
	p := startProxy(t, cfg("one", "a"))
	spanFrom := func(service string) {
		t.Helper()
		resp, err := h1Client().Get("http://" + p.addr("http") + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		m := traceparentRE.FindStringSubmatch(resp.Header.Get("X-Seen-Traceparent"))
		if m == nil {
			t.Fatalf("traceparent %q", resp.Header.Get("X-Seen-Traceparent"))
		}
		waitFor(t, 10*time.Second, "a span from "+service, func() bool {
			for _, s := range col.spans() {
				if hex.EncodeToString(s.span.TraceId) == m[1] && s.service == service {
					return true
				}
			}
			return false
		})
	}
	spanFrom("one")
	for i, step := range []struct{ service, header string }{{"one", "b"}, {"two", "b"}} {
		if err := os.WriteFile(p.configPath(), []byte(cfg(step.service, step.header)), 0o644); err != nil {
			t.Fatal(err)
		}
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(`msg="config reloaded" trigger=SIGHUP`, i+1)
		spanFrom(step.service)
	}
}
