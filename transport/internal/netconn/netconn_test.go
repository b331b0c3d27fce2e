package netconn

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/transporttest"
)

// kernelNet is a transport whose connections are kernel sockets used only
// as plain net.Conns, so the adapter meets the contract on its own (the
// DPDK transport's connections come from gVisor's netstack the same way).
type kernelNet struct{ try bool }

func (kernelNet) Name() string { return "netconn-test" }
func (kernelNet) Close() error { return nil }

func (k kernelNet) Listen(network, address string) (transport.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return listener{ln, k}, nil
}

func (k kernelNet) Dial(network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	go func() {
		c, err := net.DialTimeout(network, address, timeout)
		if err != nil {
			done(nil, err)
			return
		}
		done(New(k.wrap(c), 16<<10), nil)
	}()
}

// wrap gives c a non-blocking TryWrite when the variant asks for it: a
// write(2) on the socket (non-blocking underneath Go's net), EAGAIN being
// "nothing fits now".
func (k kernelNet) wrap(c net.Conn) net.Conn {
	if !k.try {
		return c
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		panic(err)
	}
	return tryConn{c.(*net.TCPConn), rc}
}

type tryConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

func (c tryConn) TryWrite(p []byte) (int, error) {
	var n int
	var werr error
	if err := c.rc.Write(func(fd uintptr) bool { n, werr = unix.Write(int(fd), p); return true }); err != nil {
		return 0, err
	}
	if werr == unix.EAGAIN {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}

type listener struct {
	ln net.Listener
	k  kernelNet
}

func (l listener) Addr() net.Addr { return l.ln.Addr() }
func (l listener) Close() error   { return l.ln.Close() }
func (l listener) Start(accept func(transport.Conn)) {
	go func() {
		for {
			c, err := l.ln.Accept()
			if err != nil {
				return
			}
			accept(New(l.k.wrap(c), 16<<10))
		}
	}()
}

func TestNetConnContract(t *testing.T) {
	transporttest.Run(t, func() transport.Transport { return kernelNet{} })
}

// Writes go inline through TryWrite while nothing is queued, and through
// the writer goroutine once the socket is full: order and backpressure hold.
func TestNetConnContractTryWrite(t *testing.T) {
	transporttest.Run(t, func() transport.Transport { return kernelNet{try: true} })
}
