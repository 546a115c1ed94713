/**
 * The UDP packet-rate measurement of the IPVS guest's benchmark (bench/guest/ipvs-rate.ts, driven
 * by bench/ipvs-guest.ts): a bounded flood of small datagrams over several flows (bench/udp-flood.c,
 * sendmmsg) from the topology's first client to the VIP, counted as packets received on the real
 * servers' interfaces (nothing listens on the port, so the servers' kernels drop them after
 * counting; no user-space receiver limits the rate). bench/e2e.ts shares its config text and
 * sender build, and measures with bench/lib/forward-rate.ts.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Topology } from '../../test/lib/topology.js';
import { run, sleep } from '../../test/lib/netns.js';
import { median } from './results.js';

/** The flood's destination port: discard, nobody listens. */
export const UDP_FLOOD_PORT = 9;
/** The count bound next to the time bound. */
const MAX_PACKETS = 200_000_000;

export interface UdpFloodOptions {
  seconds: number;
  flows: number;
  /** Datagram payload in bytes (18 makes 64-byte Ethernet frames). */
  payload: number;
  /** Extra time allowed for starting processes (slow under emulation); default 20 s. */
  slackS?: number;
}

export interface UdpRate<M extends string = string> {
  mode: M;
  sent: number;
  delivered: number;
  /** What each real server received (t.servers order): shows the flows spread over all of them. */
  perServer: number[];
  seconds: number;
  pps: number;
  deliveredShare: number;
}

export interface UdpRateMedian<M extends string = string> {
  mode: M;
  pps: number;
  sentPerS: number;
  deliveredShare: number;
  /** Each run's delivered pps, rounded. */
  runs: number[];
}

/** Compiles bench/udp-flood.c into `dir`; returns the binary's path. */
export async function compileSender(dir: string): Promise<string> {
  const out = join(dir, 'udp-flood');
  const src = fileURLToPath(new URL('../udp-flood.c', import.meta.url));
  // gcc where present, else clang (a build prerequisite of the BPF object anyway).
  const compilers = process.env.CC ? [process.env.CC] : ['gcc', 'clang'];
  let lastErr: unknown;
  for (const cc of compilers) {
    try {
      await run(cc, ['-O2', '-Wall', '-o', out, src]);
      return out;
    } catch (err) { lastErr = err; }
  }
  throw new Error(`cannot compile bench/udp-flood.c (tried ${compilers.join(', ')}): ${(lastErr as Error).message}`);
}

/** The director's config for the benchmarks: the UDP flood service and TCP/80, over every real server. */
export function benchConfigText(t: Topology): string {
  const backends = t.servers.map((s) => `      - address: ${s.ipv4}`).join('\n');
  return `services:
  - vip: ${t.vip4}
    port: ${UDP_FLOOD_PORT}
    protocol: udp
    backends:
${backends}
  - vip: ${t.vip4}
    port: 80
    protocol: tcp
    backends:
${backends}
`;
}

/** Packets received on each real server's interface, in t.servers order. */
export async function serverRx(t: Topology): Promise<number[]> {
  return Promise.all(t.servers.map(async (s) => {
    const { stdout } = await t.exec(s, ['ip', '-s', '-j', 'link', 'show', s.ifname]);
    return Number((JSON.parse(stdout) as { stats64: { rx: { packets: number } } }[])[0]!.stats64.rx.packets);
  }));
}

/** One bounded flood at the VIP through whatever data path the director runs now. */
export async function udpFlood<M extends string>(t: Topology, sender: string, mode: M, o: UdpFloodOptions): Promise<UdpRate<M>> {
  const slackMs = (o.slackS ?? 20) * 1000;
  const args = (seconds: number, max: number) =>
    [sender, t.vip4, String(UDP_FLOOD_PORT), String(o.flows), String(o.payload), String(seconds), String(max)];
  // A short warm-up resolves neighbours and creates the flows before the measured run.
  await t.exec(t.clients[0]!, args(0.3, 100_000), { timeoutMs: slackMs });
  await sleep(300);
  const before = await serverRx(t);
  const { stdout } = await t.exec(t.clients[0]!, args(o.seconds, MAX_PACKETS), { timeoutMs: o.seconds * 1000 + slackMs });
  const sent = JSON.parse(stdout.trim()) as { sent: number; elapsedS: number };
  await sleep(300); // let queues drain into the counters
  const perServer = (await serverRx(t)).map((n, i) => n - before[i]!);
  const delivered = perServer.reduce((a, n) => a + n, 0);
  return { mode, sent: sent.sent, delivered, perServer, seconds: sent.elapsedS, pps: delivered / sent.elapsedS,
    deliveredShare: delivered / Math.max(1, sent.sent) };
}

/** Per mode (in the order given), the medians over its runs. */
export function udpMedians<M extends string>(results: readonly UdpRate<M>[], modes: readonly M[]): UdpRateMedian<M>[] {
  return modes.filter((mode) => results.some((r) => r.mode === mode)).map((mode) => {
    const rs = results.filter((r) => r.mode === mode);
    return { mode, pps: median(rs.map((r) => r.pps)), sentPerS: median(rs.map((r) => r.sent / r.seconds)),
      deliveredShare: median(rs.map((r) => r.deliveredShare)), runs: rs.map((r) => Math.round(r.pps)) };
  });
}
