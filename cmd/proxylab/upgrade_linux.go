//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/proxylab/proxylab/core/admin"
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/server"
	"github.com/proxylab/proxylab/core/upgrade"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
	"golang.org/x/sys/unix"
)

// upgradeFlags are run's hot upgrade flags.
type upgradeFlags struct{ from, socket string }

func (f *upgradeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.from, "upgrade-from", "", "hot upgrade: take over listeners from the proxylab answering on this upgrade socket")
	fs.StringVar(&f.socket, "upgrade-socket", "", "the upgrade socket this process answers on (default: the --upgrade-from path, else "+upgrade.DefaultSocket()+")")
}

// upgrader ties one run to hot upgrades, as the new process (client is
// set while taking over) and as the one a later upgrade replaces (server).
// Its methods are called from cmdRun's goroutine; a nil *upgrader is never
// used.
type upgrader struct {
	flags  upgradeFlags
	stats  upgrade.Stats
	tail   *tailWriter
	log    *slog.Logger
	client *upgrade.Client
	server *upgrade.Server
	admin  *admin.Server
	// received is closed once the connections the old process migrates
	// here have all arrived (at once when there is no old process).
	received chan struct{}
}

// newUpgrader wraps stderr so a failed takeover can tell the old process
// why (the last thing this one printed).
func newUpgrader(f upgradeFlags, stderr io.Writer) (*upgrader, io.Writer) {
	u := &upgrader{flags: f, tail: &tailWriter{w: stderr}, received: make(chan struct{})}
	if u.flags.socket == "" {
		u.flags.socket = u.flags.from
	}
	if u.flags.socket == "" {
		u.flags.socket = upgrade.DefaultSocket()
	}
	return u, u.tail
}

// takeOver connects to the running process and receives its sockets
// (with --upgrade-from).
func (u *upgrader) takeOver(log *slog.Logger) error {
	u.log = log
	if u.flags.from == "" {
		return nil
	}
	c, err := upgrade.Dial(u.flags.from, version, log, &u.stats)
	if err != nil {
		return err
	}
	u.client = c
	return nil
}

// blockReloads refuses reloads of a new process until it took over (a
// reload then would race the sockets being adopted); serve lifts it.
func (u *upgrader) blockReloads(srv *server.Server) {
	if u.client != nil {
		srv.BlockApply("taking over from the previous process (hot upgrade)")
	}
}

// inherited is what the transport listens with.
func (u *upgrader) inherited() transport.Inherited {
	if u.client == nil {
		return nil
	}
	return u.client
}

// adminListener is the old admin socket when the config keeps its address.
func (u *upgrader) adminListener(address string) net.Listener {
	if u.client == nil {
		return nil
	}
	fd, ok := u.client.TakeAdmin(address)
	if !ok {
		return nil
	}
	f := os.NewFile(uintptr(fd), "admin")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		u.log.Warn("upgrade: cannot adopt the admin socket", "error", err)
		return nil
	}
	return ln
}

// withAdmin exports the upgrade counters on the admin API.
func (u *upgrader) withAdmin(a *admin.Server) {
	u.admin = a
	a.AddCollector(&u.stats)
}

// finish, deferred by cmdRun, tells the old process why a takeover failed.
func (u *upgrader) finish(code *int) {
	if u.client != nil && *code != 0 {
		u.client.Fail(u.tail.last())
	}
}

// serve completes a takeover (the old process stops accepting) and then
// answers upgrades of this process. Without a usable upgrade socket the
// process serves anyway, without hot upgrade.
func (u *upgrader) serve(srv *server.Server, cfg *config.Config) error {
	upFD, inherit := u.takeUpgrade() // before Ready closes what is not taken
	if u.client != nil {
		for _, l := range srv.Listeners() {
			if _, ok := l.TransportListener().(transport.ListenerFDer); !ok {
				return fmt.Errorf("proxylab: hot upgrade: transport %s has no socket descriptors to take over with (%s)", srv.Transport().Name(), noFDReason)
			}
		}
		ad, conns := srv.Transport().(transport.ConnAdopter)
		if err := u.client.Ready(conns); err != nil {
			if inherit {
				os.NewFile(uintptr(upFD), "").Close()
			}
			return err
		}
		srv.BlockApply("") // blocked by blockReloads
		if conns {
			go func() {
				defer close(u.received)
				u.client.ReceiveConns(func(name string, fd int, data []byte) error { return adoptConn(srv, ad, name, fd, data) })
			}()
		} else {
			close(u.received)
		}
	} else {
		close(u.received)
	}
	sc := upgrade.ServerConfig{Path: u.flags.socket, Version: version, Log: u.log, Stats: &u.stats,
		Offer: func() ([]upgrade.Socket, []int, error) {
			// No reload while the sockets are passed, nor after: the new
			// process serves the config it was given.
			if err := srv.BlockApply("a hot upgrade hand-over is in progress"); err != nil {
				return nil, nil, fmt.Errorf("a reload is being applied; retry the upgrade once it is done")
			}
			socks, fds, err := u.offer(srv, srv.Config()) // the config in force: reloads change it
			if err != nil {
				srv.BlockApply("")
			}
			return socks, fds, err
		},
		Release: func() { srv.BlockApply("") },
		Commit: func(adopted map[string]bool, handoff func(string, int, []byte)) (moving, draining int) {
			srv.BlockApply("this process handed over to a new one (hot upgrade): reload the new process")
			for _, l := range srv.Listeners() {
				if handoff != nil && adopted[upgrade.SocketListener+"/"+l.Name] {
					m, d := l.Migrate(handoff)
					moving, draining = moving+m, draining+d
				} else {
					draining += l.StopAccepting()
				}
			}
			if u.admin != nil && adopted[upgrade.SocketAdmin+"/admin"] {
				u.admin.Close()
			}
			return moving, draining
		}}
	var err error
	if inherit {
		u.server, err = upgrade.Adopt(sc, upFD)
	} else {
		u.server, err = upgrade.Listen(sc)
	}
	if err != nil {
		u.log.Warn("upgrade: no upgrade socket, hot upgrade disabled", "path", u.flags.socket, "error", err)
		return nil
	}
	u.log.Info("upgrade socket ready", "path", u.flags.socket)
	go u.server.Serve()
	return nil
}

const noFDReason = "dpdk owns its port from one process: stop it and start the new one instead"

func (u *upgrader) takeUpgrade() (int, bool) {
	if u.client == nil {
		return -1, false
	}
	return u.client.TakeUpgrade(u.flags.socket)
}

// offer lists this process's sockets for the new one.
func (u *upgrader) offer(srv *server.Server, cfg *config.Config) ([]upgrade.Socket, []int, error) {
	var socks []upgrade.Socket
	var fds []int
	configured := map[string]string{}
	for _, lc := range cfg.Listeners {
		configured[lc.Name] = lc.Address
	}
	for _, l := range srv.Listeners() {
		f, ok := l.TransportListener().(transport.ListenerFDer)
		if !ok {
			return nil, nil, fmt.Errorf("transport %s has no socket descriptors to pass (%s)", srv.Transport().Name(), noFDReason)
		}
		fd, err := f.ListenerFD()
		if err != nil {
			return nil, nil, err
		}
		socks = append(socks, upgrade.Socket{Kind: upgrade.SocketListener, Name: l.Name, Address: configured[l.Name], Bound: l.Addr().String()})
		fds = append(fds, fd)
	}
	if u.admin != nil {
		if fd, err := u.admin.ListenerFD(); err == nil {
			socks = append(socks, upgrade.Socket{Kind: upgrade.SocketAdmin, Name: "admin", Address: cfg.Admin.Address, Bound: u.admin.Addr().String()})
			fds = append(fds, fd)
		}
	}
	if fd, err := u.server.ListenerFD(); err == nil {
		socks = append(socks, upgrade.Socket{Kind: upgrade.SocketUpgrade, Name: u.flags.socket})
		fds = append(fds, fd)
	}
	return socks, fds, nil
}

// handedOver is closed once a new process took over.
func (u *upgrader) handedOver() <-chan struct{} {
	if u.server == nil {
		return nil
	}
	return u.server.Done()
}

// drain winds down after a hand-over: in-flight work finishes here (a
// second signal cuts it), bounded by drain_timeout.
func (u *upgrader) drain(srv *server.Server, cfg *config.Config, sigs <-chan os.Signal) int {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout.D())
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	// Connections still arriving from our own predecessor are served here
	// in drain mode (network.Listener.accept): wait for the last of them.
	select {
	case <-u.received:
	case <-ctx.Done():
	}
	if err := srv.Drain(ctx); err != nil {
		u.log.Warn(err.Error())
	}
	u.server.Finish()
	ho := u.server.Result()
	u.log.Info("upgrade: old process done", "new_pid", ho.PID,
		"listeners_passed", u.stats.ListenersPassed.Load(), "connections_migrated", u.stats.ConnectionsMigrated.Load(),
		"connections_drained", u.stats.ConnectionsDrained.Load(), "failures", u.stats.Failures.Load())
	return 0
}

// adoptConn serves a connection the old process migrated on the listener
// of the same name, after the bytes it carried.
func adoptConn(srv *server.Server, ad transport.ConnAdopter, name string, fd int, data []byte) error {
	var l *network.Listener
	for _, x := range srv.Listeners() {
		if x.Name == name {
			l = x
		}
	}
	if l == nil {
		unix.Close(fd)
		return fmt.Errorf("proxylab: no listener %q", name)
	}
	var prefix *buffer.Buf
	if len(data) > 0 {
		prefix = buffer.From(data)
	}
	tc, err := ad.AdoptConn(fd, prefix)
	if err != nil {
		return err
	}
	if !l.Adopt(tc) {
		return fmt.Errorf("proxylab: listener %q does not adopt connections", name)
	}
	return nil
}

// close stops answering upgrades (a normal stop).
func (u *upgrader) close() {
	if u.server != nil {
		u.server.Close()
	}
}

// tailWriter passes writes through and keeps the last bytes written.
type tailWriter struct {
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2048 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-1024:]...)
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

// last is the last line written, or the exit status when nothing was.
func (t *tailWriter) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if s := lines[len(lines)-1]; s != "" {
		return s
	}
	return "the new process exited with a failure"
}
