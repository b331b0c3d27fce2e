package upstream

import (
	"context"
	"net"

	"google.golang.org/grpc"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// GRPCMethod is the unary method ServeGRPC answers, for load generators
// that post raw gRPC frames (h2load).
const GRPCMethod = "/grpc.testing.TestService/UnaryCall"

// grpcService answers the interop TestService's UnaryCall with a payload
// of the requested size, or of the default size.
type grpcService struct {
	testpb.UnimplementedTestServiceServer
	size int
}

func (g *grpcService) UnaryCall(_ context.Context, r *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	n := int(r.GetResponseSize())
	if n == 0 {
		n = g.size
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, n)}}, nil
}

func (g *grpcService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// ServeGRPC serves the gRPC benchmark origin (grpc-go over h2c) on ln until
// the returned stop is called.
func ServeGRPC(ln net.Listener, size int) (stop func()) {
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &grpcService{size: size})
	go srv.Serve(ln)
	return srv.Stop
}
