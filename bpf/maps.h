/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The director's maps, exactly as listed in director_shared.h. Every map is pinned by name
 * under the loader's pin root, so a restarted control plane adopts the running data path's
 * state (flows, counters) instead of starting empty. max_entries are defaults; the loader
 * sets the real sizes before load.
 */
#ifndef XDIR_MAPS_H
#define XDIR_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "director_shared.h"

/* Virtual services: {VIP, port, proto, family} -> vip_id and flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
	__uint(max_entries, XDIR_DEFAULT_MAX_VIPS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vips SEC(".maps");

/*
 * Maglev rings: vip_id -> an ARRAY map of one element, the ring (ring_size backend ids).
 * A ring is swapped whole (user space fills a fresh inner map, then one update of `rings`
 * publishes it) so a packet sees either the old ring or the new one, never a mix.
 * The inner template is declared by size, not by BTF type: the loader sets value_size to
 * 4 * ring_size, which a __type(value, __u32[N]) would contradict.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(key_size, sizeof(__u32));
	__uint(max_entries, XDIR_DEFAULT_MAX_VIPS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__uint(key_size, sizeof(__u32));
		__uint(value_size, sizeof(__u32) * XDIR_DEFAULT_RING_SIZE);
		__uint(max_entries, 1);
	});
} rings SEC(".maps");

/*
 * Generation of each VIP id (flow_cache.h): equal to vip_meta.gen while the VIP lives; the
 * control plane moves it on when it deletes the VIP or gives the id to another service. A flow
 * cache entry's pending counts count for its VIP only while the two agree. Pinned: ids and
 * generations outlive a restart.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, XDIR_DEFAULT_MAX_VIPS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_gens SEC(".maps");

/*
 * Generation of each backend id (flow_cache.h): the control plane moves it on when it gives the
 * id to another real server (before zeroing its backend_stats). A flow cache entry's pending
 * counts are its backend's only while its backend_gen is current, so a reused id starts at zero.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, XDIR_DEFAULT_MAX_BACKENDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_gens SEC(".maps");

/*
 * The flow cache's epoch (flow_cache.h): one u32 that the control plane moves on after it deletes a
 * VIP, takes an id from a service or names a backend's previous MAC (and after repairing
 * generations). An entry is trusted only
 * while the epoch is the one it was decided under, so those changes stop every cached flow at once
 * (each then takes the slow path once). One global word, not the VIP's own generation, because the
 * fast path reads it without first reading the entry's vip_id. Pinned, like vip_gens.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cache_epoch SEC(".maps");

/* Each backend's MAC before its current one (director_shared.h, struct backend_prev_mac). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct backend_prev_mac);
	__uint(max_entries, XDIR_DEFAULT_MAX_BACKENDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_prev_macs SEC(".maps");

/* The VIP address prefilter (director_shared.h, struct vip_filter). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct vip_filter);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_filter SEC(".maps");

/* Real servers by backend id (the values in ring slots). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(max_entries, XDIR_DEFAULT_MAX_BACKENDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

/*
 * Connection table. Per-CPU LRU lists (BPF_F_NO_COMMON_LRU): inserts never contend on one
 * global LRU lock; the table itself is shared, so any CPU finds any flow. Each CPU's list
 * holds max_entries / possible CPUs entries before it evicts.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow_state);
	__uint(max_entries, XDIR_DEFAULT_FLOW_TABLE_SIZE);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

/* Forwarded packets/bytes per virtual service (FORWARDED and ICMP_FORWARDED). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, XDIR_DEFAULT_MAX_VIPS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_stats SEC(".maps");

/* Forwarded packets/bytes per backend (FORWARDED and ICMP_FORWARDED). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, XDIR_DEFAULT_MAX_BACKENDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_stats SEC(".maps");

/* One verdict reason per packet, plus events.  */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* enum xdir_reason; array keys must be plain ints in BTF */
	__type(value, struct counter);
	__uint(max_entries, XDIR_REASON_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} reason_stats SEC(".maps");

/* Key 0 of the one-entry arrays, in .rodata: their inlined lookups read it without a stack store. */
static const __u32 xdir_key_zero = 0;

#endif /* XDIR_MAPS_H */
