/**
 * The director under test for bench/stats.ts, in its own process so its CPU and RSS are its own:
 * a real XDP data path (maps loaded, not attached) holding VIPS virtual services with BACKENDS
 * distinct backends, the stats hub and the gRPC API on a unix socket. Before serving it times full
 * counter readings (batch lookups of every per-CPU counter, summed). Prints one JSON line when ready.
 * argv: pinRoot socket vips backendsPerVip ringSize
 */
import { XdpDataplane } from '../../control/dataplane/xdp/xdp-dataplane.js';
import type { DesiredState, VirtualService } from '../../control/model/types.js';
import { startObservability } from '../../control/observability/index.js';

const [pinRoot, socket, vipsText, perVipText, ringText] = process.argv.slice(2) as [string, string, string, string, string];
const vips = Number(vipsText);
const perVip = Number(perVipText);
const hex = (n: number): string => n.toString(16);

const services: VirtualService[] = [];
for (let i = 0; i < vips; i++) {
  const backends = [];
  for (let j = 0; j < perVip; j++) {
    const b = i * perVip + j;
    backends.push({ address: `fd00:19::${hex(b >> 16)}:${hex(b & 0xffff)}`, weight: 1, mac: '02:00:00:00:00:21' });
  }
  services.push({ vip: `fd00:18::${hex(i)}`, port: 80, protocol: 'tcp', scheduler: 'mh', persistence: 0, backends });
}
const desired: DesiredState = { services };

const dataplane = new XdpDataplane({
  interface: 'lo', attach: false, pinRoot, objectPath: process.env.BENCH_BPF_OBJECT || undefined, ringSize: Number(ringText),
  maxVips: vips, maxBackends: vips * perVip, flowTableSize: 4096, macRefreshMs: 0,
});
const t0 = performance.now();
await dataplane.start();
await dataplane.apply(desired);
const programmedMs = performance.now() - t0;

const readMs: number[] = [];
let counted = { services: 0, backends: 0 };
for (let i = 0; i < 7; i++) {
  const t = performance.now();
  const s = await dataplane.readStats();
  readMs.push(performance.now() - t);
  counted = { services: s.services.size, backends: s.backends.size };
}

const obs = await startObservability({
  dataplane, readiness: () => true, grpc: { address: `unix:${socket}` }, metrics: false,
  stats: { baseIntervalMs: 1000, minIntervalMs: 100, maxPending: 4 },
});
// BENCH_CHILD_PROFILE=file: a CPU profile of the serving phase only. (node --cpu-prof would also
// profile the program load, and its SIGPROF ticks make the verifier give up with EAGAIN.)
const profile = process.env.BENCH_CHILD_PROFILE ? await startProfile() : undefined;
process.stdout.write(`${JSON.stringify({ ready: true, programmedMs, readMs, counted })}\n`);

process.stdin.resume();
process.stdin.on('end', () => {
  void (profile?.() ?? Promise.resolve())
    .then(() => obs.stop()).then(() => dataplane.stop({ detach: true })).then(() => process.exit(0));
});

async function startProfile(): Promise<() => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async () => {
    const { profile: p } = await session.post('Profiler.stop');
    writeFileSync(process.env.BENCH_CHILD_PROFILE!, JSON.stringify(p));
  };
}
