package http1

import (
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/transport"
)

// Codec is HTTP/1.1 in the stream-level codec registry. Its detection
// accepts any first bytes (a malformed request gets its 400 from the
// parser), so it belongs last in the registration order.
type Codec struct{}

var _ stream.Codec = Codec{}

func (Codec) Name() string               { return "http1" }
func (Codec) Carries() string            { return "http" }
func (Codec) ALPN() []string             { return []string{"http/1.1"} }
func (Codec) Detect([]byte) stream.Match { return stream.Matched }

// NewServer builds the listener's settings once; connections share them.
func (Codec) NewServer(o *stream.ServerOptions) stream.Server {
	return &server{set: ServerSettings{
		Limits:        h1.Limits{MaxRequestLine: o.MaxRequestLine, MaxHeaderBytes: o.MaxHeaderBytes, MaxHeaders: o.MaxHeaders},
		HeaderTimeout: o.HeaderTimeout,
		IdleTimeout:   o.IdleTimeout,
		HighWatermark: o.HighWatermark,
		Linger:        o.Linger,
		Timers:        o.Timers,
	}}
}

// NewClient builds the cluster's pool settings once; each host's pool
// copies them with its own breakers and TLS wrapper.
func (Codec) NewClient(o *stream.ClientOptions) stream.Client {
	return &client{set: ClientSettings{
		Limits:             h1.DefaultLimits,
		ConnectTimeout:     o.ConnectTimeout,
		MaxConnections:     o.MaxConnections,
		MaxPending:         o.MaxPending,
		MaxRequestsPerConn: o.MaxRequestsPerConn,
		IdleTimeout:        o.IdleTimeout,
		HighWatermark:      o.HighWatermark,
	}}
}

type server struct{ set ServerSettings }

func (s *server) NewConn(cbs stream.ServerCallbacks) stream.ServerConn {
	return NewServerConn(&s.set, cbs)
}
func (s *server) Multiplexed() bool { return false }
func (s *server) Stats() any        { return nil }

type client struct{ set ClientSettings }

// ALPN: an HTTP/1 cluster offers none, as before the registry.
func (c *client) ALPN() []string { return nil }
func (c *client) Stats() any     { return nil }

// CarriesTunnels: an HTTP/1.1 connection becomes an upgrade's or a
// CONNECT's tunnel.
func (c *client) CarriesTunnels() bool { return true }

var _ stream.Tunneller = (*client)(nil)

func (c *client) NewPool(tr transport.Transport, addr string, h stream.HostOptions) stream.HostPool {
	set := c.set
	set.ClusterConns, set.ClusterPending, set.Wrap = h.ClusterConns, h.ClusterPending, h.Wrap
	return NewPool(tr, addr, &set)
}
