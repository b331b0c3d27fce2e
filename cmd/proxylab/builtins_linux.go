package main

import (
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/dpdk"
	"github.com/proxylab/proxylab/transport/rawepoll"
	"github.com/proxylab/proxylab/transport/sockmap"
)

// Linux-only built-ins; elsewhere --transport rawepoll or sockmap is refused
// with the list of transports that exist.
func registerPlatformBuiltins() {
	transport.Register(rawepoll.Name, rawepoll.New)
	transport.RegisterModule(sockmap.Module) // needs root (BPF); refused with the reason otherwise
	transport.RegisterModule(dpdk.Module)    // built with -tags dpdk; otherwise refused with how to build it
}

// setCgroup applies --cgroup to the sockmap transport's options.
func setCgroup(cfg *config.Config, dir string) {
	if o, ok := cfg.Plugins[sockmap.Name].(*sockmap.Options); ok {
		o.Cgroup = dir
	}
}
