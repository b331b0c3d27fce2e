//go:build linux

package upgrade

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/proxylab/proxylab/transport"
)

// Client is the new process's side: it holds the sockets the old process
// offered until the config takes them (Take) and then reports Ready or
// Fail. Its methods may be called from any goroutine.
type Client struct {
	c     *net.UnixConn
	log   *slog.Logger
	stats *Stats
	pid   int // the old process

	mu      sync.Mutex
	socks   []Socket
	fds     []int // parallel to socks; -1 once taken or closed
	adopted []string
	ended   bool
}

var _ transport.Inherited = (*Client)(nil)

// Dial connects to the running process's upgrade socket and receives its
// offer. A refusal is an error carrying the old process's reason.
func Dial(path, version string, log *slog.Logger, st *Stats) (*Client, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("upgrade: connecting to the running process: %w", err)
	}
	if err := checkPeer(c); err != nil {
		c.Close()
		return nil, err
	}
	if err := send(c, message{Kind: kindHello, PID: os.Getpid(), Version: version}, nil); err != nil {
		c.Close()
		return nil, err
	}
	m, fds, err := recv(c, stepTimeout)
	if err != nil {
		c.Close()
		return nil, err
	}
	switch {
	case m.Kind == kindRefuse:
		closeAll(fds)
		c.Close()
		return nil, fmt.Errorf("upgrade: the running process refused: %s", m.Reason)
	case m.Kind != kindOffer || len(fds) != len(m.Sockets):
		closeAll(fds)
		c.Close()
		return nil, fmt.Errorf("upgrade: bad offer (%s, %d sockets, %d descriptors)", m.Kind, len(m.Sockets), len(fds))
	}
	log.Info("upgrade: received sockets", "old_pid", m.PID, "old_version", m.Version, "sockets", len(fds))
	return &Client{c: c, log: log, stats: st, pid: m.PID, socks: m.Sockets, fds: fds}, nil
}

// OldPID is the process being replaced.
func (u *Client) OldPID() int { return u.pid }

// Take hands a traffic listener's socket to the transport
// (transport.Inherited): the one bound to address, or configured with the
// same address string when that has port 0.
func (u *Client) Take(network, address string) (int, bool) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return -1, false
	}
	fd, _, ok := u.take(SocketListener, func(s Socket) bool { return sameAddress(s, address) })
	if ok {
		u.stats.ListenersAdopted.Add(1)
	}
	return fd, ok
}

// TakeAdmin returns the old admin listener's socket when it is bound to
// address.
func (u *Client) TakeAdmin(address string) (int, bool) {
	fd, _, ok := u.take(SocketAdmin, func(s Socket) bool { return sameAddress(s, address) })
	return fd, ok
}

// TakeUpgrade returns the old upgrade socket when it has path.
func (u *Client) TakeUpgrade(path string) (int, bool) {
	fd, _, ok := u.take(SocketUpgrade, func(s Socket) bool { return s.Name == path })
	return fd, ok
}

func (u *Client) take(kind string, match func(Socket) bool) (int, Socket, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, s := range u.socks {
		if s.Kind == kind && u.fds[i] >= 0 && match(s) {
			fd := u.fds[i]
			u.fds[i] = -1
			u.adopted = append(u.adopted, socketKey(s))
			u.log.Info("upgrade: adopted socket", "kind", kind, "name", s.Name, "address", s.Bound)
			return fd, s, true
		}
	}
	return -1, Socket{}, false
}

// sameAddress: address names the socket's bound address (resolved: ":80"
// is "0.0.0.0:80"), or is the same configured string with port 0.
func sameAddress(s Socket, address string) bool {
	if address == s.Bound {
		return true
	}
	a, err := net.ResolveTCPAddr("tcp", address)
	if err != nil {
		return false
	}
	if a.Port == 0 {
		return address == s.Address
	}
	b, err := net.ResolveTCPAddr("tcp", s.Bound)
	if err != nil || a.Port != b.Port {
		return false
	}
	unspec := func(ip net.IP) bool { return ip == nil || ip.IsUnspecified() }
	return a.IP.Equal(b.IP) || (unspec(a.IP) && unspec(b.IP))
}

// Ready tells the old process that this one accepts on everything it
// took, waits until the old one stopped accepting, then closes the
// sockets the config did not take (listeners it dropped). An error means
// the old process keeps serving and this one must exit.
//
// conns says whether this process can adopt migrated connections
// (ReceiveConns); without, the old process drains them all.
func (u *Client) Ready(conns bool) error {
	u.mu.Lock()
	if u.ended {
		u.mu.Unlock()
		return errors.New("upgrade: already ended")
	}
	u.ended = true
	adopted := append([]string(nil), u.adopted...)
	u.mu.Unlock()
	defer u.closeRest()
	if err := send(u.c, message{Kind: kindReady, PID: os.Getpid(), Adopted: adopted, Conns: conns}, nil); err != nil {
		u.c.Close()
		return err
	}
	m, fds, err := recv(u.c, readyTimeout)
	closeAll(fds)
	switch {
	case err != nil:
		// The old process died or hung after our ready: serving is right.
		u.log.Warn("upgrade: no confirmation from the old process; serving anyway", "old_pid", u.pid, "error", err)
		u.c.Close()
		return nil
	case m.Kind == kindAbort:
		u.c.Close()
		return fmt.Errorf("upgrade: the old process aborted the hand-over: %s", m.Reason)
	case m.Kind != kindStopped:
		u.c.Close()
		return fmt.Errorf("upgrade: unexpected %s from the old process", m.Kind)
	}
	u.log.Info("upgrade: the old process stopped accepting", "old_pid", u.pid, "adopted", adopted)
	return nil
}

// ReceiveConns takes the connections the old process migrates until it
// says it is done (or goes away), handing each to adopt, which owns the
// descriptor and the carried bytes; run it in its own goroutine after
// Ready. An adopt error is logged: that connection is lost.
func (u *Client) ReceiveConns(adopt func(listener string, fd int, data []byte) error) {
	defer u.c.Close()
	for {
		m, fds, err := recv(u.c, 0)
		if err != nil || m.Kind == kindDone {
			u.log.Info("upgrade: the old process is done migrating", "old_pid", u.pid, "connections_adopted", u.stats.ConnectionsAdopted.Load())
			closeAll(fds)
			return
		}
		if m.Kind != kindConn || len(fds) != 1 {
			closeAll(fds)
			u.log.Warn("upgrade: unexpected message from the old process", "kind", m.Kind, "descriptors", len(fds))
			continue
		}
		if err := adopt(m.Listener, fds[0], m.Data); err != nil {
			u.log.Warn("upgrade: cannot adopt a migrated connection", "listener", m.Listener, "error", err)
			continue
		}
		u.stats.ConnectionsAdopted.Add(1)
	}
}

// Fail tells the old process this one gives up (it keeps serving) and
// releases everything received. Safe after Ready (then a no-op).
func (u *Client) Fail(reason string) {
	u.mu.Lock()
	if u.ended {
		u.mu.Unlock()
		return
	}
	u.ended = true
	u.mu.Unlock()
	send(u.c, message{Kind: kindFail, PID: os.Getpid(), Reason: reason}, nil)
	u.closeRest()
	u.c.Close()
}

func (u *Client) closeRest() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, fd := range u.fds {
		if fd >= 0 {
			u.log.Info("upgrade: closing a socket the config no longer has", "kind", u.socks[i].Kind, "name", u.socks[i].Name, "address", u.socks[i].Bound)
			closeAll([]int{fd})
			u.fds[i] = -1
		}
	}
}
