//go:build dpdk && linux

package dpdk

import (
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
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
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

	shared  bool // pollers are goroutines sharing the CPUs (see New)
	stop    atomic.Bool
	stopped sync.WaitGroup
	queues  []queueCounters
}

// queueCounters are one queue's packet counts, written by its poll loop.
type queueCounters struct {
	rx, tx, txDrops atomic.Uint64
	_               [40]byte
}

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.StatsReporter = (*Transport)(nil)
	_ stats.Collector         = (*Transport)(nil)
)

const (
	nicID = 1
	mtu   = 1500
)

// New starts the EAL, the port and the stack, and the poll loop on an
// lcore of its own.
func New(opts transport.Options) (transport.Transport, error) {
	if opts.ReusePort {
		return nil, errors.New("dpdk: reuse_port: the NIC port is owned by one process")
	}
	o, _ := opts.Config.(*Options)
	if o == nil {
		o = &Options{}
	}
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
	queues := max(o.Queues, 1)
	args := append([]string{"proxylab"}, o.EAL...)
	if !hasLcores(o.EAL) {
		// One lcore per queue: the first CPUs the process is pinned to
		// (the first is the EAL's main lcore and polls queue 0).
		lcores := make([]string, queues)
		for i := range lcores {
			c := i
			if i < len(opts.CPUs) {
				c = opts.CPUs[i]
			} else if len(opts.CPUs) > 0 {
				return nil, fmt.Errorf("dpdk: %d queues need %d CPUs to poll on, the process is pinned to %d (--cpus)", queues, queues, len(opts.CPUs))
			}
			lcores[i] = strconv.Itoa(c)
		}
		args = append(args, "-l", strings.Join(lcores, ","))
	}
	if _, err := eal.Init(args); err != nil {
		return nil, fmt.Errorf("dpdk: EAL init %v: %w (no hugepages: add --no-huge -m 256; not root: DPDK needs root)", o.EAL, err)
	}
	ealOnce.started = true
	if n := int(eal.LcoreCount()); n < queues {
		eal.Cleanup()
		return nil, fmt.Errorf("dpdk: %d queues need %d lcores to poll them, the EAL has %d (its -l/--lcores)", queues, queues, n)
	}
	// Enough mbufs for every queue's rings, the per-lcore caches and
	// packets in flight, as 2^k-1 (the mempool's most efficient size).
	need := queues*(1024+1024) + int(eal.LcoreCount())*256 + 4096
	nmbufs := 8191
	for nmbufs < need {
		nmbufs = nmbufs*2 + 1
	}
	pool, err := mempool.CreateMbufPool(fmt.Sprintf("plab%d", os.Getpid()), uint32(nmbufs), 2048+128, mempool.OptCacheSize(256), mempool.OptSocket(0))
	if err != nil {
		return nil, fmt.Errorf("dpdk: mbuf pool of %d: %w (memory: raise -m)", nmbufs, err)
	}
	p, err := openPort(o.Port, pool, queues)
	if err != nil {
		return nil, err
	}
	t := &Transport{opts: opts, port: p, pool: pool, addr: addr, queues: make([]queueCounters, queues)}
	if err := t.startStack(o.Gateway); err != nil {
		p.stop()
		return nil, err
	}
	// With CPUs to spare, queue 0's poll loop takes the main lcore's
	// thread and queue i the i-th worker lcore's (each pinned by the EAL),
	// and spins there. When the pollers would take every CPU the process
	// has, they share them with the stack and the proxy instead: plain
	// goroutines that yield every turn (a poller on an lcore thread is
	// locked to it, and each yield would hand the CPU to another thread
	// and back).
	cpus := len(opts.CPUs)
	if cpus == 0 {
		cpus = runtime.NumCPU()
	}
	t.shared = cpus <= queues
	workers := eal.LcoresWorker()
	t.stopped.Add(queues)
	for q := 0; q < queues; q++ {
		switch {
		case t.shared:
			go t.poll(q)
		case q == 0:
			eal.ExecOnMainAsync(nil, func(*eal.LcoreCtx) { t.poll(q) })
		default:
			eal.ExecOnLcoreAsync(workers[q-1], nil, func(*eal.LcoreCtx) { t.poll(q) })
		}
	}
	mode := "dedicated lcores"
	if t.shared {
		mode = fmt.Sprintf("shared with the proxy (%d CPUs for %d queues)", cpus, queues)
	}
	rss := "none"
	if queues > 1 {
		rss = fmt.Sprintf("%#x", p.rssHF)
		if p.rssHF == 0 {
			rss = "not offered by the device (it spreads flows itself, or queue 0 gets all)"
		}
	}
	slog.Info("dpdk: port up", "port", o.Port, "mac", net.HardwareAddr(p.mac[:]).String(), "address", addr, "queues", queues, "rss_hash", rss, "polling", mode)
	return t, nil
}

func (t *Transport) startStack(gateway string) error {
	t.stack = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	t.link = newPortLink(mtu, tcpip.LinkAddress(t.port.mac[:]), t.port.queues)
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

// poll moves packets between queue q and the stack: an rx burst into the
// stack, then whatever the stack queued out on q as one tx burst; one cgo
// call per burst. It runs on its lcore's thread.
func (t *Transport) poll(q int) {
	defer t.stopped.Done()
	cnt := &t.queues[q]
	rxBuf := make([]byte, burst*2048)
	rxLens := make([]uint16, burst)
	spare := newTxBatch()
	var idleSince time.Time
	for !t.stop.Load() {
		n := t.port.rx(q, rxBuf, rxLens)
		off := 0
		for i := 0; i < n; i++ {
			l := int(rxLens[i])
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(rxBuf[off : off+l])})
			t.link.deliver(pkt)
			pkt.DecRef()
			off += l
		}
		cnt.rx.Add(uint64(n))
		// Out: what the stack wrote for this queue since the last turn,
		// in bursts.
		b := t.link.take(q, spare)
		spare = b
		txLens := b.lens
		for off, rest := 0, txLens; len(rest) > 0; {
			k := min(len(rest), burst)
			size := 0
			for _, l := range rest[:k] {
				size += int(l)
			}
			sent := t.port.tx(q, b.buf[off:off+size], rest[:k])
			cnt.tx.Add(uint64(sent))
			cnt.txDrops.Add(uint64(k - sent))
			off, rest = off+size, rest[k:]
		}
		if n == 0 && len(txLens) == 0 {
			// Nothing either way; after a long quiet spell stop spinning
			// until traffic returns.
			if idleSince.IsZero() {
				idleSince = time.Now()
			} else if time.Since(idleSince) > 10*time.Millisecond {
				time.Sleep(100 * time.Microsecond)
				continue
			}
		} else {
			idleSince = time.Time{}
		}
		if t.shared {
			// Every turn lets the stack's and the proxy's goroutines run:
			// what this turn delivered is processed there (TCP segments by
			// the stack's processors, data by the proxy), which is also
			// what fills the next turn's tx batch.
			runtime.Gosched()
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
	t.stopped.Wait()
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

func (t *Transport) bufSize() int {
	if t.opts.ReadBufferSize > 0 {
		return t.opts.ReadBufferSize
	}
	return 16 << 10
}

// Stats reports packets through the port, all queues together.
func (t *Transport) Stats() transport.Stats {
	s := transport.Stats{Loops: len(t.queues)}
	for i := range t.queues {
		s.Reads += t.queues[i].rx.Load()
		s.Writes += t.queues[i].tx.Load()
	}
	return s
}

// Collect exports the packets per NIC queue (proxylab_dpdk_*).
func (t *Transport) Collect(emit stats.Emit) {
	tr := stats.Label{Name: "transport", Value: Name}
	for i := range t.queues {
		c, q := &t.queues[i], stats.Label{Name: "queue", Value: strconv.Itoa(i)}
		emit("dpdk_rx_packets_total", "Packets received on a NIC queue.", stats.CounterKind, float64(c.rx.Load()), tr, q)
		emit("dpdk_tx_packets_total", "Packets sent on a NIC queue.", stats.CounterKind, float64(c.tx.Load()), tr, q)
		emit("dpdk_tx_dropped_total", "Packets the NIC queue did not take (ring full or no mbuf).", stats.CounterKind, float64(c.txDrops.Load()), tr, q)
	}
}
