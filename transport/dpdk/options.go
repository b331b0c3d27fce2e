package dpdk

import (
	"net/netip"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/transport"
)

// Options configure the dpdk transport: DPDK's EAL, the port it owns and
// the userspace TCP/IP stack's address on it. They are the config's
// top-level `dpdk:` block, decoded by DecodeOptions.
type Options struct {
	// EAL is DPDK's EAL command line after the program name, e.g.
	// [--no-huge, --no-pci, -m, "256", --vdev, "net_af_packet0,iface=veth0"].
	EAL []string `yaml:"eal"`
	// Port is the ethdev the stack runs on (a vdev name or PCI address).
	Port string `yaml:"port"`
	// Address is the stack's IPv4 address with prefix, e.g. 10.0.0.2/24;
	// Gateway, when set, the next hop for other destinations.
	Address string `yaml:"address"`
	Gateway string `yaml:"gateway"`
	// Queues is the rx/tx queue pairs, each polled by its own lcore (RSS
	// spreads flows over them when the NIC has it). 0 or 1: one.
	Queues int `yaml:"queues"`
}

// validate checks what running the transport needs.
func (o *Options) validate(path string) []error {
	var errs []error
	if o.Port == "" {
		errs = append(errs, registry.Errorf(path+".port", "required with transport dpdk (e.g. net_af_packet0)"))
	}
	if p, err := netip.ParsePrefix(o.Address); err != nil || !p.Addr().Is4() {
		errs = append(errs, registry.Errorf(path+".address", "want an IPv4 address with prefix, e.g. 10.0.0.2/24, got %q", o.Address))
	}
	if o.Gateway != "" {
		if a, err := netip.ParseAddr(o.Gateway); err != nil || !a.Is4() {
			errs = append(errs, registry.Errorf(path+".gateway", "want an IPv4 address, got %q", o.Gateway))
		}
	}
	if o.Queues < 0 || o.Queues > 64 {
		errs = append(errs, registry.Errorf(path+".queues", "must be between 0 and 64, got %d", o.Queues))
	}
	return errs
}

// DecodeOptions is the module's options decoder: the block is checked
// only when the config runs dpdk.
func DecodeOptions(node *yaml.Node, path string, selected bool) (any, []error) {
	o, errs := registry.Decode[Options](node, path)
	if errs == nil && selected {
		errs = o.validate(path)
	}
	if errs != nil {
		return nil, errs
	}
	return o, nil
}

// Module is the dpdk transport as cmd registers it.
var Module = transport.Module{Name: Name, New: New, Options: DecodeOptions}
