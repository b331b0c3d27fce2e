package http2

import "github.com/proxylab/proxylab/core/network"

// sessionLock is the session lock network.Conn uses (deferred flushes,
// posted work), for the tests' sessions.
type sessionLock = network.SessionLock
