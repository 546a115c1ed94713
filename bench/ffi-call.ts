/**
 * Cost of one call into libbpf through koffi, paired with a pure-JS call baseline in the same run.
 *   - libbpf_num_possible_cpus(): libbpf caches the answer, so this is (almost) the bare FFI crossing.
 *   - close(-1) from libc: FFI + the cheapest syscall (EBADF), the floor under any bpf() call.
 *   - bpf_map_lookup_elem() on a 1-entry array map through BpfMap.lookup: FFI + bpf() syscall +
 *     our Buffer handling, i.e. what the control plane pays per map read (needs root).
 * Writes bench/results/ffi-call.json and prints a table. Bounded: fixed call counts, one process.
 * Usage: node --import tsx bench/ffi-call.ts [--calls N]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfMap } from '../control/bpf/map.js';
import { libbpf, libcFns } from '../control/bpf/libbpf.js';

const callsArg = process.argv.indexOf('--calls');
const CALLS = callsArg > 0 ? Number(process.argv[callsArg + 1]) : 2_000_000;
const ROUNDS = 5;

/** Median ns per call over ROUNDS rounds of `calls` calls (after one warm-up round). */
function measure(calls: number, fn: () => unknown): number {
  const perCall: number[] = [];
  for (let r = 0; r <= ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) fn();
    const ns = Number(process.hrtime.bigint() - t0) / calls;
    if (r > 0) perCall.push(ns);
  }
  perCall.sort((a, b) => a - b);
  return perCall[Math.floor(perCall.length / 2)];
}

// A JS function the optimiser cannot fold away: same shape as the FFI call (no args, int result).
let sink = 0;
function jsBaseline(): number {
  sink = (sink + 1) | 0;
  return sink;
}

interface Row { name: string; nsPerCall: number; calls: number }
const rows: Row[] = [];
rows.push({ name: 'js function call (baseline)', nsPerCall: measure(CALLS, jsBaseline), calls: CALLS });
rows.push({ name: 'koffi: libbpf_num_possible_cpus()', nsPerCall: measure(CALLS, () => libbpf.libbpf_num_possible_cpus()), calls: CALLS });
rows.push({ name: 'koffi: libc close(-1) (bare syscall)', nsPerCall: measure(CALLS / 10, () => libcFns.close(-1)), calls: CALLS / 10 });

const isRoot = process.getuid?.() === 0;
if (isRoot) {
  const map = BpfMap.create({ type: 'array', name: 'bench_ffi', keySize: 4, valueSize: 8, maxEntries: 1 });
  try {
    const key = Buffer.alloc(4);
    const lookups = Math.max(1, Math.floor(CALLS / 10));
    rows.push({ name: 'koffi: BpfMap.lookup (bpf syscall)', nsPerCall: measure(lookups, () => map.lookup(key)), calls: lookups });
  } finally {
    map.close();
  }
}

function koffiVersion(): string {
  // koffi's package.json is not in its exports map: read it next to the resolved entry point.
  let dir = dirname(createRequire(import.meta.url).resolve('koffi'));
  for (let i = 0; i < 3; i++, dir = dirname(dir)) {
    try {
      return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
    } catch { /* keep going up */ }
  }
  return 'unknown';
}

const base = rows[0].nsPerCall;
const result = {
  bench: 'ffi-call',
  node: process.version,
  koffi: koffiVersion(),
  rounds: ROUNDS,
  rows: rows.map((r) => ({ ...r, nsPerCall: Number(r.nsPerCall.toFixed(2)), ratioToBaseline: Number((r.nsPerCall / base).toFixed(1)) })),
  note: isRoot ? undefined : 'map lookup row skipped: needs root (CAP_BPF)',
  sink,
};

const out = fileURLToPath(new URL('./results/ffi-call.json', import.meta.url));
mkdirSync(fileURLToPath(new URL('./results/', import.meta.url)), { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);

console.log(`ffi-call (Node ${result.node}, koffi ${result.koffi}, median of ${ROUNDS} rounds)`);
console.log(`${'call'.padEnd(40)} ${'ns/call'.padStart(10)} ${'x baseline'.padStart(11)}`);
for (const r of result.rows) {
  console.log(`${r.name.padEnd(40)} ${r.nsPerCall.toFixed(1).padStart(10)} ${r.ratioToBaseline.toFixed(1).padStart(11)}`);
}
if (result.note) console.log(result.note);
console.log(`wrote ${out}`);
