/**
 * The XDP data path's costs, each beside its baseline in the same run (`make bench-datapath`):
 *
 * 1. ns per packet through BPF_PROG_TEST_RUN with `repeat` (>= 1,000,000; the kernel runs the
 *    verified, JIT-compiled program `repeat` times on one frame), for IPv4 TCP and IPv6 TCP:
 *    - floor: bench/fixtures/xdp_drop.bpf.c, return XDP_DROP; what the test-run loop itself costs;
 *    - minimal forwarder: bench/fixtures/xdp_baseline.bpf.c, parse Ethernet + IP, swap the MACs,
 *      XDP_TX; the least a DR forwarder can do. Every ratio in the table is to this program;
 *    - the director (bpf/director.bpf.o, 10 backends, a 65,537-slot Maglev ring):
 *      flow-hit  the flow is in the connection table (created by one warm-up packet). This is the
 *                fast path (docs/decisions/0005): the flow is in this CPU's flow cache, as every
 *                packet of an established flow is except one per 0.5 s per CPU (the cache's
 *                refresh) and those whose cache slot another flow took;
 *      flow-hit, no cache  the same with the flow cache turned off (flow_cache_off in .rodata):
 *                the slow path an established flow takes on a cache miss (VIP lookup, connection
 *                table lookup; a real miss also refills the cache, which this does not);
 *      flow-hit, cache miss  a build whose cache entries are always too old (XDIR_FLOW_CACHE_JIFFIES
 *                = 0): probe, miss, slow path, refill; what a flow pays when another flow took its
 *                slot (4,096 slots per CPU) or its packets come further apart than the window;
 *      new-flow  VIP lookup, hash, Maglev ring slot, backend lookup, flow insert. The same frame
 *                repeats, so it would be a hit after the first run; a second load of the program
 *                with flow_idle_timeout_ns = 0 (.rodata) makes every stored flow expired on the
 *                next packet, so each packet takes the Maglev path and rewrites its flow entry (an
 *                LRU update of an existing key, which allocates a fresh element like an insert).
 *                The flow table has 65,536 entries, not production's 1M;
 *      not-vip   a TCP packet to an address that is no VIP: XDP_PASS to the kernel.
 *    Every director measurement checks the verdict and that the reason counters (reason_stats
 *    plus the flow cache's pending counts, as user space reads them) counted the expected path
 *    exactly `repeat` times, so a number never belongs to another path than its label.
 *    ns/packet = CPU time of this thread during the syscall / repeat: fractional (the kernel's own
 *    figure is an integer, truncated; it is kept beside it, as is the wall clock), and blind to
 *    time the thread sat preempted, so other work on this 2-core machine does not inflate it the
 *    way it inflates wall time. Median of --rounds rounds (the minimum is kept too), all
 *    measurements interleaved in each round so background load hits them alike. The ratio to the
 *    minimal forwarder is paired: each round's figure over the forwarder's in the same round
 *    (measured moments apart), median over the rounds; so a slow stretch of the machine that hits
 *    a pair alike cancels out (the ratio of the two medians is kept beside it). Hot caches, one
 *    CPU: the program's CPU cost per packet, not a line-rate figure.
 * 2. Maglev build time of a 65,537-slot ring with 10, 100 and 1,000 equal-weight backends
 *    (bench/lib/maglev-build.ts; bench/maglev.ts compares it with modulo hashing and measures
 *    disruption).
 * 3. The control plane writing the maps: XdpDataplane (not attached; real maps, ring size 65,537)
 *    applying 1,000 VIPs x 10 backends (10,000 distinct backends) from empty, then, within them,
 *    one backend removed from one VIP and added back, beside re-applying the unchanged state (the
 *    cost of validating and diffing 1,000 services, the floor of any change). Map writes are
 *    counted through onMapWrite. Wall and thread-CPU ms, median of the runs.
 *
 * Writes bench/results/datapath.json and prints tables; the last line is
 * `director flow-hit / minimal forwarder: R` (IPv4). Needs root (CAP_BPF, CAP_NET_ADMIN).
 * Usage: node --import tsx bench/datapath.ts [--repeat N] [--rounds N] [--apply-runs N]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus as osCpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfObject, type BpfProgram } from '../control/bpf/object.js';
import { libbpf } from '../control/bpf/libbpf.js';
import { rootLogger } from '../control/log.js';
import { buildMaglevRing, DEFAULT_RING_SIZE } from '../control/model/maglev.js';
import type { DesiredState, VirtualService } from '../control/model/types.js';
import type { ReasonName } from '../control/dataplane/xdp/codecs.js';
import type { MapOp } from '../control/dataplane/xdp/plan.js';
import { XdpDataplane } from '../control/dataplane/xdp/xdp-dataplane.js';
import { TestDirector, XDP, reasonDelta } from '../test/bpf/director-harness.js';
import { frame, type FrameSpec } from '../test/lib/packets.js';
import { bpfCompileArgs, CLANG } from '../test/lib/bpf-compile.js';
import { maglevBuildMs, warmMaglev } from './lib/maglev-build.js';
import { median, printTable, writeResults } from './lib/results.js';
import { threadCpuNs } from './lib/thread-cpu.js';

function argNumber(name: string, fallback: number, min: number, max: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${name} wants an integer in ${min}..${max}, got ${process.argv[i + 1]}`);
  return v;
}
const REPEAT = argNumber('--repeat', 1_000_000, 1_000_000, 10_000_000);
const ROUNDS = argNumber('--rounds', 15, 1, 25);
const APPLY_RUNS = argNumber('--apply-runs', 3, 1, 10);
/** The packet rounds stop early (with fewer rounds) rather than run past this. */
const PACKET_BUDGET_MS = 60_000;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RING_SIZE = DEFAULT_RING_SIZE; // 65,537: each ring is one 256 KiB array value
const DIRECTOR_MAC = '02:d1:00:00:00:01';
const ROUTER_MAC = '02:c1:00:00:00:01';
const BACKENDS = Array.from({ length: 10 }, (_, i) => ({
  id: i, address: `198.18.2.${i + 1}`, mac: `02:be:00:00:00:${i.toString(16).padStart(2, '0')}`,
}));

if (process.getuid?.() !== 0) {
  console.error('bench/datapath.ts needs root (CAP_BPF and CAP_NET_ADMIN for BPF_PROG_TEST_RUN and map creation); run it with sudo');
  process.exit(1);
}
// The data path logs every apply at info; the tables are the output here.
rootLogger.level = process.env.XDIR_LOG_LEVEL ?? 'warn';

const ns2 = (x: number): number => Number(x.toFixed(2));

// ---------------------------------------------------------------------------------------------
// 1. ns per packet

/** Compiles a one-file BPF program with the flags of `make bpf`. */
function compile(source: string, outDir: string, defines: string[] = [], name?: string): string {
  const out = join(outDir, name ?? source.replace(/^.*\//, '').replace(/\.c$/, '.o'));
  try {
    execFileSync(CLANG, bpfCompileArgs(join(ROOT, source), out, defines), { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (err) {
    throw new Error(`cannot compile ${source} with clang: ${(err as Error).message}; install clang (\`make apt\`) or set CLANG`);
  }
  return out;
}

/** What the kernel says about a loaded program (struct bpf_prog_info, include/uapi/linux/bpf.h). */
interface ProgFacts { id: number; verifiedInsns: number; xlatedBytes: number; jitedBytes: number }
const PROG_INFO = { size: 232, id: 4, jitedProgLen: 16, xlatedProgLen: 20, verifiedInsns: 216 } as const;
function progFacts(p: BpfProgram): ProgFacts {
  const info = Buffer.alloc(PROG_INFO.size);
  const len = new Uint32Array([info.length]);
  const ret = libbpf.bpf_obj_get_info_by_fd(p.fd, info, len) as number;
  if (ret < 0) throw new Error(`cannot read bpf_prog_info of '${p.name}': errno ${-ret}`);
  return {
    id: info.readUInt32LE(PROG_INFO.id),
    verifiedInsns: len[0]! > PROG_INFO.verifiedInsns ? info.readUInt32LE(PROG_INFO.verifiedInsns) : -1,
    xlatedBytes: info.readUInt32LE(PROG_INFO.xlatedProgLen),
    jitedBytes: info.readUInt32LE(PROG_INFO.jitedProgLen),
  };
}

const FAMILIES = {
  ipv4: { vip: '198.18.0.10', notVip: '198.18.0.99', client: '198.18.1.1', vipId: 0 },
  ipv6: { vip: 'fd00::10', notVip: 'fd00::99', client: 'fd00:1::1', vipId: 1 },
} as const;
type Family = keyof typeof FAMILIES;

/** Loads a director with one TCP service per family over the 10 backends (one Maglev ring). */
function director(o: { flowIdleTimeoutNs?: bigint; flowCache?: boolean; objectPath?: string } = {}): TestDirector {
  const d = TestDirector.open({ ringSize: RING_SIZE, ...o });
  try {
    for (const b of BACKENDS) d.setBackend(b.id, b.address, b.mac);
    const ring = buildMaglevRing(BACKENDS.map((b) => ({ ...b, weight: 1 })), RING_SIZE);
    if (!ring) throw new Error('Maglev built no ring for 10 backends of weight 1');
    const ids = ring.slots.map((i) => ring.backends[i]!.id);
    for (const f of Object.values(FAMILIES)) {
      d.addVip({ vip: f.vip, port: 80, protocol: 'tcp' }, f.vipId);
      d.setRing(f.vipId, ids);
    }
    return d;
  } catch (err) {
    d.close();
    throw err;
  }
}

function tcpFrame(family: Family, dst: 'vip' | 'notVip'): Buffer {
  const f = FAMILIES[family];
  const spec: FrameSpec = {
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: family === 'ipv4' ? 4 : 6, src: f.client, dst: f[dst] }, l4: { kind: 'tcp', sport: 40000, dport: 80 },
  };
  return frame(spec);
}

/** One measured program on one frame; `path` checks the director took the labelled path. */
interface Measurement {
  family: Family;
  name: string;
  program: BpfProgram;
  data: Buffer;
  action: number;
  path?: { d: TestDirector; reason: ReasonName };
}
interface Sample { cpuNs: number; wallNs: number; kernelNs: number }

function measureOnce(m: Measurement): Sample {
  const before = m.path?.d.reasons();
  const c0 = threadCpuNs();
  const t0 = process.hrtime.bigint();
  const r = m.program.testRun({ data: m.data, repeat: REPEAT });
  const wallNs = Number(process.hrtime.bigint() - t0) / REPEAT;
  const cpuNs = Number(threadCpuNs() - c0) / REPEAT;
  if (r.retval !== m.action) throw new Error(`${m.family} ${m.name}: verdict ${r.retval}, want ${m.action}`);
  if (m.path && before) {
    const delta = reasonDelta(before, m.path.d.reasons());
    if (delta[m.path.reason] !== REPEAT) {
      throw new Error(`${m.family} ${m.name}: the program took another path than '${m.path.reason}' (reason counts: ${JSON.stringify(delta)})`);
    }
  }
  return { cpuNs, wallNs, kernelNs: r.durationNs };
}

function measurePackets() {
  const tmp = mkdtempSync(join(tmpdir(), 'xdir-bench-datapath-'));
  const opened: { close(): void }[] = [];
  try {
    const dropObj = BpfObject.open({ objectPath: compile('bench/fixtures/xdp_drop.bpf.c', tmp) });
    opened.push(dropObj);
    const forwarderObj = BpfObject.open({ objectPath: compile('bench/fixtures/xdp_baseline.bpf.c', tmp) });
    opened.push(forwarderObj);
    const established = director();
    opened.push(established);
    const newFlow = director({ flowIdleTimeoutNs: 0n });
    opened.push(newFlow);
    const noCache = director({ flowCache: false });
    opened.push(noCache);
    // A build whose cache entries are never young enough: every packet probes, misses, takes the
    // slow path and refills its slot, which is what a flow pays when its slot went to another flow.
    const missObject = compile('bpf/director.bpf.c', tmp, ['XDIR_FLOW_CACHE_JIFFIES=0'], 'director-cache-miss.bpf.o');
    const cacheMiss = director({ objectPath: missObject });
    opened.push(cacheMiss);
    const drop = dropObj.program('xdp_drop');
    const forwarder = forwarderObj.program('xdp_baseline');
    const directorProg = (d: TestDirector) => d.obj.program('xdir_director');

    const measurements: Measurement[] = (Object.keys(FAMILIES) as Family[]).flatMap((family) => {
      const toVip = tcpFrame(family, 'vip');
      return [
        { family, name: 'xdp-drop (floor)', program: drop, data: toVip, action: XDP.DROP },
        { family, name: 'minimal forwarder', program: forwarder, data: toVip, action: XDP.TX },
        { family, name: 'director flow-hit', program: directorProg(established), data: toVip, action: XDP.TX, path: { d: established, reason: 'flow-hit' as const } },
        { family, name: 'director flow-hit, no cache', program: directorProg(noCache), data: toVip, action: XDP.TX, path: { d: noCache, reason: 'flow-hit' as const } },
        { family, name: 'director flow-hit, cache miss', program: directorProg(cacheMiss), data: toVip, action: XDP.TX, path: { d: cacheMiss, reason: 'flow-hit' as const } },
        { family, name: 'director new-flow', program: directorProg(newFlow), data: toVip, action: XDP.TX, path: { d: newFlow, reason: 'flow-new' as const } },
        { family, name: 'director not-vip pass', program: directorProg(established), data: tcpFrame(family, 'notVip'), action: XDP.PASS, path: { d: established, reason: 'pass-not-vip' as const } },
      ];
    });

    // Creates the established flows and checks each verdict once; then one discarded pass of
    // every measurement (the first one ran cold, up to 2x slower, in trials).
    for (const m of measurements) {
      const r = m.program.testRun({ data: m.data });
      if (r.retval !== m.action) throw new Error(`${m.family} ${m.name}: warm-up verdict ${r.retval}, want ${m.action}`);
    }
    for (const m of measurements) measureOnce(m);

    const samples = measurements.map(() => [] as Sample[]);
    const started = Date.now();
    let rounds = 0;
    for (; rounds < ROUNDS; rounds++) {
      if (rounds > 0 && Date.now() - started > PACKET_BUDGET_MS) break;
      measurements.forEach((m, i) => samples[i]!.push(measureOnce(m)));
    }

    const summary = (xs: Sample[]) => ({
      /** Median thread CPU time per packet: the primary figure. */
      nsPerPacket: ns2(median(xs.map((x) => x.cpuNs))),
      /** Interference only ever adds time: the minimum is the least disturbed round. */
      minNsPerPacket: ns2(Math.min(...xs.map((x) => x.cpuNs))),
      /** The kernel's own per-run average (integer ns, truncated; excludes time scheduled out). */
      kernelNsPerPacket: median(xs.map((x) => x.kernelNs)),
      /** Wall clock per packet (includes time the thread was preempted). */
      wallNsPerPacket: ns2(median(xs.map((x) => x.wallNs))),
      samplesNs: xs.map((x) => ns2(x.cpuNs)),
    });
    const summaries = measurements.map((m, i) => ({ m, s: summary(samples[i]!), xs: samples[i]! }));
    const of = (family: Family, name: string) => summaries.find((x) => x.m.family === family && x.m.name === name)!;
    const cases = summaries.map(({ m, s, xs }) => {
      const fwd = of(m.family, 'minimal forwarder');
      const floor = of(m.family, 'xdp-drop (floor)').s;
      return {
        family: m.family,
        program: m.name,
        verdict: Object.keys(XDP).find((k) => XDP[k as keyof typeof XDP] === m.action)!,
        path: m.path?.reason ?? null,
        frameBytes: m.data.length,
        ...s,
        /** Paired: median over the rounds of this round's figure / the forwarder's in the same round. */
        ratioToForwarder: Number(median(xs.map((x, r) => x.cpuNs / fwd.xs[r]!.cpuNs)).toFixed(2)),
        /** This median over the minimal forwarder's median, same family. */
        ratioOfMedians: Number((s.nsPerPacket / fwd.s.nsPerPacket).toFixed(2)),
        ratioOfMinima: Number((s.minNsPerPacket / fwd.s.minNsPerPacket).toFixed(2)),
        /** The program's own work: the floor (the test-run loop) taken out. */
        netOfFloorNs: ns2(s.nsPerPacket - floor.nsPerPacket),
      };
    });
    const programs = {
      director: progFacts(directorProg(established)),
      directorNoCache: progFacts(directorProg(noCache)),
      minimalForwarder: progFacts(forwarder),
      xdpDrop: progFacts(drop),
    };
    return { rounds, cases, programs };
  } finally {
    for (const o of opened.reverse()) o.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Maglev build time

function measureMaglevBuild() {
  warmMaglev(RING_SIZE);
  return [10, 100, 1000].map((backends) => {
    const { ms, runs } = maglevBuildMs(backends, 'equal', RING_SIZE);
    return { backends, weights: 'equal', ringSize: RING_SIZE, ms: Number(ms.toFixed(3)), runs };
  });
}

// ---------------------------------------------------------------------------------------------
// 3. Applying the desired state through XdpDataplane

const APPLY = { vips: 1000, backendsPerVip: 10, changes: 5 } as const;

/** 1,000 TCP VIPs in 198.19.0.0/16, each with its own 10 backends in 198.18.0.0/16 (static MACs). */
function bigState(): VirtualService[] {
  return Array.from({ length: APPLY.vips }, (_, v) => ({
    vip: `198.19.${v >> 8}.${v & 0xff}`, port: 80, protocol: 'tcp', scheduler: 'mh', persistence: 0,
    backends: Array.from({ length: APPLY.backendsPerVip }, (_, j) => {
      const g = v * APPLY.backendsPerVip + j;
      const hex = (x: number) => x.toString(16).padStart(2, '0');
      return { address: `198.18.${g >> 8}.${g & 0xff}`, weight: 1, mac: `02:be:00:00:${hex(g >> 8)}:${hex(g & 0xff)}` };
    }),
  }));
}

interface Timed { wallMs: number; cpuMs: number; writes: number; writesByKind: Record<string, number> }

async function measureApply() {
  const services = bigState();
  const full: DesiredState = { services };
  let ops: MapOp[] = [];
  const timedApply = async (dp: XdpDataplane, desired: DesiredState): Promise<Timed> => {
    ops = [];
    const c0 = threadCpuNs();
    const t0 = performance.now();
    await dp.apply(desired);
    const wallMs = performance.now() - t0;
    const cpuMs = Number(threadCpuNs() - c0) / 1e6;
    const writesByKind: Record<string, number> = {};
    for (const op of ops) writesByKind[op.kind] = (writesByKind[op.kind] ?? 0) + 1;
    return { wallMs, cpuMs, writes: ops.length, writesByKind };
  };

  const fromEmpty: Timed[] = [];
  const unchanged: Timed[] = [];
  const removeOne: Timed[] = [];
  const addBack: Timed[] = [];
  for (let run = 0; run < APPLY_RUNS; run++) {
    const pinRoot = `/sys/fs/bpf/xdir-bench-${randomBytes(6).toString('hex')}`;
    const dp = new XdpDataplane({
      interface: 'lo', attach: false, pinRoot, ringSize: RING_SIZE,
      maxVips: 1024, maxBackends: 10_240, flowTableSize: 65_536,
      onMapWrite: (op) => ops.push(op),
    });
    try {
      await dp.start();
      fromEmpty.push(await timedApply(dp, full));
      if (run < APPLY_RUNS - 1) continue;
      // The changes, in the last run: each one VIP (spread over the set) losing its first backend,
      // then getting it back; an unchanged re-apply before each pair is the baseline.
      for (let c = 0; c < APPLY.changes; c++) {
        const v = Math.floor((c * APPLY.vips) / APPLY.changes) + 7;
        const smaller = services.map((s, i) => (i === v ? { ...s, backends: s.backends.slice(1) } : s));
        unchanged.push(await timedApply(dp, full));
        removeOne.push(await timedApply(dp, { services: smaller }));
        addBack.push(await timedApply(dp, full));
      }
    } finally {
      await dp.stop({ detach: true }).catch(() => undefined);
      rmSync(pinRoot, { recursive: true, force: true });
    }
  }
  const summary = (what: string, xs: Timed[]) => ({
    what,
    runs: xs.length,
    wallMs: Number(median(xs.map((x) => x.wallMs)).toFixed(2)),
    cpuMs: Number(median(xs.map((x) => x.cpuMs)).toFixed(2)),
    minWallMs: Number(Math.min(...xs.map((x) => x.wallMs)).toFixed(2)),
    /** Writes of the first run (every run writes the same). */
    mapWrites: xs[0]!.writes,
    writesByKind: xs[0]!.writesByKind,
  });
  return {
    vips: APPLY.vips,
    backendsPerVip: APPLY.backendsPerVip,
    distinctBackends: APPLY.vips * APPLY.backendsPerVip,
    ringSize: RING_SIZE,
    innerRingMapsMiB: (APPLY.vips * 4 * RING_SIZE) / 2 ** 20,
    cases: [
      summary(`${APPLY.vips} VIPs x ${APPLY.backendsPerVip} backends from empty`, fromEmpty),
      summary('re-apply unchanged (baseline)', unchanged),
      summary('remove 1 backend of 1 VIP', removeOne),
      summary('add 1 backend to 1 VIP', addBack),
    ],
  };
}

// ---------------------------------------------------------------------------------------------

const startedAt = Date.now();
const packets = measurePackets();
const maglevBuild = measureMaglevBuild();
const apply = await measureApply();

const result = {
  bench: 'datapath',
  kernel: release(),
  cpu: osCpus()[0]?.model ?? 'unknown',
  cpus: osCpus().length,
  node: process.version,
  jit: readFileSync('/proc/sys/net/core/bpf_jit_enable', 'utf8').trim() === '1',
  /** 1-minute load average at the end: other work on the machine skews the numbers. */
  loadAverage: Number(loadavg()[0]!.toFixed(2)),
  durationS: Math.round((Date.now() - startedAt) / 1000),
  packets: {
    method: 'BPF_PROG_TEST_RUN with repeat; ns/packet = thread CPU time of the syscall / repeat, median of rounds; ' +
      'flow-hit is the per-CPU flow cache\'s fast path; flow-hit, no cache loads the program with flow_cache_off = 1 (the slow path of a cache miss); ' +
      'new-flow uses a second load with flow_idle_timeout_ns = 0 so every packet takes the Maglev path; ratioToForwarder is paired: the median over rounds of ' +
      'the case / the minimal forwarder in the same round (ratioOfMedians and ratioOfMinima beside it)',
    repeat: REPEAT,
    rounds: packets.rounds,
    ringSize: RING_SIZE,
    backends: BACKENDS.length,
    cases: packets.cases,
    programs: packets.programs,
  },
  maglevBuild: {
    method: 'median thread-CPU ms of repeated builds after a warm-up (bench/lib/maglev-build.ts)',
    cases: maglevBuild,
  },
  apply: {
    method: 'XdpDataplane.apply() with attach: false on real maps; wall and thread-CPU ms (median); writes counted by onMapWrite',
    ...apply,
  },
};
const path = writeResults('datapath', result);

printTable(packets.cases.map((c) => ({
  family: c.family,
  program: c.program,
  verdict: c.verdict,
  'ns/packet': c.nsPerPacket,
  'min ns': c.minNsPerPacket,
  'kernel ns': c.kernelNsPerPacket,
  'net of floor ns': c.netOfFloorNs,
  '/ minimal fwd (paired)': c.ratioToForwarder,
})), {
  digits: 2,
  title: `ns per packet, BPF_PROG_TEST_RUN (kernel ${result.kernel}, ${result.cpu}, repeat ${REPEAT}, median of ${packets.rounds} rounds)`,
});
console.log('');
printTable(Object.entries(packets.programs).map(([program, f]) => ({
  program, 'verified insns': f.verifiedInsns, 'xlated bytes': f.xlatedBytes, 'jited bytes': f.jitedBytes,
})));
console.log('');
printTable(maglevBuild.map((r) => ({ backends: r.backends, 'build ms': r.ms, runs: r.runs })), {
  digits: 3, title: `Maglev build of a ${RING_SIZE}-slot ring, equal weights (Node ${process.version}, median)`,
});
console.log('');
printTable(apply.cases.map((c) => ({
  apply: c.what, 'wall ms': c.wallMs, 'cpu ms': c.cpuMs, 'map writes': c.mapWrites,
  writes: Object.entries(c.writesByKind).map(([k, n]) => `${k} ${n}`).join(', ') || '-',
  runs: c.runs,
})), {
  digits: 2,
  title: `XdpDataplane.apply(), ${apply.vips} VIPs x ${apply.backendsPerVip} backends, ring ${RING_SIZE} (${apply.innerRingMapsMiB.toFixed(0)} MiB of rings)`,
});
if (result.loadAverage > result.cpus / 2) {
  console.log(`note: load average ${result.loadAverage} on ${result.cpus} CPUs during the run: the per-packet figures exclude time ` +
    'spent preempted, but caches and SMT siblings are shared; rerun on an idle machine for absolute numbers');
}
console.log(`wrote ${path}`);
const headline = packets.cases.find((c) => c.family === 'ipv4' && c.program === 'director flow-hit')!;
console.log(`director flow-hit / minimal forwarder: ${headline.ratioToForwarder.toFixed(2)}`);
