package transporttest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// inheritOne hands Listen one descriptor for one address.
type inheritOne struct {
	mu   sync.Mutex
	addr string
	fd   int
}

func (i *inheritOne) Take(_, address string) (int, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if address != i.addr || i.fd < 0 {
		return -1, false
	}
	fd := i.fd
	i.fd = -1
	return fd, true
}

// RunUpgrade checks the hot upgrade capabilities (transport.ListenerFDer,
// Options.Inherited, transport.Detacher, transport.ConnAdopter) between two
// instances of a transport standing for the old and the new process; the
// descriptors are duplicated as SCM_RIGHTS would.
func RunUpgrade(t *testing.T, newTransport func(transport.Options) transport.Transport) {
	t.Run("listener handoff", func(t *testing.T) { testListenerHandoff(t, newTransport) })
	t.Run("connection migration from OnData", func(t *testing.T) { testMigration(t, newTransport, true) })
	t.Run("idle connection migration", func(t *testing.T) { testMigration(t, newTransport, false) })
}

func testListenerHandoff(t *testing.T, newTransport func(transport.Options) transport.Transport) {
	old := newTransport(transport.Options{})
	ol, err := old.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ol.Start(func(c transport.Conn) { c.Close() })
	fd, err := ol.(transport.ListenerFDer).ListenerFD()
	if err != nil {
		t.Fatal(err)
	}
	dup, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := ol.Addr().String()
	nw := newTransport(transport.Options{Inherited: &inheritOne{addr: addr, fd: dup}})
	nl, err := nw.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("adopting the listener: %v", err)
	}
	defer nl.Close()
	if nl.Addr().String() != addr {
		t.Fatalf("adopted listener on %s, want %s", nl.Addr(), addr)
	}
	accepted := make(chan transport.Conn, 4)
	nl.Start(func(c transport.Conn) { accepted <- c })
	ol.Close() // the old process stops: the socket stays with the new one
	for i := range 3 {
		cc, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d after the old listener closed: %v", i, err)
		}
		cc.Close()
		select {
		case c := <-accepted:
			c.Close()
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d not accepted by the adopted listener", i)
		}
	}
	// A descriptor that is not a listening socket is refused.
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(sp[1])
	bad := newTransport(transport.Options{Inherited: &inheritOne{addr: "127.0.0.1:1", fd: sp[0]}})
	if l, err := bad.Listen("tcp", "127.0.0.1:1"); err == nil {
		l.Close()
		t.Fatal("a Unix socket pair was adopted as a TCP listener")
	}
}

// testMigration: the old side reads "abc", detaches (from its OnData, or
// later while the connection idles); the client sends "def" before the new
// side adopts; the new side sees "abc" first, then "def", and answers on
// the same connection the client never lost.
func testMigration(t *testing.T, newTransport func(transport.Options) transport.Transport, fromCallback bool) {
	old, nw := newTransport(transport.Options{}), newTransport(transport.Options{})
	oh := newRecorder()
	handed := make(chan int, 1)
	detach := func(c transport.Conn) {
		if err := c.(transport.Detacher).Detach(func(fd int, err error) {
			if err != nil {
				t.Errorf("detach: %v", err)
			}
			handed <- fd
		}); err != nil {
			t.Errorf("Detach: %v", err)
		}
	}
	if fromCallback {
		oh.onData = func(c transport.Conn, n int) {
			if n == 3 {
				detach(c)
			}
		}
	}
	oc, cc := pair(t, old, oh)
	cc.Write([]byte("abc"))
	if !fromCallback {
		oh.waitFor(t, "abc", func() bool { return oh.data.Len() == 3 })
		time.Sleep(20 * time.Millisecond) // parked in the poller again
		detach(oc)
	}
	var fd int
	select {
	case fd = <-handed:
	case <-time.After(5 * time.Second):
		t.Fatal("no hand-over")
	}
	oh.waitFor(t, "OnClose of the detached connection", func() bool { return oh.closes == 1 })
	if oh.closeErr != nil || oh.data.String() != "abc" {
		t.Fatalf("old side: close error %v, data %q", oh.closeErr, oh.data.String())
	}
	cc.Write([]byte("def")) // waits in the socket for the new side
	nc, err := nw.(transport.ConnAdopter).AdoptConn(fd, buffer.From([]byte("abc")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.RemoteAddr().String() != cc.LocalAddr().String() {
		t.Errorf("adopted connection's peer %s, want %s", nc.RemoteAddr(), cc.LocalAddr())
	}
	nh := newRecorder()
	nc.Start(nh)
	nh.waitFor(t, "abcdef", func() bool { return nh.data.String() == "abcdef" })
	nc.Write(buffer.From([]byte("xyz")))
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 3)
	if _, err := io.ReadFull(cc, got); err != nil || string(got) != "xyz" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if nh.closes != 0 || nh.eof {
		t.Fatal("the adopted connection ended")
	}
}
