package main

import (
	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/filter/compressor"
	"github.com/proxylab/proxylab/core/filter/cors"
	"github.com/proxylab/proxylab/core/filter/extauthz"
	"github.com/proxylab/proxylab/core/filter/fault"
	"github.com/proxylab/proxylab/core/filter/localratelimit"
	"github.com/proxylab/proxylab/core/filter/ratelimit"
	"github.com/proxylab/proxylab/core/filter/rbac"
	"github.com/proxylab/proxylab/core/network"
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

// The defaults where a config names no transport, engine or protocol.
const (
	defaultTransport = netpoll.Name
	defaultEngine    = gotls.Name
	defaultProtocol  = "http1" // a cluster's protocol when its config names none
)

// registerBuiltins is the one list of what this binary ships: transports,
// crypto engines, L7 codecs and load-balancing policies. A new transport,
// engine, codec or LB policy is one package plus one line here
// (docs/extending.md).
func registerBuiltins() {
	// L7 codecs; the order is auto-detection's: HTTP/2 by its preface,
	// the RPC codecs by their magic, HTTP/1 takes whatever is left.
	stream.Register(h2s.Codec{})
	stream.Register(rpc.Codec{Wire: bolt.Codec{}})
	stream.Register(rpc.Codec{Wire: dubbo.Codec{}})
	stream.Register(h1s.Codec{})

	offload.RegisterModule(gotls.Module) // pkcs11 keys
	offload.RegisterModule(gm.Module)    // TLCP: double certificates, and tlcp: beside TLS

	transport.Register(netpoll.Name, netpoll.New)
	registerPlatformBuiltins() // rawepoll on Linux

	upstream.RegisterLB("round_robin", upstream.NewWeightedRoundRobin) // smooth weighted; plain rotation when weights are equal
	upstream.RegisterLB("random", upstream.NewRandom)
	upstream.RegisterLBPolicy("least_request", upstream.LeastRequestPolicy) // lb_options: choice_count
	upstream.RegisterLBPolicy("ring_hash", upstream.RingHashPolicy)         // lb_options: minimum_ring_size, maximum_ring_size, hash_function
	upstream.RegisterLBPolicy("maglev", upstream.MaglevPolicy)              // lb_options: table_size

	// HTTP stream filters (http_filters; docs/filters.md).
	filter.Register(fault.Module)
	filter.Register(localratelimit.Module)
	filter.Register(cors.Module)
	filter.Register(rbac.Module)
	network.RegisterListenerFilter(rbac.NetworkModule) // listener_filters: rbac at accept
	filter.Register(ratelimit.Module)
	filter.Register(extauthz.Module)
	filter.Register(compressor.Module)
}
