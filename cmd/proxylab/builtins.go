package main

import (
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
	"github.com/proxylab/proxylab/core/stream"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
	"github.com/proxylab/proxylab/core/stream/rpc"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/gm"
	"github.com/proxylab/proxylab/offload/gotls"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// defaultProtocol is a cluster's protocol when its config names none.
const defaultProtocol = "http1"

// registerBuiltins is the one list of what this binary ships: transports,
// crypto engines, L7 codecs and load-balancing policies. A new
// transport, engine or protocol is one package plus one line here.
func registerBuiltins() {
	// L7 codecs; the order is auto-detection's: HTTP/2 by its preface,
	// the RPC codecs by their magic, HTTP/1 takes whatever is left.
	stream.Register(h2s.Codec{})
	stream.Register(rpc.Codec{Wire: bolt.Codec{}})
	stream.Register(rpc.Codec{Wire: dubbo.Codec{}})
	stream.Register(h1s.Codec{})

	offload.Register(gotls.Name, gotls.New)
	offload.Register(gm.Name, gm.New)

	transport.Register(netpoll.Name, netpoll.New)
	registerPlatformBuiltins() // rawepoll on Linux

	upstream.RegisterLB("round_robin", upstream.NewWeightedRoundRobin) // smooth weighted; plain rotation when weights are equal
	upstream.RegisterLB("random", upstream.NewRandom)
	upstream.RegisterLB("least_request", upstream.NewLeastRequest)
	upstream.RegisterLB("ring_hash", upstream.NewRingHash)
	upstream.RegisterLB("maglev", upstream.NewMaglev)
}
