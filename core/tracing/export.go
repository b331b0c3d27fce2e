package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Span is one finished span as the proxy records it: plain values, copied
// into the exporter's queue (no allocation by the queue itself).
type Span struct {
	Trace        [16]byte
	ID, Parent   [8]byte
	Client       bool // a client span (an upstream try); else a server span
	Start, End   time.Time
	Method, Path string
	Authority    string // server.address: the request's Host / :authority
	Peer         string // network.peer.address: the client, or the upstream host
	Status       int
	Cluster      string
	Flags        string // Envoy response flags
	Resends      int    // http.request.resend_count: retries before this try
	Protocol     string // network.protocol.version
}

// ExportOptions configure an Exporter.
type ExportOptions struct {
	Endpoint, Service string
	// Queue bounds the spans waiting for export; over it new spans are
	// dropped (counted). Batch is the most sent in one export call, every
	// Interval at least; Timeout bounds one call.
	Queue, Batch      int
	Interval, Timeout time.Duration
	Log               *slog.Logger
}

// Exporter sends spans to an OpenTelemetry collector over OTLP/gRPC from
// its own goroutine. Submit, called on event loops, never blocks: a full
// queue drops the span and counts it. Safe for concurrent use.
type Exporter struct {
	q        chan Span
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	closed   atomic.Bool
	exp      sdktrace.SpanExporter
	res      *resource.Resource
	opts     ExportOptions
	Dropped  atomic.Uint64 // queue full or exporter closed
	Exported atomic.Uint64
	Failed   atomic.Uint64 // spans of export calls that failed
}

// NewExporter starts an exporter to an OTLP/gRPC endpoint (plaintext).
// The connection is made lazily: an unreachable collector costs failed
// (counted) exports, never an error here.
func NewExporter(o ExportOptions) (*Exporter, error) {
	exp, err := otlptracegrpc.New(context.Background(),
		otlptracegrpc.WithEndpoint(o.Endpoint), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithTimeout(o.Timeout),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter for %s: %w", o.Endpoint, err)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	e := &Exporter{
		q: make(chan Span, o.Queue), stop: make(chan struct{}), done: make(chan struct{}),
		exp: exp, opts: o,
		res: resource.NewSchemaless(attribute.String("service.name", o.Service)),
	}
	go e.run()
	return e, nil
}

// Submit queues a span for export without blocking.
func (e *Exporter) Submit(s *Span) {
	if e.closed.Load() {
		e.Dropped.Add(1)
		return
	}
	select {
	case e.q <- *s:
	default:
		e.Dropped.Add(1)
	}
}

// Close stops the exporter, sending what is queued first (bounded by
// the export timeout).
func (e *Exporter) Close() {
	e.once.Do(func() {
		e.closed.Store(true)
		close(e.stop)
		<-e.done
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.Timeout)
		defer cancel()
		e.exp.Shutdown(ctx)
	})
}

// run batches queued spans and exports them; it owns e.exp.
func (e *Exporter) run() {
	defer close(e.done)
	t := time.NewTicker(e.opts.Interval)
	defer t.Stop()
	batch := make([]Span, 0, e.opts.Batch)
	for {
		select {
		case s := <-e.q:
			if batch = append(batch, s); len(batch) >= e.opts.Batch {
				batch = e.flush(batch)
			}
		case <-t.C:
			batch = e.flush(batch)
		case <-e.stop:
			for {
				select {
				case s := <-e.q:
					batch = append(batch, s)
				default:
					e.flush(batch)
					return
				}
			}
		}
	}
}

var scope = instrumentation.Scope{Name: "github.com/proxylab/proxylab/core/tracing"}

func (e *Exporter) flush(batch []Span) []Span {
	if len(batch) == 0 {
		return batch
	}
	ro := make([]sdktrace.ReadOnlySpan, len(batch))
	for i := range batch {
		ro[i] = e.stub(&batch[i]).Snapshot()
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.Timeout)
	err := e.exp.ExportSpans(ctx, ro)
	cancel()
	if err != nil {
		e.Failed.Add(uint64(len(batch)))
		e.opts.Log.Debug("tracing: export failed", "endpoint", e.opts.Endpoint, "spans", len(batch), "err", err)
	} else {
		e.Exported.Add(uint64(len(batch)))
	}
	clear(batch)
	return batch[:0]
}

// stub maps a Span to the SDK's span snapshot with OpenTelemetry's HTTP
// semantic convention attribute names.
func (e *Exporter) stub(s *Span) tracetest.SpanStub {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.Trace, SpanID: s.ID, TraceFlags: trace.FlagsSampled})
	st := tracetest.SpanStub{
		Name: s.Method, SpanContext: sc, StartTime: s.Start, EndTime: s.End,
		SpanKind: trace.SpanKindServer, Resource: e.res, InstrumentationScope: scope,
	}
	if s.Parent != [8]byte{} {
		st.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.Trace, SpanID: s.Parent, TraceFlags: trace.FlagsSampled, Remote: !s.Client})
	}
	a := make([]attribute.KeyValue, 0, 10)
	a = append(a, attribute.String("http.request.method", s.Method), attribute.String("url.path", s.Path))
	if s.Status > 0 {
		a = append(a, attribute.Int("http.response.status_code", s.Status))
	}
	if s.Status >= 500 || s.Status == 0 || s.Client && s.Status >= 400 {
		st.Status = sdktrace.Status{Code: codes.Error} // OTel HTTP semconv: 5xx (4xx too for a client)
	}
	if s.Protocol != "" {
		a = append(a, attribute.String("network.protocol.version", s.Protocol))
	}
	if s.Cluster != "" {
		a = append(a, attribute.String("upstream_cluster", s.Cluster))
	}
	if s.Flags != "" {
		a = append(a, attribute.String("response_flags", s.Flags))
	}
	if s.Client {
		st.SpanKind = trace.SpanKindClient
		a = append(a, attribute.String("server.address", s.Peer), attribute.Int("http.request.resend_count", s.Resends))
	} else {
		a = append(a, attribute.String("server.address", s.Authority), attribute.String("network.peer.address", s.Peer))
		if s.Resends > 0 {
			a = append(a, attribute.Int("http.request.resend_count", s.Resends))
		}
	}
	st.Attributes = a
	return st
}
