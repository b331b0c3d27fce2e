package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// grpcService is the interop TestService: unary, all streaming modes, and
// hooks that report what the server saw (cancellation, deadlines).
type grpcService struct {
	testpb.UnimplementedTestServiceServer
	cancelled atomic.Int32
	deadline  atomic.Int64 // ms left at the last UnaryCall with a deadline
}

func payload(n int) *testpb.Payload { return &testpb.Payload{Body: make([]byte, n)} }

func (s *grpcService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (s *grpcService) UnaryCall(ctx context.Context, r *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if d, ok := ctx.Deadline(); ok {
		s.deadline.Store(time.Until(d).Milliseconds())
	}
	if st := r.GetResponseStatus(); st != nil && st.Code != 0 {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-sleep-ms"); len(v) > 0 {
			var ms int
			fmt.Sscan(v[0], &ms)
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-ctx.Done():
				s.cancelled.Add(1)
				return nil, ctx.Err()
			}
		}
		grpc.SetTrailer(ctx, metadata.Pairs("x-trailer-echo", strings.Join(md.Get("x-echo"), ",")))
	}
	return &testpb.SimpleResponse{Payload: payload(int(r.GetResponseSize()))}, nil
}

func (s *grpcService) StreamingOutputCall(r *testpb.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range r.GetResponseParameters() {
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: payload(int(p.GetSize()))}); err != nil {
			return err
		}
	}
	return nil
}

func (s *grpcService) StreamingInputCall(st grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(r.GetPayload().GetBody())
	}
}

func (s *grpcService) FullDuplexCall(st grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if status.Code(err) == codes.Canceled {
				s.cancelled.Add(1)
			}
			return err
		}
		for _, p := range r.GetResponseParameters() {
			if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: payload(int(p.GetSize()))}); err != nil {
				return err
			}
		}
	}
}

func startGRPCServer(t *testing.T) (*grpcService, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	svc := &grpcService{}
	testpb.RegisterTestServiceServer(srv, svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return svc, ln.Addr().String()
}

func grpcClient(t *testing.T, addr string) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func TestGRPCThroughProxy(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		svc, addr := startGRPCServer(t)
		p := startProxy(t, h2Config(tr, addr, true, ""))
		c := grpcClient(t, p.addr("http"))
		ctx := func() context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t.Cleanup(cancel)
			return ctx
		}

		t.Run("unary with metadata and trailers", func(t *testing.T) {
			var trailer metadata.MD
			r, err := c.UnaryCall(metadata.AppendToOutgoingContext(ctx(), "x-echo", "v1"), &testpb.SimpleRequest{ResponseSize: 1000}, grpc.Trailer(&trailer))
			if err != nil || len(r.GetPayload().GetBody()) != 1000 {
				t.Fatalf("%v %d", err, len(r.GetPayload().GetBody()))
			}
			if got := trailer.Get("x-trailer-echo"); len(got) != 1 || got[0] != "v1" {
				t.Fatalf("trailer %v", trailer)
			}
		})
		t.Run("error status in trailers", func(t *testing.T) {
			_, err := c.UnaryCall(ctx(), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "nope"}})
			if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "nope" {
				t.Fatalf("%v", err)
			}
		})
		t.Run("large messages stream through", func(t *testing.T) {
			r, err := c.UnaryCall(ctx(), &testpb.SimpleRequest{ResponseSize: 8 << 20, Payload: payload(8 << 20)})
			if err != nil || len(r.GetPayload().GetBody()) != 8<<20 {
				t.Fatalf("%v", err)
			}
		})
		t.Run("server streaming", func(t *testing.T) {
			req := &testpb.StreamingOutputCallRequest{}
			for i := 1; i <= 20; i++ {
				req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: int32(i * 1000)})
			}
			st, err := c.StreamingOutputCall(ctx(), req)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 20; i++ {
				r, err := st.Recv()
				if err != nil || len(r.GetPayload().GetBody()) != i*1000 {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("end: %v", err)
			}
		})
		t.Run("client streaming", func(t *testing.T) {
			st, err := c.StreamingInputCall(ctx())
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 50; i++ {
				if err := st.Send(&testpb.StreamingInputCallRequest{Payload: payload(3000)}); err != nil {
					t.Fatal(err)
				}
			}
			r, err := st.CloseAndRecv()
			if err != nil || r.GetAggregatedPayloadSize() != 150000 {
				t.Fatalf("%v %d", err, r.GetAggregatedPayloadSize())
			}
		})
		t.Run("bidi streaming ping-pong", func(t *testing.T) {
			st, err := c.FullDuplexCall(ctx())
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 30; i++ {
				if err := st.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i)}}}); err != nil {
					t.Fatal(err)
				}
				r, err := st.Recv()
				if err != nil || len(r.GetPayload().GetBody()) != i {
					t.Fatalf("pong %d: %v", i, err)
				}
			}
			st.CloseSend()
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("end: %v", err)
			}
		})
		t.Run("cancellation reaches the server", func(t *testing.T) {
			before := svc.cancelled.Load()
			cctx, cancel := context.WithCancel(context.Background())
			st, err := c.FullDuplexCall(cctx)
			if err != nil {
				t.Fatal(err)
			}
			st.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}}})
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			cancel()
			waitFor(t, 5*time.Second, "server saw the cancel", func() bool { return svc.cancelled.Load() > before })
		})
		t.Run("deadline is propagated and enforced", func(t *testing.T) {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := c.UnaryCall(dctx, &testpb.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if ms := svc.deadline.Load(); ms <= 0 || ms > 2000 {
				t.Fatalf("server saw %d ms left", ms)
			}
			// The proxy itself ends a call whose upstream outlives grpc-timeout,
			// with a gRPC status, and cancels the upstream stream.
			before := svc.cancelled.Load()
			dctx2, cancel2 := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-sleep-ms", "3000"), 300*time.Millisecond)
			defer cancel2()
			start := time.Now()
			_, err := c.UnaryCall(dctx2, &testpb.SimpleRequest{})
			if code := status.Code(err); code != codes.DeadlineExceeded {
				t.Fatalf("%v", err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("deadline took %v", el)
			}
			waitFor(t, 5*time.Second, "upstream call cancelled", func() bool { return svc.cancelled.Load() > before })
		})
		t.Run("grpc-timeout enforced by the proxy", func(t *testing.T) {
			// A client that sends grpc-timeout but does not enforce it: the
			// proxy answers DEADLINE_EXCEEDED as a trailers-only response.
			before := svc.cancelled.Load()
			req, _ := http.NewRequest("POST", "http://"+p.addr("http")+"/grpc.testing.TestService/UnaryCall", bytes.NewReader([]byte{0, 0, 0, 0, 0}))
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			req.Header.Set("Grpc-Timeout", "200m")
			req.Header.Set("X-Sleep-Ms", "3000")
			start := time.Now()
			resp, err := h2cClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "4" || time.Since(start) > 2*time.Second {
				t.Fatalf("%d grpc-status=%q after %v", resp.StatusCode, resp.Header.Get("Grpc-Status"), time.Since(start))
			}
			waitFor(t, 5*time.Second, "upstream call cancelled", func() bool { return svc.cancelled.Load() > before })
		})
		t.Run("unknown method is the server's UNIMPLEMENTED", func(t *testing.T) {
			cc, _ := grpc.NewClient(p.addr("http"), grpc.WithTransportCredentials(insecure.NewCredentials()))
			defer cc.Close()
			err := cc.Invoke(ctx(), "/grpc.testing.TestService/NoSuchMethod", &testpb.Empty{}, &testpb.Empty{})
			if status.Code(err) != codes.Unimplemented {
				t.Fatalf("%v", err)
			}
		})
	})
}

func TestGRPCLocalReplies(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		p := startProxy(t, h2Config(tr, closedPort(t), true, ""))
		c := grpcClient(t, p.addr("http"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.EmptyCall(ctx, &testpb.Empty{})
		st, _ := status.FromError(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "upstream") {
			t.Fatalf("%v", err)
		}
		var se interface{ GRPCStatus() *status.Status }
		if !errors.As(err, &se) {
			t.Fatal("not a gRPC status")
		}
	})
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
