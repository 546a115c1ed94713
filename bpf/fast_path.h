/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The fast path's own parse (docs/decisions/0007): the common frame forms only, straight into the
 * five key words in registers, then the flow cache probe (flow_cache.h).
 *
 * parse.h's full parse writes struct xdir_packet to the stack for the slow path, which needs all of
 * it; the fast path needs only the key and the TCP flags. Doing the full parse first cost the fast
 * path its zeroing, the stores of every field and the reloads of the key (~30 of its ~110
 * instructions). Here the key is built and compared in registers (the compiler spills a few of
 * its words around the one lookup call; nothing else is stored).
 *
 * Forms served: Ethernet with at most one 802.1Q/802.1ad tag; IPv4 with IHL 5 and no fragment
 * bits; IPv6 with TCP or UDP as its first next header; TCP without SYN, FIN or RST, or UDP. For
 * these the key is the one xdir_parse() builds, and every check that makes xdir_parse() call the
 * frame malformed (version, lengths, header bounds) is made here too, or implied (IPv4 total
 * length >= IHL x 4 follows from the TCP/UDP header lying within it), so a frame this path
 * forwards is one the full parse would have found to be the same flow. Every other form (IPv4
 * options, IPv6 extension headers, fragments, ICMP, a bad length) misses here and takes the full
 * parse and the slow path, which is right for every frame and only slower.
 */
#ifndef XDIR_FAST_PATH_H
#define XDIR_FAST_PATH_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "director_shared.h"
#include "consts.h"
#include "parse.h"
#include "flow_cache.h"

/* A 64-bit load from the packet at any alignment (x86, and the verifier on it, allow one): through
 * a u64 pointer, as memcpy from a less aligned type compiles to eight byte loads. */
static __always_inline __u64 xdir_load64(const void *p)
{
	return *(const __u64 *)p;
}

/*
 * The key's last word, {sport, dport, proto, family}, for a TCP (without SYN, FIN or RST) or UDP
 * header at l4; false for anything else. Two bounds, as in xdir_parse_ports(): data_end for the
 * verifier, ip_end so that padding is never read as a header.
 */
static __always_inline bool xdir_fast_ports(void *l4, void *ip_end, void *data_end, __u8 l4proto,
					    __u64 family, __u64 *word)
{
	if (l4proto == IPPROTO_TCP) {
		if (l4 + sizeof(struct tcphdr) > data_end || l4 + sizeof(struct tcphdr) > ip_end)
			return false;
		if (((__u8 *)l4)[XDIR_TCP_FLAGS_OFF] & (XDIR_TCP_SYN | XDIR_TCP_FIN | XDIR_TCP_RST))
			return false;
	} else if (l4proto == IPPROTO_UDP) {
		if (l4 + sizeof(struct udphdr) > data_end || l4 + sizeof(struct udphdr) > ip_end)
			return false;
	} else {
		return false;
	}
	/* {sport, dport} as on the wire, in one load. */
	*word = (__u64)*(__u32 *)l4 | (__u64)l4proto << 32 | family << 40;
	return true;
}

/* The flow-cache entry of an established flow in a common-form frame, or NULL (see above). */
static __always_inline struct flow_cache_entry *xdir_fast_find(void *data, void *data_end)
{
	void *l3;
	__be16 proto = xdir_parse_eth(data, data_end, &l3);
	__u64 ports;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = l3;
		void *ip_end;

		if ((void *)(iph + 1) > data_end)
			return NULL;
		/* Version 4 and IHL 5 in one compare; any fragment bit sends it to the full parse. */
		if (*(__u8 *)iph != 0x45 || (iph->frag_off & bpf_htons(XDIR_IP_MF | XDIR_IP_OFFSET)))
			return NULL;
		ip_end = l3 + xdir_wire_len(iph->tot_len);
		if (ip_end > data_end ||
		    !xdir_fast_ports(iph + 1, ip_end, data_end, iph->protocol, XDIR_FAMILY_V4, &ports))
			return NULL;
		/* As xdir_flow_addr4() lays the key out: each address, then a zero word. */
		return xdir_flow_cache_find(iph->saddr, 0, iph->daddr, 0, ports);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		void *ip_end;

		if ((void *)(ip6 + 1) > data_end)
			return NULL;
		if ((*(__u8 *)ip6 & 0xf0) != 0x60)
			return NULL;
		ip_end = (void *)(ip6 + 1) + xdir_wire_len(ip6->payload_len);
		if (ip_end > data_end ||
		    !xdir_fast_ports(ip6 + 1, ip_end, data_end, ip6->nexthdr, XDIR_FAMILY_V6, &ports))
			return NULL;
		return xdir_flow_cache_find(xdir_load64(&ip6->saddr), xdir_load64((void *)&ip6->saddr + 8),
					    xdir_load64(&ip6->daddr), xdir_load64((void *)&ip6->daddr + 8), ports);
	}
	return NULL;
}

#endif /* XDIR_FAST_PATH_H */
