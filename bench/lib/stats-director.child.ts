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
import { possibleCpus } from '../../control/bpf/index.js';
import type { Counter } from '../../control/dataplane/dataplane.js';
import { sumPerCpuCountersNamed } from './per-cpu-sum.js';

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

// The proposed read (bench/lib/per-cpu-sum.ts) on the same maps, checked against readStats. It
// reaches into the data path's private fields; if they moved, it is skipped (null).
const proposal = await measureProposal();

const obs = await startObservability({
  dataplane, readiness: () => true, grpc: { address: `unix:${socket}` }, metrics: false,
  stats: { baseIntervalMs: 1000, minIntervalMs: 100, maxPending: 4 },
});
// BENCH_CHILD_PROFILE=file: a CPU profile of the serving phase only. (node --cpu-prof would also
// profile the program load, and its SIGPROF ticks make the verifier give up with EAGAIN.)
const profile = process.env.BENCH_CHILD_PROFILE ? await startProfile() : undefined;
process.stdout.write(`${JSON.stringify({ ready: true, programmedMs, readMs, counted, proposal })}\n`);

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

async function measureProposal(): Promise<{ readMs: number[]; agrees: boolean } | null> {
  const internals = dataplane as unknown as {
    object?: { map(name: string): { lookupAll(): { keys: Buffer; values: Buffer; count: number } } };
    state?: { vipIds?: { keyOf(id: number): string | undefined }; backendIds?: { keyOf(id: number): string | undefined } };
  };
  const o = internals.object;
  const vipIds = internals.state?.vipIds;
  const backendIds = internals.state?.backendIds;
  if (!o || !vipIds || !backendIds) return null;
  const cpus = possibleCpus();
  const read = (): { services: Map<string, Counter>; backends: Map<string, Counter> } => ({
    services: sumPerCpuCountersNamed(o.map('vip_stats').lookupAll(), cpus, (id) => vipIds.keyOf(id)),
    backends: sumPerCpuCountersNamed(o.map('backend_stats').lookupAll(), cpus, (id) => backendIds.keyOf(id)),
  });
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t = performance.now();
    read();
    times.push(performance.now() - t);
  }
  // Same answer as readStats (checked outside the timing).
  const want = await dataplane.readStats();
  const got = read();
  const same = (a: Map<string, Counter>, b: Map<string, Counter>): boolean =>
    a.size === b.size && [...a].every(([k, c]) => b.get(k)?.packets === c.packets && b.get(k)?.bytes === c.bytes);
  return { readMs: times, agrees: same(want.services, got.services) && same(want.backends, got.backends) };
}
