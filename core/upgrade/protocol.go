//go:build linux

// Package upgrade is the hot upgrade (MOSN's model): a new proxylab process
// connects to the running one over a Unix socket, receives its listening
// sockets with SCM_RIGHTS, starts accepting on them, and tells the old one,
// which then stops accepting and drains its connections. The kernel's
// accept queue is shared while both hold a socket, so no connection
// attempt is refused in between.
//
// The exchange, one message per SOCK_SEQPACKET datagram (JSON, descriptors
// attached to the message that lists them):
//
//	new → old  hello   {pid, version}
//	old → new  offer   {pid, sockets[]} + one descriptor per socket
//	           refuse  {reason}          (busy, no descriptors: dpdk, ...)
//	new → old  ready   {adopted[], conns} serving on the adopted sockets;
//	                   conns: it can adopt migrated connections
//	           fail    {reason}          the new process gives up
//	old → new  stopped {}                the old one no longer accepts
//	           abort   {reason}          the old one keeps serving: exit
//	old → new  conn    {listener, data} + the socket, for each connection
//	                   migrated (idle now, or at the end of its request)
//	           done    {}                the old one drained: no more conns
//
// A connection that closes without hello is ignored (a liveness probe).
package upgrade

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Message kinds.
const (
	kindHello   = "hello"
	kindOffer   = "offer"
	kindRefuse  = "refuse"
	kindReady   = "ready"
	kindFail    = "fail"
	kindStopped = "stopped"
	kindAbort   = "abort"
	kindConn    = "conn"
	kindDone    = "done"
)

// Socket kinds in an offer.
const (
	// SocketListener is a traffic listener of the config.
	SocketListener = "listener"
	// SocketAdmin is the admin API's listener.
	SocketAdmin = "admin"
	// SocketUpgrade is the upgrade socket itself, so the next upgrade
	// finds the new process at the same path.
	SocketUpgrade = "upgrade"
)

// Socket describes one passed descriptor.
type Socket struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`    // the listener's name; the path for SocketUpgrade
	Address string `json:"address"` // as configured
	Bound   string `json:"bound"`   // as bound (port 0 resolved)
}

type message struct {
	Kind    string   `json:"kind"`
	PID     int      `json:"pid,omitempty"`
	Version string   `json:"version,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Sockets []Socket `json:"sockets,omitempty"`
	Adopted []string `json:"adopted,omitempty"` // Kind/Name of each adopted socket
	// Listener and Data go with a migrated connection: the bytes the old
	// process read from it but did not handle.
	Listener string `json:"listener,omitempty"`
	// Conns, in ready: the new process can adopt migrated connections.
	Conns bool   `json:"conns,omitempty"`
	Data  []byte `json:"data,omitempty"`
}

const (
	maxMessage = 160 << 10 // fits the default socket buffer (net.core.wmem_default)
	// MaxCarry bounds the unhandled bytes a migrated connection carries
	// (base64 in the message); a connection with more is closed instead.
	MaxCarry = 64 << 10
	maxFDs   = 250 // below the kernel's SCM_MAX_FD (253)
	// readyTimeout bounds how long the old process waits for the new one
	// to build its config and start accepting.
	readyTimeout = 60 * time.Second
	// stepTimeout bounds every other step of the exchange.
	stepTimeout = 10 * time.Second
)

// errPeerGone is a connection closed without a message.
var errPeerGone = errors.New("upgrade: peer closed the upgrade connection")

func send(c *net.UnixConn, m message, fds []int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if len(b) > maxMessage || len(fds) > maxFDs {
		return fmt.Errorf("upgrade: %s message too large (%d bytes, %d descriptors)", m.Kind, len(b), len(fds))
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	c.SetWriteDeadline(time.Now().Add(stepTimeout))
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("upgrade: sending %s: %w", m.Kind, err)
	}
	return nil
}

// recv reads one message and the descriptors attached to it, which the
// caller owns.
func recv(c *net.UnixConn, timeout time.Duration) (message, []int, error) {
	b := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	var deadline time.Time // zero: none
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	c.SetReadDeadline(deadline)
	n, oobn, flags, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return message{}, nil, fmt.Errorf("upgrade: receiving: %w", err)
	}
	var fds []int
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return message{}, nil, fmt.Errorf("upgrade: control message: %w", err)
		}
		for _, cm := range cmsgs {
			got, err := unix.ParseUnixRights(&cm)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return message{}, nil, errors.New("upgrade: message truncated")
	}
	if n == 0 {
		closeAll(fds)
		return message{}, nil, errPeerGone
	}
	m, err := decode(b[:n])
	if err != nil {
		closeAll(fds)
		return message{}, nil, err
	}
	return m, fds, nil
}

// decode parses one message; a message without a known kind is an error.
func decode(b []byte) (message, error) {
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return message{}, fmt.Errorf("upgrade: bad message: %w", err)
	}
	switch m.Kind {
	case kindHello, kindOffer, kindRefuse, kindReady, kindFail, kindStopped, kindAbort, kindConn, kindDone:
	default:
		return message{}, fmt.Errorf("upgrade: unknown message kind %q", m.Kind)
	}
	if len(m.Sockets) > maxFDs {
		return message{}, fmt.Errorf("upgrade: %d sockets in one message", len(m.Sockets))
	}
	return m, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// checkPeer refuses a peer running as another user (root may upgrade any):
// whoever connects receives the listening sockets.
func checkPeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("upgrade: peer credentials: %w", cerr)
	}
	if uid := uint32(os.Getuid()); cred.Uid != uid && cred.Uid != 0 {
		return fmt.Errorf("upgrade: peer pid %d runs as uid %d, not %d", cred.Pid, cred.Uid, uid)
	}
	return nil
}

// DefaultSocket is where the upgrade socket goes without --upgrade-socket:
// $XDG_RUNTIME_DIR/proxylab-upgrade.sock, or the temporary directory.
func DefaultSocket() string {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "proxylab-upgrade.sock")
}

func socketKey(s Socket) string { return s.Kind + "/" + s.Name }
