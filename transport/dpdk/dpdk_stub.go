//go:build !dpdk || !linux

package dpdk

import (
	"errors"

	"github.com/proxylab/proxylab/transport"
)

// Built reports whether this binary has the DPDK transport.
const Built = false

// New refuses: this binary was built without DPDK.
func New(transport.Options) (transport.Transport, error) {
	return nil, errors.New("dpdk: this proxylab was built without DPDK; build it with `make build-dpdk` (go build -tags dpdk, needs libdpdk-dev 22.11 and pkg-config; `make deps` installs them)")
}
