/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing: Ethernet (at most one 802.1Q/802.1ad tag), IPv4 with any IHL, IPv6 with
 * hop-by-hop/destination-options/fragment headers, then the TCP/UDP ports or the ICMP header.
 *
 * Rule for malformed packets: a frame is dropped (DROP_PARSE) only when it claims to be IP
 * (ethertype IPv4/IPv6) and fails a check the kernel's own ip_rcv()/ipv6_rcv() would also
 * fail (wrong version, IHL < 5, a length field larger than the frame), or when an unfragmented
 * TCP or UDP packet is too short for its header, which no endpoint's TCP/UDP input accepts
 * (only a router would pass it on, and nobody can use it). So dropping changes nothing for
 * anyone, whatever the destination. Everything we merely do not understand (other ethertypes,
 * other protocols, routing headers, a truncated header in a fragment) goes to the kernel.
 *
 * fast_path.h parses the common forms again, for flow-cache hits only (docs/decisions/0007). What
 * it accepts and the key it builds must stay what this parse gives for those frames: a change to
 * a check or to the key layout here needs the same change there (test/bpf/fast-path.test.ts
 * compares the two on valid and malformed frames).
 */
#ifndef XDIR_PARSE_H
#define XDIR_PARSE_H

/* Flow-key words are built in little-endian memory order (here and in fast_path.h), and packet
 * loads are unaligned: the director targets x86. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the director's parsers build flow-key words for a little-endian target"
#endif

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

struct xdir_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* Same layout as the kernel's struct frag_hdr (not in uapi). */
struct xdir_ip6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

enum xdir_parse_result {
	XDIR_PARSE_L4,       /* unfragmented TCP/UDP: pkt->flow is complete */
	XDIR_PARSE_FRAGMENT, /* TCP/UDP fragment: ports are set only if this fragment holds them */
	XDIR_PARSE_ICMP,     /* ICMP (v4) or ICMPv6: pkt->l4 points at its header */
	XDIR_PARSE_OTHER,    /* IP, but a protocol or extension header the director does not serve */
	XDIR_PARSE_NOT_IP,   /* not IPv4/IPv6 */
	XDIR_PARSE_BAD,      /* claims to be IP but is malformed (see the rule above) */
};

struct xdir_packet {
	struct flow_key flow; /* the flow as it arrives: client -> VIP */
	void *l4;             /* L4 header */
	void *ip_end;         /* end of the IP packet by its length field; Ethernet padding may follow */
	__u64 bytes;          /* frame length, for the byte counters */
	__u8 tcp_flags;
	__u8 fragment;        /* any fragment but an atomic one (offset 0 and no more fragments) */
};

/*
 * Stores a 64-bit word of the flow key with one store. The flow cache (flow_cache.h) reads the
 * key back as five u64 words (the slot hash when the slow path fills an entry); a load that spans
 * two narrower stores cannot be forwarded from the store buffer and waits for them to retire:
 * measured at ~10 ns per packet when the fast path probed with this key (before 0007).
 */
static __always_inline void xdir_flow_word(void *at, __u64 word)
{
	__builtin_memcpy(at, &word, sizeof(word));
}

/* An IPv4 address as the first of a key address's words, the other three zero, in one store. */
static __always_inline void xdir_flow_addr4(void *at, __be32 addr)
{
	xdir_flow_word(at, (__u64)addr);
}

/* The key's last word, {sport, dport, proto, family, pad}, in memory order. */
static __always_inline void xdir_flow_set_ports(struct xdir_packet *pkt, __be16 sport, __be16 dport)
{
	xdir_flow_word(&pkt->flow.sport, (__u64)sport | (__u64)dport << 16 | (__u64)pkt->flow.proto << 32 |
					 (__u64)pkt->flow.family << 40);
}

/* TCP or UDP ports (and TCP flags) of pkt->flow.proto, from the header at l4. */
static __always_inline int xdir_parse_ports(void *l4, void *data_end, struct xdir_packet *pkt)
{
	if (pkt->flow.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		/* Two bounds: data_end for the verifier, ip_end so padding is never read as header. */
		if ((void *)(th + 1) > data_end || (void *)(th + 1) > pkt->ip_end)
			return pkt->fragment ? XDIR_PARSE_FRAGMENT : XDIR_PARSE_BAD;
		xdir_flow_set_ports(pkt, th->source, th->dest);
		pkt->tcp_flags = ((__u8 *)th)[XDIR_TCP_FLAGS_OFF];
	} else {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || (void *)(uh + 1) > pkt->ip_end)
			return pkt->fragment ? XDIR_PARSE_FRAGMENT : XDIR_PARSE_BAD;
		xdir_flow_set_ports(pkt, uh->source, uh->dest);
	}
	return pkt->fragment ? XDIR_PARSE_FRAGMENT : XDIR_PARSE_L4;
}

/* Dispatch on the transport protocol once pkt->flow.proto, pkt->l4 and pkt->ip_end are set. */
static __always_inline int xdir_parse_transport(void *data_end, struct xdir_packet *pkt,
						__u8 icmp_proto)
{
	__u8 proto = pkt->flow.proto;

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP)
		return xdir_parse_ports(pkt->l4, data_end, pkt);
	if (proto == icmp_proto)
		return XDIR_PARSE_ICMP;
	return XDIR_PARSE_OTHER;
}

/*
 * A 16-bit length from the wire, with a range the verifier keeps. Older verifiers (6.1, the
 * IPVS test guest's kernel) forget the range of a byte swap and then refuse packet-pointer
 * arithmetic with the result; the barrier stops clang from dropping the mask as redundant.
 */
static __always_inline __u32 xdir_wire_len(__be16 wire)
{
	__u32 len = bpf_ntohs(wire);

	asm volatile("" : "+r"(len));
	return len & 0xffff;
}

static __always_inline int xdir_parse_ipv4(void *l3, void *data_end, struct xdir_packet *pkt)
{
	struct iphdr *iph = l3;
	__u32 hdr_len, tot_len;
	__u16 frag_off;

	if ((void *)(iph + 1) > data_end)
		return XDIR_PARSE_BAD;
	if (iph->version != 4 || iph->ihl < 5)
		return XDIR_PARSE_BAD;
	hdr_len = (__u32)iph->ihl * 4; /* 20..60: IHL is 4 bits */
	tot_len = xdir_wire_len(iph->tot_len);
	if (tot_len < hdr_len || l3 + tot_len > data_end)
		return XDIR_PARSE_BAD;

	pkt->ip_end = l3 + tot_len;
	pkt->l4 = l3 + hdr_len;
	pkt->flow.family = XDIR_FAMILY_V4;
	pkt->flow.proto = iph->protocol;
	/* src[0] and src[1] (zero) in one store, and the same for dst: see xdir_flow_word(). */
	xdir_flow_addr4(pkt->flow.src, iph->saddr);
	xdir_flow_addr4(pkt->flow.dst, iph->daddr);

	frag_off = bpf_ntohs(iph->frag_off);
	if (frag_off & (XDIR_IP_MF | XDIR_IP_OFFSET)) {
		pkt->fragment = 1;
		/* A later fragment carries no transport header; bytes at l4 are payload. */
		if (frag_off & XDIR_IP_OFFSET) {
			__u8 proto = pkt->flow.proto;

			return (proto == IPPROTO_TCP || proto == IPPROTO_UDP) ? XDIR_PARSE_FRAGMENT
			       : proto == IPPROTO_ICMP ? XDIR_PARSE_ICMP : XDIR_PARSE_OTHER;
		}
	}
	return xdir_parse_transport(data_end, pkt, IPPROTO_ICMP);
}

static __always_inline int xdir_parse_ipv6(void *l3, void *data_end, struct xdir_packet *pkt)
{
	struct ipv6hdr *ip6 = l3;
	void *cursor = (void *)(ip6 + 1);
	__u8 nexthdr;

	if ((void *)(ip6 + 1) > data_end)
		return XDIR_PARSE_BAD;
	if (ip6->version != 6)
		return XDIR_PARSE_BAD;
	pkt->ip_end = cursor + xdir_wire_len(ip6->payload_len);
	if (pkt->ip_end > data_end)
		return XDIR_PARSE_BAD;

	pkt->flow.family = XDIR_FAMILY_V6;
	__builtin_memcpy(pkt->flow.src, &ip6->saddr, sizeof(pkt->flow.src));
	__builtin_memcpy(pkt->flow.dst, &ip6->daddr, sizeof(pkt->flow.dst));
	nexthdr = ip6->nexthdr;

	/* Step over option headers (skipped by length) and a Fragment header; bounded loop. */
#pragma unroll
	for (int i = 0; i < XDIR_IP6_MAX_EXT_HDRS; i++) {
		if (nexthdr == XDIR_IP6_NEXT_HOPOPTS || nexthdr == XDIR_IP6_NEXT_DSTOPTS) {
			struct ipv6_opt_hdr *opt = cursor;

			/* Option headers are at least 8 bytes (hdrlen counts 8-byte units beyond the first). */
			if (cursor + 8 > data_end || cursor + 8 > pkt->ip_end)
				return XDIR_PARSE_BAD;
			nexthdr = opt->nexthdr;
			cursor += ((__u32)opt->hdrlen + 1) * 8;
		} else if (nexthdr == XDIR_IP6_NEXT_FRAGMENT) {
			struct xdir_ip6_frag_hdr *fh = cursor;
			__u16 frag_off;

			if ((void *)(fh + 1) > data_end || (void *)(fh + 1) > pkt->ip_end)
				return XDIR_PARSE_BAD;
			nexthdr = fh->nexthdr;
			cursor = fh + 1;
			frag_off = bpf_ntohs(fh->frag_off);
			/* An atomic fragment (offset 0, M clear) is a whole packet (RFC 6946): parse on. */
			if (frag_off & (XDIR_IP6_OFFSET | XDIR_IP6_MF))
				pkt->fragment = 1;
			if (frag_off & XDIR_IP6_OFFSET) {
				pkt->flow.proto = nexthdr;
				pkt->l4 = cursor;
				return (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP) ? XDIR_PARSE_FRAGMENT
				       : nexthdr == IPPROTO_ICMPV6 ? XDIR_PARSE_ICMP : XDIR_PARSE_OTHER;
			}
		} else {
			break;
		}
	}
	pkt->flow.proto = nexthdr;
	pkt->l4 = cursor;
	return xdir_parse_transport(data_end, pkt, IPPROTO_ICMPV6);
}

/*
 * Steps over Ethernet and at most one 802.1Q/802.1ad tag: the ethertype after them, with *l3 set
 * to where that header starts, or 0 for a frame too short for them. The tag, if any, stays in the
 * frame: XDP_TX sends the frame back out of the link it came in on, into the same VLAN. A second
 * (stacked) tag is returned as the ethertype, so the frame is "not IP" for us; the kernel handles
 * QinQ. Shared with fast_path.h.
 */
static __always_inline __be16 xdir_parse_eth(void *data, void *data_end, void **l3)
{
	void *at = data + sizeof(struct ethhdr);
	__be16 proto;

	if (at > data_end)
		return 0;
	/* One 16-bit load: struct ethhdr is packed, so eth->h_proto would be read byte by byte. */
	proto = *(__be16 *)(data + 12);
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct xdir_vlan_hdr *vlan = at;

		if ((void *)(vlan + 1) > data_end)
			return 0;
		proto = vlan->encap_proto;
		at = (void *)(vlan + 1);
	}
	*l3 = at;
	return proto;
}

/* Parses the frame into pkt. */
static __always_inline int xdir_parse(void *data, void *data_end, struct xdir_packet *pkt)
{
	void *l3;
	__be16 proto = xdir_parse_eth(data, data_end, &l3);

	if (proto == bpf_htons(ETH_P_IP))
		return xdir_parse_ipv4(l3, data_end, pkt);
	if (proto == bpf_htons(ETH_P_IPV6))
		return xdir_parse_ipv6(l3, data_end, pkt);
	return XDIR_PARSE_NOT_IP;
}

#endif /* XDIR_PARSE_H */
