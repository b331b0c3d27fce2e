// Package transport is the contract between the proxy core and the ways bytes
// move: Go's runtime poller (netpoll), an own epoll reactor (rawepoll), eBPF
// sockmap, or a userspace TCP stack over DPDK. Nothing above this package knows
// which transport runs.
//
// The contract is readiness-driven: a transport calls a Handler when a
// connection has bytes, and Write never blocks. A goroutine-per-connection
// transport fits it by calling the same callbacks from its read loop; a reactor
// fits it without holding a goroutine or a read buffer per idle connection.
//
// Handler lifecycle for one Conn (callbacks are never invoked from inside a Conn
// method, so a handler may hold its own lock while it calls Write or Close):
//
//	callback    | when                               | may be followed by
//	------------+------------------------------------+--------------------------------
//	OnData      | bytes arrived (handler owns buf)   | OnData, OnReadEOF, OnClose
//	OnReadEOF   | peer shut down its write side      | OnClose (writes still allowed)
//	OnDrained   | write queue became empty           | anything; may run concurrently
//	            | after a Write returned queued > 0  | with read-side callbacks
//	OnClose     | closed by either side or an error  | nothing (exactly once)
//
// OnData, OnReadEOF and OnClose of one Conn are serialized. A handler must not
// block in a callback: a reactor runs many connections on few workers.
package transport

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/registry"
)

// Transport makes listeners and outbound connections. It is a value built from
// Options, never a process-global mode: two transports may coexist in one
// process (tests do this).
type Transport interface {
	// Name is the registered name, e.g. "netpoll".
	Name() string
	// Listen binds a TCP listener. Accepting starts with Listener.Start.
	Listen(network, address string) (Listener, error)
	// Dial connects asynchronously and calls done exactly once, from a
	// transport goroutine and never from inside Dial, with a connection that is
	// not yet started or with an error. timeout bounds the connect.
	Dial(network, address string, timeout time.Duration, done func(Conn, error))
	// Close releases the transport's own resources (reactors, worker pools).
	// Listeners and connections should be closed first.
	Close() error
}

// Listener accepts connections for one bound address.
type Listener interface {
	Addr() net.Addr
	// Start begins accepting; accept is called for every new connection from a
	// transport goroutine and must not block (it starts the Conn and returns).
	// Start is called once.
	Start(accept func(Conn))
	// Close stops accepting; established connections are unaffected.
	Close() error
}

// Conn is one established connection. The core's network.Conn owns it.
type Conn interface {
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Start begins delivering events to h. Called once, before any other
	// method except the address getters.
	Start(h Handler)
	// Write takes ownership of every buffer (they are released when written or
	// when the connection closes) and never blocks: what the socket does not
	// take at once is queued and flushed when it becomes writable, in order,
	// with as few syscalls as the platform allows (vectored writes). It returns
	// the bytes still queued after the call; when that is > 0 the handler gets
	// OnDrained once the queue empties. Callers apply backpressure by reading
	// less from the peer until then.
	Write(bufs ...*buffer.Buf) (queued int, err error)
	// ReadDisable(true) stops delivering OnData until a matching
	// ReadDisable(false); calls nest (a counter), so two reasons to stop reading
	// do not cancel each other.
	ReadDisable(disable bool)
	// CloseWrite sends FIN once the write queue has drained (half-close).
	CloseWrite() error
	// Close closes both directions at once, dropping queued writes, and leads
	// to OnClose. Calling it again is a no-op.
	Close() error
}

// Handler receives a connection's events; see the lifecycle table above.
type Handler interface {
	// OnData hands over ownership of b, which holds at least one byte.
	OnData(c Conn, b *buffer.Buf)
	OnReadEOF(c Conn)
	OnDrained(c Conn)
	// OnClose reports why the connection ended: nil for a local Close.
	OnClose(c Conn, err error)
}

// NopHandler implements every callback as a no-op (releasing data); embed it
// to override only what matters.
type NopHandler struct{}

func (NopHandler) OnData(_ Conn, b *buffer.Buf) { b.Release() }
func (NopHandler) OnReadEOF(Conn)               {}
func (NopHandler) OnDrained(Conn)               {}
func (NopHandler) OnClose(Conn, error)          {}

var _ Handler = NopHandler{}

// Optional capabilities, discovered with a type assertion and never assumed:
// a userspace-stack connection has no file descriptor.

// SyscallConner exposes the OS socket (sockmap needs the fd; hot upgrade
// passes fds).
type SyscallConner interface {
	SyscallConn() (syscall.RawConn, error)
}

// Stats are a transport's own counters, for metrics (zero where a transport
// does not have the notion: netpoll has no loops or wakeups of its own). A
// transport's counters of its own kind (sockmap's BPF programs, dpdk's NIC
// queues) it exports itself through stats.Collector.
type Stats struct {
	Loops                        int
	Accepts, Dials, DialFailures uint64
	Reads, EAGAINReads, Writes   uint64
	Wakeups, Events              uint64
}

// NearDialer is implemented by reactor transports that can connect on the
// event loop of an existing connection (a proxy's upstream on its
// downstream's loop, as Envoy's workers do): the two connections' callbacks
// then never run concurrently, and per-pair work needs no cross-loop
// hand-off (sockmap's splice relies on it).
type NearDialer interface {
	DialNear(near Conn, network, address string, timeout time.Duration, done func(Conn, error))
}

// Looper is implemented by connections of a reactor transport: Loop is the
// index (0, 1, …) of the event loop that runs the connection's callbacks,
// fixed for its life; negative when it has none (a wrapper, such as a
// crypto engine's connection, over a transport without loops). Layers above keep per-loop state with it (a host's
// upstream pool per loop, as Envoy's workers keep worker-local pools), so
// work for a connection stays on its loop.
type Looper interface {
	Loop() int
}

// Splicer is implemented by connections a transport can join inside the
// kernel (sockmap): after Splice, bytes arriving on either connection leave
// on the other without reaching user space.
//
// Splice is called once, on a started connection, with a started peer of the
// same transport dialed near it (NearDialer), from one of their callbacks,
// when nothing is queued for writing on either (the caller's OnDrained said
// so): bytes written before go out first. An error
// means the pair stays in user space, unchanged. After a successful Splice:
// OnData still delivers any byte the kernel passes up (rare: the caller
// forwards it as before); OnReadEOF comes when the peer's bytes have all
// been forwarded; CloseWrite completes asynchronously, once everything
// forwarded into the connection has entered its socket, and reports
// OnDrained then (the caller treats it like a queued write).
type Splicer interface {
	Splice(peer Conn) error
	// SplicedBytes is how many bytes that arrived on this connection the
	// transport forwarded to its peer itself (the caller did not see them),
	// whether or not Splice succeeded.
	SplicedBytes() uint64
}

// StatsReporter is implemented by transports that count their work.
type StatsReporter interface {
	Stats() Stats
}

// Options configure a transport instance.
type Options struct {
	// Workers is the number of event-loop workers for reactor transports;
	// 0 means one per usable CPU.
	Workers int
	// CPUs the process is pinned to, if any; reactors may pin loops to them.
	CPUs []int
	// ReadBufferSize is the buffer size taken from the pool for each read.
	ReadBufferSize int
	// Config is the transport's own options block, as its module's
	// Options decoder returned it (nil: the transport's defaults).
	Config any
	// Inherited, when set, supplies listening sockets taken over from the
	// process being replaced (hot upgrade); Listen uses them first.
	Inherited Inherited
	// ReusePort binds new listening sockets with SO_REUSEPORT: processes
	// that all set it share a port, the kernel spreading connections over
	// them. An inherited socket keeps its place in that group.
	ReusePort bool
}

// Factory builds a transport from options.
type Factory func(Options) (Transport, error)

// OptionsDecoder decodes a transport's own options block: the top-level
// block of the config named after the transport (node nil when the file
// has none: the defaults). selected says whether the config runs this
// transport; what is needed only to run it is checked only then. Errors
// are registry.FieldErrors under path; the value goes to Options.Config.
type OptionsDecoder func(node *yaml.Node, path string, selected bool) (any, []error)

// Module is a transport as registered: its name, its factory and, when it
// has settings, the decoder of its options block.
type Module struct {
	Name    string
	New     Factory
	Options OptionsDecoder // nil: no options block
}

var factories = registry.New[Module]("transport")

// Register makes a transport without options available by name.
// Registering a name twice panics.
func Register(name string, f Factory) { RegisterModule(Module{Name: name, New: f}) }

// RegisterModule makes a transport available by m.Name; duplicates panic.
func RegisterModule(m Module) { factories.Register(m.Name, m) }

// OptionsDecoders are the registered transports' options decoders, by name.
func OptionsDecoders() map[string]OptionsDecoder {
	out := map[string]OptionsDecoder{}
	for _, n := range factories.Names() {
		if m, _ := factories.Get(n); m.Options != nil {
			out[n] = m.Options
		}
	}
	return out
}

// ErrUnknown is wrapped by New for a name that is not registered.
var ErrUnknown = errors.New("transport: unknown transport")

// New builds the transport registered under name.
func New(name string, opts Options) (Transport, error) {
	m, ok := factories.Get(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (available: %v)", ErrUnknown, name, Names())
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = 16 << 10
	}
	return m.New(opts)
}

// Names lists the registered transports, sorted.
func Names() []string { return factories.Names() }

// Registered reports whether name is registered.
func Registered(name string) bool {
	_, ok := factories.Get(name)
	return ok
}

// ErrClosed is returned by Write on a closed connection.
var ErrClosed = errors.New("transport: connection closed")
