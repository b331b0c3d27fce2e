package netpoll_test

import (
	"testing"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
	"github.com/proxylab/proxylab/transport/transporttest"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, func() transport.Transport {
		tr, err := netpoll.New(transport.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	})
}
