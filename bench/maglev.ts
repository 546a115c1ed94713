/**
 * Maglev (control/model/maglev.ts): how long a 65,537-slot ring takes to build, and how much of
 * it moves when one backend leaves or joins, paired in the same run with plain modulo hashing.
 *
 * Build time: 10, 100, 1000 backends, equal weights and mixed weights (1..100), median CPU time
 * of the main thread over repeated builds. Its baseline is filling the same table by modulo (slot s -> backend s mod N,
 * weighted: an expanded list where backend i appears weight_i times), the cheapest possible table.
 *
 * Disruption: the share of slots (= of new flows, since a flow's hash picks a slot uniformly)
 * whose backend changes when one backend is removed or one is added. The ideal is the removed
 * (or added) backend's own share: only its flows move. Modulo hashing (hash mod N) reassigns
 * almost everything; the ratio column says how many times fewer flows Maglev moves. Removal is
 * averaged over up to REMOVALS backends spread over the list (max reported too).
 *
 * Writes bench/results/maglev.json and prints two tables. Pure computation, no privileges.
 * Usage: node --import tsx bench/maglev.ts
 */
import { buildMaglevRing, DEFAULT_RING_SIZE, type MaglevBackend } from '../control/model/maglev.js';
import {
  MIXED_WEIGHTS, maglevBackends as backends, maglevBuildMs, timeCpuMs, warmMaglev, type Weights,
} from './lib/maglev-build.js';
import { printTable, writeResults } from './lib/results.js';

const RING = DEFAULT_RING_SIZE;
const SIZES = [10, 100, 1000] as const;
const REMOVALS = 10;

/** Backend address per slot: Maglev. */
function maglevTable(list: readonly MaglevBackend[]): string[] {
  const ring = buildMaglevRing(list, RING);
  if (!ring) throw new Error('no ring: every backend is draining');
  return Array.from(ring.slots, (i) => ring.backends[i]!.address);
}

/** Backend index per slot: weighted modulo hashing, the slot number standing in for the hash. */
function moduloSlots(list: readonly MaglevBackend[]): Uint32Array {
  let total = 0;
  for (const b of list) total += b.weight;
  const expanded = new Uint32Array(total);
  for (let i = 0, at = 0; i < list.length; i++) expanded.fill(i, at, (at += list[i]!.weight));
  const slots = new Uint32Array(RING);
  for (let s = 0; s < RING; s++) slots[s] = expanded[s % total]!;
  return slots;
}
function moduloTable(list: readonly MaglevBackend[]): string[] {
  return Array.from(moduloSlots(list), (i) => list[i]!.address);
}

function movedShare(before: readonly string[], after: readonly string[]): number {
  let moved = 0;
  for (let s = 0; s < RING; s++) if (before[s] !== after[s]) moved++;
  return moved / RING;
}

const round = (x: number, digits: number): number => Number(x.toFixed(digits));
const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

/** Shares moved by one kind of change, over one or more trials (e.g. removing different backends). */
interface Trial { ideal: number; maglev: number; modulo: number }
function disruptionRow(backends: number, weights: Weights, change: string, trials: Trial[]) {
  return {
    backends, weights, change,
    /** The changed backend's own share: the least any scheme must move. */
    idealPct: round(100 * mean(trials.map((t) => t.ideal)), 3),
    maglevPct: round(100 * mean(trials.map((t) => t.maglev)), 3),
    /** Flows Maglev moves beyond the ideal, in percentage points of all flows (worst trial). */
    maglevExcessMaxPp: round(100 * Math.max(...trials.map((t) => t.maglev - t.ideal)), 3),
    moduloPct: round(100 * mean(trials.map((t) => t.modulo)), 3),
    moduloOverMaglev: round(mean(trials.map((t) => t.modulo)) / mean(trials.map((t) => t.maglev)), 1),
  };
}

// Warm the JIT on both builders first, so the first measured case is not the one paying for it.
warmMaglev(RING);
for (const weights of ['equal', 'mixed'] as const) {
  const warm = backends(50, weights);
  for (let i = 0; i < 100; i++) moduloSlots(warm);
}

const build = [];
const disruption = [];
for (const weights of ['equal', 'mixed'] as const) {
  for (const n of SIZES) {
    const list = backends(n, weights);
    const m = maglevBuildMs(n, weights, RING);
    const b = timeCpuMs(() => moduloSlots(list));
    build.push({ backends: n, weights, maglevMs: round(m.ms, 3), moduloMs: round(b.ms, 3), ratio: round(m.ms / b.ms, 1), runs: m.runs });

    const totalWeight = list.reduce((s, x) => s + x.weight, 0);
    const maglevBefore = maglevTable(list);
    const moduloBefore = moduloTable(list);
    const picks = Array.from({ length: Math.min(REMOVALS, n) }, (_, k) => Math.floor((k * n) / Math.min(REMOVALS, n)));
    const removed = picks.map((i) => {
      const rest = list.filter((_, j) => j !== i);
      return {
        ideal: list[i]!.weight / totalWeight,
        maglev: movedShare(maglevBefore, maglevTable(rest)),
        modulo: movedShare(moduloBefore, moduloTable(rest)),
      };
    });
    const newcomer = { address: '198.18.255.254', weight: weights === 'equal' ? 1 : 10 };
    const added = [{
      ideal: newcomer.weight / (totalWeight + newcomer.weight),
      maglev: movedShare(maglevBefore, maglevTable([...list, newcomer])),
      modulo: movedShare(moduloBefore, moduloTable([...list, newcomer])),
    }];
    disruption.push(disruptionRow(n, weights, `remove 1 (mean of ${picks.length})`, removed));
    disruption.push(disruptionRow(n, weights, 'add 1', added));
  }
}

const path = writeResults('maglev', {
  bench: 'maglev',
  node: process.version,
  ringSize: RING,
  mixedWeights: MIXED_WEIGHTS,
  method: 'build: median thread-CPU ms of repeated builds (after a warm-up); disruption: share of the ring\'s slots whose backend ' +
    'changes; modulo baseline = weighted hash mod N with the slot number as the hash',
  build,
  disruption,
});

printTable(build.map((r) => ({
  backends: r.backends, weights: r.weights, 'maglev ms': r.maglevMs, 'modulo ms': r.moduloMs, 'maglev/modulo': r.ratio, runs: r.runs,
})), { digits: { 'maglev ms': 3, 'modulo ms': 3 }, title: `maglev build of a ${RING}-slot ring (Node ${process.version}, median)` });
console.log('');
printTable(disruption.map((r) => ({
  backends: r.backends, weights: r.weights, change: r.change, 'ideal %': r.idealPct, 'maglev %': r.maglevPct,
  'maglev excess max pp': r.maglevExcessMaxPp, 'modulo %': r.moduloPct, 'modulo/maglev': r.moduloOverMaglev,
})), {
  digits: { 'ideal %': 2, 'maglev %': 2, 'maglev excess max pp': 2, 'modulo %': 2, 'modulo/maglev': 1 },
  title: 'share of slots (new flows) that change backend',
});
console.log(`wrote ${path}`);
const headline = disruption.find((r) => r.backends === 100 && r.weights === 'equal' && r.change.startsWith('remove'))!;
console.log(`modulo / maglev share of flows moved (100 equal backends, remove 1): ${headline.moduloOverMaglev}`);
