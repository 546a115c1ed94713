/**
 * The counts the XDP fast path keeps in its flow cache (bpf/flow_cache.h, docs/decisions/0006).
 *
 * A packet of an established flow that hits this CPU's flow cache is counted in the cache entry,
 * not in vip_stats/backend_stats/reason_stats: one add into a cache line the packet already
 * touched instead of three per-CPU map updates. The program moves an entry's pending counts into
 * the maps when it refills the slot. So the counters as users see them are the maps plus every
 * entry's pending counts, attributed like the program attributes them when it flushes: FLOW_HIT
 * always, the entry's backend and VIP only while the entry's generations are theirs (backend_gens,
 * vip_gens: a reused id starts from zero).
 *
 * Reading the maps and then the entries is not one atomic step. The program empties an entry
 * before it adds to the maps, so a reading can miss a flushed amount (never count it twice) and
 * then be lower than the reading before. PendingHold keeps what is reported monotonic: an id that
 * had pending counts in the previous reading is reported at least as high as then.
 */
import type { Counter } from '../dataplane.js';
import { LAYOUT, REASON_ID, perCpuStride } from './codecs.js';

const E = LAYOUT.flow_cache_entry.fields;

/** Pending counts by id (vip_stats / backend_stats ids), plus their FLOW_HIT total. */
export interface PendingCounts {
  vips: Map<number, Counter>;
  backends: Map<number, Counter>;
  flowHit: Counter;
}

function add(m: Map<number, Counter>, id: number, packets: bigint, bytes: bigint): void {
  const c = m.get(id);
  m.set(id, c ? { packets: c.packets + packets, bytes: c.bytes + bytes } : { packets, bytes });
}

/**
 * The pending counts of a batch read of `flow_cache` (per-CPU values of struct flow_cache_entry).
 * `gens.vip(id)` is vip_gens[id], `gens.backend(id)` backend_gens[id]; an entry of another
 * generation counts for no VIP (backend).
 */
export function pendingFlowCacheCounts(
  batch: { values: Buffer; count: number }, cpus: number,
  gens: { vip: (vipId: number) => number | undefined; backend: (backendId: number) => number | undefined },
): PendingCounts {
  const out: PendingCounts = { vips: new Map(), backends: new Map(), flowHit: { packets: 0n, bytes: 0n } };
  const stride = perCpuStride(LAYOUT.flow_cache_entry.size);
  const v = batch.values;
  for (let i = 0, n = batch.count * cpus; i < n; i++) {
    const at = i * stride;
    // Most entries are empty or flushed: one 32-bit test each (the low half of `packets`, then the high).
    if (v.readUInt32LE(at + E.packets) === 0 && v.readUInt32LE(at + E.packets + 4) === 0) continue;
    const packets = v.readBigUInt64LE(at + E.packets);
    const bytes = v.readBigUInt64LE(at + E.bytes);
    out.flowHit = { packets: out.flowHit.packets + packets, bytes: out.flowHit.bytes + bytes };
    const backendId = v.readUInt32LE(at + E.backend_id);
    if (gens.backend(backendId) === v.readUInt32LE(at + E.backend_gen)) add(out.backends, backendId, packets, bytes);
    const vipId = v.readUInt32LE(at + E.vip_id);
    if (gens.vip(vipId) === v.readUInt32LE(at + E.vip_gen)) add(out.vips, vipId, packets, bytes);
  }
  return out;
}

/** c + pending[id] (c itself when nothing is pending). */
export function withPending(c: Counter, pending: Counter | undefined): Counter {
  return pending ? { packets: c.packets + pending.packets, bytes: c.bytes + pending.bytes } : c;
}

/** reason_stats sums by id, with the pending counts added to flow-hit (the one reason they are). */
export function addPendingFlowHits(reasons: Map<number, Counter>, pending: PendingCounts): void {
  const id = REASON_ID['flow-hit'];
  reasons.set(id, withPending(reasons.get(id) ?? { packets: 0n, bytes: 0n }, pending.flowHit));
}

const max = (a: bigint, b: bigint): bigint => (a > b ? a : b);

/**
 * Monotonic reporting across readings for ids whose counts were pending (see the file comment).
 * One per counter kind (vips, backends, reasons). `report` is called for each id of a reading with
 * whether it has pending counts now; `endReading` ends the reading. `forget(id)` when the id's map
 * counter is reset (the id went to another VIP or backend): its next reading starts over.
 */
export class PendingHold {
  private last = new Map<number, Counter>();
  private next = new Map<number, Counter>();

  report(id: number, c: Counter, pendingNow: boolean): Counter {
    const prev = this.last.get(id);
    let out = c;
    if (prev && (c.packets < prev.packets || c.bytes < prev.bytes)) {
      out = { packets: max(c.packets, prev.packets), bytes: max(c.bytes, prev.bytes) };
    }
    // Kept for the next reading while it can still drop: pending now, or held up this time.
    if (pendingNow || out !== c) this.next.set(id, out);
    return out;
  }

  /**
   * The per-id step of a reading with these pending counts: the map's sum plus the pending counts,
   * held. Undefined (nothing to do per id) when nothing is pending and no id is held, the usual
   * case between flushes on an idle director.
   */
  adjuster(pending: ReadonlyMap<number, Counter>): ((id: number, c: Counter) => Counter) | undefined {
    if (pending.size === 0 && this.last.size === 0) return undefined;
    return (id, c) => this.report(id, withPending(c, pending.get(id)), pending.has(id));
  }

  endReading(): void {
    this.last = this.next;
    this.next = new Map();
  }

  forget(id: number): void {
    this.last.delete(id);
    this.next.delete(id);
  }
}
