package upstream

import (
	"testing"

	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/stream"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
	"github.com/proxylab/proxylab/core/stream/rpc"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// TestClusterCarriesTunnels: whether a cluster can carry an upgrade's or
// CONNECT's tunnel is its codec's word (stream.Tunneller), not its name.
func TestClusterCarriesTunnels(t *testing.T) {
	registerTestLB.Do(func() { RegisterLB("hostpool-test", NewRoundRobin) })
	tr, err := netpoll.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, c := range []struct {
		codec stream.Codec
		want  bool
	}{
		{h1s.Codec{}, true},
		{h2s.Codec{}, false},
		{rpc.Codec{Wire: bolt.Codec{}}, false},
	} {
		t.Run(c.codec.Name(), func(t *testing.T) {
			cl, err := NewCluster(ClusterConfig{Name: "c", LB: "hostpool-test", Codec: c.codec.NewClient(&stream.ClientOptions{}),
				Carries: c.codec.Carries(), Hosts: []HostConfig{{Address: "127.0.0.1:1", Weight: 1}}}, tr)
			if err != nil {
				t.Fatal(err)
			}
			if got := cl.CarriesTunnels(); got != c.want {
				t.Fatalf("CarriesTunnels() = %v, want %v", got, c.want)
			}
		})
	}
}
