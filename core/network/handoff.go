package network

import "github.com/proxylab/proxylab/transport"

// Hot upgrade support (core/upgrade): the listening socket is passed to the
// new process, then this one stops accepting and drains.

// TransportListener is the transport's listener, whose socket a hot upgrade
// passes on (transport.ListenerFDer).
func (l *Listener) TransportListener() transport.Listener { return l.tl }

// StopAccepting closes this process's handle on the listening socket and
// returns how many connections are open. A socket shared with another
// process keeps accepting there (the kernel queue is shared); Drain later
// winds the open connections down.
func (l *Listener) StopAccepting() int {
	return len(l.stop())
}
