package http2

import (
	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/transport"
)

// Codec is HTTP/2 in the stream-level codec registry: detected by ALPN h2
// or the client preface (RFC 9113 §3.3, §3.4).
type Codec struct{}

var _ stream.Codec = Codec{}

func (Codec) Name() string    { return "http2" }
func (Codec) Carries() string { return "http" }
func (Codec) ALPN() []string  { return []string{"h2"} }

// Detect matches the whole client preface and waits on a prefix of it.
func (Codec) Detect(p []byte) stream.Match {
	n := min(len(p), len(http2.ClientPreface))
	switch {
	case string(p[:n]) != http2.ClientPreface[:n]:
		return stream.NoMatch
	case n < len(http2.ClientPreface):
		return stream.NeedMore
	}
	return stream.Matched
}

// NewServer prepares the listener's HTTP/2 settings once.
func (Codec) NewServer(o *stream.ServerOptions) stream.Server {
	return &server{set: settings(stream.Block[Options](o.Blocks, OptionsKey), Settings{IdleTimeout: o.IdleTimeout, Timers: o.Timers, EnableConnectProtocol: o.EnableConnectProtocol})}
}

// NewClient prepares the cluster's HTTP/2 settings once.
func (Codec) NewClient(o *stream.ClientOptions) stream.Client {
	return &client{set: ClientSettings{
		H2:                 settings(stream.Block[Options](o.Blocks, OptionsKey), Settings{IdleTimeout: o.IdleTimeout, Timers: o.Timers}),
		ConnectTimeout:     o.ConnectTimeout,
		MaxConnections:     o.MaxConnections,
		MaxPending:         o.MaxPending,
		MaxRequestsPerConn: o.MaxRequestsPerConn,
		IdleTimeout:        o.IdleTimeout,
	}}
}

type server struct{ set *Settings }

func (s *server) NewConn(cbs stream.ServerCallbacks) stream.ServerConn {
	return NewServerConn(s.set, cbs)
}
func (s *server) Multiplexed() bool { return true }
func (s *server) Stats() any        { return s.set.Stats }

type client struct{ set ClientSettings }

func (c *client) ALPN() []string { return []string{"h2"} }
func (c *client) Stats() any     { return c.set.H2.Stats }

func (c *client) NewPool(tr transport.Transport, addr string, h stream.HostOptions) stream.HostPool {
	set := c.set
	set.ClusterConns, set.ClusterPending, set.Wrap, set.Scheme = h.ClusterConns, h.ClusterPending, h.Wrap, "http"
	if h.Secure {
		set.Scheme = "https"
	}
	return NewPool(tr, addr, &set)
}
