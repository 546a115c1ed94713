/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Choosing a packet's backend: the virtual-service lookup, the connection table, the Maglev
 * ring and the backend's MAC.
 */
#ifndef XDIR_FLOW_H
#define XDIR_FLOW_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include "director_shared.h"
#include "consts.h"
#include "jhash.h"
#include "maps.h"
#include "stats.h"

/* Load-time settings (.rodata), defined in director.bpf.c and set by the loader by name. */
extern const volatile __u32 ring_size;
extern const volatile __u64 flow_idle_timeout_ns;
extern const volatile __u64 flow_closing_timeout_ns;

/* The prefilter's bit for a destination address (its two 64-bit words, as in the flow key). */
static __always_inline __u32 xdir_vip_filter_bit(const __u64 *dst)
{
	return (__u32)((dst[0] * XDIR_VIP_FILTER_MUL0 + dst[1] * XDIR_VIP_FILTER_MUL1) >> (64 - XDIR_VIP_FILTER_BITS));
}

/* False when the destination is certainly no VIP (its filter bit is clear in a written filter). */
static __always_inline bool xdir_maybe_vip(const struct flow_key *flow)
{
	const struct vip_filter *f = bpf_map_lookup_elem(&vip_filter, &xdir_key_zero);
	__u32 bit;

	if (!f || !f->ready)
		return true;
	bit = xdir_vip_filter_bit((const __u64 *)flow->dst);
	return f->bits[bit >> 6] & (1ULL << (bit & 63));
}

/* The `vips` entry for a flow: the exact port first, then the service for all ports (port 0). */
static __always_inline struct vip_meta *xdir_lookup_vip_entry(const struct flow_key *flow)
{
	struct vip_key key = {};
	struct vip_meta *vip;

	__builtin_memcpy(key.addr, flow->dst, sizeof(key.addr));
	key.port = flow->dport;
	key.proto = flow->proto;
	key.family = flow->family;
	vip = bpf_map_lookup_elem(&vips, &key);
	if (vip)
		return vip;
	key.port = 0;
	return bpf_map_lookup_elem(&vips, &key);
}

/* The service for a flow, behind the prefilter. */
static __always_inline struct vip_meta *xdir_lookup_vip(const struct flow_key *flow)
{
	return xdir_maybe_vip(flow) ? xdir_lookup_vip_entry(flow) : NULL;
}

/* Age of a flow entry. Signed: another CPU may have stamped it a little after our `now`. */
static __always_inline __s64 xdir_flow_age(const struct flow_state *state, __u64 now)
{
	return (__s64)(now - state->last_seen_ns);
}

/* Expired at age >= timeout, so a timeout of 0 expires an entry on its next packet even when the
 * coarse clock has not ticked since (age 0). */
static __always_inline bool xdir_flow_expired(const struct flow_state *state, __u64 now)
{
	__u64 timeout = (state->flags & XDIR_FLOW_F_CLOSING) ? flow_closing_timeout_ns
							      : flow_idle_timeout_ns;
	__s64 age = xdir_flow_age(state, now);

	return age >= 0 && (__u64)age >= timeout;
}

/*
 * A backend whose MAC changed under the same address (a NIC failover, a replaced server): its flow
 * still holding the previous MAC takes the current one (docs/decisions/0008). Only the old MAC of
 * this id moves: a flow with the id and another MAC belongs to a server the id named before. Runs
 * where the slow path meets an established flow; an active flow gets there within the flow cache's
 * window (the control plane also moves the cache epoch on), an idle one on its next packet.
 */
static __always_inline void xdir_follow_backend_mac(struct flow_state *state)
{
	const struct backend_prev_mac *prev = bpf_map_lookup_elem(&backend_prev_macs, &state->backend_id);
	const struct backend *be;

	if (!prev || !prev->valid || *(const __u32 *)prev->mac != *(const __u32 *)state->backend_mac ||
	    *(const __u16 *)(prev->mac + 4) != *(const __u16 *)(state->backend_mac + 4))
		return;
	be = bpf_map_lookup_elem(&backends, &state->backend_id);
	if (be && (be->flags & XDIR_BACKEND_F_MAC_VALID))
		__builtin_memcpy(state->backend_mac, be->mac, ETH_ALEN);
}

/*
 * The clock of the connection table. bpf_ktime_get_coarse_ns() is CLOCK_MONOTONIC as of the
 * last timer tick (at most a jiffy behind) and costs a few ns; bpf_ktime_get_ns() reads the
 * clocksource, ~25 ns under kvm-clock: a third of an established packet's cost. The table's
 * resolution is under a second anyway (last_seen_ns lags by up to 0.75 s, see XDIR_FLOW_REFRESH_NS), and both clocks
 * count from the same epoch, so entries stamped by either compare. Only a timeout under a
 * second, which just the tests set (the control plane sets whole seconds), needs the precise
 * clock. The timeouts are .rodata: the verifier knows them and keeps only one of the calls.
 */
static __always_inline __u64 xdir_now(void)
{
	if ((flow_idle_timeout_ns == 0 || flow_idle_timeout_ns >= XDIR_NS_PER_S) &&
	    (flow_closing_timeout_ns == 0 || flow_closing_timeout_ns >= XDIR_NS_PER_S))
		return bpf_ktime_get_coarse_ns();
	return bpf_ktime_get_ns();
}

/*
 * The backend's MAC: from the control plane when it has one, else from the kernel's FIB and
 * neighbour table. Direct routing only works for a backend on the link the packet came in on
 * (the frame goes back out with XDP_TX), so a FIB answer through a gateway or another
 * interface is no answer. The kernel answers only for an interface with forwarding enabled
 * (net.ipv4/ipv6.conf.<if>.forwarding); without it the control plane's MAC is the only source.
 * On failure the packet is dropped and counted; the control plane resolves the neighbour and
 * fills in the MAC, and the client's retransmission gets through.
 */
static __always_inline int xdir_backend_mac(struct xdp_md *ctx, const struct backend *be,
					    __u8 mac[ETH_ALEN], __u64 bytes)
{
	struct bpf_fib_lookup fib = {};
	int rc;

	if (be->flags & XDIR_BACKEND_F_MAC_VALID) {
		__builtin_memcpy(mac, be->mac, ETH_ALEN);
		return XDIR_GO_ON;
	}
	fib.ifindex = ctx->ingress_ifindex;
	if (be->family == XDIR_FAMILY_V4) {
		fib.family = XDIR_AF_INET;
		fib.ipv4_dst = be->addr[0];
	} else if (be->family == XDIR_FAMILY_V6) {
		fib.family = XDIR_AF_INET6;
		__builtin_memcpy(fib.ipv6_dst, be->addr, sizeof(fib.ipv6_dst));
	} else {
		return XDIR_R_DROP_MAC_UNRESOLVED;
	}
	/* tot_len stays 0: no MTU verdict wanted, only the next hop. */
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != ctx->ingress_ifindex)
		return XDIR_R_DROP_MAC_UNRESOLVED;
	/* The kernel replaces the destination by the gateway when the route has one. */
	if (be->family == XDIR_FAMILY_V4 ? fib.ipv4_dst != be->addr[0]
					 : (fib.ipv6_dst[0] != be->addr[0] || fib.ipv6_dst[1] != be->addr[1] ||
					    fib.ipv6_dst[2] != be->addr[2] || fib.ipv6_dst[3] != be->addr[3]))
		return XDIR_R_DROP_MAC_UNRESOLVED;
	__builtin_memcpy(mac, fib.dmac, ETH_ALEN);
	xdir_count_reason(XDIR_EV_FIB_LOOKUP, bytes);
	return XDIR_GO_ON;
}

/*
 * Maglev: the flow's hash picks a slot of the VIP's ring, the slot names the backend. Returns
 * XDIR_GO_ON with *backend_id and mac set, or the XDIR_R_DROP_* reason that stops the packet.
 */
static __always_inline int xdir_pick_backend(struct xdp_md *ctx, const struct flow_key *flow,
					     const struct vip_meta *vip, __u32 *backend_id,
					     __u8 mac[ETH_ALEN], __u64 bytes)
{
	__u32 zero = 0, hash, slot, id;
	struct backend *be;
	__u32 *ring;
	void *ring_map;

	/* Source-only hashing sends all of a client's flows to one backend (persistence). */
	if (vip->flags & XDIR_VIP_F_HASH_SRC_ONLY)
		hash = xdir_jhash2(flow->src, 4, XDIR_FLOW_HASH_SEED);
	else
		hash = xdir_jhash2((const __u32 *)flow, sizeof(*flow) / 4, XDIR_FLOW_HASH_SEED);
	slot = hash % ring_size;
	/* Redundant for a non-zero ring_size, but it is what proves the ring access in bounds. */
	if (slot >= ring_size)
		return XDIR_R_DROP_NO_BACKEND;

	ring_map = bpf_map_lookup_elem(&rings, &vip->vip_id);
	if (!ring_map)
		return XDIR_R_DROP_NO_BACKEND;
	ring = bpf_map_lookup_elem(ring_map, &zero);
	if (!ring)
		return XDIR_R_DROP_NO_BACKEND;
	id = ring[slot];
	be = bpf_map_lookup_elem(&backends, &id);
	if (!be)
		return XDIR_R_DROP_NO_BACKEND;
	*backend_id = id;
	return xdir_backend_mac(ctx, be, mac, bytes);
}

#endif /* XDIR_FLOW_H */
