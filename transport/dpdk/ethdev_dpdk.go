//go:build dpdk && linux

package dpdk

/*
#cgo pkg-config: libdpdk
#include <stdlib.h>
#include <string.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

// The ethdev calls proxylab needs, ours (go-dpdk's ethdev does not build
// against 22.11). One cgo call moves a whole burst: packets are copied
// between mbufs and one flat Go buffer with a length per packet.

static int plab_port_init(uint16_t port, struct rte_mempool *mp, uint16_t nrxd, uint16_t ntxd, uint8_t *mac) {
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof conf);
	int rc = rte_eth_dev_configure(port, 1, 1, &conf);
	if (rc < 0) return rc;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrxd, &ntxd);
	if (rc < 0) return rc;
	int sock = rte_eth_dev_socket_id(port);
	if (sock < 0) sock = 0;
	rc = rte_eth_rx_queue_setup(port, 0, nrxd, sock, NULL, mp);
	if (rc < 0) return rc;
	rc = rte_eth_tx_queue_setup(port, 0, ntxd, sock, NULL);
	if (rc < 0) return rc;
	rc = rte_eth_dev_start(port);
	if (rc < 0) return rc;
	rte_eth_promiscuous_enable(port);
	struct rte_ether_addr a;
	rc = rte_eth_macaddr_get(port, &a);
	if (rc < 0) return rc;
	memcpy(mac, a.addr_bytes, 6);
	return 0;
}

// plab_rx receives up to n (<= 64) packets into buf (cap bytes), their
// lengths into lens; the mbufs go back to the pool. Returns the count.
static int plab_rx(uint16_t port, uint8_t *buf, int cap, uint16_t *lens, int n) {
	struct rte_mbuf *pkts[64];
	if (n > 64) n = 64;
	uint16_t got = rte_eth_rx_burst(port, 0, pkts, n);
	int off = 0, kept = 0;
	for (int i = 0; i < got; i++) {
		struct rte_mbuf *m = pkts[i];
		uint32_t len = rte_pktmbuf_pkt_len(m);
		if (off + (int)len <= cap) {
			const void *p = rte_pktmbuf_read(m, 0, len, buf + off);
			if (p != NULL && p != buf + off) memcpy(buf + off, p, len);
			lens[kept++] = (uint16_t)len;
			off += len;
		}
		rte_pktmbuf_free(m);
	}
	return kept;
}

// plab_tx sends n packets laid end to end in buf. Returns how many were
// queued on the port; the rest are dropped (like a full NIC ring).
static int plab_tx(uint16_t port, struct rte_mempool *mp, const uint8_t *buf, const uint16_t *lens, int n) {
	struct rte_mbuf *pkts[64];
	if (n > 64) n = 64;
	if (rte_pktmbuf_alloc_bulk(mp, pkts, n) != 0) return 0;
	int off = 0;
	for (int i = 0; i < n; i++) {
		char *d = rte_pktmbuf_append(pkts[i], lens[i]);
		if (d != NULL) memcpy(d, buf + off, lens[i]);
		off += lens[i];
	}
	uint16_t sent = rte_eth_tx_burst(port, 0, pkts, n);
	for (int i = sent; i < n; i++) rte_pktmbuf_free(pkts[i]);
	return sent;
}

static int plab_port_by_name(const char *name, uint16_t *port) {
	return rte_eth_dev_get_port_by_name(name, port);
}

static void plab_port_stop(uint16_t port) {
	rte_eth_dev_stop(port);
	rte_eth_dev_close(port);
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/yerden/go-dpdk/mempool"
)

// port is one ethdev port with a single rx and tx queue.
type port struct {
	id  C.uint16_t
	mp  *C.struct_rte_mempool
	mac [6]byte
}

// openPort starts the port named name (an EAL device such as
// net_af_packet0) with mbufs from mp.
func openPort(name string, mp *mempool.Mempool) (*port, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	p := &port{mp: (*C.struct_rte_mempool)(unsafe.Pointer(mp))}
	if rc := C.plab_port_by_name(cname, &p.id); rc != 0 {
		return nil, fmt.Errorf("dpdk: port %q not found (is it in the EAL's --vdev or PCI allow-list?): %d", name, int(rc))
	}
	if rc := C.plab_port_init(p.id, p.mp, 1024, 1024, (*C.uint8_t)(unsafe.Pointer(&p.mac[0]))); rc != 0 {
		return nil, fmt.Errorf("dpdk: starting port %q: %d", name, int(rc))
	}
	return p, nil
}

// rx receives a burst into buf; lens gets each packet's length.
func (p *port) rx(buf []byte, lens []uint16) int {
	return int(C.plab_rx(p.id, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.int(len(buf)), (*C.uint16_t)(unsafe.Pointer(&lens[0])), C.int(len(lens))))
}

// tx sends the packets laid end to end in buf.
func (p *port) tx(buf []byte, lens []uint16) int {
	if len(lens) == 0 {
		return 0
	}
	return int(C.plab_tx(p.id, p.mp, (*C.uint8_t)(unsafe.Pointer(&buf[0])), (*C.uint16_t)(unsafe.Pointer(&lens[0])), C.int(len(lens))))
}

func (p *port) stop() { C.plab_port_stop(p.id) }
