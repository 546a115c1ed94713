/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structs and constants shared by the XDP program and the TypeScript control plane.
 *
 * This is the single definition of every map key and value. The TypeScript codecs in
 * control/dataplane/xdp/codecs.ts mirror it, and test/dataplane/btf-layout.test.ts checks
 * them against the BTF of the compiled object, so the two cannot drift.
 *
 * Layout rules: fixed-width types only, explicit padding, no bitfields, every struct a
 * multiple of 8 bytes where it holds a u64. Addresses are 16 bytes in network byte order;
 * an IPv4 address sits in addr[0] with addr[1..3] zero, so one code path serves both families.
 */
#ifndef XDIR_DIRECTOR_SHARED_H
#define XDIR_DIRECTOR_SHARED_H

#include <linux/types.h>

#define XDIR_FAMILY_V4 4
#define XDIR_FAMILY_V6 6

/* Key of the virtual-service table: which service a packet is for. port 0 = all ports. */
struct vip_key {
	__be32 addr[4];
	__be16 port;
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;  /* XDIR_FAMILY_V4 or XDIR_FAMILY_V6 */
};

/* Hash only the client's address, not its port: all of a client's flows go to one backend
 * (the XDP form of IPVS persistence). */
#define XDIR_VIP_F_HASH_SRC_ONLY (1U << 0)

/* Result of a virtual-service lookup. vip_id indexes the Maglev ring map, vip_stats and vip_gens. */
struct vip_meta {
	__u32 vip_id;
	__u32 flags;  /* XDIR_VIP_F_* */
	__u32 gen;    /* equals vip_gens[vip_id] while this VIP lives (see vip_gens below) */
};

/* Backend MAC in .mac is valid; without it the program asks the kernel FIB/neighbour table. */
#define XDIR_BACKEND_F_MAC_VALID (1U << 0)

/* A real server, indexed by backend id (the value stored in Maglev ring slots). */
struct backend {
	__be32 addr[4];
	__u8 mac[6];
	__u8 family;  /* XDIR_FAMILY_V4 or XDIR_FAMILY_V6 */
	__u8 flags;   /* XDIR_BACKEND_F_* */
};

/*
 * The MAC a backend had before its current one (docs/decisions/0008): a flow of this backend id
 * that still holds `mac` is moved to backends[id].mac when the slow path next sees it. A separate
 * map, not a member of struct backend, so that a pinned `backends` from an older version is still
 * adopted (a changed value size is not). `addr`/`family` name the server it was written for: the
 * program ignores them; user space, adopting the maps, clears an entry whose server is not the
 * one backends[id] names (an older version, which does not know this map, reused the id).
 */
struct backend_prev_mac {
	__be32 addr[4];
	__u8 mac[6];
	__u8 valid;  /* 0: none; the id is new to its server, or its MAC never changed */
	__u8 family; /* XDIR_FAMILY_V4 or XDIR_FAMILY_V6 when valid */
};

/* Key of the connection table: a client flow as it arrives at the director. */
struct flow_key {
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/* The flow has seen a TCP FIN or RST: it expires after the closing timeout, not the idle one. */
#define XDIR_FLOW_F_CLOSING (1U << 0)

/* Where an established flow goes. The MAC is kept here, not looked up through backend_id,
 * so a flow keeps its real server even after that backend is removed and its id reused. */
struct flow_state {
	__u64 last_seen_ns;  /* CLOCK_MONOTONIC ns (coarse clock) of the last packet; lags it by at most 0.75 s (flow_cache.h) */
	__u32 backend_id;    /* for counters only */
	__u8 backend_mac[6];
	__u8 flags;          /* XDIR_FLOW_F_* */
	__u8 pad[5];
};

/*
 * An entry of the per-CPU flow cache (flow_cache.h): what the slow path last decided for a flow,
 * and the packets the fast path forwarded on that decision since they were last added to the
 * stats maps. Shared because user space reads those pending counts (see flow_cache below).
 */
struct flow_cache_entry {
	struct flow_key key;
	__u64 checked;       /* jiffies when the slow path last decided this flow */
	__u64 packets;       /* pending: forwarded by the fast path, not yet in vip/backend/reason_stats */
	__u64 bytes;
	__u32 vip_id;
	__u32 vip_gen;       /* vip_meta.gen when decided; the pending counts are the VIP's while vip_gens[vip_id] equals it */
	__u32 backend_id;
	__u32 backend_gen;   /* backend_gens[backend_id] when decided; the pending counts are the backend's while it is current */
	__u32 epoch;         /* cache_epoch when decided; the entry is trusted only while it is current */
	__u8 backend_mac[6];
	__u8 pad[6];
};

/*
 * A prefilter of VIP addresses, so that traffic to any other address leaves after one bit test
 * instead of two `vips` hash lookups (exact port, then all ports). Bit xdir_vip_filter_bit(dst)
 * (flow.h: the destination's two 64-bit words times these multipliers, summed, top
 * XDIR_VIP_FILTER_BITS bits) is set for every VIP address. A set bit only means "look it up":
 * another address may share it. Until user space first writes the filter, `ready` is 0 and every
 * address is looked up (a pin root from before the filter existed works unchanged).
 */
#define XDIR_VIP_FILTER_BITS 16
#define XDIR_VIP_FILTER_WORDS (1U << (XDIR_VIP_FILTER_BITS - 6))
#define XDIR_VIP_FILTER_MUL0 0x9e3779b97f4a7c15ULL
#define XDIR_VIP_FILTER_MUL1 0xc2b2ae3d27d4eb4fULL
struct vip_filter {
	__u32 ready;
	__u32 pad;
	__u64 bits[XDIR_VIP_FILTER_WORDS];
};

/* Per-CPU packet and byte counter; user space sums the CPUs. */
struct counter {
	__u64 packets;
	__u64 bytes;
};

/*
 * Why a packet took the path it took. Every packet that reaches the program is counted under
 * exactly one XDIR_R_* "verdict" reason; XDIR_EV_* are events counted in addition.
 * Keep XDIR_REASON_NAMES in control/dataplane/xdp/codecs.ts in the same order.
 *
 * XDIR_R_FORWARDED is the one reason the program does not count (reason_stats[0] stays zero):
 * a forwarded TCP/UDP packet is always exactly one XDIR_EV_FLOW_HIT or XDIR_EV_FLOW_NEW, so user
 * space shows FORWARDED = FLOW_HIT + FLOW_NEW (codecs.ts reasonCountersById), which saves a
 * per-CPU counter update on every forwarded packet.
 */
enum xdir_reason {
	XDIR_R_FORWARDED = 0,       /* XDP_TX to a backend (new or established flow); derived, see above */
	XDIR_R_ICMP_FORWARDED,      /* ICMP error about a VIP flow (PMTU) sent to the flow's backend */
	XDIR_R_PASS_NOT_IP,         /* not IPv4/IPv6 (ARP, LLDP, ...): kernel */
	XDIR_R_PASS_NOT_VIP,        /* IP, but not addressed to a configured VIP:port/proto: kernel */
	XDIR_R_PASS_ICMP,           /* ICMP to a VIP that is not an error about a VIP flow (e.g. echo): kernel */
	XDIR_R_DROP_PARSE,          /* truncated or malformed header */
	XDIR_R_DROP_FRAGMENT,       /* IP fragment addressed to a VIP: ports unknown, cannot pick a backend */
	XDIR_R_DROP_NO_BACKEND,     /* VIP has no ring (no backend with weight > 0) and no existing flow */
	XDIR_R_DROP_MAC_UNRESOLVED, /* backend's MAC not known yet; the control plane resolves it, the client retries */
	XDIR_EV_FLOW_NEW,           /* a backend was picked from the Maglev ring */
	XDIR_EV_FLOW_HIT,           /* an existing flow was found in the connection table */
	XDIR_EV_TCP_CLOSING,        /* a TCP FIN or RST moved a flow to the closing timeout */
	XDIR_EV_FIB_LOOKUP,         /* a backend MAC came from bpf_fib_lookup (not from the control plane) */
	XDIR_REASON_MAX,
};

/* Defaults of load-time settings (const volatile in the program, set by the loader). */
#define XDIR_DEFAULT_RING_SIZE 65537U  /* prime, as in the Maglev paper */
#define XDIR_DEFAULT_MAX_VIPS 1024U
#define XDIR_DEFAULT_MAX_BACKENDS 4096U
#define XDIR_DEFAULT_FLOW_TABLE_SIZE 1048576U
#define XDIR_DEFAULT_FLOW_IDLE_TIMEOUT_S 300U
#define XDIR_DEFAULT_FLOW_CLOSING_TIMEOUT_S 10U

/*
 * Maps (names are part of the contract; the loader pins them by name under the pin root):
 *   vips           HASH          struct vip_key -> struct vip_meta              max_entries = max_vips
 *   vip_gens       ARRAY         __u32 vip_id -> __u32 generation               max_entries = max_vips
 *                  A VIP lives while vip_gens[vip_meta.vip_id] == vip_meta.gen. User space adds 1 to
 *                  vip_gens[id] when it gives the id to a new service (before writing its vips entry,
 *                  with the new value as vip_meta.gen) and when it deletes a VIP (after deleting the
 *                  vips entry). A flow cache entry's pending counts are its VIP's only while its
 *                  vip_gen is current, so a reused id inherits none of a deleted VIP's counts.
 *   rings          HASH_OF_MAPS  __u32 vip_id   -> inner ARRAY[1] of __u32[ring_size] (backend ids)
 *                  A VIP's ring is replaced whole: user space builds a new inner map, fills it, and
 *                  swaps it into `rings` with one update, so packets never see a half-written ring.
 *   cache_epoch    ARRAY         __u32 0 -> __u32 epoch                          max_entries = 1
 *                  User space adds 1 after it deletes a VIP or takes an id from a service (after the
 *                  vips and vip_gens writes), and after it gives a backend a previous MAC (so cached
 *                  flows on it take the slow path, which moves them). A flow cache entry is trusted only under the epoch it
 *                  was decided in. (An id given to a new service needs no bump: its old VIP's
 *                  deletion made one.)
 *   vip_filter     ARRAY         __u32 0 -> struct vip_filter                    max_entries = 1
 *                  User space sets a VIP address's bit before it writes the address's first vips
 *                  entry, and rewrites the whole filter without an address only after deleting the
 *                  address's last vips entry, so a VIP is never filtered out. (A reader may see a
 *                  rewrite half done, word by word; every word then still holds every live VIP's bit.)
 *                  At start it writes the filter from the vips entries, first with ready 0.
 *   backends       ARRAY         __u32 backend_id -> struct backend              max_entries = max_backends
 *   backend_prev_macs ARRAY      __u32 backend_id -> struct backend_prev_mac     max_entries = max_backends
 *                  User space writes it before the backends entry it goes with: the old MAC when a
 *                  backend's MAC changes under the same address, cleared when the id goes to
 *                  another server (so no flow of the server the id named before can move).
 *   backend_gens   ARRAY         __u32 backend_id -> __u32 generation            max_entries = max_backends
 *                  User space adds 1 when it gives the id to another real server, before zeroing
 *                  its backend_stats; flow cache entries of an older generation count for no backend.
 *   flows          LRU_HASH (BPF_F_NO_COMMON_LRU: per-CPU LRU lists) struct flow_key -> struct flow_state
 *   vip_stats      PERCPU_ARRAY  __u32 vip_id -> struct counter                  max_entries = max_vips
 *   backend_stats  PERCPU_ARRAY  __u32 backend_id -> struct counter              max_entries = max_backends
 *   reason_stats   PERCPU_ARRAY  __u32 enum xdir_reason -> struct counter        max_entries = XDIR_REASON_MAX
 *   flow_cache     PERCPU_ARRAY  __u32 slot -> struct flow_cache_entry            max_entries = 4096 (per CPU)
 *                  A per-CPU copy of recent `flows` decisions (flow_cache.h). The fast path counts
 *                  into the entry, not into the stats maps: an entry's packets/bytes are pending
 *                  FLOW_HIT counts, of its backend_id while backend_gen is current and of its
 *                  vip_id while vip_gen is current. The program moves them into the stats maps
 *                  when the slot is refilled; a reader of the counters adds the pending counts of
 *                  every entry (control/dataplane/xdp/flow-cache-counts.ts). Pinned so pending
 *                  counts survive a restart.
 * Load-time constants (.rodata): ring_size, flow_idle_timeout_ns, flow_closing_timeout_ns,
 * flow_cache_off (non-zero: no per-CPU flow cache; benches use it to measure the slow path).
 * Backend id 0 and vip id 0 are valid; an unused ring slot cannot exist (rings are always full).
 */

#endif /* XDIR_DIRECTOR_SHARED_H */
