//go:build dpdk && linux

package dpdk

/*
#cgo pkg-config: libdpdk
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

// The ethdev calls proxylab needs, ours (go-dpdk's ethdev does not build
// against 22.11). One cgo call moves a whole burst: packets are copied
// between mbufs and one flat Go buffer with a length per packet.

// plab_port_init configures nq rx/tx queue pairs. With more than one,
// RSS over IP and TCP hashes is asked for as far as the device has it
// (*rss_hf says what it got; 0: the device spreads flows its own way, as
// af_packet's fanout does, or not at all). *maxq is the device's limit;
// -E2BIG when nq exceeds it.
static int plab_port_init(uint16_t port, struct rte_mempool *mp, uint16_t nq, uint16_t nrxd, uint16_t ntxd,
                          uint8_t *mac, uint64_t *rss_hf, uint16_t *maxq) {
	struct rte_eth_dev_info info;
	int rc = rte_eth_dev_info_get(port, &info);
	if (rc < 0) return rc;
	*maxq = info.max_rx_queues < info.max_tx_queues ? info.max_rx_queues : info.max_tx_queues;
	if (nq > *maxq) return -E2BIG;
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof conf);
	*rss_hf = 0;
	if (nq > 1) {
		uint64_t hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP) & info.flow_type_rss_offloads;
		if (hf != 0) {
			conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
			conf.rx_adv_conf.rss_conf.rss_key = NULL; // the driver's default key
			conf.rx_adv_conf.rss_conf.rss_hf = hf;
			*rss_hf = hf;
		}
	}
	rc = rte_eth_dev_configure(port, nq, nq, &conf);
	if (rc < 0) return rc;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrxd, &ntxd);
	if (rc < 0) return rc;
	int sock = rte_eth_dev_socket_id(port);
	if (sock < 0) sock = 0;
	for (uint16_t q = 0; q < nq; q++) {
		rc = rte_eth_rx_queue_setup(port, q, nrxd, sock, NULL, mp);
		if (rc < 0) return rc;
		rc = rte_eth_tx_queue_setup(port, q, ntxd, sock, NULL);
		if (rc < 0) return rc;
	}
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
static int plab_rx(uint16_t port, uint16_t q, uint8_t *buf, int cap, uint16_t *lens, int n) {
	struct rte_mbuf *pkts[64];
	if (n > 64) n = 64;
	uint16_t got = rte_eth_rx_burst(port, q, pkts, n);
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
static int plab_tx(uint16_t port, uint16_t q, struct rte_mempool *mp, const uint8_t *buf, const uint16_t *lens, int n) {
	struct rte_mbuf *pkts[64];
	if (n > 64) n = 64;
	if (rte_pktmbuf_alloc_bulk(mp, pkts, n) != 0) return 0;
	int off = 0;
	for (int i = 0; i < n; i++) {
		char *d = rte_pktmbuf_append(pkts[i], lens[i]);
		if (d != NULL) memcpy(d, buf + off, lens[i]);
		off += lens[i];
	}
	uint16_t sent = rte_eth_tx_burst(port, q, pkts, n);
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

// port is one ethdev port with queues rx/tx queue pairs; queue q is used
// by one poll loop only (DPDK queues are not thread-safe).
type port struct {
	id     C.uint16_t
	mp     *C.struct_rte_mempool
	mac    [6]byte
	queues int
	rssHF  uint64 // RSS hash types in use (0: none asked or none available)
}

// openPort starts the port named name (an EAL device such as
// net_af_packet0) with queues queue pairs and mbufs from mp.
func openPort(name string, mp *mempool.Mempool, queues int) (*port, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	p := &port{mp: (*C.struct_rte_mempool)(unsafe.Pointer(mp)), queues: queues}
	if rc := C.plab_port_by_name(cname, &p.id); rc != 0 {
		return nil, fmt.Errorf("dpdk: port %q not found (is it in the EAL's --vdev or PCI allow-list?): %d", name, int(rc))
	}
	var hf C.uint64_t
	var maxq C.uint16_t
	rc := C.plab_port_init(p.id, p.mp, C.uint16_t(queues), 1024, 1024, (*C.uint8_t)(unsafe.Pointer(&p.mac[0])), &hf, &maxq)
	switch {
	case rc == -C.E2BIG:
		return nil, fmt.Errorf("dpdk: port %q has at most %d queue pairs, %d asked (dpdk.queues; af_packet: qpairs=N in its --vdev)", name, int(maxq), queues)
	case rc != 0:
		return nil, fmt.Errorf("dpdk: starting port %q with %d queue pairs: %d", name, queues, int(rc))
	}
	p.rssHF = uint64(hf)
	return p, nil
}

// rx receives a burst from queue q into buf; lens gets each packet's length.
func (p *port) rx(q int, buf []byte, lens []uint16) int {
	return int(C.plab_rx(p.id, C.uint16_t(q), (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.int(len(buf)), (*C.uint16_t)(unsafe.Pointer(&lens[0])), C.int(len(lens))))
}

// tx sends the packets laid end to end in buf on queue q.
func (p *port) tx(q int, buf []byte, lens []uint16) int {
	if len(lens) == 0 {
		return 0
	}
	return int(C.plab_tx(p.id, C.uint16_t(q), p.mp, (*C.uint8_t)(unsafe.Pointer(&buf[0])), (*C.uint16_t)(unsafe.Pointer(&lens[0])), C.int(len(lens))))
}

func (p *port) stop() { C.plab_port_stop(p.id) }
