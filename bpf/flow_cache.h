/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-CPU flow cache: the established-flow fast path (docs/decisions/0005, 0006, 0007; the
 * common-form parse that probes it is fast_path.h).
 *
 * A direct-mapped table per CPU (PERCPU_ARRAY, whose lookup the verifier inlines, like the
 * ARRAY cache_epoch), indexed by a cheap fold of the flow key, in front of the connection table
 * `flows` (LRU_HASH: a helper call, a jhash of the 40-byte key and a bucket walk, ~18 ns) and
 * the virtual-service table `vips` (HASH, ~15 ns per lookup). A hit costs no helper call at all:
 * the clock is bpf_jiffies64(), which the verifier turns into a load of `jiffies`.
 *
 * `flows` stays the truth; an entry here is a copy of what the slow path just decided for a flow
 * (backend MAC and id, and the VIP it was decided under), trusted for a short time only:
 * - For at most XDIR_FLOW_CACHE_JIFFIES after the slow path checked it against `flows` (at most
 *   0.5 s for any CONFIG_HZ >= 100). Then the packet takes the slow path again, which applies the
 *   idle/closing timeouts and refreshes last_seen_ns in `flows`, and refills the entry. So a
 *   cached flow can outlive its `flows` entry (expiry, LRU eviction) by at most that long, and
 *   `flows` sees the flow's packets with at most REFRESH + that long of lag (0.75 s in all).
 * - While the cache epoch is the one it was decided under: the control plane moves cache_epoch
 *   on once the writes of an apply that deletes a VIP, takes an id from a service or names a
 *   backend's previous MAC are done, so a deleted VIP's cached flows stop with that apply, a
 *   reused id inherits no cached flow, and flows of a backend whose MAC changed move at once
 *   (flow.h xdir_follow_backend_mac). Every other cached flow takes the slow path once and is
 *   cached again.
 * - Only for packets that change nothing: a TCP packet with SYN, FIN or RST always takes the slow
 *   path, so the CLOSING mark, the closing timeout and "SYN on a CLOSING flow picks again" are
 *   decided by `flows`, as before.
 * - Only when both timeouts are at least XDIR_FLOW_CACHE_MIN_TIMEOUT_NS (2 s), well above that
 *   0.75 s lag, so an active flow never looks idle to `flows`. A 1 s timeout, the tests'
 *   sub-second ones and the new-flow bench's timeout 0 see the slow path on every packet. The
 *   timeouts are .rodata, so the verifier removes the disabled path.
 *   flow_cache_off (.rodata, default 0) turns the cache off: bench/datapath.ts measures what an
 *   established flow costs without it (what a cache miss costs).
 *
 * Counting (docs/decisions/0006): a hit adds to the entry's own packets/bytes, not to the stats
 * maps. Those are pending FLOW_HIT counts, of the entry's backend_id while its backend_gen equals
 * backend_gens[backend_id], and of its vip_id while its vip_gen equals vip_gens[vip_id] (a deleted
 * VIP's counts die with it; a reused VIP or backend id gets none). The slow path moves them into
 * the stats maps when it refills the slot; user space adds every entry's pending counts to the
 * maps when it reads them, so counters stay exact.
 *
 * Per CPU: no entry is ever written by two CPUs. On a kernel where one XDP run can preempt
 * another on the same CPU (PREEMPT_RT), a fill could be interleaved; the fill therefore writes
 * the key last, after invalidating it, so a torn entry never matches a flow it was not made for
 * (the compare covers the whole key, including the family word). A CPU
 * may still hold a flow that another CPU just decided differently (a SYN reusing a closed
 * connection's ports, seen by another CPU, picks a new backend); it follows the old choice until
 * its own entry ages out (<= 0.5 s). RSS sends one 5-tuple to one queue, so in practice one CPU
 * sees a flow. The table is pinned, like the stats maps, so its pending counts survive a restart.
 */
#ifndef XDIR_FLOW_CACHE_H
#define XDIR_FLOW_CACHE_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include "director_shared.h"
#include "maps.h"
#include "stats.h"

/* Constant map keys in .rodata: the inlined array lookups read them without a stack store. */
static const __u32 xdir_key_flow_hit = XDIR_EV_FLOW_HIT;

extern const volatile __u64 flow_idle_timeout_ns;
extern const volatile __u64 flow_closing_timeout_ns;
extern const volatile __u32 flow_cache_off;

/* Entries per CPU (a power of two). 96 bytes each: 384 KiB per CPU. */
#define XDIR_FLOW_CACHE_BITS 12
#define XDIR_FLOW_CACHE_ENTRIES (1U << XDIR_FLOW_CACHE_BITS)

/* How long an entry is trusted after the slow path checked it, in jiffies: 0.5 s at HZ = 100,
 * less at higher HZ (CONFIG_HZ is 100..1000). Overridable at build time for tests that emulate
 * HZ = 100's window on a faster-ticking kernel. */
#ifndef XDIR_FLOW_CACHE_JIFFIES
#define XDIR_FLOW_CACHE_JIFFIES 50
#endif

/* The cache is used only when both timeouts are at least this long (see above). */
#define XDIR_FLOW_CACHE_MIN_TIMEOUT_NS 2000000000ULL

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct flow_cache_entry);
	__uint(max_entries, XDIR_FLOW_CACHE_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flow_cache SEC(".maps");

static __always_inline bool xdir_flow_cache_enabled(void)
{
	return !flow_cache_off && flow_idle_timeout_ns >= XDIR_FLOW_CACHE_MIN_TIMEOUT_NS &&
	       flow_closing_timeout_ns >= XDIR_FLOW_CACHE_MIN_TIMEOUT_NS;
}

/*
 * The slot: each key word times its own odd constant, summed, and the top bits of the 64-bit
 * result. A plain XOR of the words would cancel for structured IPv6 addresses (e.g. every
 * 2001:db8:0:N::N folds to one value), putting all their flows in one slot.
 */
static __always_inline __u32 xdir_flow_cache_slot_of(__u64 k0, __u64 k1, __u64 k2, __u64 k3, __u64 k4)
{
	__u64 h = k0 * 0x9e3779b97f4a7c15ULL + k1 * 0xc2b2ae3d27d4eb4fULL + k2 * 0x165667b19e3779f9ULL +
		  k3 * 0xd6e8feb86659fd93ULL + k4 * 0xff51afd7ed558ccdULL;

	return (__u32)(h >> (64 - XDIR_FLOW_CACHE_BITS));
}

/* The slot of a key in memory, read as five 64-bit words (struct xdir_packet keeps it 8-byte
 * aligned): the fill's way; the fast path has the words in registers already. */
static __always_inline __u32 xdir_flow_cache_slot(const __u64 *k)
{
	return xdir_flow_cache_slot_of(k[0], k[1], k[2], k[3], k[4]);
}

/* cache_epoch[0]; the key is in .rodata, so the inlined array lookup needs no stack store. */
static __always_inline __u32 xdir_cache_epoch(void)
{
	__u32 *epoch = bpf_map_lookup_elem(&cache_epoch, &xdir_key_zero);

	return epoch ? *epoch : 0;
}

/* The cached decision for the flow whose key is k0..k4, or NULL (absent, aged out, or the cache
 * epoch moved on). The key in words, not through memory: the fast path keeps it in registers. */
static __always_inline struct flow_cache_entry *xdir_flow_cache_find(__u64 k0, __u64 k1, __u64 k2, __u64 k3,
								     __u64 k4)
{
	struct flow_cache_entry *e;
	const __u64 *ek;
	__u32 slot = xdir_flow_cache_slot_of(k0, k1, k2, k3, k4);

	e = bpf_map_lookup_elem(&flow_cache, &slot);
	if (!e)
		return NULL;
	ek = (const __u64 *)&e->key;
	if (((ek[0] ^ k0) | (ek[1] ^ k1) | (ek[2] ^ k2) | (ek[3] ^ k3) | (ek[4] ^ k4)) != 0)
		return NULL;
	if (bpf_jiffies64() - e->checked >= XDIR_FLOW_CACHE_JIFFIES || e->epoch != xdir_cache_epoch())
		return NULL;
	return e;
}

/*
 * Moves an entry's pending counts into the stats maps: FLOW_HIT always, the backend and the VIP
 * only while the entry's generations are theirs (a deleted VIP's counters are gone, and its id, or
 * a removed backend's, may already count for another). The same rule as user space's
 * (control/dataplane/xdp/flow-cache-counts.ts). Out of the entry first, then into the maps: a
 * reader that sums the maps before the entries may miss these counts for one reading, but never
 * counts them twice (x86 keeps the stores in order); user space keeps what it reports monotonic.
 * Not safe where one XDP run can preempt another on the same CPU (PREEMPT_RT): a hit's add could
 * interleave with the flush and be lost or doubled (docs/decisions/0006).
 */
static __always_inline void xdir_flow_cache_flush(struct flow_cache_entry *e)
{
	__u64 packets = e->packets, bytes = e->bytes;
	__u32 *gen;

	e->packets = 0;
	e->bytes = 0;
	asm volatile("" ::: "memory");
	xdir_count_many(&reason_stats, &xdir_key_flow_hit, packets, bytes);
	gen = bpf_map_lookup_elem(&backend_gens, &e->backend_id);
	if (gen && *gen == e->backend_gen)
		xdir_count_many(&backend_stats, &e->backend_id, packets, bytes);
	gen = bpf_map_lookup_elem(&vip_gens, &e->vip_id);
	if (gen && *gen == e->vip_gen)
		xdir_count_many(&vip_stats, &e->vip_id, packets, bytes);
}

/*
 * Records the slow path's decision for this flow on this CPU. `epoch` is xdir_cache_epoch() as
 * read before the slow path looked the VIP up: if the VIP was deleted after that lookup, the
 * control plane moved the epoch on after the delete, so the entry is stale from then on.
 */
static __always_inline void xdir_flow_cache_fill(const struct flow_key *flow, const struct vip_meta *vip,
						 __u32 backend_id, const __u8 mac[ETH_ALEN], __u32 epoch)
{
	const __u64 *k = (const __u64 *)flow;
	struct flow_cache_entry *e;
	__u32 slot = xdir_flow_cache_slot(k);
	__u32 *bgen;

	e = bpf_map_lookup_elem(&flow_cache, &slot);
	if (!e)
		return;
	if (e->packets)
		xdir_flow_cache_flush(e);
	/* family 0 matches no parsed flow: the entry is void until its key is whole again. */
	e->key.family = 0;
	asm volatile("" ::: "memory"); /* keep the invalidation: the key copy below overwrites it */
	e->checked = bpf_jiffies64();
	e->vip_id = vip->vip_id;
	e->vip_gen = vip->gen;
	e->epoch = epoch;
	e->backend_id = backend_id;
	bgen = bpf_map_lookup_elem(&backend_gens, &backend_id);
	e->backend_gen = bgen ? *bgen : 0;
	__builtin_memcpy(e->backend_mac, mac, ETH_ALEN);
	asm volatile("" ::: "memory");
	__builtin_memcpy(&e->key, flow, sizeof(e->key));
}

#endif /* XDIR_FLOW_CACHE_H */
