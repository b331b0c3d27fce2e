//go:build linux

package netpoll_test

import (
	"testing"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
	"github.com/proxylab/proxylab/transport/transporttest"
)

func TestUpgrade(t *testing.T) {
	transporttest.RunUpgrade(t, func(o transport.Options) transport.Transport {
		tr, err := netpoll.New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	})
}
