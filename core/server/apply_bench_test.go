package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/config"
)

// manyClusters is a config of n clusters of 3 hosts each, one route per
// cluster, where cluster 0's third host is lastHost (an EDS-like push
// changes one host of one cluster).
func manyClusters(tb testing.TB, n int, lastHost string) *config.Config {
	var b strings.Builder
	b.WriteString("listeners:\n  - {name: web, address: \"127.0.0.1:0\", http_proxy: {}}\nroutes:\n  - name: all\n    domains: [\"*\"]\n    routes:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {prefix: /c%d/, cluster: c%d}\n", i, i)
	}
	b.WriteString("clusters:\n")
	for i := range n {
		third := fmt.Sprintf("127.0.0.3:%d", 10000+i)
		if i == 0 {
			third = lastHost
		}
		fmt.Fprintf(&b, "  - {name: c%d, hosts: [{address: \"127.0.0.1:%d\"}, {address: \"127.0.0.2:%d\"}, {address: %q}]}\n", i, 10000+i, 10000+i, third)
	}
	cfg, err := config.Parse([]byte(b.String()), known())
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// BenchmarkApplyHostChange is one Apply of a config of 100 clusters where
// one host of one cluster changed (alternately), as an EDS push would.
func BenchmarkApplyHostChange(b *testing.B) {
	cfgs := [2]*config.Config{manyClusters(b, 100, "127.0.0.4:1"), manyClusters(b, 100, "127.0.0.4:2")}
	s := startServer(b, cfgs[0])
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Apply(cfgs[(i+1)%2]); err != nil {
			b.Fatal(err)
		}
	}
}
