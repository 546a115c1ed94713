/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Counting helpers. All counters are per-CPU, so plain adds suffice (no atomics). */
#ifndef XDIR_STATS_H
#define XDIR_STATS_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"

/* `packets` packets at once: the pending counts of a flow cache entry (flow_cache.h). The key is
 * read through the pointer (a map value or .rodata), not stored to the stack first. */
static __always_inline void xdir_count_many(void *map, const __u32 *key, __u64 packets, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(map, key);

	/* NULL only for a key beyond max_entries (an id user space never should have used). */
	if (c) {
		c->packets += packets;
		c->bytes += bytes;
	}
}

static __always_inline void xdir_count(void *map, __u32 key, __u64 bytes)
{
	xdir_count_many(map, &key, 1, bytes);
}

/* A verdict reason (exactly one per packet) or an event (any number). */
static __always_inline void xdir_count_reason(enum xdir_reason reason, __u64 bytes)
{
	xdir_count(&reason_stats, reason, bytes);
}

#endif /* XDIR_STATS_H */
