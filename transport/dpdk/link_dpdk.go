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
// With several queue pairs, each has its own batch: a frame goes to the
// batch of queue (its flow hash mod the queues), so one connection's
// segments leave in order through one queue, and each poll loop sends only
// its own queue's batch.
//
// Ownership: WritePackets runs on whichever goroutine the stack sends from
// and only appends under the batch's mu; the poll loop of queue q alone
// swaps batch q out (take) and delivers the frames it received.
type portLink struct {
	mtu  uint32
	addr tcpip.LinkAddress

	dmu        sync.RWMutex
	dispatcher stack.NetworkDispatcher

	out []outQueue
}

// outQueue is one tx queue's pending batch.
type outQueue struct {
	mu    sync.Mutex
	batch txBatch
	drops uint64 // frames refused because the batch was full
	_     [64]byte
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

func newPortLink(mtu uint32, addr tcpip.LinkAddress, queues int) *portLink {
	l := &portLink{mtu: mtu, addr: addr, out: make([]outQueue, queues)}
	for i := range l.out {
		l.out[i].batch = newTxBatch()
	}
	return l
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

// take swaps queue q's pending batch for spare (emptied) and returns it.
func (l *portLink) take(q int, spare txBatch) txBatch {
	spare.buf, spare.lens = spare.buf[:0], spare.lens[:0]
	o := &l.out[q]
	o.mu.Lock()
	b := o.batch
	o.batch = spare
	o.mu.Unlock()
	return b
}

// WritePackets copies frames into their queue's batch (by flow hash, so a
// connection's segments stay in order); a full batch refuses the rest (the
// stack retransmits, as with a full NIC ring).
func (l *portLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	var o *outQueue
	defer func() {
		if o != nil {
			o.mu.Unlock()
		}
	}()
	n := 0
	for _, pkt := range pkts.AsSlice() {
		q := &l.out[0]
		if len(l.out) > 1 {
			q = &l.out[pkt.Hash%uint32(len(l.out))]
		}
		if q != o {
			if o != nil {
				o.mu.Unlock()
			}
			o = q
			o.mu.Lock()
		}
		size := pkt.Size()
		if len(o.batch.lens) == cap(o.batch.lens) || len(o.batch.buf)+size > cap(o.batch.buf) {
			o.drops++
			if n == 0 {
				return 0, &tcpip.ErrNoBufferSpace{}
			}
			break
		}
		for _, s := range pkt.AsSlices() {
			o.batch.buf = append(o.batch.buf, s...)
		}
		o.batch.lens = append(o.batch.lens, uint16(size))
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
