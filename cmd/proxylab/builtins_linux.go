package main

import (
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/dpdk"
	"github.com/proxylab/proxylab/transport/rawepoll"
	"github.com/proxylab/proxylab/transport/sockmap"
)

// Linux-only built-ins; elsewhere --transport rawepoll or sockmap is refused
// with the list of transports that exist.
func registerPlatformBuiltins() {
	transport.Register(rawepoll.Name, rawepoll.New)
	transport.Register(sockmap.Name, sockmap.New) // needs root (BPF); refused with the reason otherwise
	transport.Register(dpdk.Name, dpdk.New)       // built with -tags dpdk; otherwise refused with how to build it
}
