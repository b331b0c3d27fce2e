package http2

import (
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/registry"
)

// OptionsKey is the YAML key of the HTTP/2 settings, in a listener's
// http_proxy block (downstream connections) and in a cluster (upstream
// ones): Envoy's http2_protocol_options.
const OptionsKey = "http2_protocol_options"

// Options tune HTTP/2 connections; the codec owns the block (OptionBlocks),
// core/config hands it over undecoded.
type Options struct {
	MaxConcurrentStreams        int `yaml:"max_concurrent_streams"`
	InitialStreamWindowSize     int `yaml:"initial_stream_window_size"`
	InitialConnectionWindowSize int `yaml:"initial_connection_window_size"`
	MaxHeaderListSize           int `yaml:"max_header_list_size"`
	// MaxResetsPerSecond and ResetBurst bound streams a client may cancel
	// (rapid-reset protection): beyond them the connection is closed with
	// ENHANCE_YOUR_CALM.
	MaxResetsPerSecond int `yaml:"max_resets_per_second"`
	ResetBurst         int `yaml:"reset_burst"`
}

// SetDefaults: Envoy-like limits, larger windows than RFC 9113's 64 KiB.
func (o *Options) SetDefaults() {
	o.MaxConcurrentStreams = 128
	o.InitialStreamWindowSize = 256 << 10
	o.InitialConnectionWindowSize = 4 << 20
	o.MaxHeaderListSize = 64 << 10
	o.MaxResetsPerSecond, o.ResetBurst = 100, 400
}

// Validate checks the ranges RFC 9113 allows.
func (o *Options) Validate(p string) []error {
	var errs []error
	if o.MaxConcurrentStreams < 1 || o.MaxConcurrentStreams > 1<<31-1 {
		errs = append(errs, registry.Errorf(p+".max_concurrent_streams", "must be 1–2147483647"))
	}
	// RFC 9113 §6.5.2 / §6.9.2: windows are 65535 … 2^31-1.
	if o.InitialStreamWindowSize < 65535 || o.InitialStreamWindowSize > 1<<31-1 {
		errs = append(errs, registry.Errorf(p+".initial_stream_window_size", "must be 65535–2147483647"))
	}
	if o.InitialConnectionWindowSize < 65535 || o.InitialConnectionWindowSize > 1<<31-1 {
		errs = append(errs, registry.Errorf(p+".initial_connection_window_size", "must be 65535–2147483647"))
	}
	if o.MaxHeaderListSize < 1024 {
		errs = append(errs, registry.Errorf(p+".max_header_list_size", "must be >= 1024"))
	}
	if o.MaxResetsPerSecond < 1 || o.ResetBurst < 1 {
		errs = append(errs, registry.Errorf(p, "max_resets_per_second and reset_burst must be >= 1"))
	}
	return errs
}

var (
	_ registry.Defaulter = (*Options)(nil)
	_ registry.Validator = (*Options)(nil)
)

// OptionBlocks: the HTTP/2 settings of listeners and of clusters.
func (Codec) OptionBlocks() []stream.OptionBlock {
	return []stream.OptionBlock{
		{Key: OptionsKey, Listener: true, Decode: registry.DecodeBlock[Options]},
		{Key: OptionsKey, Decode: registry.DecodeBlock[Options]},
	}
}

var _ stream.OptionBlocks = Codec{}

// settings turns the options (nil: the protocol defaults) into protocol
// settings (defaults applied, Stats allocated).
func settings(o *Options, s Settings) *Settings {
	if o != nil {
		s.MaxConcurrentStreams = uint32(o.MaxConcurrentStreams)
		s.InitialStreamWindow = int32(o.InitialStreamWindowSize)
		s.ConnWindow = int32(o.InitialConnectionWindowSize)
		s.MaxHeaderListSize = uint32(o.MaxHeaderListSize)
		s.ResetBurst, s.ResetRate = o.ResetBurst, float64(o.MaxResetsPerSecond)
	}
	return s.Prepare()
}
