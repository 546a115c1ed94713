/**
 * `make bench-e2e`: forwarding rate of the whole director path on one machine, in one run.
 *
 * A bounded UDP flood (small datagrams, several flows, bench/udp-flood.c with sendmmsg, compiled
 * here; the kernel's pktgen is not used because this kernel has none) goes from the client through
 * the director to three real servers, and the real servers' interfaces count what arrives:
 *   (a) xdp-native         `xdir run --xdp-mode native` on the director's veth (XDP_TX)
 *   (b) xdp-generic        the same program in generic (skb) mode
 *   (c) kernel-forwarding  no XDP: ip_forward with an ECMP route (L4 hash) to the same servers
 * Then TCP connections per second with wrk (one request per connection) against the real servers'
 * HTTP through (a) and (c). IPVS needs a kernel that has it (this one has not): `make bench-ipvs`
 * (bench/ipvs-guest.ts) measures it with the same code (bench/lib/udp-rate.ts) inside the IPVS guest.
 * Writes bench/results/e2e.json; the last line is `xdp-native / kernel-forwarding pps: R`.
 *
 * The modes run interleaved for BENCH_ROUNDS rounds and each reports its median, so a burst of
 * load from elsewhere on the machine does not land on one mode only.
 *
 * Env: BENCH_SECONDS (per UDP measurement, default 3), BENCH_FLOWS (default 16),
 * BENCH_PAYLOAD (bytes, default 18: 64-byte frames), BENCH_WRK_SECONDS (default 3), BENCH_ROUNDS (default 3).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanupStale, Topology } from '../test/lib/topology.js';
import { DirectorProcess } from '../test/lib/director.js';
import { run } from '../test/lib/netns.js';
import { median, printTable, writeResults } from './lib/results.js';
import { benchConfigText, compileSender, udpFlood, udpMedians, type UdpRate } from './lib/udp-rate.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Math.max(1, Math.min(10, Number(process.env.BENCH_ROUNDS ?? 3)));
const FLOWS = Number(process.env.BENCH_FLOWS ?? 16);
const PAYLOAD = Number(process.env.BENCH_PAYLOAD ?? 18);
const WRK_SECONDS = Number(process.env.BENCH_WRK_SECONDS ?? 3);
const flood = { seconds: SECONDS, flows: FLOWS, payload: PAYLOAD };

type Mode = 'xdp-native' | 'xdp-generic' | 'kernel-forwarding';

interface TcpResult { mode: Mode; connectionsPerS: number; requests: number; socketErrors: number }

async function wrk(t: Topology, mode: Mode): Promise<TcpResult> {
  // `Connection: close` makes every request a new TCP connection: a connections-per-second test.
  const { stdout } = await t.exec(t.clients[0]!, ['wrk', '-t', '2', '-c', '32', '-d', `${WRK_SECONDS}s`, '--timeout', '2s',
    '-H', 'Connection: close', `http://${t.vip4}/`], { timeoutMs: (WRK_SECONDS + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? NaN);
  const err = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const socketErrors = err ? err.slice(1).reduce((a, x) => a + Number(x), 0) : 0;
  return { mode, connectionsPerS: rps, requests, socketErrors };
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('bench-e2e: needs root (network namespaces, XDP)');
    return 1;
  }
  cleanupStale();
  const dir = mkdtempSync(join(tmpdir(), 'xdir-bench-'));
  const t = await Topology.create({ clients: 1, servers: 3, directorPeer: 'none' });
  const udp: UdpRate<Mode>[] = [];
  const tcp: TcpResult[] = [];
  let director: DirectorProcess | null = null;
  try {
    const sender = await compileSender(dir);
    await t.startServers({ http: [80], udp: 0 });
    const config = join(dir, 'xdir.yaml');
    writeFileSync(config, benchConfigText(t));

    for (let round = 1; round <= ROUNDS; round++) {
      // (c) the kernel's own forwarding, with the director's bridge port as plain as it comes.
      await t.setDirectorPeer('none');
      await t.enableKernelForwarding();
      udp.push(await udpFlood(t, sender, 'kernel-forwarding', flood));
      tcp.push(await wrk(t, 'kernel-forwarding'));
      await t.disableKernelForwarding();

      for (const mode of ['xdp-native', 'xdp-generic'] as const) {
        // Native XDP_TX on a veth needs the peer's XDP queue (see DirectorPeerSetup); generic does not.
        await t.setDirectorPeer(mode === 'xdp-native' ? 'xdp-pass' : 'none');
        director = await DirectorProcess.start(t, {
          config, xdpMode: mode === 'xdp-native' ? 'native' : 'generic',
          pinRoot: join(t.bpffs(), `${mode}-${round}`), extraArgs: ['--detach-on-exit'],
        });
        udp.push(await udpFlood(t, sender, mode, flood));
        if (mode === 'xdp-native') tcp.push(await wrk(t, mode));
        await director.stop();
        director = null;
      }
      process.stderr.write(`round ${round}/${ROUNDS} done\n`);
    }
  } finally {
    await director?.stop();
    await t.destroy();
    rmSync(dir, { recursive: true, force: true });
  }

  const modes: Mode[] = ['xdp-native', 'xdp-generic', 'kernel-forwarding'];
  const udpMedian = udpMedians(udp, modes);
  const tcpMedian = modes.filter((m) => tcp.some((r) => r.mode === m)).map((mode) => {
    const rs = tcp.filter((r) => r.mode === mode);
    return { mode, connectionsPerS: median(rs.map((r) => r.connectionsPerS)), socketErrors: rs.reduce((a, r) => a + r.socketErrors, 0),
      runs: rs.map((r) => Math.round(r.connectionsPerS)) };
  });
  const base = udpMedian.find((r) => r.mode === 'kernel-forwarding')!;
  const baseTcp = tcpMedian.find((r) => r.mode === 'kernel-forwarding')!;
  const ratio = (x: number, b: number) => Number((x / b).toFixed(2));
  const [kernel] = (await run('uname', ['-r'])).stdout.trim().split('\n');
  const path = writeResults('e2e', {
    kernel, cpus: (await import('node:os')).cpus().length, date: new Date().toISOString(), rounds: ROUNDS,
    udp: { payloadBytes: PAYLOAD, flows: FLOWS, secondsPerRun: SECONDS, servers: 3,
      median: udpMedian.map((r) => ({ ...r, ratioToKernel: ratio(r.pps, base.pps) })), runs: udp },
    tcp: { tool: 'wrk -t2 -c32, Connection: close', secondsPerRun: WRK_SECONDS,
      median: tcpMedian.map((r) => ({ ...r, ratioToKernel: ratio(r.connectionsPerS, baseTcp.connectionsPerS) })), runs: tcp },
    note: 'veth topology: sender, director and real servers share the CPUs and each packet\'s whole path runs on the sending CPU; measures per-packet cost of the full path, not a NIC\'s XDP',
  });
  printTable(udpMedian.map((r) => ({
    path: r.mode, 'sent/s': Math.round(r.sentPerS), 'delivered pps': Math.round(r.pps),
    delivered: `${(100 * r.deliveredShare).toFixed(1)}%`, 'vs kernel': ratio(r.pps, base.pps), runs: r.runs.join(' '),
  })), { title: `UDP flood: ${PAYLOAD}-byte payload, ${FLOWS} flows, delivered at 3 real servers (median of ${ROUNDS} x ${SECONDS} s)`, digits: 2 });
  printTable(tcpMedian.map((r) => ({
    path: r.mode, 'connections/s': Math.round(r.connectionsPerS), 'socket errors': r.socketErrors,
    'vs kernel': ratio(r.connectionsPerS, baseTcp.connectionsPerS), runs: r.runs.join(' '),
  })), { title: `TCP connections per second: wrk, one request per connection (median of ${ROUNDS} x ${WRK_SECONDS} s)`, digits: 2 });
  console.log(`results: ${path}`);
  const native = udpMedian.find((r) => r.mode === 'xdp-native')!;
  console.log(`xdp-native / kernel-forwarding pps: ${(native.pps / base.pps).toFixed(2)}`);
  return 0;
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(`bench-e2e failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
