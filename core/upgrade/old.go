//go:build linux

package upgrade

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// ServerConfig is what the running (old) process needs to hand over.
type ServerConfig struct {
	// Path is the upgrade socket's path.
	Path    string
	Version string
	Log     *slog.Logger
	Stats   *Stats
	// Offer lists the sockets to pass and their descriptors, which stay
	// owned by their listeners. An error refuses the upgrade with it as the
	// reason. Called from the upgrade goroutine.
	Offer func() ([]Socket, []int, error)
	// Release, when set, runs when an attempt whose Offer succeeded fails
	// before the hand-over: this process serves on as before.
	Release func()
	// Commit runs once the new process serves: it stops accepting on every
	// traffic listener (adopted or not: one the new config dropped is
	// drained) and on the admin listener if adopted (keys "kind/name").
	// Connections of adopted listeners that can move are given to handoff
	// (now or at the end of their request; nil: the new process adopts
	// none, all drain); it returns how many will move and how many drain
	// here. Once only.
	Commit func(adopted map[string]bool, handoff func(listener string, fd int, data []byte)) (moving, draining int)
}

// migrated is a connection on its way to the new process.
type migrated struct {
	listener string
	fd       int
	data     []byte
}

// Server is the old process's side: it answers upgrade requests on the
// upgrade socket, one at a time.
type Server struct {
	cfg  ServerConfig
	ln   *net.UnixListener
	busy atomic.Bool
	over atomic.Bool   // handed over: refuse everything after
	done chan struct{} // closed after a hand-over
	ho   Handover

	conns    chan migrated // to the sender, after a hand-over
	finish   chan struct{} // Finish: the old process drained
	finished chan struct{} // the sender is done
}

// Handover is what was handed to the new process.
type Handover struct {
	PID     int
	Adopted []string
	// Moving and Draining count the connections open when accepting
	// stopped: moving to the new process, or finishing here.
	Moving, Draining int
}

// Listen binds the upgrade socket at cfg.Path (mode 0600). A socket file
// left by a dead process is replaced; one a live process answers on is
// not (the error wraps ErrInUse).
func Listen(cfg ServerConfig) (*Server, error) {
	if c, err := net.Dial("unixpacket", cfg.Path); err == nil {
		c.Close()
		return nil, fmt.Errorf("upgrade: %s: %w", cfg.Path, ErrInUse)
	} else if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(cfg.Path) // stale
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: cfg.Path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	if err := os.Chmod(cfg.Path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the path may outlive us: it moves to the new process
	return newServer(cfg, ln), nil
}

func newServer(cfg ServerConfig, ln *net.UnixListener) *Server {
	return &Server{cfg: cfg, ln: ln, done: make(chan struct{}), conns: make(chan migrated, 4096),
		finish: make(chan struct{}), finished: make(chan struct{})}
}

// ErrInUse is wrapped when another live process owns the upgrade socket.
var ErrInUse = errors.New("in use by a running process")

// Adopt serves on an upgrade socket inherited from the previous process.
func Adopt(cfg ServerConfig, fd int) (*Server, error) {
	f := os.NewFile(uintptr(fd), cfg.Path)
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("upgrade: adopting the upgrade socket: %w", err)
	}
	ln, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, errors.New("upgrade: the inherited upgrade socket is not a Unix socket")
	}
	ln.SetUnlinkOnClose(false)
	return newServer(cfg, ln), nil
}

// ListenerFD is the upgrade socket's descriptor, valid until Close.
func (s *Server) ListenerFD() (int, error) {
	rc, err := s.ln.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("upgrade: %w", err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, fmt.Errorf("upgrade: %w", err)
	}
	return fd, nil
}

// Serve answers upgrade requests until Close or a hand-over; run it in its
// own goroutine.
func (s *Server) Serve() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

// Done is closed once the new process took over; Result says what it took.
func (s *Server) Done() <-chan struct{} { return s.done }

// Result is the hand-over, valid once Done is closed.
func (s *Server) Result() Handover { return s.ho }

// Close stops answering and removes the socket file, unless the new
// process took it over.
func (s *Server) Close() {
	s.ln.Close()
	if !s.over.Load() {
		os.Remove(s.cfg.Path)
	}
}

// handle runs one upgrade attempt, once its hello arrived (a connection
// without one, such as Listen's liveness probe, is no attempt).
func (s *Server) handle(c *net.UnixConn) {
	m, fds, err := recv(c, stepTimeout)
	closeAll(fds)
	if err != nil || m.Kind != kindHello {
		s.cfg.Log.Debug("upgrade: connection without hello", "error", err)
		c.Close()
		return
	}
	log := s.cfg.Log.With("new_pid", m.PID, "new_version", m.Version)
	if s.busy.Swap(true) {
		defer c.Close()
		reason := "another upgrade is in progress"
		if s.over.Load() {
			reason = "this process has already handed over"
		}
		log.Warn("upgrade: refused", "reason", reason)
		s.cfg.Stats.Failures.Add(1)
		send(c, message{Kind: kindRefuse, Reason: reason}, nil)
		return
	}
	failed, offered := "", false
	fail := func(reason string) { failed = reason }
	defer func() {
		c.Close()
		if offered && !s.over.Load() && s.cfg.Release != nil {
			s.cfg.Release()
		}
		if !s.over.Load() {
			s.busy.Store(false) // ready for the next attempt before it is reported
		}
		if failed != "" {
			log.Warn("upgrade: failed, still serving", "reason", failed)
			s.cfg.Stats.Failures.Add(1)
		}
	}()
	if err := checkPeer(c); err != nil {
		fail(err.Error())
		send(c, message{Kind: kindRefuse, Reason: err.Error()}, nil)
		return
	}
	socks, sfds, err := s.cfg.Offer()
	if err != nil {
		fail(err.Error())
		send(c, message{Kind: kindRefuse, Reason: err.Error()}, nil)
		return
	}
	offered = true
	log.Info("upgrade: new process connected, passing sockets", "sockets", len(socks))
	if err := send(c, message{Kind: kindOffer, PID: os.Getpid(), Version: s.cfg.Version, Sockets: socks}, sfds); err != nil {
		fail(err.Error())
		return
	}
	r, fds, err := recv(c, readyTimeout)
	closeAll(fds)
	switch {
	case err != nil:
		fail("the new process did not report ready: " + err.Error())
		send(c, message{Kind: kindAbort, Reason: "no ready within the deadline"}, nil)
		return
	case r.Kind == kindFail:
		fail("the new process failed: " + r.Reason)
		return
	case r.Kind != kindReady:
		fail("unexpected message " + r.Kind)
		send(c, message{Kind: kindAbort, Reason: "unexpected " + r.Kind}, nil)
		return
	}
	adopted := map[string]bool{}
	listeners := 0
	for _, k := range r.Adopted {
		adopted[k] = true
	}
	for _, sk := range socks {
		if adopted[socketKey(sk)] && sk.Kind == SocketListener {
			listeners++
		}
	}
	s.over.Store(true)
	s.ln.Close() // the new process serves the path now, or its own
	if !adopted[SocketUpgrade+"/"+s.cfg.Path] {
		os.Remove(s.cfg.Path)
	}
	var handoff func(string, int, []byte)
	if r.Conns {
		handoff = s.handoff
	}
	moving, draining := s.cfg.Commit(adopted, handoff)
	s.cfg.Stats.ListenersPassed.Add(uint64(listeners))
	s.cfg.Stats.ConnectionsDrained.Add(uint64(draining))
	send(c, message{Kind: kindStopped}, nil)
	s.ho = Handover{PID: m.PID, Adopted: r.Adopted, Moving: moving, Draining: draining}
	log.Info("upgrade: handed over", "listeners_passed", listeners, "adopted", r.Adopted,
		"connections_moving", moving, "connections_draining", draining)
	close(s.done)
	s.sendConns(c, log, moving)
}

// handoff queues a connection for the new process; it runs on transport
// goroutines and never blocks (a full queue closes the connection).
func (s *Server) handoff(listener string, fd int, data []byte) {
	select {
	case s.conns <- migrated{listener, fd, data}:
	default:
		if fd >= 0 {
			closeAll([]int{fd})
			s.cfg.Stats.Failures.Add(1)
		}
	}
}

// sendConns passes migrated connections on until the moving ones all
// reported (handed over or closed) or Finish, then says done: the new
// process need not wait for this one's drain to end.
func (s *Server) sendConns(c *net.UnixConn, log *slog.Logger, moving int) {
	defer close(s.finished)
	broken := false
	pass := func(m migrated) {
		moving--
		if m.fd < 0 {
			return // closed before it could move
		}
		defer closeAll([]int{m.fd}) // sent: the new process has its own
		if broken || len(m.data) > MaxCarry {
			s.cfg.Stats.Failures.Add(1)
			return
		}
		if err := send(c, message{Kind: kindConn, Listener: m.listener, Data: m.data}, []int{m.fd}); err != nil {
			log.Warn("upgrade: passing a connection failed; closing the rest", "error", err)
			broken = true
			s.cfg.Stats.Failures.Add(1)
			return
		}
		s.cfg.Stats.ConnectionsMigrated.Add(1)
	}
	for {
		if moving <= 0 {
			send(c, message{Kind: kindDone}, nil)
			return
		}
		select {
		case m := <-s.conns:
			pass(m)
		case <-s.finish:
			for {
				select {
				case m := <-s.conns:
					pass(m)
				default:
					send(c, message{Kind: kindDone}, nil)
					return
				}
			}
		}
	}
}

// Finish, after a hand-over, says that no connection is left to migrate;
// it returns once every queued one was passed.
func (s *Server) Finish() {
	close(s.finish)
	<-s.finished
}
