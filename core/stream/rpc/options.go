package rpc

import (
	"time"

	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/registry"
)

// OptionsKey is the YAML key of a cluster's RPC settings, shared by every
// codec built on rpc.Codec (bolt, dubbo …).
const OptionsKey = "rpc_protocol_options"

// Options tune the connections of an RPC cluster; the codec owns the block
// (OptionBlocks), core/config hands it over undecoded.
type Options struct {
	// MaxInFlight bounds requests in flight on one connection; beyond it
	// another connection is opened.
	MaxInFlight int `yaml:"max_in_flight"`
	// HeartbeatInterval probes connections quiet that long; one probe
	// unanswered for another interval closes the connection. 0: off.
	HeartbeatInterval registry.Duration `yaml:"heartbeat_interval"`
}

// SetDefaults: 1024 in flight, a heartbeat every 15 s.
func (o *Options) SetDefaults() {
	o.MaxInFlight = 1024
	o.HeartbeatInterval = registry.Duration(15 * time.Second)
}

// Validate checks the bounds.
func (o *Options) Validate(p string) []error {
	if o.MaxInFlight < 1 || o.HeartbeatInterval < 0 {
		return []error{registry.Errorf(p, "max_in_flight must be >= 1 and heartbeat_interval >= 0")}
	}
	return nil
}

var (
	_ registry.Defaulter = (*Options)(nil)
	_ registry.Validator = (*Options)(nil)
)

// OptionBlocks: a cluster's RPC settings.
func (Codec) OptionBlocks() []stream.OptionBlock {
	return []stream.OptionBlock{{Key: OptionsKey, Decode: registry.DecodeBlock[Options]}}
}

var _ stream.OptionBlocks = Codec{}
