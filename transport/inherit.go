package transport

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
