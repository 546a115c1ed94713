import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildMaglevRing, isPrime, murmur3, type MaglevBackend, type MaglevRing } from '../../control/model/maglev.js';

const M = 65537;
/** Fingerprints of two rings (see the determinism test). */
const GOLDEN_7_WEIGHTED = 'cfc718a6';
const GOLDEN_V6_251 = 'da9388e5';

function backends(n: number, weight: (i: number) => number = () => 1): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({ address: `198.18.${i >> 8}.${(i & 255) + 1}`, weight: weight(i) }));
}

/** Slots per backend address. */
function shares(ring: MaglevRing): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of ring.slots) {
    const a = ring.backends[s]!.address;
    out.set(a, (out.get(a) ?? 0) + 1);
  }
  return out;
}

/** Fraction of slots whose backend differs between two rings of the same size. */
function moved(a: MaglevRing, b: MaglevRing): number {
  let n = 0;
  for (let i = 0; i < a.slots.length; i++) {
    if (a.backends[a.slots[i]!]!.address !== b.backends[b.slots[i]!]!.address) n++;
  }
  return n / a.slots.length;
}

/** FNV-1a 32 over the ring's slot values: a fingerprint of the whole table. */
function checksum(slots: Uint32Array): string {
  let h = 0x811c9dc5;
  for (const v of slots) {
    for (let s = 0; s < 32; s += 8) h = Math.imul(h ^ ((v >>> s) & 0xff), 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

test('murmur3 matches the reference vectors', () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  assert.is(murmur3(enc(''), 0), 0);
  assert.is(murmur3(enc(''), 1), 0x514e28b7);
  assert.is(murmur3(enc('hello'), 0), 0x248bfa47);
  assert.is(murmur3(enc('The quick brown fox jumps over the lazy dog'), 0), 0x2e4ff723);
});

test('every slot is filled and equal weights get equal shares', () => {
  const ring = buildMaglevRing(backends(10), M)!;
  assert.is(ring.slots.length, M);
  const counts = [...shares(ring).values()];
  assert.is(counts.length, 10);
  assert.is(counts.reduce((a, b) => a + b, 0), M);
  assert.ok(Math.max(...counts) / Math.min(...counts) < 1.02, `shares ${counts}`);
});

test('removing one of N backends moves about 1/N of the slots', () => {
  for (const n of [10, 100]) {
    const all = backends(n);
    const before = buildMaglevRing(all, M)!;
    for (const gone of [0, n >> 1, n - 1]) {
      const after = buildMaglevRing(all.filter((_, i) => i !== gone), M)!;
      const frac = moved(before, after);
      assert.ok(frac >= 1 / n - 0.005, `n=${n}: at least the removed backend's slots move (${frac})`);
      assert.ok(frac <= (1 / n) * 1.5 + 0.01, `n=${n}: removing one moved ${frac} of the slots`);
    }
  }
});

test('adding one backend to N moves about 1/(N+1) of the slots', () => {
  for (const n of [10, 100]) {
    const before = buildMaglevRing(backends(n), M)!;
    const after = buildMaglevRing(backends(n + 1), M)!;
    const frac = moved(before, after);
    assert.ok(frac <= (1 / (n + 1)) * 1.5 + 0.01, `n=${n}: adding one moved ${frac} of the slots`);
  }
});

test('weights set the shares (3:1)', () => {
  const ring = buildMaglevRing(backends(10, (i) => (i % 2 ? 3 : 1)), M)!;
  const s = shares(ring);
  for (const [addr, count] of s) {
    const weight = Number(addr.split('.')[3]) % 2 === 0 ? 3 : 1; // address x.x.x.(i+1)
    const expected = (M * weight) / 20;
    assert.ok(Math.abs(count - expected) / expected < 0.02, `${addr}: ${count} slots, expected ~${expected}`);
  }
});

test('draining backends (weight 0) get no slots; none active gives no ring', () => {
  const input = backends(4, (i) => (i === 2 ? 0 : 1));
  const ring = buildMaglevRing(input, M)!;
  assert.is(ring.backends.length, 4, 'the draining backend stays in the index list');
  const s = shares(ring);
  assert.is(s.size, 3);
  assert.not.ok(s.has(input[2]!.address));
  assert.is(buildMaglevRing(backends(3, () => 0), M), null);
  assert.is(buildMaglevRing([], M), null);
});

test('the ring does not depend on input order, and is pinned by a golden checksum', () => {
  const input = backends(7, (i) => i + 1);
  const ref = buildMaglevRing(input, M)!;
  const shuffled = [input[3]!, input[0]!, input[6]!, input[1]!, input[5]!, input[2]!, input[4]!];
  const again = buildMaglevRing(shuffled, M)!;
  assert.equal(again.backends.map((b) => b.address), ref.backends.map((b) => b.address));
  assert.ok(Buffer.from(again.slots.buffer).equals(Buffer.from(ref.slots.buffer)));
  // A change here changes which backend every director picks for existing clients: only change
  // the algorithm on purpose, and say so in the release notes.
  assert.is(checksum(ref.slots), GOLDEN_7_WEIGHTED);
  const v6 = buildMaglevRing([{ address: 'fd00::2', weight: 1 }, { address: 'fd00::1', weight: 2 }], 251)!;
  assert.is(checksum(v6.slots), GOLDEN_V6_251);
});

test('ring size must be prime; bad weights and duplicates are refused', () => {
  assert.ok(isPrime(65537) && isPrime(2) && !isPrime(65536) && !isPrime(1) && !isPrime(65535));
  assert.throws(() => buildMaglevRing(backends(2), 65536), /not a prime/);
  assert.throws(() => buildMaglevRing(backends(2, () => 1.5), M), /weights are integers/);
  assert.throws(() => buildMaglevRing(backends(2, () => 70000), M), /weights are integers/);
  assert.throws(() => buildMaglevRing([...backends(2), ...backends(1)], M), /listed twice/);
  assert.throws(() => buildMaglevRing(backends(8), 7), /do not fit/);
});

test('extreme weight ratios still fill every slot and respect shares', () => {
  const ring = buildMaglevRing(backends(1000, (i) => (i === 0 ? 65535 : 1)), M)!;
  const s = shares(ring);
  const heavy = s.get('198.18.0.1')!;
  const expected = (M * 65535) / (65535 + 999);
  assert.ok(Math.abs(heavy - expected) / expected < 0.01, `heavy backend ${heavy}, expected ~${expected}`);
});

test.run();
