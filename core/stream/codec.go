package stream

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/transport"
)

// Codec is one L7 protocol as the layers above see it: a name, how its
// connections are recognised (first bytes, ALPN), and the constructors of
// its server side (per listener) and client side (per cluster). A codec is
// one package plus one Register line in the binary's built-ins; nothing
// above this package knows which codec speaks. Implementations are
// stateless values, safe for concurrent use.
type Codec interface {
	// Name is the registered name: a listener's codec and a cluster's
	// protocol in the config.
	Name() string
	// Carries is the request protocol its streams carry: codecs carrying
	// the same one can be proxied into each other (every HTTP version
	// carries "http"; an RPC codec carries its own name).
	Carries() string
	// ALPN lists the TLS application protocols it answers to, preferred
	// first; a TLS listener offers them, and a connection that negotiated
	// one of them speaks this codec without detection.
	ALPN() []string
	// Detect looks at a connection's first bytes (not consumed).
	Detect(p []byte) Match
	// NewServer builds the listener-wide server side, once per listener.
	NewServer(o *ServerOptions) Server
	// NewClient builds the cluster-wide client side, once per cluster.
	NewClient(o *ClientOptions) Client
}

// Match is a codec's verdict on a connection's first bytes.
type Match int

const (
	NoMatch  Match = iota // not this codec
	NeedMore              // too few bytes to tell
	Matched               // this codec
)

// detectLimit is how many bytes detection waits for at most: beyond it a
// codec still saying NeedMore counts as NoMatch.
const detectLimit = 64

// ServerConn is a downstream codec on one connection: the terminal read
// filter the proxy hands every event of the connection.
type ServerConn interface {
	network.ReadFilter
	network.ConnCallbacks
	network.Drainer
}

// Server is a codec's listener-wide server side.
type Server interface {
	// NewConn is the codec of one new downstream connection whose streams
	// cbs receives.
	NewConn(cbs ServerCallbacks) ServerConn
	// Multiplexed says whether a connection's streams run concurrently.
	Multiplexed() bool
	// Stats are the events of this listener's connections of the codec
	// (nil when it counts none), for the metrics exporter.
	Stats() any
}

// Client is a codec's cluster-wide client side.
type Client interface {
	// ALPN is what a TLS upstream connection offers when the cluster sets
	// none (nil: offer nothing).
	ALPN() []string
	// NewPool is the connection pool of one host.
	NewPool(tr transport.Transport, addr string, h HostOptions) HostPool
	// Stats are the events of the cluster's connections (nil: none).
	Stats() any
}

// Tunneller is implemented by a client side whose upstream connections can
// carry the byte tunnel of an upgraded or CONNECT request (HTTP/1.1: the
// connection itself becomes the tunnel after the upstream agrees). The
// proxy answers 501 to a tunnel request for a cluster whose codec's client
// side does not say so.
type Tunneller interface {
	CarriesTunnels() bool
}

// HostPool is what a host's connection pool offers, whatever the codec.
type HostPool interface {
	Pool
	// Protocol is the codec the pool speaks ("http1", "http2", "bolt" …).
	Protocol() string
	Counters() *PoolStats
	// Idle is the number of open connections carrying no request.
	Idle() int
	// SweepIdle closes connections idle past the pool's idle timeout.
	SweepIdle(now time.Time) int
}

// HostOptions are what a cluster sets per host on its pool.
type HostOptions struct {
	// ClusterConns and ClusterPending are the cluster-wide circuit breakers
	// every host's pool counts against (nil: none).
	ClusterConns, ClusterPending *Breaker
	// Wrap, when set, secures each new connection (a crypto engine's
	// client side).
	Wrap func(c transport.Conn, host string) transport.Conn
	// Secure says the connections are secured (the request scheme).
	Secure bool
}

// ServerOptions are a listener's settings, for every server codec to take
// what applies to it. Zero fields take the codec's defaults.
type ServerOptions struct {
	// Head limits of text protocols.
	MaxRequestLine, MaxHeaderBytes, MaxHeaders int
	// HeaderTimeout bounds receiving a request head; IdleTimeout closes a
	// connection with no request in flight; Linger bounds waiting for the
	// client's FIN after a closing response.
	HeaderTimeout, IdleTimeout, Linger time.Duration
	// HighWatermark is the queued-write size above which a stream asks the
	// upstream side to stop reading.
	HighWatermark int
	// Timers is the shared wheel the connections' timeouts run on.
	Timers *timer.Wheel
	// Blocks are the listener's codec option blocks by YAML key, as the
	// owning codec's OptionBlock.Decode made them; a codec reads its own
	// (absent: its built-in defaults).
	Blocks map[string]any
	// EnableConnectProtocol accepts extended CONNECT (RFC 8441).
	EnableConnectProtocol bool
}

// ClientOptions are a cluster's settings, for every client codec to take
// what applies to it.
type ClientOptions struct {
	ConnectTimeout, IdleTimeout time.Duration
	// MaxConnections and MaxPending bound each host's connections and the
	// requests waiting for one (0: unlimited); MaxRequestsPerConn retires
	// a connection after that many requests (0: no limit).
	MaxConnections, MaxPending, MaxRequestsPerConn int
	HighWatermark                                  int
	Timers                                         *timer.Wheel
	// Blocks are the cluster's codec option blocks by YAML key, as the
	// owning codec's OptionBlock.Decode made them; a codec reads its own
	// (absent: its built-in defaults).
	Blocks map[string]any
}

// The registry: registration order is detection order.
var (
	codecMu sync.RWMutex
	codecs  []Codec
)

// Register makes a codec available by name; a name registered twice panics.
// Registration order is the order "auto" tries detection in.
func Register(c Codec) {
	codecMu.Lock()
	defer codecMu.Unlock()
	if slices.ContainsFunc(codecs, func(o Codec) bool { return o.Name() == c.Name() }) {
		panic(fmt.Sprintf("stream: codec %q registered twice", c.Name()))
	}
	codecs = append(codecs, c)
}

// Lookup returns the codec registered as name.
func Lookup(name string) (Codec, bool) {
	codecMu.RLock()
	defer codecMu.RUnlock()
	for _, c := range codecs {
		if c.Name() == name {
			return c, true
		}
	}
	return nil, false
}

// Codecs lists the registered codecs in registration order.
func Codecs() []Codec {
	codecMu.RLock()
	defer codecMu.RUnlock()
	return slices.Clone(codecs)
}

// Detect picks among cs (in order) the codec of a connection that
// negotiated alpn ("" when none) and whose first bytes are p: the codec
// listing alpn, else the first whose Detect says Matched — unless one
// before it still needs more bytes (and fewer than 64 are held), then -1
// and NeedMore. No codec matching gives -1 and NoMatch.
func Detect(cs []Codec, alpn string, p []byte) (int, Match) {
	if alpn != "" {
		for i, c := range cs {
			if slices.Contains(c.ALPN(), alpn) {
				return i, Matched
			}
		}
	}
	more := false
	for i, c := range cs {
		switch c.Detect(p) {
		case Matched:
			if more {
				return -1, NeedMore
			}
			return i, Matched
		case NeedMore:
			more = len(p) < detectLimit
		}
	}
	if more {
		return -1, NeedMore
	}
	return -1, NoMatch
}

// OptionBlock is a config block a codec owns (typed, defaulted and checked
// in the codec's package; core/config names none): a cluster's key, read by
// the client side and checked on the clusters speaking the codec, or with
// Listener a key of a listener's http_proxy block, read by the server side
// and checked on every http_proxy listener (each builds every codec's
// server side). Codecs may share a key (the RPC codecs do): they must then
// declare the same type; the first registered decodes it.
type OptionBlock struct {
	Key      string
	Listener bool
	// Decode gives the block with its defaults and the file's fields (node
	// nil: the defaults) and the decoding errors, unknown keys refused,
	// paths under path (registry.DecodeBlock); it checks its values by
	// implementing registry.Validator.
	Decode func(node *yaml.Node, path string) (any, []error)
}

// OptionBlocks is implemented by a codec that owns config blocks.
type OptionBlocks interface {
	OptionBlocks() []OptionBlock
}

// Block returns the block key of blocks as a *T, or nil when it is absent
// (or of another type): a codec's way to its own settings.
func Block[T any](blocks map[string]any, key string) *T {
	v, _ := blocks[key].(*T)
	return v
}
