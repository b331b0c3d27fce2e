//go:build dpdk && linux

package dpdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yerden/go-dpdk/eal"
	"github.com/yerden/go-dpdk/mempool"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/internal/netconn"
)

// Built reports whether this binary has the DPDK transport.
const Built = true

// The EAL can start once per process.
var ealOnce struct {
	sync.Mutex
	started bool
}

// Transport owns one DPDK port and a gVisor netstack on it.
type Transport struct {
	opts  transport.Options
	port  *port
	pool  *mempool.Mempool
	link  *portLink
	stack *stack.Stack
	addr  netip.Prefix

	stop    atomic.Bool
	stopped chan struct{}
	rxPkts  atomic.Uint64
	txPkts  atomic.Uint64
	txDrops atomic.Uint64
}

var _ transport.Transport = (*Transport)(nil)

const (
	nicID = 1
	mtu   = 1500
)

// New starts the EAL, the port and the stack, and the poll loop on an
// lcore of its own.
func New(opts transport.Options) (transport.Transport, error) {
	o := opts.DPDK
	addr, err := netip.ParsePrefix(o.Address)
	if err != nil || !addr.Addr().Is4() {
		return nil, fmt.Errorf("dpdk: address %q: want an IPv4 address with prefix, e.g. 10.0.0.2/24", o.Address)
	}
	if o.Port == "" {
		return nil, errors.New("dpdk: no port named (e.g. net_af_packet0)")
	}
	ealOnce.Lock()
	defer ealOnce.Unlock()
	if ealOnce.started {
		return nil, errors.New("dpdk: the EAL is already running in this process (one dpdk transport per process)")
	}
	args := append([]string{"proxylab"}, o.EAL...)
	if !hasLcores(o.EAL) {
		// The poll loop runs on the EAL's main lcore: the first CPU the
		// process is pinned to.
		lcore := 0
		if len(opts.CPUs) > 0 {
			lcore = opts.CPUs[0]
		}
		args = append(args, "-l", strconv.Itoa(lcore))
	}
	if _, err := eal.Init(args); err != nil {
		return nil, fmt.Errorf("dpdk: EAL init %v: %w (no hugepages: add --no-huge -m 256; not root: DPDK needs root)", o.EAL, err)
	}
	ealOnce.started = true
	pool, err := mempool.CreateMbufPool(fmt.Sprintf("plab%d", os.Getpid()), 8191, 2048+128, mempool.OptCacheSize(256), mempool.OptSocket(0))
	if err != nil {
		return nil, fmt.Errorf("dpdk: mbuf pool: %w (memory: raise -m)", err)
	}
	p, err := openPort(o.Port, pool)
	if err != nil {
		return nil, err
	}
	t := &Transport{opts: opts, port: p, pool: pool, addr: addr, stopped: make(chan struct{})}
	if err := t.startStack(o.Gateway); err != nil {
		p.stop()
		return nil, err
	}
	// The poll loop takes the main lcore's thread (pinned by the EAL).
	eal.ExecOnMainAsync(nil, func(*eal.LcoreCtx) { t.poll() })
	slog.Info("dpdk: port up", "port", o.Port, "mac", net.HardwareAddr(p.mac[:]).String(), "address", addr)
	return t, nil
}

func (t *Transport) startStack(gateway string) error {
	t.stack = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	t.link = newPortLink(mtu, tcpip.LinkAddress(t.port.mac[:]))
	if err := t.stack.CreateNIC(nicID, ethernet.New(t.link)); err != nil {
		return fmt.Errorf("dpdk: netstack NIC: %v", err)
	}
	a := t.addr.Addr().As4()
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(a), PrefixLen: t.addr.Bits()}}
	if err := t.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("dpdk: netstack address: %v", err)
	}
	subnet := pa.AddressWithPrefix.Subnet()
	routes := []tcpip.Route{{Destination: subnet, NIC: nicID}}
	if gateway != "" {
		gw, err := netip.ParseAddr(gateway)
		if err != nil || !gw.Is4() {
			return fmt.Errorf("dpdk: gateway %q: want an IPv4 address", gateway)
		}
		def, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{}), tcpip.MaskFromBytes(make([]byte, 4)))
		routes = append(routes, tcpip.Route{Destination: def, Gateway: tcpip.AddrFrom4(gw.As4()), NIC: nicID})
	}
	t.stack.SetRouteTable(routes)
	// Buffers a proxy wants: 1 MiB send and receive by default.
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 4 << 20}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 4 << 20}
	t.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv)
	t.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &snd)
	sack := tcpip.TCPSACKEnabled(true)
	t.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	return nil
}

// poll moves packets between the port and the stack: an rx burst into the
// stack, then whatever the stack queued out as one tx burst; one cgo call
// per burst. It runs on the EAL's main lcore thread.
func (t *Transport) poll() {
	defer close(t.stopped)
	rxBuf := make([]byte, burst*2048)
	rxLens := make([]uint16, burst)
	spare := newTxBatch()
	var idleSince time.Time
	for !t.stop.Load() {
		n := t.port.rx(rxBuf, rxLens)
		off := 0
		for i := 0; i < n; i++ {
			l := int(rxLens[i])
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(rxBuf[off : off+l])})
			t.link.deliver(pkt)
			pkt.DecRef()
			off += l
		}
		t.rxPkts.Add(uint64(n))
		// Out: what the stack wrote since the last turn, as one burst.
		b := t.link.take(spare)
		spare = b
		txLens := b.lens
		for off, rest := 0, txLens; len(rest) > 0; {
			k := min(len(rest), burst)
			size := 0
			for _, l := range rest[:k] {
				size += int(l)
			}
			sent := t.port.tx(b.buf[off:off+size], rest[:k])
			t.txPkts.Add(uint64(sent))
			t.txDrops.Add(uint64(k - sent))
			off, rest = off+size, rest[k:]
		}
		if n == 0 && len(txLens) == 0 {
			// Nothing either way: let the stack's and the proxy's
			// goroutines run (this loop holds a P), and after a long quiet
			// spell stop spinning until traffic returns.
			if idleSince.IsZero() {
				idleSince = time.Now()
			} else if time.Since(idleSince) > 10*time.Millisecond {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			runtime.Gosched()
		} else {
			idleSince = time.Time{}
		}
	}
}

func (t *Transport) Name() string { return Name }

// Close stops polling, the stack and the port, then the EAL (it cannot
// start again in this process).
func (t *Transport) Close() error {
	if t.stop.Swap(true) {
		return nil
	}
	<-t.stopped
	t.stack.Close()
	t.port.stop()
	eal.StopLcores()
	if err := eal.Cleanup(); err != nil {
		return fmt.Errorf("dpdk: EAL cleanup: %w", err)
	}
	return nil
}

// hasLcores says whether the EAL arguments choose lcores themselves.
func hasLcores(args []string) bool {
	for _, a := range args {
		if a == "-l" || a == "-c" || a == "--lcores" || strings.HasPrefix(a, "--lcores=") {
			return true
		}
	}
	return false
}

func (t *Transport) full(address string) (tcpip.FullAddress, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return tcpip.FullAddress{}, fmt.Errorf("dpdk: %q: %w", address, err)
	}
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return tcpip.FullAddress{}, fmt.Errorf("dpdk: %q: IPv4 only", address)
	}
	fa := tcpip.FullAddress{NIC: nicID, Port: ap.Port()}
	if !a.IsUnspecified() {
		fa.Addr = tcpip.AddrFrom4(a.As4())
	}
	return fa, nil
}

// Listen binds in the userspace stack (0.0.0.0 means the port's address).
func (t *Transport) Listen(network, address string) (transport.Listener, error) {
	fa, err := t.full(address)
	if err != nil {
		return nil, err
	}
	ln, err := gonet.ListenTCP(t.stack, fa, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("dpdk: listen %s: %w", address, err)
	}
	return &listener{ln: ln, t: t}, nil
}

type listener struct {
	ln *gonet.TCPListener
	t  *Transport
}

func (l *listener) Addr() net.Addr { return l.ln.Addr() }
func (l *listener) Close() error   { return l.ln.Close() }

func (l *listener) Start(accept func(transport.Conn)) {
	go func() {
		for {
			c, err := l.ln.Accept()
			if err != nil {
				return
			}
			accept(netconn.New(c, l.t.bufSize()))
		}
	}()
}

func (t *Transport) bufSize() int {
	if t.opts.ReadBufferSize > 0 {
		return t.opts.ReadBufferSize
	}
	return 16 << 10
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
		c, err := gonet.DialContextTCP(ctx, t.stack, fa, ipv4.ProtocolNumber)
		if err != nil {
			done(nil, fmt.Errorf("dpdk: dial %s: %w", address, err))
			return
		}
		done(netconn.New(c, t.bufSize()), nil)
	}()
}

// Stats reports packets through the port.
func (t *Transport) Stats() transport.Stats {
	return transport.Stats{Reads: t.rxPkts.Load(), Writes: t.txPkts.Load()}
}
