// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp-director: the XDP program of a direct-routing (DR/DSR) Layer-4 load balancer.
 *
 * A packet for a virtual service (VIP:port/proto) is sent back out of the link it came in on
 * (XDP_TX) with only its Ethernet addresses changed: destination = the chosen real server,
 * source = our interface. The real server holds the VIP on a non-ARPing interface and answers
 * the client directly. Everything else goes to the kernel untouched. Per packet: parse, look
 * up, rewrite, count; each packet is counted under exactly one XDIR_R_* reason (FORWARDED is
 * derived by user space as FLOW_HIT + FLOW_NEW, see director_shared.h).
 *
 * Decisions:
 * - Fast path (fast_path.h, flow_cache.h, docs/decisions/0005, 0007): an established flow's
 *   packet in a common form (at most one VLAN tag, IPv4 without options or IPv6 without extension
 *   headers, unfragmented, TCP without SYN/FIN/RST or UDP) is parsed straight into its key and
 *   looked up first in a per-CPU, direct-mapped flow cache (inlined array lookups, no helper
 *   call), holding what the slow path below last decided for the flow, for at most 0.5 s and only
 *   while the cache epoch (cache_epoch) is unchanged. A hit rewrites the MACs and counts into the
 *   entry itself (pending FLOW_HIT, VIP and backend counts, docs/decisions/0006).
 *   Everything else, and every cache miss, takes the slow path: full parse, VIP lookup, connection
 *   table, Maglev; a forwarded flow refills the cache. Costs measured in docs/decisions/0005-0007.
 * - VIP prefilter (vip_filter, docs/decisions/0009): before the `vips` lookups (exact port, then
 *   all ports: two hash lookups), one bit per destination address hash says whether the address
 *   can be a VIP at all; traffic to the director's other addresses leaves after that bit test.
 * - Backend choice. An existing, unexpired entry in the connection table (`flows`) wins;
 *   otherwise the flow's hash (jhash of the flow key, or of the client address alone for
 *   XDIR_VIP_F_HASH_SRC_ONLY services) picks a slot of the VIP's Maglev ring, and the new
 *   flow is recorded. The hash is fixed (constant seed), so a second director behind ECMP, or
 *   this one after a restart, makes the same choice for a flow it has never seen.
 * - Rings are swapped whole (map-in-map): user space builds a complete new ring in a fresh
 *   inner map and publishes it with one update of `rings`. A packet reads either the old ring
 *   or the new one, never a half-written one; no lock, no generation counter.
 * - flow_state keeps the backend's MAC, not just its id: a flow stays on its real server when
 *   the backend is removed from the ring and when its id is reused for another server, so
 *   established connections are not reset by configuration. When the same server's MAC changes
 *   (a NIC failover), its flows follow it: backend_prev_macs names the MAC they move from
 *   (xdir_follow_backend_mac, docs/decisions/0008).
 * - Draining: a draining backend (weight 0) is absent from the ring, so it gets no new flows,
 *   while its existing flows keep hitting their `flows` entries until they end or idle out.
 * - TCP FIN or RST marks the flow CLOSING (shorter timeout) but the packet still goes to the
 *   same backend: the teardown must reach the server that holds the connection. A SYN
 *   (without ACK) on a CLOSING entry is a new connection reusing the port and picks again.
 * - Timestamps: last_seen_ns is rewritten at most every 0.25 s, not on every packet, to keep the
 *   shared flow entry's cache line clean; with the cache's 0.5 s it lags the flow's last packet by
 *   at most 0.75 s, under the 2 s the cache needs as the shortest timeout. The age is computed
 *   signed, because another CPU may have stamped the entry slightly after this CPU read the clock.
 *   The clock is the coarse (per-tick) monotonic one, ample for timeouts of whole seconds
 *   (xdir_now in flow.h).
 * - MAC learning: the control plane fills backend MACs (XDIR_BACKEND_F_MAC_VALID). Without
 *   one, the program asks bpf_fib_lookup() for the on-link neighbour (the kernel answers only
 *   when forwarding is enabled on the interface). If that fails too, the packet is dropped and
 *   counted (DROP_MAC_UNRESOLVED) and no flow is recorded; the control plane, seeing the
 *   counter or the missing MAC, triggers neighbour resolution, and the client's
 *   retransmission then succeeds.
 * - Fragments: only a packet's first fragment carries the ports, so a fragmented flow cannot
 *   be hashed consistently; fragments addressed to a VIP are dropped (DROP_FRAGMENT). A first
 *   fragment is matched by its ports like any packet; a later fragment, which has none, is
 *   matched against the VIP's all-ports service ({addr, port 0, proto}). Later fragments of a
 *   port-specific service therefore reach the kernel, which can never reassemble them (their
 *   first fragment was dropped here) and frees them after its reassembly timeout. Fragments
 *   not addressed to a VIP pass. An IPv6 atomic fragment (offset 0, M clear) is a whole packet.
 * - ICMP (icmp.h): Destination Unreachable (incl. Fragmentation Needed), Time Exceeded, and
 *   ICMPv6 Packet Too Big quote the packet a real server sent from the VIP. The quoted flow,
 *   reversed, is the client's flow; the error goes (unchanged but for its MACs) to that flow's
 *   backend, found in `flows` or, on a director that has not seen the flow, by the same Maglev
 *   choice. This keeps path MTU discovery working for real servers. All other ICMP, including
 *   neighbour discovery and echo, is the kernel's (PASS_ICMP, whatever its destination: the
 *   maps are keyed by service, so "is this address a VIP" alone is not a cheap question).
 * - Malformed packets: see parse.h; only what the kernel would discard anyway is dropped.
 * - VLAN: one 802.1Q/802.1ad tag is parsed and kept, so the frame returns into its VLAN.
 *   (With hardware VLAN stripping the tag is not in the frame; disable rx-vlan offload.)
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "director_shared.h"
#include "consts.h"
#include "maps.h"
#include "stats.h"
#include "parse.h"
#include "icmp.h"
#include "flow.h"
#include "flow_cache.h"
#include "fast_path.h"

/* bpf_fib_lookup() is GPL-only; this licence is GPL-compatible. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Load-time settings; the loader sets them by these names. */
const volatile __u32 ring_size = XDIR_DEFAULT_RING_SIZE;
const volatile __u64 flow_idle_timeout_ns = XDIR_DEFAULT_FLOW_IDLE_TIMEOUT_S * XDIR_NS_PER_S;
const volatile __u64 flow_closing_timeout_ns = XDIR_DEFAULT_FLOW_CLOSING_TIMEOUT_S * XDIR_NS_PER_S;
/* Non-zero: no per-CPU flow cache, every packet takes the slow path (flow_cache.h). */
const volatile __u32 flow_cache_off = 0;

/* Where a forwarded packet went, for the per-service and per-backend counters. */
struct xdir_target {
	__u32 vip_id;
	__u32 backend_id;
};

/* Source MAC = the address the frame was sent to (ours); destination MAC = the backend's.
 * `mac` must be 4-byte aligned (read as u32 + u16; the verifier insists on aligned stack access):
 * flow_state.backend_mac and the flow cache's are, and the stack copies are declared so. */
static __always_inline void xdir_rewrite_macs(struct xdp_md *ctx, const __u8 mac[ETH_ALEN])
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	/* Proven by the parser already, but on another copy of the pointer. */
	if ((void *)(eth + 1) > data_end)
		return;
	/* Word copies: struct ethhdr is packed, so memcpy on its members compiles to 24 byte moves.
	 * x86 (and the verifier, on it) allows unaligned packet access. */
	*(__u32 *)(data + ETH_ALEN) = *(__u32 *)data;
	*(__u16 *)(data + ETH_ALEN + 4) = *(__u16 *)(data + 4);
	*(__u32 *)data = *(const __u32 *)mac;
	*(__u16 *)(data + 4) = *(const __u16 *)(mac + 4);
}

/* An unfragmented TCP or UDP packet: established flow or new flow, then XDP_TX. */
static __always_inline int xdir_forward_flow(struct xdp_md *ctx, struct xdir_packet *pkt,
					     struct xdir_target *target)
{
	struct flow_state *state, fresh = {};
	__u8 mac[ETH_ALEN] __attribute__((aligned(4))); /* see xdir_rewrite_macs */
	const __u8 *out_mac; /* the backend's MAC: the flow's (flow_state) or the new pick's (mac) */
	struct vip_meta *vip;
	bool closing = false, syn = false;
	__u32 epoch = 0;
	__u64 now;
	int reason;

	/* Traffic to the director's other addresses leaves here, before any other lookup. */
	if (!xdir_maybe_vip(&pkt->flow))
		return XDIR_R_PASS_NOT_VIP;
	/* Before the VIP lookup (a helper call, which the compiler does not move loads across): see
	 * xdir_flow_cache_fill. */
	if (xdir_flow_cache_enabled())
		epoch = xdir_cache_epoch();
	vip = xdir_lookup_vip_entry(&pkt->flow);
	if (!vip)
		return XDIR_R_PASS_NOT_VIP;
	target->vip_id = vip->vip_id;
	if (pkt->flow.proto == IPPROTO_TCP) {
		closing = pkt->tcp_flags & (XDIR_TCP_FIN | XDIR_TCP_RST);
		syn = (pkt->tcp_flags & (XDIR_TCP_SYN | XDIR_TCP_ACK)) == XDIR_TCP_SYN;
	}
	now = xdir_now();

	state = bpf_map_lookup_elem(&flows, &pkt->flow);
	if (state && !xdir_flow_expired(state, now) && !(syn && (state->flags & XDIR_FLOW_F_CLOSING))) {
		xdir_count_reason(XDIR_EV_FLOW_HIT, pkt->bytes);
		if (closing && !(state->flags & XDIR_FLOW_F_CLOSING)) {
			/* The closing timeout runs from the first FIN/RST. */
			state->flags |= XDIR_FLOW_F_CLOSING;
			state->last_seen_ns = now;
			xdir_count_reason(XDIR_EV_TCP_CLOSING, pkt->bytes);
		} else if (xdir_flow_age(state, now) > (__s64)XDIR_FLOW_REFRESH_NS) {
			state->last_seen_ns = now;
		}
		xdir_follow_backend_mac(state);
		target->backend_id = state->backend_id;
		out_mac = state->backend_mac;
		goto forward;
	}

	reason = xdir_pick_backend(ctx, &pkt->flow, vip, &target->backend_id, mac, pkt->bytes);
	if (reason != XDIR_GO_ON)
		return reason;
	fresh.last_seen_ns = now;
	fresh.backend_id = target->backend_id;
	__builtin_memcpy(fresh.backend_mac, mac, ETH_ALEN);
	fresh.flags = closing ? XDIR_FLOW_F_CLOSING : 0;
	/* A full table evicts its least recently used entry; the update cannot fail for lack of room. */
	bpf_map_update_elem(&flows, &pkt->flow, &fresh, BPF_ANY);
	xdir_count_reason(XDIR_EV_FLOW_NEW, pkt->bytes);
	if (closing)
		xdir_count_reason(XDIR_EV_TCP_CLOSING, pkt->bytes);
	out_mac = mac;
forward:
	/* One copy of the cache fill for both ways here (it is large once inlined). */
	if (xdir_flow_cache_enabled())
		xdir_flow_cache_fill(&pkt->flow, vip, target->backend_id, out_mac, epoch);
	xdir_rewrite_macs(ctx, out_mac);
	return XDIR_R_FORWARDED;
}

/* An ICMP error about a VIP flow goes to that flow's backend; it never creates a flow. */
static __always_inline int xdir_forward_icmp(struct xdp_md *ctx, struct xdir_packet *pkt,
					     struct xdir_target *target)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct flow_state *state;
	__u8 mac[ETH_ALEN] __attribute__((aligned(4))); /* see xdir_rewrite_macs */
	struct vip_meta *vip;
	int reason;

	if (pkt->fragment || !xdir_icmp_quoted_flow(data_end, pkt))
		return XDIR_R_PASS_ICMP;
	vip = xdir_lookup_vip(&pkt->flow);
	if (!vip)
		return XDIR_R_PASS_ICMP;
	target->vip_id = vip->vip_id;

	state = bpf_map_lookup_elem(&flows, &pkt->flow);
	if (state && !xdir_flow_expired(state, xdir_now())) {
		xdir_follow_backend_mac(state);
		target->backend_id = state->backend_id;
		xdir_rewrite_macs(ctx, state->backend_mac);
		return XDIR_R_ICMP_FORWARDED;
	}
	reason = xdir_pick_backend(ctx, &pkt->flow, vip, &target->backend_id, mac, pkt->bytes);
	if (reason != XDIR_GO_ON)
		return reason;
	xdir_rewrite_macs(ctx, mac);
	return XDIR_R_ICMP_FORWARDED;
}

/*
 * The packet's verdict. Not inlined: one BPF-to-BPF call per packet is cheap, and it puts
 * enum xdir_reason into the object's BTF, where the control plane's codecs are checked against it.
 */
static __noinline enum xdir_reason xdir_decide(struct xdp_md *ctx, struct xdir_packet *pkt,
					       int parsed, struct xdir_target *target)
{
	switch (parsed) {
	case XDIR_PARSE_L4:
		return xdir_forward_flow(ctx, pkt, target);
	case XDIR_PARSE_FRAGMENT:
		return xdir_lookup_vip(&pkt->flow) ? XDIR_R_DROP_FRAGMENT : XDIR_R_PASS_NOT_VIP;
	case XDIR_PARSE_ICMP:
		return xdir_forward_icmp(ctx, pkt, target);
	case XDIR_PARSE_OTHER:
		return XDIR_R_PASS_NOT_VIP;
	case XDIR_PARSE_NOT_IP:
		return XDIR_R_PASS_NOT_IP;
	default:
		return XDIR_R_DROP_PARSE;
	}
}

static __always_inline int xdir_action(enum xdir_reason reason)
{
	switch (reason) {
	case XDIR_R_FORWARDED:
	case XDIR_R_ICMP_FORWARDED:
		return XDP_TX;
	case XDIR_R_PASS_NOT_IP:
	case XDIR_R_PASS_NOT_VIP:
	case XDIR_R_PASS_ICMP:
		return XDP_PASS;
	default:
		return XDP_DROP;
	}
}

/* Every packet the fast path does not forward: the full parse, the decision, the counters. */
static __always_inline int xdir_slow_path(struct xdp_md *ctx, void *data, void *data_end)
{
	struct xdir_packet pkt __attribute__((aligned(8))) = {};
	struct xdir_target target = {};
	enum xdir_reason reason;
	int parsed;

	pkt.bytes = data_end - data;
	parsed = xdir_parse(data, data_end, &pkt);
	reason = xdir_decide(ctx, &pkt, parsed, &target);
	/* FORWARDED = FLOW_HIT + FLOW_NEW, derived by user space: one counter less per packet. */
	if (reason != XDIR_R_FORWARDED)
		xdir_count_reason(reason, pkt.bytes);
	if (reason == XDIR_R_FORWARDED || reason == XDIR_R_ICMP_FORWARDED) {
		xdir_count(&vip_stats, target.vip_id, pkt.bytes);
		xdir_count(&backend_stats, target.backend_id, pkt.bytes);
	}
	return xdir_action(reason);
}

SEC("xdp")
int xdir_director(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	/* The fast path: an established flow on this CPU's cache, a packet that changes nothing. */
	if (xdir_flow_cache_enabled()) {
		struct flow_cache_entry *e = xdir_fast_find(data, data_end);

		if (e) {
			/* Pending FLOW_HIT, VIP and backend counts, in the entry this CPU already holds:
			 * moved into the stats maps when the slot is refilled (flow_cache.h). */
			e->packets += 1;
			e->bytes += data_end - data;
			xdir_rewrite_macs(ctx, e->backend_mac);
			return XDP_TX;
		}
	}
	return xdir_slow_path(ctx, data, data_end);
}
