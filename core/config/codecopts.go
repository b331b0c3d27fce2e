package config

import "time"

// HTTP2Options tune HTTP/2 connections (Envoy's http2_protocol_options).
type HTTP2Options struct {
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

// RPCOptions tune the connections of an RPC cluster.
type RPCOptions struct {
	// MaxInFlight bounds requests in flight on one connection; beyond it
	// another connection is opened.
	MaxInFlight int `yaml:"max_in_flight"`
	// HeartbeatInterval probes connections quiet that long; one probe
	// unanswered for another interval closes the connection. 0: off.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
}

// validateOptions checks the option blocks the cluster's codec reads.
func (c *Cluster) validateOptions(blocks []string, p string, add func(path, format string, args ...any)) {
	for _, b := range blocks {
		switch b {
		case "http2_protocol_options":
			c.HTTP2.validate(p+"."+b, add)
		case "rpc_protocol_options":
			if c.RPC.MaxInFlight < 1 || c.RPC.HeartbeatInterval < 0 {
				add(p+"."+b, "max_in_flight must be >= 1 and heartbeat_interval >= 0")
			}
		}
	}
}

func (o *RPCOptions) setDefaults() {
	o.MaxInFlight = 1024
	o.HeartbeatInterval = Duration(15 * time.Second)
}

func (o *HTTP2Options) setDefaults() {
	o.MaxConcurrentStreams = 128
	o.InitialStreamWindowSize = 256 << 10
	o.InitialConnectionWindowSize = 4 << 20
	o.MaxHeaderListSize = 64 << 10
	o.MaxResetsPerSecond, o.ResetBurst = 100, 400
}

func (o *HTTP2Options) validate(p string, add func(path, format string, args ...any)) {
	if o.MaxConcurrentStreams < 1 || o.MaxConcurrentStreams > 1<<31-1 {
		add(p+".max_concurrent_streams", "must be 1–2147483647")
	}
	// RFC 9113 §6.5.2 / §6.9.2: windows are 65535 … 2^31-1.
	if o.InitialStreamWindowSize < 65535 || o.InitialStreamWindowSize > 1<<31-1 {
		add(p+".initial_stream_window_size", "must be 65535–2147483647")
	}
	if o.InitialConnectionWindowSize < 65535 || o.InitialConnectionWindowSize > 1<<31-1 {
		add(p+".initial_connection_window_size", "must be 65535–2147483647")
	}
	if o.MaxHeaderListSize < 1024 {
		add(p+".max_header_list_size", "must be >= 1024")
	}
	if o.MaxResetsPerSecond < 1 || o.ResetBurst < 1 {
		add(p, "max_resets_per_second and reset_burst must be >= 1")
	}
}
