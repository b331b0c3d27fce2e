package network_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// tagFilter records what it sees and either passes data on or, if terminal,
// echoes it back upper-cased through the connection's write chain.
type tagFilter struct {
	network.BaseFilter
	name     string
	terminal bool
	log      *[]string
	mu       *sync.Mutex
}

func (f *tagFilter) OnNewConnection(*network.Conn) network.FilterStatus {
	f.mu.Lock()
	*f.log = append(*f.log, f.name+":new")
	f.mu.Unlock()
	return network.Continue
}

func (f *tagFilter) OnData(c *network.Conn, b *buffer.Buf) network.FilterStatus {
	f.mu.Lock()
	*f.log = append(*f.log, f.name+":"+string(b.Bytes()))
	f.mu.Unlock()
	if !f.terminal {
		return network.Continue
	}
	c.Write(buffer.From(bytes.ToUpper(b.Bytes())))
	b.Release()
	return network.StopIteration
}

// suffixWriter is a write filter appending "!" to everything written.
type suffixWriter struct{}

func (suffixWriter) OnWrite(_ *network.Conn, bufs []*buffer.Buf) network.FilterStatus {
	last := bufs[len(bufs)-1]
	last.AppendString("!")
	return network.Continue
}

// denyAll is a listener filter rejecting connections from a marked port.
type denyIf struct{ reject func(net.Addr) bool }

func (d denyIf) OnAccept(tc transport.Conn) transport.Conn {
	if d.reject(tc.RemoteAddr()) {
		return nil
	}
	return tc
}

func TestFilterChains(t *testing.T) {
	tr, _ := netpoll.New(transport.Options{})
	var mu sync.Mutex
	var log []string
	var rejectMu sync.Mutex
	rejectNext := false
	l, err := network.NewListener("t", tr, "127.0.0.1:0", []network.ListenerFilter{denyIf{func(net.Addr) bool {
		rejectMu.Lock()
		defer rejectMu.Unlock()
		return rejectNext
	}}}, func() ([]network.ReadFilter, []network.WriteFilter) {
		return []network.ReadFilter{
			&tagFilter{name: "a", log: &log, mu: &mu},
			&tagFilter{name: "b", terminal: true, log: &log, mu: &mu},
			&tagFilter{name: "c", log: &log, mu: &mu}, // after the terminal filter: never sees data
		}, []network.WriteFilter{suffixWriter{}}
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Start()
	defer l.Close()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "hello")
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "HELLO!" {
		t.Fatalf("echo through chains: %q %v", got, err)
	}
	mu.Lock()
	seen := strings.Join(log, " ")
	mu.Unlock()
	if seen != "a:new b:new c:new a:hello b:hello" {
		t.Fatalf("chain order: %s", seen)
	}
	if l.Active() != 1 || l.Accepted() != 1 {
		t.Fatalf("active %d accepted %d", l.Active(), l.Accepted())
	}

	rejectMu.Lock()
	rejectNext = true
	rejectMu.Unlock()
	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("listener filter did not reject")
	}
	if l.Accepted() != 1 {
		t.Fatalf("rejected connection counted as accepted: %d", l.Accepted())
	}

	// Drain: a connection without a Drainer stays until it closes itself.
	done := l.Drain()
	select {
	case <-done:
		t.Fatal("drain finished with a connection open")
	case <-time.After(50 * time.Millisecond):
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not finish after the last connection closed")
	}
}
