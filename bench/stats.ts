/**
 * The cost of observability at scale (issue 6): CPU and RSS of the director with 0, 10 and 100
 * Watch subscribers at a 1 s interval over 10,000 VIPs, and the time to read and sum every per-CPU
 * counter of 10,000 VIPs and 100,000 backends (batch map reads).
 *
 * The director (bench/lib/stats-director.child.ts) runs in its own process with the real XDP maps
 * loaded (not attached) and a small Maglev ring (251 slots) to keep memory sane; the subscribers
 * run here, counting bytes without decoding, so their work is not the director's. CPU is the
 * director's utime+stime from /proc over a fixed window per case; the baseline (0 subscribers) is
 * measured in the same run.
 *
 * Writes bench/results/stats.json; last line: `100 subscribers / 0 subscribers CPU: R` (target R < 1.5).
 * Usage: node --import tsx bench/stats.ts   (root; `make bpf` first).
 * Env: BENCH_WINDOW_S (seconds per case, default 8), BENCH_BPF_OBJECT (another build of the program).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { directorServiceDefinition } from '../control/observability/grpc/proto.js';
import { median, printTable, writeResults } from './lib/results.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VIPS = 10_000;
const BACKENDS_PER_VIP = 10;
const RING = 251;
const WINDOW_S = Number(process.env.BENCH_WINDOW_S ?? 8);
const WARMUP_S = 2;
/** Subscribers and whether they ask for changes only (idle entries left out after the first snapshot). */
// Full snapshots last: at this size 100 of them saturate the transport (~5 MB each), and the
// backlog of cancelled streams would otherwise spill into the next case.
const CASES: { n: number; changesOnly: boolean }[] = [
  { n: 0, changesOnly: false }, { n: 10, changesOnly: true }, { n: 100, changesOnly: true },
  { n: 10, changesOnly: false }, { n: 100, changesOnly: false },
];
const CLK_TCK = 100; // Linux USER_HZ

if (process.getuid?.() !== 0) {
  console.error('bench/stats.ts needs root (it loads BPF maps)');
  process.exit(2);
}
if (!existsSync(process.env.BENCH_BPF_OBJECT || join(ROOT, 'bpf/director.bpf.o'))) {
  console.error('bpf/director.bpf.o is missing; run `make bpf` first');
  process.exit(2);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cpuSeconds(pid: number): number {
  // Fields after the command name (which may hold spaces) start at ") ".
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime
}

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface Ready { ready: true; programmedMs: number; readMs: number[]; counted: { services: number; backends: number } }

async function startDirector(pinRoot: string, socket: string): Promise<{ child: ChildProcess; ready: Ready }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lib/stats-director.child.ts'),
    pinRoot, socket, String(VIPS), String(BACKENDS_PER_VIP), String(RING)], {
    cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, XDIR_LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const ready = await new Promise<Ready>((resolve, reject) => {
    const guard = setTimeout(() => reject(new Error(`director not ready after 90 s:\n${stderr}`)), 90_000);
    readline.createInterface({ input: child.stdout! }).once('line', (l) => { clearTimeout(guard); resolve(JSON.parse(l) as Ready); });
    child.once('exit', (code) => { clearTimeout(guard); reject(new Error(`director exited (${code}):\n${stderr}`)); });
  });
  return { child, ready };
}

/** N Watch streams that count messages and bytes without decoding them. */
function subscribe(target: string, n: number, changesOnly: boolean): { stop(): void; messages(): number; bytes(): number } {
  const watch = directorServiceDefinition().Watch as grpc.MethodDefinition<unknown, unknown>;
  const clients: grpc.Client[] = [];
  const calls: grpc.ClientReadableStream<number>[] = [];
  let messages = 0;
  let bytes = 0;
  let firstError: string | undefined;
  // A few connections, as separate tools would open; several streams share each.
  for (let i = 0; i < n; i++) {
    if (i % 10 === 0) clients.push(new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': -1, 'grpc-node.flow_control_window': 32 << 20 }));
    const call = clients.at(-1)!.makeServerStreamRequest<unknown, number>(
      watch.path, watch.requestSerialize, (buf: Buffer) => buf.length, { interval_ms: 1000, changes_only: changesOnly },
    );
    call.on('data', (len: number) => { messages += 1; bytes += len; });
    call.on('error', (e) => { if (!firstError) firstError = e.message; });
    calls.push(call);
  }
  return {
    stop() {
      if (firstError && !/Cancelled/.test(firstError)) console.error(`a subscriber failed: ${firstError}`);
      for (const c of calls) c.cancel();
      for (const c of clients) c.close();
    },
    messages: () => messages,
    bytes: () => bytes,
  };
}

async function main(): Promise<void> {
  const pinRoot = `/sys/fs/bpf/xdir-bench-stats-${randomBytes(4).toString('hex')}`;
  const tmp = mkdtempSync(join(tmpdir(), 'xdir-bench-stats-'));
  const socket = join(tmp, 'xdir.sock');
  const benchStart = performance.now();
  const { child, ready } = await startDirector(pinRoot, socket);
  const pid = child.pid!;
  try {
    const rows: Record<string, number | string>[] = [];
    for (const { n, changesOnly } of CASES) {
      const subs = subscribe(`unix:${socket}`, n, changesOnly);
      await sleep(WARMUP_S * 1000);
      const m0 = subs.messages();
      const b0 = subs.bytes();
      const c0 = cpuSeconds(pid);
      const t0 = performance.now();
      await sleep(WINDOW_S * 1000);
      const seconds = (performance.now() - t0) / 1000;
      const cpu = cpuSeconds(pid) - c0;
      rows.push({
        subscribers: n,
        mode: n === 0 ? '-' : changesOnly ? 'changes-only' : 'full',
        cpuPercent: (100 * cpu) / seconds,
        rssMB: rssMB(pid),
        snapshotsPerSubscriberPerS: n ? (subs.messages() - m0) / n / seconds : 0,
        MBPerS: (subs.bytes() - b0) / 1e6 / seconds,
      });
      subs.stop();
      await sleep(2000);
    }
    const cpuOf = (n: number, mode: string): number => rows.find((r) => r.subscribers === n && (n === 0 || r.mode === mode))!.cpuPercent as number;
    const base = Math.max(cpuOf(0, '-'), 0.1);
    const ratio = cpuOf(100, 'full') / base;
    const ratioChanges = cpuOf(100, 'changes-only') / base;
    const readSorted = [...ready.readMs].slice(1).sort((a, b) => a - b); // the first read warms caches
    const result = {
      vips: VIPS, backends: VIPS * BACKENDS_PER_VIP, ringSize: RING, windowS: WINDOW_S, intervalMs: 1000,
      counted: ready.counted,
      programmedS: ready.programmedMs / 1000,
      fullReadMs: { median: median(readSorted), min: readSorted[0], max: readSorted.at(-1) },
      cases: rows,
      cpuRatio100to0: ratio,
      cpuRatio100to0ChangesOnly: ratioChanges,
      benchSeconds: (performance.now() - benchStart) / 1000,
    };
    writeResults('stats', result);
    console.log(`read + sum all per-CPU counters (${VIPS} VIPs, ${VIPS * BACKENDS_PER_VIP} backends): ` +
      `median ${result.fullReadMs.median.toFixed(1)} ms (min ${readSorted[0]!.toFixed(1)}, max ${readSorted.at(-1)!.toFixed(1)})`);
    printTable(rows, { title: `director CPU and RSS, Watch at 1 s over ${VIPS} VIPs (${WINDOW_S} s window each)`, digits: { cpuPercent: 2, rssMB: 0, snapshotsPerSubscriberPerS: 2, MBPerS: 2 } });
    console.log(`(changes-only streams, idle VIPs: 100 subscribers / 0 subscribers CPU: ${ratioChanges.toFixed(2)})`);
    console.log(`100 subscribers / 0 subscribers CPU: ${ratio.toFixed(2)}`);
  } finally {
    child.stdin!.end();
    await new Promise((r) => { const k = setTimeout(() => { child.kill('SIGKILL'); r(null); }, 10_000); child.once('exit', () => { clearTimeout(k); r(null); }); });
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
