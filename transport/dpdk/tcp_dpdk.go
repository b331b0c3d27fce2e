//go:build dpdk && linux

package dpdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/internal/netconn"
)

// tcpConn is one netstack TCP endpoint: gonet's blocking net.Conn for
// reads (a goroutine per connection waits on the endpoint), plus TryWrite
// straight into the endpoint, so the proxy's writes go out on its own
// goroutine and a writer goroutine runs only when the send buffer is full.
type tcpConn struct {
	*gonet.TCPConn
	ep tcpip.Endpoint
	r  bytes.Reader // TryWrite's payload; netconn serialises TryWrite
}

var _ netconn.TryWriter = (*tcpConn)(nil)

func newTCPConn(ep tcpip.Endpoint, wq *waiter.Queue) *tcpConn {
	return &tcpConn{TCPConn: gonet.NewTCPConn(wq, ep), ep: ep}
}

// TryWrite writes what the endpoint's send buffer takes now.
func (c *tcpConn) TryWrite(p []byte) (int, error) {
	c.r.Reset(p)
	n, err := c.ep.Write(&c.r, tcpip.WriteOptions{})
	switch err.(type) {
	case nil, *tcpip.ErrWouldBlock:
		return int(n), nil
	}
	return int(n), fmt.Errorf("dpdk: write: %s", err)
}

// listener accepts from a netstack endpoint.
type listener struct {
	ep     tcpip.Endpoint
	wq     *waiter.Queue
	addr   net.Addr
	t      *Transport
	cancel chan struct{}
}

// Listen binds in the userspace stack (0.0.0.0 means the port's address).
func (t *Transport) Listen(network, address string) (transport.Listener, error) {
	fa, err := t.full(address)
	if err != nil {
		return nil, err
	}
	wq := new(waiter.Queue)
	ep, terr := t.stack.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, wq)
	if terr != nil {
		return nil, fmt.Errorf("dpdk: listen %s: %s", address, terr)
	}
	ep.SocketOptions().SetReuseAddress(true)
	if terr := ep.Bind(fa); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("dpdk: listen %s: bind: %s", address, terr)
	}
	if terr := ep.Listen(4096); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("dpdk: listen %s: %s", address, terr)
	}
	la, _ := ep.GetLocalAddress()
	return &listener{ep: ep, wq: wq, t: t, cancel: make(chan struct{}),
		addr: &net.TCPAddr{IP: net.IP(la.Addr.AsSlice()), Port: int(la.Port)}}, nil
}

func (l *listener) Addr() net.Addr { return l.addr }

func (l *listener) Close() error {
	select {
	case <-l.cancel:
	default:
		close(l.cancel)
		l.ep.Close()
	}
	return nil
}

// Start accepts on a goroutine that waits on the endpoint's queue.
func (l *listener) Start(accept func(transport.Conn)) {
	go func() {
		entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
		l.wq.EventRegister(&entry)
		defer l.wq.EventUnregister(&entry)
		for {
			ep, wq, err := l.ep.Accept(nil)
			if _, ok := err.(*tcpip.ErrWouldBlock); ok {
				select {
				case <-ready:
					continue
				case <-l.cancel:
					return
				}
			}
			if err != nil {
				return // closed
			}
			accept(netconn.New(newTCPConn(ep, wq), l.t.bufSize()))
		}
	}()
}

// Dial connects through the userspace stack.
func (t *Transport) Dial(network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	fa, err := t.full(address)
	if err != nil {
		go done(nil, err)
		return
	}
	go func() {
		ctx := context.Background()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		c, err := t.connect(ctx, fa)
		if err != nil {
			done(nil, fmt.Errorf("dpdk: dial %s: %w", address, err))
			return
		}
		done(netconn.New(c, t.bufSize()), nil)
	}()
}

func (t *Transport) connect(ctx context.Context, fa tcpip.FullAddress) (*tcpConn, error) {
	wq := new(waiter.Queue)
	ep, terr := t.stack.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, wq)
	if terr != nil {
		return nil, errors.New(terr.String())
	}
	entry, ready := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(fa)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ready:
			terr = ep.LastError()
		case <-ctx.Done():
			ep.Close()
			return nil, ctx.Err()
		}
	}
	if terr != nil {
		ep.Close()
		return nil, errors.New(terr.String())
	}
	return newTCPConn(ep, wq), nil
}
