package conncount

import (
	"testing"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/transporttest"
)

// TestConformance runs the suite every transport passes (the contract in
// package transport, over real loopback sockets) against the wrapper.
func TestConformance(t *testing.T) {
	transporttest.Run(t, func() transport.Transport {
		tr, err := New(transport.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	})
}
