package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// grpcChecker calls envoy.service.auth.v3.Authorization/Check over one
// client connection shared by every loop (grpc-go multiplexes the calls).
type grpcChecker struct {
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
	err    error
}

func newGRPCChecker(c *compiled) checker {
	conn, err := grpc.NewClient(c.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return &grpcChecker{err: fmt.Errorf("extauthz: grpc client for %s: %w", c.target, err)}
	}
	return &grpcChecker{conn: conn, client: authv3.NewAuthorizationClient(conn)}
}

func (g *grpcChecker) close() {
	if g.conn != nil {
		if err := g.conn.Close(); err != nil {
			slog.Debug("extauthz: closing grpc client", "err", err)
		}
	}
}

func (g *grpcChecker) check(ctx context.Context, req *checkRequest) result {
	if g.err != nil {
		return result{err: g.err}
	}
	resp, err := g.client.Check(ctx, toProto(req))
	if err != nil {
		return result{err: fmt.Errorf("extauthz: Check: %w", err)}
	}
	return fromProto(resp)
}

func peer(a net.Addr, principal string) *authv3.AttributeContext_Peer {
	p := &authv3.AttributeContext_Peer{Principal: principal}
	if ta, ok := a.(*net.TCPAddr); ok {
		p.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ta.IP.String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ta.Port)}}}}
	}
	return p
}

func toProto(r *checkRequest) *authv3.CheckRequest {
	_, query, _ := strings.Cut(r.path, "?")
	hr := &authv3.AttributeContext_HttpRequest{
		Method: r.method, Path: r.path, Host: r.host, Scheme: r.scheme, Protocol: r.protocol,
		Query: query, Headers: r.headerMap(), Size: int64(len(r.body)),
	}
	if r.body != nil {
		hr.Body, hr.RawBody = string(r.body), r.body
	}
	ac := &authv3.AttributeContext{
		Source:            peer(r.remote, r.principal),
		Destination:       peer(r.local, ""),
		Request:           &authv3.AttributeContext_Request{Http: hr},
		ContextExtensions: r.ext,
	}
	if r.sni != "" {
		ac.TlsSession = &authv3.AttributeContext_TLSSession{Sni: r.sni}
	}
	return &authv3.CheckRequest{Attributes: ac}
}

// fromProto reads a CheckResponse: status OK allows, anything else denies
// (403 unless the denied response names a status), as Envoy.
func fromProto(resp *authv3.CheckResponse) result {
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		r := result{kind: resultOK}
		ok := resp.GetOkResponse()
		for _, h := range ok.GetHeaders() {
			x := header{strings.ToLower(h.GetHeader().GetKey()), headerValue(h.GetHeader())}
			if h.GetAppend().GetValue() || h.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				r.upstreamAppend = append(r.upstreamAppend, x)
			} else {
				r.upstreamSet = append(r.upstreamSet, x)
			}
		}
		r.upstreamRemove = ok.GetHeadersToRemove()
		for _, h := range ok.GetResponseHeadersToAdd() {
			r.responseHeaders = append(r.responseHeaders, header{strings.ToLower(h.GetHeader().GetKey()), headerValue(h.GetHeader())})
		}
		if bad := checkUpstream(r.upstreamSet, r.upstreamAppend, r.responseHeaders); bad != nil {
			return result{err: bad}
		}
		return r
	}
	d := resp.GetDeniedResponse()
	r := result{kind: resultDenied, status: 403, body: d.GetBody()}
	if c := int(d.GetStatus().GetCode()); c >= 200 && c <= 599 {
		r.status = c
	}
	for _, h := range d.GetHeaders() {
		r.clientHeaders = append(r.clientHeaders, header{strings.ToLower(h.GetHeader().GetKey()), headerValue(h.GetHeader())})
	}
	if bad := checkHeaders(r.clientHeaders); bad != nil {
		return result{err: bad}
	}
	return r
}

func headerValue(h *corev3.HeaderValue) string {
	if v := h.GetValue(); v != "" {
		return v
	}
	return string(h.GetRawValue())
}

// checkHeaders refuses header names or values that could not be written
// as they are (CR, LF, NUL, empty or pseudo names): a bad answer is an
// error, never a request that parses differently upstream.
func checkHeaders(lists ...[]header) error {
	for _, l := range lists {
		for _, h := range l {
			if !validName(h.name) || strings.ContainsAny(h.value, "\r\n\x00") {
				return fmt.Errorf("extauthz: the server answered an invalid header %s", strconv.Quote(h.name))
			}
		}
	}
	return nil
}

// checkUpstream is checkHeaders for headers added to the request, which
// must not change its framing or routing target (Content-Length,
// Transfer-Encoding, Host and the connection-specific fields).
func checkUpstream(lists ...[]header) error {
	if err := checkHeaders(lists...); err != nil {
		return err
	}
	for _, l := range lists[:len(lists)-1] {
		for _, h := range l {
			switch h.name {
			case "content-length", "transfer-encoding", "host", "connection", "te", "upgrade", "keep-alive", "proxy-connection":
				return fmt.Errorf("extauthz: the server may not set %s on the request", h.name)
			}
		}
	}
	return nil
}

func validName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}
