/**
 * How long control/model/maglev.ts takes to build a ring: shared by bench/datapath.ts (build time
 * at 10, 100 and 1,000 backends beside the data path's numbers) and bench/maglev.ts (build time
 * against modulo hashing, and disruption).
 */
import { buildMaglevRing, type MaglevBackend } from '../../control/model/maglev.js';
import { median } from './results.js';
import { threadCpuNs } from './thread-cpu.js';

export type Weights = 'equal' | 'mixed';

/** Distinct backend addresses in 198.18.0.0/16; mixed weights cycle 1, 2, 5, 10, 25, 50, 100. */
export function maglevBackends(n: number, weights: Weights): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({
    address: `198.18.${(i >> 8) & 0xff}.${i & 0xff}`,
    weight: weights === 'equal' ? 1 : [1, 2, 5, 10, 25, 50, 100][i % 7]!,
  }));
}
export const MIXED_WEIGHTS = 'cycling 1, 2, 5, 10, 25, 50, 100';

/** Per measured function: at least MIN_RUNS calls, and more while under BUDGET_MS. */
const MIN_RUNS = 5;
const MAX_RUNS = 50;
const BUDGET_MS = 1500;

/** Median thread-CPU ms per call (time preempted by other work left out), after 3 warm-up
 * calls; bounded by MAX_RUNS and BUDGET_MS of wall time. */
export function timeCpuMs(fn: () => unknown): { ms: number; runs: number } {
  for (let i = 0; i < 3; i++) fn();
  const times: number[] = [];
  const started = performance.now();
  while (times.length < MAX_RUNS && (times.length < MIN_RUNS || performance.now() - started < BUDGET_MS)) {
    const t0 = threadCpuNs();
    fn();
    times.push(Number(threadCpuNs() - t0) / 1e6);
  }
  return { ms: median(times), runs: times.length };
}

/** Calls the builder enough for V8 to optimise it (~50 calls; fewer left the first case slow),
 * so the first measured case does not pay for the JIT. */
export function warmMaglev(ringSize: number): void {
  for (const weights of ['equal', 'mixed'] as const) {
    const list = maglevBackends(50, weights);
    for (let i = 0; i < 25; i++) buildMaglevRing(list, ringSize);
  }
}

/** Median build time of one ring of `ringSize` slots over `n` backends. */
export function maglevBuildMs(n: number, weights: Weights, ringSize: number): { ms: number; runs: number } {
  const list = maglevBackends(n, weights);
  return timeCpuMs(() => buildMaglevRing(list, ringSize));
}
