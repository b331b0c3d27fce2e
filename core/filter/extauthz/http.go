package extauthz

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/proxylab/proxylab/core/filter/internal/match"
)

// httpChecker sends the check as an HTTP request: the original method,
// httpBase + the original path, the Host, Authorization and
// allowed_headers, and the buffered body when with_request_body. A 200
// answer allows, any other status denies.
type httpChecker struct {
	c      *compiled
	client *http.Client
}

// maxAnswer bounds what is read of a denied answer's body.
const maxAnswer = 64 << 10

func newHTTPChecker(c *compiled) checker {
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, DisableCompression: true}
	return &httpChecker{c: c, client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (h *httpChecker) close() { h.client.CloseIdleConnections() }

func (h *httpChecker) check(ctx context.Context, r *checkRequest) result {
	req, err := http.NewRequestWithContext(ctx, r.method, h.c.httpBase+r.path, bytes.NewReader(r.body))
	if err != nil {
		return result{err: fmt.Errorf("extauthz: check request: %w", err)}
	}
	req.Host = r.host
	req.ContentLength = int64(len(r.body))
	for _, kv := range r.headers {
		if kv[0] == "authorization" || anyMatch(h.c.allowedReq, []byte(kv[0])) {
			switch kv[0] {
			case "content-length", "transfer-encoding", "connection", "te", "upgrade", "keep-alive", "proxy-connection", "expect":
				continue
			}
			req.Header.Add(kv[0], kv[1])
		}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return result{err: fmt.Errorf("extauthz: check: %w", err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return result{err: fmt.Errorf("extauthz: reading the answer: %w", err)}
	}
	if resp.StatusCode == http.StatusOK {
		out := result{kind: resultOK}
		for name, vs := range resp.Header {
			n := strings.ToLower(name)
			if n == "x-envoy-auth-headers-to-remove" {
				for _, v := range vs {
					for _, x := range strings.Split(v, ",") {
						if x = strings.TrimSpace(strings.ToLower(x)); x != "" {
							out.upstreamRemove = append(out.upstreamRemove, x)
						}
					}
				}
				continue
			}
			if anyMatch(h.c.allowedUp, []byte(n)) {
				out.upstreamSet = append(out.upstreamSet, header{n, strings.Join(vs, ",")})
			}
		}
		if bad := checkUpstream(out.upstreamSet, nil); bad != nil {
			return result{err: bad}
		}
		return out
	}
	out := result{kind: resultDenied, status: resp.StatusCode, body: string(body)}
	for name, vs := range resp.Header {
		n := strings.ToLower(name)
		if !clientHeaderAllowed(h.c.allowedClient, n) {
			continue
		}
		for _, v := range vs {
			out.clientHeaders = append(out.clientHeaders, header{n, v})
		}
	}
	return out
}

// clientHeaderAllowed: without allowed_client_headers every header of a
// denial but the framing and connection ones reaches the client.
func clientHeaderAllowed(ms []match.String, n string) bool {
	switch n {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "content-type":
		return false
	}
	if ms == nil {
		return true
	}
	return anyMatch(ms, []byte(n))
}
