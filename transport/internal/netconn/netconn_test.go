package netconn

import (
	"net"
	"testing"
	"time"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/transporttest"
)

// kernelNet is a transport whose connections are kernel sockets used only
// as plain net.Conns, so the adapter meets the contract on its own (the
// DPDK transport's connections come from gVisor's netstack the same way).
type kernelNet struct{}

func (kernelNet) Name() string { return "netconn-test" }
func (kernelNet) Close() error { return nil }

func (kernelNet) Listen(network, address string) (transport.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return listener{ln}, nil
}

func (kernelNet) Dial(network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	go func() {
		c, err := net.DialTimeout(network, address, timeout)
		if err != nil {
			done(nil, err)
			return
		}
		done(New(c, 16<<10), nil)
	}()
}

type listener struct{ ln net.Listener }

func (l listener) Addr() net.Addr { return l.ln.Addr() }
func (l listener) Close() error   { return l.ln.Close() }
func (l listener) Start(accept func(transport.Conn)) {
	go func() {
		for {
			c, err := l.ln.Accept()
			if err != nil {
				return
			}
			accept(New(c, 16<<10))
		}
	}()
}

func TestNetConnContract(t *testing.T) {
	transporttest.Run(t, func() transport.Transport { return kernelNet{} })
}
