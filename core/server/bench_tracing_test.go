package server

import (
	"context"
	"fmt"
	"net"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// sinkCollector is an OTLP/gRPC trace receiver that discards what it gets.
type sinkCollector struct {
	coltrace.UnimplementedTraceServiceServer
}

func (sinkCollector) Export(context.Context, *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// BenchmarkProxyHTTP1Tracing: the cost of request identity and tracing per
// keep-alive HTTP/1.1 request, off and at 0%, 1% and 100% sampling with
// spans exported to a real OTLP receiver.
func BenchmarkProxyHTTP1Tracing(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(srv, sinkCollector{})
	go srv.Serve(ln)
	defer srv.Stop()
	otlp := fmt.Sprintf("otlp: {endpoint: %q, flush_interval: 100ms}", ln.Addr().String())
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
	for _, bc := range []struct{ name, httpProxy string }{
		{"off", "{}"},
		{"request_id", "{request_id: {}}"},
		{"sampling_0", "{request_id: {}, tracing: {random_sampling: 0, " + otlp + "}}"},
		{"sampling_1", "{request_id: {}, tracing: {random_sampling: 1, " + otlp + "}}"},
		{"sampling_100", "{request_id: {}, tracing: {random_sampling: 100, " + otlp + "}}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, addr := startBenchProxyWith(b, rawHTTPUpstream(b), bc.httpProxy, "")
			benchKeepAlive(b, addr, req)
		})
	}
}
