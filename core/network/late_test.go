package network_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// TestLateConnectionServed: a connection reaching a listener that already
// stopped accepting (hot upgrade: migrated here after this process handed
// over) is served, not closed, and the drain waits for it.
func TestLateConnectionServed(t *testing.T) {
	tr, _ := netpoll.New(transport.Options{})
	var mu sync.Mutex
	var log []string
	l, err := network.NewListener("t", tr, "127.0.0.1:0", nil, func() ([]network.ReadFilter, []network.WriteFilter) {
		return []network.ReadFilter{&tagFilter{name: "a", terminal: true, log: &log, mu: &mu}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Start()
	defer l.Close()
	if n := l.StopAccepting(); n != 0 {
		t.Fatalf("%d connections open", n)
	}

	// A connected socket from elsewhere, adopted after the stop.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, err := net.Dial("tcp", other.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := other.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.(*net.TCPConn).File()
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tr.(transport.ConnAdopter).AdoptConn(int(f.Fd()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Adopt(tc) {
		t.Fatal("not adopted")
	}
	done := l.Drain()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "late")
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "LATE" {
		t.Fatalf("late connection: %q %v", got, err)
	}
	select {
	case <-done:
		t.Fatal("drain finished with the late connection open")
	case <-time.After(50 * time.Millisecond):
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not finish after the late connection closed")
	}
}
