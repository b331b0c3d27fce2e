package server

import (
	"testing"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/filter/rbac"
)

func init() { filter.Register(rbac.Module) }

// BenchmarkProxyHTTP1FilterChain is the chain: local_ratelimit +
// rbac (an ALLOW policy over method, path prefix and source CIDR, all
// matching) + cors, against BenchmarkProxyHTTP1Filters/none.
func BenchmarkProxyHTTP1FilterChain(b *testing.B) {
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nOrigin: https://app.example.com\r\n\r\n")
	httpProxy := `{http_filters: [
      {name: local_ratelimit, typed_config: {token_bucket: {max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s}}},
      {name: rbac, typed_config: {rules: {policies: {p: {permissions: [{and_rules: {rules: [{header: {name: ":method", string_match: {exact: GET}}}, {url_path: {path: {prefix: /be}}}]}}], principals: [{source_ip: {address_prefix: 127.0.0.0, prefix_len: 8}}]}}}}},
      {name: cors}]}`
	vh := `, typed_per_filter_config: {cors: {allow_origin_string_match: [{exact: "https://app.example.com"}], expose_headers: x-id}}`
	_, addr := startBenchProxyWith(b, rawHTTPUpstream(b), httpProxy, vh)
	benchKeepAlive(b, addr, req)
}
