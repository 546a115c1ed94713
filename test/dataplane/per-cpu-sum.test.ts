/**
 * The fast per-CPU counter sum behind XdpDataplane.readStats gives exactly what the plain bigint
 * sum (codecs.ts) gives, including counters past 2^32 per CPU and totals past 2^53, and names
 * entries the same way (ids without a name are left out).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sumPerCpuCounters } from '../../control/dataplane/xdp/codecs.js';
import { PerCpuSumMemo, sumPerCpuCountersNamed } from '../../control/dataplane/xdp/per-cpu-sum.js';
import { mulberry32 as rng } from '../lib/prng.js';


/** A batch read of a per-CPU counter array: u32 keys, `cpus` {u64 packets, u64 bytes} per entry. */
function batch(entries: bigint[][][], offset = 0): { keys: Buffer; values: Buffer; count: number } {
  const cpus = entries[0]!.length;
  const keys = Buffer.alloc(offset + entries.length * 4).subarray(offset);
  const values = Buffer.alloc(offset + entries.length * cpus * 16).subarray(offset);
  entries.forEach((perCpu, i) => {
    keys.writeUInt32LE(i * 3, i * 4);
    perCpu.forEach(([p, b], cpu) => {
      values.writeBigUInt64LE(p!, (i * cpus + cpu) * 16);
      values.writeBigUInt64LE(b!, (i * cpus + cpu) * 16 + 8);
    });
  });
  return { keys, values, count: entries.length };
}

for (const [what, offset] of [['aligned buffers', 0], ['unaligned buffers', 1]] as const) {
  test(`equals the bigint reference for idle, small, >2^32 and >2^53 counters (${what})`, () => {
    const r = rng(7);
    const big = (bits: number): bigint => BigInt(Math.floor(r() * 2 ** Math.min(bits, 52))) << BigInt(Math.max(0, bits - 52));
    for (const cpus of [1, 2, 3, 64]) {
      const entries = Array.from({ length: 200 }, (_, i) =>
        Array.from({ length: cpus }, () => {
          const kind = i % 4;
          if (kind === 0) return [0n, 0n];
          if (kind === 1) return [big(20), big(30)];
          if (kind === 2) return [big(33), big(40)];
          return [big(62), big(63)];
        }));
      const b = batch(entries, offset);
      const nameOf = (id: number): string | undefined => (id % 2 === 0 ? `id-${id}` : undefined);
      const want = new Map<string, { packets: bigint; bytes: bigint }>();
      for (const [id, c] of sumPerCpuCounters(b, cpus)) {
        const name = nameOf(id);
        if (name !== undefined) want.set(name, c);
      }
      const got = sumPerCpuCountersNamed(b, cpus, nameOf);
      assert.is(got.size, want.size, `${cpus} CPUs: named entries`);
      for (const [name, c] of want) {
        const g = got.get(name)!;
        assert.ok(g, `${cpus} CPUs: ${name} present`);
        assert.is(g.packets, c.packets, `${cpus} CPUs: ${name} packets`);
        assert.is(g.bytes, c.bytes, `${cpus} CPUs: ${name} bytes`);
      }
    }
  });
}

test('with a memo, repeated reads give the same counters; unchanged entries keep their objects', () => {
  const r = rng(11);
  const cpus = 2;
  let entries = Array.from({ length: 300 }, () => Array.from({ length: cpus }, () => [BigInt(Math.floor(r() * 1e6)), BigInt(Math.floor(r() * 1e12))]));
  const memo = new PerCpuSumMemo();
  const nameOf = (id: number): string => `id-${id}`;
  const check = (got: Map<string, { packets: bigint; bytes: bigint }>, b: ReturnType<typeof batch>) => {
    for (const [id, c] of sumPerCpuCounters(b, cpus)) assert.equal(got.get(nameOf(id)), c, `id ${id}`);
  };
  const b1 = batch(entries);
  const first = sumPerCpuCountersNamed(b1, cpus, nameOf, memo);
  check(first, b1);
  // Every third entry counts more packets; one is reset to zero (its id given to a new VIP).
  entries = entries.map((perCpu, i) => (i % 3 === 0 ? perCpu.map(([p, by]) => [p! + 1n, by! + 60n]) : i === 7 ? perCpu.map(() => [0n, 0n]) : perCpu));
  const b2 = batch(entries);
  const second = sumPerCpuCountersNamed(b2, cpus, nameOf, memo);
  check(second, b2);
  for (let i = 0; i < 300; i++) {
    const name = `id-${i * 3}`; // batch() numbers entry i as id 3i
    if (i % 3 !== 0 && i !== 7) assert.is(second.get(name), first.get(name), `${name}: the same object when unchanged`);
    else assert.is.not(second.get(name), first.get(name), `${name}: a new object when changed`);
  }
});

test.run();
