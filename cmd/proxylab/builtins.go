package main

import (
	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/gm"
	"github.com/proxylab/proxylab/offload/gotls"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// The defaults where a config names no transport or engine.
const (
	defaultTransport = netpoll.Name
	defaultEngine    = gotls.Name
)

// registerBuiltins is the one list of what this binary ships: transports,
// crypto engines, RPC protocols and load-balancing policies. A new
// transport, engine or protocol is one package plus one line here.
func registerBuiltins() {
	xprotocol.Register(bolt.Codec{})
	xprotocol.Register(dubbo.Codec{})

	offload.Register(gotls.Name, gotls.New)
	offload.RegisterModule(gm.Module) // TLCP: double certificates, and tlcp: beside TLS

	transport.Register(netpoll.Name, netpoll.New)
	registerPlatformBuiltins() // rawepoll on Linux

	upstream.RegisterLB("round_robin", upstream.NewWeightedRoundRobin) // smooth weighted; plain rotation when weights are equal
	upstream.RegisterLB("random", upstream.NewRandom)
	upstream.RegisterLB("least_request", upstream.NewLeastRequest)
	upstream.RegisterLB("ring_hash", upstream.NewRingHash)
	upstream.RegisterLB("maglev", upstream.NewMaglev)
}
