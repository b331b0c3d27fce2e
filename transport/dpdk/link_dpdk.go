//go:build dpdk && linux

package dpdk

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// portLink is the netstack's link endpoint on a DPDK port (under gVisor's
// Ethernet endpoint, which adds and parses the 14-byte header): inbound
// frames are delivered straight from the poll loop's rx burst, outbound
// frames are copied into a tx batch the poll loop sends as one burst. No
// queue of packet buffers between them: a frame is copied once each way and
// its PacketBuffer released at once.
//
// Ownership: WritePackets runs on whichever goroutine the stack sends from
// and only appends under mu; the poll loop alone swaps the batch out (take)
// and delivers inbound frames.
type portLink struct {
	mtu  uint32
	addr tcpip.LinkAddress

	dmu        sync.RWMutex
	dispatcher stack.NetworkDispatcher

	mu    sync.Mutex
	batch txBatch
	drops uint64 // frames refused because the batch was full
}

// txBatch is frames laid end to end with their lengths: what the stack
// wrote between two turns of the poll loop (sent in bursts).
type txBatch struct {
	buf  []byte
	lens []uint16
}

const (
	burst      = 64  // packets per rx or tx call
	batchLimit = 512 // frames the stack may write between two turns
)

func newTxBatch() txBatch {
	return txBatch{buf: make([]byte, 0, batchLimit*2048), lens: make([]uint16, 0, batchLimit)}
}

func newPortLink(mtu uint32, addr tcpip.LinkAddress) *portLink {
	return &portLink{mtu: mtu, addr: addr, batch: newTxBatch()}
}

var _ stack.LinkEndpoint = (*portLink)(nil)

// deliver hands one inbound frame (Ethernet header included) to the stack.
func (l *portLink) deliver(pkt *stack.PacketBuffer) {
	l.dmu.RLock()
	d := l.dispatcher
	l.dmu.RUnlock()
	if d != nil {
		d.DeliverNetworkPacket(0, pkt)
	}
}

// take swaps the pending batch for spare (emptied) and returns it.
func (l *portLink) take(spare txBatch) txBatch {
	spare.buf, spare.lens = spare.buf[:0], spare.lens[:0]
	l.mu.Lock()
	b := l.batch
	l.batch = spare
	l.mu.Unlock()
	return b
}

// WritePackets copies frames into the batch; a full batch refuses the rest
// (the stack retransmits, as with a full NIC ring).
func (l *portLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, pkt := range pkts.AsSlice() {
		size := pkt.Size()
		if len(l.batch.lens) == cap(l.batch.lens) || len(l.batch.buf)+size > cap(l.batch.buf) {
			l.drops++
			if n == 0 {
				return 0, &tcpip.ErrNoBufferSpace{}
			}
			break
		}
		for _, s := range pkt.AsSlices() {
			l.batch.buf = append(l.batch.buf, s...)
		}
		l.batch.lens = append(l.batch.lens, uint16(size))
		n++
	}
	return n, nil
}

func (l *portLink) Attach(d stack.NetworkDispatcher) {
	l.dmu.Lock()
	l.dispatcher = d
	l.dmu.Unlock()
}

func (l *portLink) IsAttached() bool {
	l.dmu.RLock()
	defer l.dmu.RUnlock()
	return l.dispatcher != nil
}

func (l *portLink) MTU() uint32                                  { return l.mtu }
func (l *portLink) SetMTU(mtu uint32)                            { l.mtu = mtu }
func (l *portLink) Capabilities() stack.LinkEndpointCapabilities { return 0 }
func (l *portLink) MaxHeaderLength() uint16                      { return 0 }
func (l *portLink) LinkAddress() tcpip.LinkAddress               { return l.addr }
func (l *portLink) SetLinkAddress(a tcpip.LinkAddress)           { l.addr = a }
func (l *portLink) Wait()                                        {}
func (l *portLink) ARPHardwareType() header.ARPHardwareType      { return header.ARPHardwareNone }
func (l *portLink) AddHeader(*stack.PacketBuffer)                {}
func (l *portLink) ParseHeader(*stack.PacketBuffer) bool         { return true }
func (l *portLink) Close()                                       {}
func (l *portLink) SetOnCloseAction(func())                      {}
