//go:build linux

package rawepoll_test

import (
	"testing"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/rawepoll"
	"github.com/proxylab/proxylab/transport/transporttest"
)

func TestConformance(t *testing.T) {
	for _, workers := range []int{1, 3} {
		transporttest.Run(t, func() transport.Transport {
			tr, err := rawepoll.New(transport.Options{Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			return tr
		})
	}
}
