// SPDX-License-Identifier: GPL-2.0
//
// proxylab's sockmap transport programs.
//
// Same-host acceleration: proxylab_sockops records every established IPv4
// socket whose two ends are on this host (loopback, or the same address at
// both ends) in local_socks, keyed by its 4-tuple seen from its side;
// proxylab_msg, the SK_MSG verdict of local_socks, looks up the peer socket
// (the tuple reversed) and moves the message straight to the peer's receive
// queue, skipping TCP/IP for both ends. A socket whose peer is not in the map
// (a remote host, or a process outside the cgroup) sends normally.
//
// L4 splice: user space puts the two sockets of a tcp_proxy pair first in
// splice_targets (no programs: a redirect target only), then their cookies
// in splice_peers, then both in splice_streams, whose stream parser and
// verdict redirect every byte arriving on one socket to the other's egress.
// Both ends are redirect targets before either runs the verdict, so no byte
// is redirected to an empty slot (which drops it after it was acknowledged).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2

// A socket's 4-tuple from its own side; ports in host byte order.
struct tuple {
	__u32 local_ip4;
	__u32 remote_ip4;
	__u32 local_port;
	__u32 remote_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct tuple);
	__type(value, __u64);
} local_socks SEC(".maps");

// A spliced socket's peer and the bytes redirected to it so far.
struct peer {
	__u64 cookie;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct peer);
} splice_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} splice_targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} splice_streams SEC(".maps");

// Counters, one slot each (per CPU; user space sums them).
enum {
	C_LOCAL_INSERTED,
	C_LOCAL_INSERT_FAILED,
	C_MSG_REDIRECTED,
	C_MSG_REDIRECTED_BYTES,
	C_MSG_PASSED,
	C_SKB_REDIRECTED,
	C_SKB_REDIRECTED_BYTES,
	C_SKB_PASSED,
	C_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);
	if (v)
		*v += n;
}

// local says both ends are on this host: loopback, or one address at both.
static __always_inline int local(__u32 local_ip4, __u32 remote_ip4)
{
	return (bpf_ntohl(remote_ip4) >> 24) == 127 || local_ip4 == remote_ip4;
}

SEC("sockops")
int proxylab_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (skops->family != AF_INET || !local(skops->local_ip4, skops->remote_ip4))
		return 1;
	struct tuple key = {
		.local_ip4 = skops->local_ip4,
		.remote_ip4 = skops->remote_ip4,
		.local_port = skops->local_port,
		.remote_port = bpf_ntohl(skops->remote_port),
	};
	if (bpf_sock_hash_update(skops, &local_socks, &key, BPF_NOEXIST) == 0)
		count(C_LOCAL_INSERTED, 1);
	else
		count(C_LOCAL_INSERT_FAILED, 1);
	return 1;
}

SEC("sk_msg")
int proxylab_msg(struct sk_msg_md *msg)
{
	struct tuple peer = {
		.local_ip4 = msg->remote_ip4,
		.remote_ip4 = msg->local_ip4,
		.local_port = bpf_ntohl(msg->remote_port),
		.remote_port = msg->local_port,
	};
	__u64 size = msg->size;
	// No peer in the map: the helper says drop, but the message simply
	// takes the normal path.
	if (bpf_msg_redirect_hash(msg, &local_socks, &peer, BPF_F_INGRESS) != SK_PASS) {
		count(C_MSG_PASSED, 1);
		return SK_PASS;
	}
	count(C_MSG_REDIRECTED, 1);
	count(C_MSG_REDIRECTED_BYTES, size);
	return SK_PASS;
}

// Every byte is its own message: the parser only frames for the verdict (a
// verdict without a parser loses data under bidirectional load).
SEC("sk_skb/stream_parser")
int proxylab_parser(struct __sk_buff *skb)
{
	return skb->len;
}

SEC("sk_skb/stream_verdict")
int proxylab_verdict(struct __sk_buff *skb)
{
	__u64 self = bpf_get_socket_cookie(skb);
	struct peer *p = bpf_map_lookup_elem(&splice_peers, &self);
	__u32 len = skb->len;
	if (!p) {
		count(C_SKB_PASSED, 1);
		return SK_PASS;
	}
	__u64 target = p->cookie;
	if (bpf_sk_redirect_hash(skb, &splice_targets, &target, 0) != SK_PASS) {
		// The peer is gone: user space sees the bytes (and drops them).
		count(C_SKB_PASSED, 1);
		return SK_PASS;
	}
	__sync_fetch_and_add(&p->bytes, len);
	count(C_SKB_REDIRECTED, 1);
	count(C_SKB_REDIRECTED_BYTES, len);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
