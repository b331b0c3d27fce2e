package server

import (
	"testing"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/filter/cors"
	"github.com/proxylab/proxylab/core/filter/localratelimit"
)

func init() {
	filter.Register(localratelimit.Module)
	filter.Register(cors.Module)
}

// BenchmarkProxyHTTP1Filters is BenchmarkProxyHTTP1KeepAlive with a filter
// chain: none configured (the codec talks to the router directly), and
// local_ratelimit (a bucket never empty, x-ratelimit headers on) + cors (a
// matching Origin: its response headers are added).
func BenchmarkProxyHTTP1Filters(b *testing.B) {
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nOrigin: https://app.example.com\r\n\r\n")
	for _, bc := range []struct{ name, httpProxy, vhExtra string }{
		{"none", "{}", ""},
		{"ratelimit+cors", `{http_filters: [
      {name: local_ratelimit, typed_config: {token_bucket: {max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s}, enable_x_ratelimit_headers: DRAFT_VERSION_03}},
      {name: cors}]}`,
			`, typed_per_filter_config: {cors: {allow_origin_string_match: [{exact: "https://app.example.com"}], expose_headers: x-id}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, addr := startBenchProxyWith(b, rawHTTPUpstream(b), bc.httpProxy, bc.vhExtra)
			benchKeepAlive(b, addr, req)
		})
	}
}
