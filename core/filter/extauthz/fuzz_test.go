package extauthz

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// FuzzFromProto reads arbitrary CheckResponse bytes (what a server may
// answer): never a panic, and an OK result never carries a header that
// could not be written as is or that touches the request's framing.
func FuzzFromProto(f *testing.F) {
	seed := func(r *authv3.CheckResponse) {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	seed(&authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-u", Value: "a"}}}}}})
	seed(&authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "Content-Length", Value: "5"}}}}}})
	seed(&authv3.CheckResponse{Status: &status.Status{Code: 7}})
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp authv3.CheckResponse
		if proto.Unmarshal(b, &resp) != nil {
			return
		}
		r := fromProto(&resp)
		if r.kind == resultDenied && (r.status < 200 || r.status > 599) {
			t.Fatalf("denied with status %d", r.status)
		}
		if r.kind != resultOK {
			return
		}
		for _, l := range [][]header{r.upstreamSet, r.upstreamAppend, r.responseHeaders} {
			for _, h := range l {
				if !validName(h.name) || strings.ContainsAny(h.value, "\r\n\x00") {
					t.Fatalf("unwritable header %q: %q", h.name, h.value)
				}
			}
		}
		for _, l := range [][]header{r.upstreamSet, r.upstreamAppend} {
			for _, h := range l {
				switch h.name {
				case "content-length", "transfer-encoding", "host", "connection":
					t.Fatalf("framing header %q passed", h.name)
				}
			}
		}
	})
}
