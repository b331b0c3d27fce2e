package main

import (
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/rawepoll"
)

// Linux-only built-ins; elsewhere --transport rawepoll is refused with the
// list of transports that exist.
func registerPlatformBuiltins() {
	transport.Register(rawepoll.Name, rawepoll.New)
}
