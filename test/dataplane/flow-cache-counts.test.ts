/**
 * The flow cache's pending counts as user space reads them (control/dataplane/xdp/flow-cache-counts.ts):
 * attribution like the program's flush, and monotonic readings while the program flushes. Pure:
 * entries are built with the codecs' LAYOUT (checked against the object's BTF elsewhere).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LAYOUT, perCpuStride } from '../../control/dataplane/xdp/codecs.js';
import { PendingHold, pendingFlowCacheCounts } from '../../control/dataplane/xdp/flow-cache-counts.js';

const E = LAYOUT.flow_cache_entry.fields;

interface Entry { packets: number; bytes: number; vipId: number; vipGen: number; backendId: number; backendGen?: number }

/** A batch read of a per-CPU flow_cache: entries[slot][cpu]. */
function batch(entries: (Entry | null)[][], cpus: number): { values: Buffer; count: number } {
  const stride = perCpuStride(LAYOUT.flow_cache_entry.size);
  const values = Buffer.alloc(entries.length * cpus * stride);
  entries.forEach((perCpu, slot) => perCpu.forEach((e, cpu) => {
    if (!e) return;
    const at = (slot * cpus + cpu) * stride;
    values.writeBigUInt64LE(BigInt(e.packets), at + E.packets);
    values.writeBigUInt64LE(BigInt(e.bytes), at + E.bytes);
    values.writeUInt32LE(e.vipId, at + E.vip_id);
    values.writeUInt32LE(e.vipGen, at + E.vip_gen);
    values.writeUInt32LE(e.backendId, at + E.backend_id);
    values.writeUInt32LE(e.backendGen ?? 1, at + E.backend_gen);
  }));
  return { values, count: entries.length };
}

test('pending counts: every entry counts for FLOW_HIT, for its VIP and backend only at their generations', () => {
  const gens = new Map([[0, 5], [1, 7]]);
  const backendGens = new Map([[10, 1], [11, 1], [12, 1], [13, 2]]);
  const b = batch([
    [{ packets: 3, bytes: 300, vipId: 0, vipGen: 5, backendId: 10 }, { packets: 2, bytes: 200, vipId: 0, vipGen: 5, backendId: 11 }],
    [null, { packets: 4, bytes: 400, vipId: 1, vipGen: 6, backendId: 10 }], // VIP 1 was deleted (gen 6 -> 7)
    [{ packets: 0, bytes: 0, vipId: 1, vipGen: 7, backendId: 12 }, null], // flushed: nothing pending
    [null, { packets: 1, bytes: 100, vipId: 0, vipGen: 5, backendId: 13, backendGen: 1 }], // id 13 went to another server
  ], 2);
  const p = pendingFlowCacheCounts(b, 2, { vip: (id) => gens.get(id), backend: (id) => backendGens.get(id) });
  assert.equal(p.flowHit, { packets: 10n, bytes: 1000n });
  assert.equal([...p.vips], [[0, { packets: 6n, bytes: 600n }]]);
  assert.equal(new Map(p.backends), new Map([[10, { packets: 7n, bytes: 700n }], [11, { packets: 2n, bytes: 200n }]]));
});

test('PendingHold: a reading that misses a flushed amount reports the previous value; the next exact one goes on', () => {
  const h = new PendingHold();
  // Reading 1: 10 in the map + 5 pending.
  assert.equal(h.report(1, { packets: 15n, bytes: 1500n }, true), { packets: 15n, bytes: 1500n });
  h.endReading();
  // Reading 2 raced a flush: the entry was emptied before the program added to the map.
  assert.equal(h.report(1, { packets: 10n, bytes: 1000n }, false), { packets: 15n, bytes: 1500n }, 'held');
  h.endReading();
  // Reading 3: the flush landed, 2 more packets since.
  assert.equal(h.report(1, { packets: 17n, bytes: 1700n }, false), { packets: 17n, bytes: 1700n });
  h.endReading();
  // Nothing pending any more: the id is no longer tracked, and a map that only grows needs no hold.
  assert.equal(h.report(1, { packets: 17n, bytes: 1700n }, false), { packets: 17n, bytes: 1700n });
});

test('PendingHold.adjuster: nothing per id when nothing is pending or held; else the sum plus pending, held', () => {
  const h = new PendingHold();
  assert.is(h.adjuster(new Map()), undefined, 'idle: no per-id work');
  const add = h.adjuster(new Map([[4, { packets: 2n, bytes: 120n }]]))!;
  assert.equal(add(4, { packets: 10n, bytes: 600n }), { packets: 12n, bytes: 720n });
  assert.equal(add(5, { packets: 1n, bytes: 60n }), { packets: 1n, bytes: 60n });
  h.endReading();
  const next = h.adjuster(new Map()); // id 4 is held from the reading before
  assert.ok(next, 'a held id still needs the per-id step');
  assert.equal(next!(4, { packets: 10n, bytes: 600n }), { packets: 12n, bytes: 720n }, 'held at the earlier value');
});

test('PendingHold: forget() lets a reset id start over', () => {
  const h = new PendingHold();
  h.report(3, { packets: 100n, bytes: 9000n }, true);
  h.endReading();
  h.forget(3); // the id went to another backend and its counter was zeroed
  assert.equal(h.report(3, { packets: 1n, bytes: 60n }, true), { packets: 1n, bytes: 60n });
});

test.run();
