//go:build linux

package rawepoll_test

import (
	"testing"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/rawepoll"
	"github.com/proxylab/proxylab/transport/transporttest"
)

func TestUpgrade(t *testing.T) {
	for _, workers := range []int{1, 3} {
		transporttest.RunUpgrade(t, func(o transport.Options) transport.Transport {
			o.Workers = workers
			tr, err := rawepoll.New(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			return tr
		})
	}
}
