package rpc

import (
	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/transport"
)

// Codec puts an xprotocol wire codec (bolt, dubbo …) in the stream-level
// codec registry: stream.Register(rpc.Codec{Wire: bolt.Codec{}}).
type Codec struct{ Wire xprotocol.Codec }

var _ stream.Codec = Codec{}

func (c Codec) Name() string { return c.Wire.Name() }

// Carries: an RPC codec's requests go only to clusters of the same codec.
func (c Codec) Carries() string { return c.Wire.Name() }
func (Codec) ALPN() []string    { return nil }

func (c Codec) Detect(p []byte) stream.Match {
	switch c.Wire.Match(p) {
	case xprotocol.Match:
		return stream.Matched
	case xprotocol.NeedMore:
		return stream.NeedMore
	}
	return stream.NoMatch
}

// NewServer: the listener's connections of this codec share one Stats.
func (c Codec) NewServer(*stream.ServerOptions) stream.Server {
	return &server{set: ServerSettings{Codec: c.Wire, Stats: &Stats{Codec: c.Wire.Name()}}}
}

// NewClient: the cluster's pools share the settings' Stats.
// Without an rpc_protocol_options block the settings' own defaults apply
// (1024 in flight, no heartbeat).
func (c Codec) NewClient(o *stream.ClientOptions) stream.Client {
	set := ClientSettings{
		Codec: c.Wire, ConnectTimeout: o.ConnectTimeout, MaxConnections: o.MaxConnections,
		MaxPending: o.MaxPending, IdleTimeout: o.IdleTimeout, Stats: &Stats{Codec: c.Wire.Name()},
	}
	if opt := stream.Block[Options](o.Blocks, OptionsKey); opt != nil {
		set.MaxInFlight, set.HeartbeatInterval = opt.MaxInFlight, opt.HeartbeatInterval.D()
	}
	return &client{set: set}
}

type server struct{ set ServerSettings }

func (s *server) NewConn(cbs stream.ServerCallbacks) stream.ServerConn {
	return NewServerConn(&s.set, cbs)
}
func (s *server) Multiplexed() bool { return true }
func (s *server) Stats() any        { return s.set.Stats }

type client struct{ set ClientSettings }

func (c *client) ALPN() []string { return nil }
func (c *client) Stats() any     { return c.set.Stats }

func (c *client) NewPool(tr transport.Transport, addr string, h stream.HostOptions) stream.HostPool {
	set := c.set
	set.ClusterConns, set.ClusterPending, set.Wrap = h.ClusterConns, h.ClusterPending, h.Wrap
	return NewPool(tr, addr, &set)
}
