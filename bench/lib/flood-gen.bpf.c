// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The packet generator of bench/udp-flood.c's `xdp` mode: run by BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES (the kernel's XDP traffic generator, what xdp-trafficgen uses; this
 * kernel has no pktgen) on a prebuilt UDP frame, it gives each frame the source port of the next
 * flow (checksum updated as RFC 1624 says) and redirects it out of the client's interface. No skb is
 * built until the frame reaches the next hop, so one CPU offers far more frames than a socket can.
 *
 * Frames are recycled pages, and the hops downstream rewrite headers in place (the director sets
 * MACs, the kernel's forwarding decrements the TTL), so every run writes the whole header again
 * from the template instead of trusting what the page holds.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define HDR_LEN (14 + 20 + 8)

struct flood_cfg {
	__u32 ifindex;
	__u32 flows;
	/* the template's source port and UDP checksum, host order */
	__u16 sport0;
	__u16 csum0;
	/* Ethernet + IPv4 + UDP header of the template frame */
	__u8 hdr[HDR_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flood_cfg);
} flood_cfg SEC(".maps");

/* One generator runs on one CPU at a time (the test run is one syscall): a plain counter will do. */
__u32 seq;

SEC("xdp")
int flood_gen(struct xdp_md *ctx)
{
	__u32 k = 0;
	struct flood_cfg *c = bpf_map_lookup_elem(&flood_cfg, &k);
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	if (!c || !c->flows || (void *)(udp + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, c->hdr, HDR_LEN);
	__u16 sport = c->sport0 + (__u16)(seq++ % c->flows);
	/* RFC 1624: HC' = ~(~HC + ~m + m'). Written absolutely, so a recycled frame is fine either way. */
	__u32 sum = (__u16)~c->csum0 + (__u16)~c->sport0 + (__u32)sport;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	__u16 check = (__u16)~sum;
	udp->source = bpf_htons(sport);
	udp->check = bpf_htons(check ? check : 0xffff);
	return bpf_redirect(c->ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
