/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Constants of the director's XDP program that are not part of the user-space contract. */
#ifndef XDIR_CONSTS_H
#define XDIR_CONSTS_H

/* Not in the uapi headers we may include without vmlinux.h. */
#define XDIR_AF_INET 2
#define XDIR_AF_INET6 10

/* IPv4 frag_off field (host order): "more fragments" flag and the offset in 8-byte units. */
#define XDIR_IP_MF 0x2000
#define XDIR_IP_OFFSET 0x1fff

/* IPv6 Fragment header frag_off field (host order): offset in the top 13 bits, M in bit 0. */
#define XDIR_IP6_OFFSET 0xfff8
#define XDIR_IP6_MF 0x0001

/* IPv6 extension headers the parser steps over (RFC 8200 §4). Anything else is left to the kernel. */
#define XDIR_IP6_NEXT_HOPOPTS 0
#define XDIR_IP6_NEXT_DSTOPTS 60
#define XDIR_IP6_NEXT_FRAGMENT 44
/* Bound of the extension-header walk: HBH, DST, FRAG, DST in the RFC's order is four. */
#define XDIR_IP6_MAX_EXT_HDRS 4

/* TCP flag bits in byte 13 of the header. */
#define XDIR_TCP_FIN 0x01
#define XDIR_TCP_SYN 0x02
#define XDIR_TCP_RST 0x04
#define XDIR_TCP_ACK 0x10
#define XDIR_TCP_FLAGS_OFF 13

/* ICMP error types whose payload is the offending packet (RFC 792, RFC 4443). */
#define XDIR_ICMP_DEST_UNREACH 3
#define XDIR_ICMP_TIME_EXCEEDED 11
#define XDIR_ICMP6_DEST_UNREACH 1
#define XDIR_ICMP6_PKT_TOOBIG 2
#define XDIR_ICMP6_TIME_EXCEED 3

/* A flow's last_seen_ns is rewritten at most this often: a few shared-cache-line writes per
 * second per flow instead of one per packet. Cache hits (flow_cache.h) do not touch `flows`, and
 * a cached flow comes back to the slow path after at most 0.5 s, so `flows` sees a flow's last
 * packet at most 0.25 + 0.5 s late: an active flow's age there stays under 0.75 s, below the
 * shortest timeout the cache runs with (2 s), and idle timeouts are honoured within 0.75 s. */
#define XDIR_FLOW_REFRESH_NS 250000000ULL

/* Seed of the flow hash. Fixed, so every director behind ECMP picks the same backend. */
#define XDIR_FLOW_HASH_SEED 0x5f0d1eb3U

#define XDIR_NS_PER_S 1000000000ULL

/* Helpers return XDIR_GO_ON to let the packet go on; any other value is its XDIR_R_* verdict. */
#define XDIR_GO_ON (-1)

#endif /* XDIR_CONSTS_H */
