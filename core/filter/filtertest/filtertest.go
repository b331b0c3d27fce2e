// Package filtertest drives one filter in package tests: Stream and Info
// record what the filter asks of its stream (continue, local reply, added
// data, posted functions). It is a unit-test driver for a single filter,
// not a chain; integration tests run the real binary.
package filtertest

import (
	"crypto/x509"
	"net"
	"sync"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
)

// Route is a matched route for Info.Route.
type Route struct{ RouteName, VHost, ClusterName string }

func (r *Route) Name() string        { return r.RouteName }
func (r *Route) VirtualHost() string { return r.VHost }
func (r *Route) Cluster() string     { return r.ClusterName }

// Info is a settable filter.Info.
type Info struct {
	Remote, Local net.Addr
	ServerName    string
	Cert          *x509.Certificate
	IsGRPC, IsRPC bool
	MatchedRoute  *Route
	PerRoute      any
}

func (i *Info) RemoteAddr() net.Addr               { return i.Remote }
func (i *Info) LocalAddr() net.Addr                { return i.Local }
func (i *Info) SNI() string                        { return i.ServerName }
func (i *Info) PeerCertificate() *x509.Certificate { return i.Cert }
func (i *Info) GRPC() bool                         { return i.IsGRPC }
func (i *Info) RPC() bool                          { return i.IsRPC }
func (i *Info) PerRouteConfig() any                { return i.PerRoute }
func (i *Info) Route() filter.Route {
	if i.MatchedRoute == nil {
		return nil
	}
	return i.MatchedRoute
}

// Stream records a filter's calls. Post queues the function on Posted; the
// test runs it (as the session would) with RunPosted.
type Stream struct {
	I            Info
	ContinuedDec int
	ContinuedEnc int
	Reply        *filter.LocalReply
	AddedDecoded []byte
	AddedEncoded []byte
	RouteCleared int
	Held         *protocol.Head // what RequestHead returns
	Posted       chan func()
	mu           sync.Mutex
	destroyed    bool
	state        map[string]any
}

// NewStream returns a Stream whose Post queue holds up to 16 functions.
func NewStream() *Stream { return &Stream{Posted: make(chan func(), 16)} }

func (s *Stream) ContinueDecoding()                  { s.ContinuedDec++ }
func (s *Stream) ContinueEncoding()                  { s.ContinuedEnc++ }
func (s *Stream) SendLocalReply(r filter.LocalReply) { s.Reply = &r }
func (s *Stream) AddDecodedData(p []byte)            { s.AddedDecoded = append(s.AddedDecoded, p...) }
func (s *Stream) AddEncodedData(p []byte)            { s.AddedEncoded = append(s.AddedEncoded, p...) }
func (s *Stream) ClearRouteCache()                   { s.RouteCleared++ }
func (s *Stream) Info() filter.Info                  { return &s.I }
func (s *Stream) RequestHead() *protocol.Head        { return s.Held }

// Post queues f unless the stream was destroyed.
func (s *Stream) Post(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.destroyed {
		s.Posted <- f
	}
}

// Destroy marks the stream gone: later Posts are dropped.
func (s *Stream) Destroy() {
	s.mu.Lock()
	s.destroyed = true
	s.mu.Unlock()
}

// State implements filter.Stream.
func (s *Stream) State() map[string]any {
	if s.state == nil {
		s.state = map[string]any{}
	}
	return s.state
}

// RunPosted runs the next posted function (blocking until one comes).
func (s *Stream) RunPosted() { (<-s.Posted)() }

var (
	_ filter.Stream    = (*Stream)(nil)
	_ filter.HeadStore = (*Stream)(nil)
)
