package sockmap

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/transporttest"
)

// The tests need root (BPF, cgroups) and run in CI as root; elsewhere they
// are skipped with the reason New gives.

// testCgroup makes a fresh, empty cgroup v2 directory (removed at the end);
// the test process joins it only when a test says so.
func testCgroup(t *testing.T) string {
	t.Helper()
	mount := findMount("cgroup2")
	if mount == "" {
		t.Skip("no cgroup v2 mounted")
	}
	dir := filepath.Join(mount, fmt.Sprintf("proxylab-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		// Processes moved in go back to the parent first.
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(b)) {
				os.WriteFile(filepath.Join(filepath.Dir(dir), "cgroup.procs"), []byte(pid), 0)
			}
		}
		os.Remove(dir)
	})
	return dir
}

func newTransport(t *testing.T, opts *Options) *Transport {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sockmap needs root")
	}
	tr, err := New(transport.Options{Workers: 2, ReadBufferSize: 16 << 10, Config: opts})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr.(*Transport)
}

// joinCgroup moves this process into dir until the test ends, so the test's
// own sockets (client, upstream) are covered by sockops.
func joinCgroup(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var old string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			old = filepath.Join(findMount("cgroup2"), rest)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(filepath.Join(old, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0) })
}

// TestContract runs the transport contract twice: with the test's sockets
// outside the cgroup (the wrapper over rawepoll, no redirect), and inside
// (every byte between the test and the transport redirected by SK_MSG),
// where a peer that does not read gives no backpressure.
func TestContract(t *testing.T) {
	for _, inside := range []bool{false, true} {
		t.Run(fmt.Sprintf("in-cgroup=%v", inside), func(t *testing.T) {
			cg := testCgroup(t)
			if inside {
				joinCgroup(t, cg)
			}
			// One instance per cgroup at a time (a second is refused):
			// each subtest's transport replaces the previous one.
			var prev *Transport
			transporttest.RunWith(t, func() transport.Transport {
				if prev != nil {
					prev.Close()
				}
				prev = newTransport(t, &Options{Cgroup: cg})
				return prev
			}, transporttest.Options{NoReceiverBackpressure: inside})
			if inside && prev.counter(cMsgRedirected) == 0 {
				t.Fatal("nothing was redirected")
			}
		})
	}
}

// TestAttachPinsAndCleansUp: what New attaches is pinned under the bpffs,
// Close removes it, and a run that died without Close is replaced.
func TestAttachPinsAndCleansUp(t *testing.T) {
	cg := testCgroup(t)
	tr := newTransport(t, &Options{Cgroup: cg})
	if tr.PinDir() == "" {
		t.Skip("no BPF filesystem")
	}
	for _, name := range []string{"sockops_link", "local_socks", "splice_streams", "splice_targets", "splice_peers", "counters"} {
		if _, err := os.Stat(filepath.Join(tr.PinDir(), name)); err != nil {
			t.Fatalf("not pinned: %v", err)
		}
	}
	dir := tr.PinDir()
	tr.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("pins left after Close: %v", err)
	}

	// A run that was killed: its pins stay, under a pid that is gone.
	stale := newTransport(t, &Options{Cgroup: cg})
	dead := filepath.Join(filepath.Dir(stale.PinDir()), cgroupID(cg)+"-999999999-1")
	if err := os.Rename(stale.PinDir(), dead); err != nil {
		t.Fatal(err)
	}
	stale.pinDir = "" // as if the process had died: nothing unpinned
	stale.cg.Close()  // the pinned link keeps the program attached
	if _, err := link.LoadPinnedLink(filepath.Join(dead, "sockops_link"), nil); err != nil {
		t.Fatalf("the stale link is not pinned: %v", err)
	}
	fresh := newTransport(t, &Options{Cgroup: cg})
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatalf("stale pins not replaced: %v", err)
	}
	if fresh.PinDir() == "" {
		t.Fatal("the new run is not pinned")
	}
}

func TestRefusedWithReason(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to get past the permission check")
	}
	_, err := New(transport.Options{Config: &Options{Cgroup: "/tmp/not-a-cgroup"}})
	if err == nil || !strings.Contains(err.Error(), "not under the cgroup v2 mount") {
		t.Fatalf("err = %v", err)
	}
	cg := testCgroup(t)
	if newTransport(t, &Options{Cgroup: cg}).PinDir() == "" {
		t.Skip("no BPF filesystem: a second instance cannot be detected")
	}
	_, err = New(transport.Options{Config: &Options{Cgroup: cg}})
	if err == nil || !strings.Contains(err.Error(), "already served by proxylab pid") {
		t.Fatalf("second instance on one cgroup: err = %v", err)
	}
}

// echoServer is a plain kernel echo server.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// relay is a minimal tcp_proxy over the transport: it forwards in user
// space until both connections are up and nothing is queued, then splices.
type relay struct {
	transport.NopHandler
	mu      sync.Mutex
	peer    transport.Conn
	eofs    int
	spliced bool
}

type side struct {
	r     *relay
	other func() transport.Conn
}

func (s side) OnData(_ transport.Conn, b *buffer.Buf) {
	s.r.mu.Lock()
	o := s.other()
	s.r.mu.Unlock()
	o.Write(b)
}
func (s side) OnReadEOF(transport.Conn) {
	s.r.mu.Lock()
	o := s.other()
	s.r.mu.Unlock()
	o.CloseWrite()
}
func (s side) OnDrained(c transport.Conn) {
	// A spliced CloseWrite completed: once both have, the pair closes.
	s.r.mu.Lock()
	s.r.eofs++
	done := s.r.eofs == 2
	o := s.other()
	s.r.mu.Unlock()
	if done {
		c.Close()
		o.Close()
	}
}
func (s side) OnClose(transport.Conn, error) {}

// spliceVia accepts one connection on tr, dials target through tr, splices
// the two and returns the listener address.
func spliceVia(t *testing.T, tr *Transport, target string, results chan<- error) string {
	t.Helper()
	ln, err := tr.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ln.Start(func(down transport.Conn) {
		r := &relay{}
		tr.Dial("tcp", target, 5*time.Second, func(up transport.Conn, err error) {
			if err != nil {
				results <- err
				down.Close()
				return
			}
			down.Start(side{r: r, other: func() transport.Conn { return up }})
			up.Start(side{r: r, other: func() transport.Conn { return down }})
			results <- down.(transport.Splicer).Splice(up)
		})
	})
	return ln.Addr().String()
}

// TestSpliceEchoBulkAndHalfClose: a client through a spliced pair to a
// kernel echo server; 4 MiB up while reading the echo, then half-close; the
// bytes come back exact and the proxy saw none of them.
func TestSpliceEchoBulkAndHalfClose(t *testing.T) {
	cg := testCgroup(t)
	tr := newTransport(t, &Options{Cgroup: cg})
	results := make(chan error, 64)
	echo := echoServer(t)
	addr := spliceVia(t, tr, echo, results)
	for round := 0; round < 40; round++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-results; err != nil {
			t.Fatalf("round %d: splice: %v", round, err)
		}
		in := make([]byte, 4<<20)
		rand.Read(in)
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(c)
			got <- b
		}()
		if _, err := c.Write(in); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		select {
		case b := <-got:
			if !bytes.Equal(b, in) {
				t.Fatalf("round %d: %d of %d bytes came back, equal prefix %v", round, len(b), len(in), bytes.Equal(b, in[:min(len(b), len(in))]))
			}
		case <-time.After(20 * time.Second):
			lp, up := addr[strings.LastIndex(addr, ":")+1:], echo[strings.LastIndex(echo, ":")+1:]
			out, _ := exec.Command("ss", "-tni", "state", "connected", "( sport = :"+lp+" or dport = :"+up+" or dport = :"+lp+" )").CombinedOutput()
			t.Fatalf("round %d: no EOF; stats %+v\nss:\n%s", round, tr.Stats(), out)
		}
		c.Close()
	}
	splices, spliced := tr.splices.Load(), tr.counter(cSkbRedirectedBytes)
	if splices < 40 || spliced < 40*2*(4<<20) {
		t.Fatalf("splices %d, spliced bytes %d", splices, spliced)
	}
}

// TestSameHostRedirect: with the test's own sockets in the cgroup, a client
// and an echo server over the transport exchange messages by SK_MSG
// redirect, byte-exact.
func TestSameHostRedirect(t *testing.T) {
	cg := testCgroup(t)
	tr := newTransport(t, &Options{Cgroup: cg})
	joinCgroup(t, cg)
	ln, err := tr.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.Start(func(c transport.Conn) { c.Start(echoHandler{}) })
	before := tr.counter(cMsgRedirected)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 100; i++ {
		msg := bytes.Repeat([]byte{byte(i)}, 64+i)
		c.Write(msg)
		got := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if n := tr.counter(cMsgRedirected) - before; n < 200 {
		t.Fatalf("%d messages redirected, want both directions of 100 round trips", n)
	}
}

type echoHandler struct{ transport.NopHandler }

func (echoHandler) OnData(c transport.Conn, b *buffer.Buf) { c.Write(b) }
func (echoHandler) OnReadEOF(c transport.Conn)             { c.CloseWrite() }

// TestConnsReportTheirLoop: accepted and dialled connections report the
// reactor loop they run on (transport.Looper), as rawepoll's do, and a
// connection dialled near another runs on that one's loop; so per-loop
// upstream pools apply on sockmap too.
func TestConnsReportTheirLoop(t *testing.T) {
	tr := newTransport(t, &Options{Cgroup: testCgroup(t)})
	ln, err := tr.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	type result struct {
		down, near, plain int
		err               error
	}
	results := make(chan result, 8)
	target := echoServer(t)
	loop := func(c transport.Conn) int {
		l, ok := c.(transport.Looper)
		if !ok {
			return -2
		}
		return l.Loop()
	}
	ln.Start(func(down transport.Conn) {
		tr.DialNear(down, "tcp", target, 5*time.Second, func(near transport.Conn, err error) {
			if err != nil {
				results <- result{err: err}
				return
			}
			tr.Dial("tcp", target, 5*time.Second, func(plain transport.Conn, err error) {
				results <- result{loop(down), loop(near), loop(plain), err}
				down.Close()
				near.Close()
				if plain != nil {
					plain.Close()
				}
			})
		})
	})
	for i := range 4 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.down < 0 || r.down > 1 || r.plain < 0 || r.plain > 1 || r.near != r.down {
				t.Fatalf("connection %d: loops down %d, near %d, plain %d (want 0 or 1, near = down)", i, r.down, r.near, r.plain)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no connection")
		}
	}
}
