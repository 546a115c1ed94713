/**
 * IPVS in the packet-rate comparison, measured inside the IPVS guest (the host kernel has no IPVS):
 * boots test/guest's VM once, runs bench/guest/ipvs-rate.ts there, and reports packets per second
 * delivered to the real servers by each data path, as ratios to plain kernel forwarding measured in
 * the same guest run. An emulated guest's absolute rates mean little; the ratios are the result.
 * Writes bench/results/ipvs-guest.json.   Usage: node --import tsx bench/ipvs-guest.ts
 * Env: BENCH_PACKETS (per measurement, default 40000), BENCH_SECONDS (cap, default 8), BENCH_ROUNDS (3).
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleForGuest } from '../test/guest/bundle.js';
import { printTable, writeResults } from './lib/results.js';

interface Row { mode: string; round: number; sent: number; delivered: number; ms: number; pps: number }

const root = fileURLToPath(new URL('../', import.meta.url));
const out = join(root, '.cache', 'guest-bundle', 'ipvs-rate.mjs');
mkdirSync(join(root, '.cache', 'guest-bundle'), { recursive: true });
await bundleForGuest(join(root, 'bench/guest/ipvs-rate.ts'), out);

const env = ['BENCH_PACKETS', 'BENCH_SECONDS', 'BENCH_ROUNDS'].flatMap((k) => (process.env[k] ? [`${k}=${process.env[k]}`] : []));
const command = `${env.join(' ')} node --enable-source-maps ${relative(root, out)}`.trim();
const output = await new Promise<string>((resolve, reject) => {
  const child = spawn(join(root, 'test/guest/run-in-guest.sh'), [command], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  child.stdout.on('data', (d) => { text += d; });
  child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`guest bench failed (exit ${code}):\n${text}`))));
});
const line = output.split('\n').find((l) => l.startsWith('BENCH-RESULT '));
if (!line) throw new Error(`the guest printed no BENCH-RESULT line:\n${output}`);
const result = JSON.parse(line.slice('BENCH-RESULT '.length)) as { rows: Row[]; unavailable: Record<string, string>; count: number; seconds: number };

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? 0; };
const modes = [...new Set(result.rows.map((r) => r.mode))];
const pps = new Map(modes.map((m) => [m, median(result.rows.filter((r) => r.mode === m).map((r) => r.pps))]));
const base = pps.get('forward') || 1;
const table = modes.map((mode) => {
  const rs = result.rows.filter((r) => r.mode === mode);
  return {
    mode,
    'vs forward': (pps.get(mode) ?? 0) / base,
    'delivered/sent': rs.reduce((a, r) => a + r.delivered, 0) / Math.max(1, rs.reduce((a, r) => a + r.sent, 0)),
    rounds: rs.length,
  };
});
for (const [mode, why] of Object.entries(result.unavailable)) table.push({ mode: `${mode} (${why})`, 'vs forward': NaN, 'delivered/sent': NaN, rounds: 0 });
const path = writeResults('ipvs-guest', { ...result, medianPps: Object.fromEntries(pps), ratiosToForward: Object.fromEntries(table.map((r) => [r.mode, r['vs forward']])) });
printTable(table, { title: 'UDP packet rate inside the IPVS guest (one flow, 18-byte payload), ratio to kernel forwarding', digits: 2 });
console.log(`\n(absolute rates under emulation are not meaningful; raw rows in ${relative(root, path)})`);
