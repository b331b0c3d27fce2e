//go:build linux

package upgrade

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// oldSide serves an upgrade socket offering one real listening socket.
type oldSide struct {
	srv      *Server
	ln       *net.TCPListener
	stats    Stats
	commits  chan map[string]bool
	draining int
}

func startOld(t *testing.T, path string) *oldSide {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	o := &oldSide{ln: ln, commits: make(chan map[string]bool, 1)}
	cfg := ServerConfig{Path: path, Version: "old", Log: quietLog(), Stats: &o.stats,
		Offer: func() ([]Socket, []int, error) {
			rc, _ := ln.SyscallConn()
			fd := -1
			rc.Control(func(u uintptr) { fd = int(u) })
			return []Socket{{Kind: SocketListener, Name: "web", Address: "127.0.0.1:0", Bound: ln.Addr().String()}}, []int{fd}, nil
		},
		Commit: func(adopted map[string]bool, _ func(string, int, []byte)) (int, int) {
			o.commits <- adopted
			return 0, o.draining
		}}
	o.srv, err = Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.srv.Close)
	go o.srv.Serve()
	return o
}

// TestHandOver: a new side takes the listener (the same socket: a
// connection to it reaches the adopted descriptor), reports ready, and the
// old side commits; a second concurrent upgrade is refused as busy.
func TestHandOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u.sock")
	old := startOld(t, path)
	var st Stats
	c, err := Dial(path, "new", quietLog(), &st)
	if err != nil {
		t.Fatal(err)
	}
	// While this upgrade runs, another is refused.
	if _, err := Dial(path, "third", quietLog(), &Stats{}); err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("second upgrade: %v", err)
	}
	fd, ok := c.Take("tcp", old.ln.Addr().String())
	if !ok {
		t.Fatal("the listener was not offered")
	}
	f := os.NewFile(uintptr(fd), "adopted")
	adopted, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer adopted.Close()
	if _, again := c.Take("tcp", old.ln.Addr().String()); again {
		t.Fatal("a socket was taken twice")
	}
	go func() {
		if cc, err := net.Dial("tcp", old.ln.Addr().String()); err == nil {
			cc.Close()
		}
	}()
	old.ln.Close() // the old side stops accepting: the adopted copy still does
	adopted.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	if cc, err := adopted.Accept(); err != nil {
		t.Fatalf("accept on the adopted socket: %v", err)
	} else {
		cc.Close()
	}
	if err := c.Ready(false); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-old.commits:
		if !got["listener/web"] {
			t.Fatalf("committed %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no commit")
	}
	<-old.srv.Done()
	if old.stats.ListenersPassed.Load() != 1 || st.ListenersAdopted.Load() != 1 || old.stats.Failures.Load() != 1 {
		t.Fatalf("passed %d adopted %d failures %d (the refused second attempt)", old.stats.ListenersPassed.Load(), st.ListenersAdopted.Load(), old.stats.Failures.Load())
	}
}

// TestFailedTakeover: a new side that fails leaves the old one answering
// the next upgrade; a probe without hello is not an attempt.
func TestFailedTakeover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u.sock")
	old := startOld(t, path)
	probe, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	c, err := Dial(path, "bad", quietLog(), &Stats{})
	if err != nil {
		t.Fatal(err)
	}
	c.Fail("config: bogus_key: unknown field")
	for deadline := time.Now().Add(5 * time.Second); old.stats.Failures.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the failure was not counted")
		}
	}
	c2, err := Dial(path, "good", quietLog(), &Stats{})
	if err != nil {
		t.Fatalf("after a failed attempt: %v", err)
	}
	c2.Fail("test over")
	for deadline := time.Now().Add(5 * time.Second); old.stats.Failures.Load() != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d failures, want 2", old.stats.Failures.Load())
		}
	}
}

// TestListenReplacesStale: a socket file nobody answers on is replaced;
// one a live process answers on is not.
func TestListenReplacesStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd) // bound, never listening: stale
	old := startOld(t, path)
	if _, err := Listen(ServerConfig{Path: path, Log: quietLog(), Stats: &Stats{}}); err == nil || !strings.Contains(err.Error(), ErrInUse.Error()) {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	old.srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket file: %v", err)
	}
}

func TestSameAddress(t *testing.T) {
	s := Socket{Address: "127.0.0.1:0", Bound: "127.0.0.1:4567"}
	any := Socket{Address: ":8080", Bound: "[::]:8080"}
	for _, tc := range []struct {
		s    Socket
		addr string
		want bool
	}{
		{s, "127.0.0.1:4567", true},
		{s, "127.0.0.1:0", true}, // the same port-0 string
		{s, "127.0.0.2:0", false},
		{s, "127.0.0.1:4568", false},
		{s, "localhost:4567", true},
		{any, ":8080", true},
		{any, "0.0.0.0:8080", true},
		{any, "127.0.0.1:8080", false},
		{s, "not an address", false},
	} {
		if got := sameAddress(tc.s, tc.addr); got != tc.want {
			t.Errorf("sameAddress(%+v, %q) = %v, want %v", tc.s, tc.addr, got, tc.want)
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"kind":"hello","pid":1,"version":"v"}`))
	f.Add([]byte(`{"kind":"offer","sockets":[{"kind":"listener","name":"web","address":":80","bound":"[::]:80"}]}`))
	f.Add([]byte(`{"kind":"conn","listener":"web","data":"R0VUIC8="}`))
	f.Add([]byte(`{"kind":"nope"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err == nil && (m.Kind == "" || len(m.Sockets) > maxFDs) {
			t.Fatalf("accepted %+v", m)
		}
	})
}
