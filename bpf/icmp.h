/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP errors about VIP flows (path MTU discovery for direct routing).
 *
 * A real server answers clients directly with the VIP as source address. When a router on the
 * way back needs to fragment (or cannot deliver), its ICMP error goes to that source: the VIP,
 * i.e. to us, not to the server that holds the connection. The error quotes the offending
 * packet (VIP:port -> client); reversing its addresses and ports gives the client's flow key,
 * which names the backend to forward the error to. Without this, PMTU discovery through a
 * director silently fails and large responses black-hole.
 */
#ifndef XDIR_ICMP_H
#define XDIR_ICMP_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "director_shared.h"
#include "consts.h"
#include "parse.h"

/*
 * The 8-byte ICMP and ICMPv6 header (RFC 792, RFC 4443): the same layout for both. Declared here
 * rather than taken from <linux/icmp.h>, which pulls in <linux/if.h> and through it the C
 * library's <sys/socket.h>: for -target bpf that wants the 32-bit glibc stubs (libc6-dev-i386).
 */
struct xdir_icmp_hdr {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 rest;
};

/* The first 4 bytes of the quoted TCP or UDP header: source and destination port. */
struct xdir_l4_ports {
	__be16 source;
	__be16 dest;
};

/* Rewrites pkt->flow to the client's flow quoted in an ICMPv4 error; false if it is none. */
static __always_inline bool xdir_icmp4_quoted_flow(void *data_end, struct xdir_packet *pkt)
{
	struct xdir_icmp_hdr *icmp = pkt->l4;
	struct iphdr *inner;
	struct xdir_l4_ports *ports;

	if ((void *)(icmp + 1) > data_end)
		return false;
	/* Destination Unreachable (including Fragmentation Needed) and Time Exceeded quote the packet. */
	if (icmp->type != XDIR_ICMP_DEST_UNREACH && icmp->type != XDIR_ICMP_TIME_EXCEEDED)
		return false;
	inner = (void *)(icmp + 1);
	if ((void *)(inner + 1) > data_end)
		return false;
	if (inner->version != 4 || inner->ihl < 5)
		return false;
	/* Only a packet's first fragment quotes its ports. */
	if (inner->frag_off & bpf_htons(XDIR_IP_OFFSET))
		return false;
	if (inner->protocol != IPPROTO_TCP && inner->protocol != IPPROTO_UDP)
		return false;
	/* The error is addressed to the quoted packet's source: that must be the VIP it came to. */
	if (inner->saddr != pkt->flow.dst[0])
		return false;
	ports = (void *)inner + (__u32)inner->ihl * 4;
	/* data_end for the verifier, ip_end so Ethernet padding is never read as a quote. */
	if ((void *)(ports + 1) > data_end || (void *)(ports + 1) > pkt->ip_end)
		return false;

	pkt->flow.src[0] = inner->daddr;
	pkt->flow.dst[0] = inner->saddr;
	pkt->flow.sport = ports->dest;
	pkt->flow.dport = ports->source;
	pkt->flow.proto = inner->protocol;
	return true;
}

static __always_inline bool xdir_addr6_equal(const __be32 *a, const __be32 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* Rewrites pkt->flow to the client's flow quoted in an ICMPv6 error; false if it is none. */
static __always_inline bool xdir_icmp6_quoted_flow(void *data_end, struct xdir_packet *pkt)
{
	struct xdir_icmp_hdr *icmp = pkt->l4;
	struct ipv6hdr *inner;
	struct xdir_l4_ports *ports;
	__be32 inner_src[4];

	if ((void *)(icmp + 1) > data_end)
		return false;
	/* Packet Too Big, Destination Unreachable and Time Exceeded quote the packet. */
	if (icmp->type != XDIR_ICMP6_PKT_TOOBIG && icmp->type != XDIR_ICMP6_DEST_UNREACH &&
	    icmp->type != XDIR_ICMP6_TIME_EXCEED)
		return false;
	inner = (void *)(icmp + 1);
	/* The transport header must follow the quoted IPv6 header directly (no extension headers:
	 * a server's replies carry none). */
	ports = (void *)(inner + 1);
	if ((void *)(ports + 1) > data_end || (void *)(ports + 1) > pkt->ip_end)
		return false;
	if (inner->version != 6)
		return false;
	if (inner->nexthdr != IPPROTO_TCP && inner->nexthdr != IPPROTO_UDP)
		return false;
	__builtin_memcpy(inner_src, &inner->saddr, sizeof(inner_src));
	if (!xdir_addr6_equal(inner_src, pkt->flow.dst))
		return false;

	__builtin_memcpy(pkt->flow.src, &inner->daddr, sizeof(pkt->flow.src));
	__builtin_memcpy(pkt->flow.dst, inner_src, sizeof(pkt->flow.dst));
	pkt->flow.sport = ports->dest;
	pkt->flow.dport = ports->source;
	pkt->flow.proto = inner->nexthdr;
	return true;
}

static __always_inline bool xdir_icmp_quoted_flow(void *data_end, struct xdir_packet *pkt)
{
	if (pkt->flow.family == XDIR_FAMILY_V4)
		return xdir_icmp4_quoted_flow(data_end, pkt);
	return xdir_icmp6_quoted_flow(data_end, pkt);
}

#endif /* XDIR_ICMP_H */
