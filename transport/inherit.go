package transport

import (
	"errors"

	"github.com/proxylab/proxylab/foundation/buffer"
)

// Hot upgrade: a new process takes over the listening sockets of the one it
// replaces (core/upgrade passes them over a Unix socket with SCM_RIGHTS).
// Both capabilities are optional: a transport without file descriptors
// (dpdk) implements neither, and an upgrade is refused with that reason.

// Inherited hands Listen the listening sockets received from the process
// being replaced.
type Inherited interface {
	// Take returns the descriptor of an inherited listening socket bound to
	// address, at most once per socket; ok is false when none matches and
	// Listen binds a new one. The caller owns the returned descriptor.
	Take(network, address string) (fd int, ok bool)
}

// ListenerFDer is implemented by listeners backed by a kernel socket.
type ListenerFDer interface {
	// ListenerFD is the listening socket's descriptor. The listener keeps
	// owning it: it is valid until Close, and the caller must not close it.
	ListenerFD() (int, error)
}

// TakeInherited asks opts.Inherited for a socket bound to address.
func TakeInherited(opts Options, network, address string) (int, bool) {
	if opts.Inherited == nil {
		return -1, false
	}
	return opts.Inherited.Take(network, address)
}

// Detacher is implemented by connections whose socket can be handed to
// another process (hot upgrade connection migration).
//
// Detach stops reading and hands the socket over: done is called once,
// from the transport's goroutine and without any caller lock, after the
// last OnData and before OnClose, with a duplicate descriptor the callee
// of done then owns (or an error: the connection then just closes). The
// connection then closes as for Close; the peer sees nothing, because the
// duplicate keeps the socket open. Detach fails with ErrBusy while writes
// are queued (retry after OnDrained) and ErrClosed once closed. Nothing
// may be written after a successful Detach.
type Detacher interface {
	Detach(done func(fd int, err error)) error
}

// ConnAdopter is implemented by transports that take over an established
// connection's socket from another process (hot upgrade).
type ConnAdopter interface {
	// AdoptConn wraps the connected socket fd (owned by the transport from
	// here on, also on error). prefix, when not nil, holds bytes the other
	// process read from the socket but did not handle: it is delivered as
	// the first OnData after Start, before anything read from the socket.
	AdoptConn(fd int, prefix *buffer.Buf) (Conn, error)
}

// ErrBusy is returned by Detach while writes are queued.
var ErrBusy = errors.New("transport: writes queued")
