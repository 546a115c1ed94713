/**
 * `make bench-ipvs`: IPVS in the end-to-end packet-rate table. The host kernel has no IPVS, so this
 * boots the IPVS guest of test/guest/ once and runs bench/guest/ipvs-rate.ts there: the same
 * topology and UDP flood as bench/e2e.ts, forwarded in turn by XDP native, XDP generic, IPVS DR and
 * plain kernel forwarding, delivered packets counted on the real servers' interfaces.
 * The guest is emulated (TCG), so absolute rates mean little; the ratios to kernel forwarding,
 * measured in the same guest run, are the result.
 * Writes bench/results/ipvs-guest.json; the last line is `ipvs / kernel-forwarding pps: R`.
 *
 * Env: BENCH_SECONDS (per measurement, default 2), BENCH_ROUNDS (5), BENCH_FLOWS (16),
 * BENCH_PAYLOAD (18), GUEST_TIMEOUT (s, default 420).
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleForGuest } from '../test/guest/bundle.js';
import type { GuestBenchResult, GuestMode } from './guest/ipvs-rate.js';
import { printTable, writeResults } from './lib/results.js';
import { compileSender, udpMedians } from './lib/udp-rate.js';

const MODES: GuestMode[] = ['xdp-native', 'xdp-generic', 'ipvs', 'kernel-forwarding'];
const root = fileURLToPath(new URL('../', import.meta.url));

function runInGuest(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(root, 'test/guest/run-in-guest.sh'), [command], {
      cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, GUEST_TIMEOUT: process.env.GUEST_TIMEOUT ?? '420' },
    });
    let text = '';
    child.stdout.on('data', (d) => { text += d; });
    child.on('close', (code) => (code === 0 ? resolve(text)
      : reject(new Error(`the guest run failed (exit ${code}); its output:\n${text}`))));
  });
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('bench-ipvs: needs root (qemu with the host filesystem, network namespaces in the guest)');
    return 1;
  }
  const t0 = performance.now();
  // Inside the repo, so the bundles' npm imports resolve from node_modules; the guest sees it read-only.
  const dir = join(root, '.cache', 'guest-bundle');
  mkdirSync(dir, { recursive: true });
  const script = join(dir, 'ipvs-rate.mjs');
  const cli = join(dir, 'xdir-cli.mjs');
  // Prebuilt here: under emulation tsx would spend tens of seconds compiling at every director start.
  const [sender] = await Promise.all([
    compileSender(dir), bundleForGuest(join(root, 'bench/guest/ipvs-rate.ts'), script), bundleForGuest(join(root, 'control/cli.ts'), cli),
  ]);
  const env = ['BENCH_SECONDS', 'BENCH_ROUNDS', 'BENCH_FLOWS', 'BENCH_PAYLOAD']
    .flatMap((k) => (process.env[k] ? [`${k}=${Number(process.env[k])}`] : []));
  const output = await runInGuest(`${env.join(' ')} node --enable-source-maps ${script} ${sender} ${cli}`.trim());
  const line = output.split('\n').find((l) => l.startsWith('BENCH-RESULT '));
  if (!line) throw new Error(`the guest printed no BENCH-RESULT line; its output:\n${output}`);
  const result = JSON.parse(line.slice('BENCH-RESULT '.length)) as GuestBenchResult;

  const medians = udpMedians(result.runs, MODES);
  const missing = MODES.filter((m) => !medians.some((r) => r.mode === m));
  if (missing.length) throw new Error(`the guest measured no ${missing.join(', ')}; its output:\n${output}`);
  const pps = (mode: GuestMode) => medians.find((r) => r.mode === mode)!.pps;
  const base = pps('kernel-forwarding');
  const ratio = (mode: GuestMode) => Number((pps(mode) / base).toFixed(2));
  const totalS = Math.round((performance.now() - t0) / 1000);
  const path = writeResults('ipvs-guest', {
    where: 'IPVS guest: Debian kernel under qemu (test/guest/), software emulation unless KVM works',
    kernel: result.kernel, cpus: result.cpus, date: new Date().toISOString(), rounds: result.rounds, wallClockS: totalS,
    udp: { payloadBytes: result.flood.payload, flows: result.flood.flows, secondsPerRun: result.flood.seconds, servers: 3,
      median: medians.map((r) => ({ ...r, ratioToKernel: ratio(r.mode) })), runs: result.runs },
    ratiosToKernelForwarding: Object.fromEntries(MODES.map((m) => [m, ratio(m)])),
    timeline: result.timeline,
    note: 'emulated guest: absolute packet rates are not meaningful, compare the ratios measured in the same run',
  });
  printTable(medians.map((r) => ({
    path: r.mode, 'delivered pps': Math.round(r.pps), delivered: `${(100 * r.deliveredShare).toFixed(1)}%`,
    'vs kernel': ratio(r.mode), runs: r.runs.join(' '),
  })), {
    title: `UDP flood in the IPVS guest (kernel ${result.kernel}): ${result.flood.payload}-byte payload, ${result.flood.flows} flows, `
      + `delivered at 3 real servers (median of ${result.rounds} x ${result.flood.seconds} s; ${totalS} s in all)`,
    digits: 2,
  });
  console.log(`results: ${relative(root, path)} (emulated guest: compare ratios, not rates)`);
  console.log(`xdp-native / kernel-forwarding pps: ${(pps('xdp-native') / base).toFixed(2)}`);
  console.log(`ipvs / kernel-forwarding pps: ${(pps('ipvs') / base).toFixed(2)}`);
  return 0;
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(`bench-ipvs failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
