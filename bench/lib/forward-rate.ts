/**
 * One UDP forwarding measurement of bench/e2e.ts on the bed of forwarding-bed.ts: a bounded flood
 * of small datagrams over several flows, from the first client to the VIP, generated in the kernel
 * (bench/udp-flood.c in xdp mode: XDP live frames, the stand-in for pktgen) by one sender pinned to
 * the sender CPU, counted as frames received by the real servers' interfaces. Next to the delivered rate
 * it takes the CPU time the director's receive thread used, so each run also says what a forwarded
 * packet cost the director's CPU and whether that CPU was the bottleneck (share near 100%).
 */
import { readFileSync } from 'node:fs';
import type { Topology } from '../../test/lib/topology.js';
import { nsRun, sleep } from '../../test/lib/netns.js';
import { DIRECTOR_CPU, SENDER_CPU, threadRuntimeNs, type FloodGenerator } from './forwarding-bed.js';
import { median } from './results.js';
import { serverRx, UDP_FLOOD_PORT, type UdpRate } from './udp-rate.js';

/** The count bound next to the time bound. */
const MAX_PACKETS = 200_000_000;

export interface ForwardFloodOptions {
  seconds: number;
  flows: number;
  /** Datagram payload in bytes (18 makes 64-byte Ethernet frames). */
  payload: number;
}

/** A UDP rate (udp-rate.ts) plus where the director's CPU went. */
export interface ForwardRate<M extends string = string> extends UdpRate<M> {
  /** Share of the run the director's receive thread was on its CPU (1 = the director CPU was the bottleneck). */
  directorCpuShare: number;
  /** Director receive-thread CPU time per delivered packet, ns. */
  directorNsPerPacket: number;
  /** Busy share of the director's CPU from /proc/stat (includes anything else that ran there). */
  directorCpuBusy: number;
  /** Where frames that were sent but not delivered went: the drop counters that moved during the run. */
  drops: Record<string, number>;
}

export interface ForwardRateMedian<M extends string = string> {
  mode: M;
  pps: number;
  sentPerS: number;
  deliveredShare: number;
  directorCpuShare: number;
  directorNsPerPacket: number;
  /** 1e9 / directorNsPerPacket: the rate the director's CPU would carry if it did nothing else. */
  directorCpuCapacityPps: number;
  /** Each run's delivered pps, rounded. */
  runs: number[];
  /** The drop counters that moved, summed over the runs. */
  drops: Record<string, number>;
}

function cpuTicks(cpu: number): { busy: number; all: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `))!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3]! + v[4]!; // idle + iowait
  const all = v.slice(0, 8).reduce((a, x) => a + x, 0);
  return { busy: all - idle, all };
}

/**
 * The drop counters along the path, by `where:counter`: veth counts a frame its peer's queue had no
 * room for as a tx drop of the sending side (p-dir: into the director; eth0 of the director: back
 * into the switch), XDP_TX that found the peer's queue full as xdp_tx_errors, and the generator's
 * redirects the client's bridge port could not take as xdp_xmit_errors of the client's eth0.
 */
async function dropCounters(t: Topology): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const links = async (ns: string, who: string) => {
    const { stdout } = await nsRun(ns, ['ip', '-s', '-j', 'link', 'show']);
    for (const l of JSON.parse(stdout) as { ifname: string; stats64?: { rx: { dropped: number }; tx: { dropped: number } } }[]) {
      if (!l.stats64 || l.ifname === 'lo') continue;
      out[`${who}${l.ifname}:tx_dropped`] = l.stats64.tx.dropped;
      out[`${who}${l.ifname}:rx_dropped`] = l.stats64.rx.dropped;
    }
  };
  const ethtool = async (ns: string, dev: string, who: string) => {
    const { stdout } = await nsRun(ns, ['ethtool', '-S', dev]);
    for (const m of stdout.matchAll(/^\s+(\S*(?:drops|errors))\S*:\s+(\d+)$/gm)) out[`${who}${dev}:${m[1]}`] = Number(m[2]);
  };
  await links(t.switchNs, 'switch ');
  await links(t.director.ns, 'director ');
  await ethtool(t.director.ns, t.director.ifname, 'director ');
  await ethtool(t.clients[0]!.ns, t.clients[0]!.ifname, 'client ');
  return out;
}

/** One bounded flood through whatever data path the director runs now; `rxPid` is its receive thread. */
export async function forwardFlood<M extends string>(t: Topology, sender: string, gen: FloodGenerator, mode: M, rxPid: number,
  o: ForwardFloodOptions): Promise<ForwardRate<M>> {
  const c = t.clients[0]!;
  // nice -20: other load on the machine is pushed onto the sender's CPU by the director's FIFO
  // thread; the sender must keep offering more than the director carries.
  const args = (seconds: number, max: number) => ['nice', '-n', '-20', 'taskset', '-c', String(SENDER_CPU), sender, t.vip4, String(UDP_FLOOD_PORT),
    String(o.flows), String(o.payload), String(seconds), String(max), c.ifname, c.ipv4, c.mac, t.director.mac, gen.prog, gen.cfgMap];
  // Raw frames resolve nothing: the director learns the real servers' MACs here (the kernel path
  // and the XDP program's bpf_fib_lookup both need them), then a short warm-up creates the flows.
  for (const rs of t.servers) await t.exec(t.director, ['ping', '-c', '1', '-W', '1', rs.ipv4], { allowFail: true });
  await t.exec(c, args(0.3, 100_000), { timeoutMs: 20_000 });
  await sleep(300);
  const before = await serverRx(t);
  const drops0 = await dropCounters(t);
  const rt0 = threadRuntimeNs(rxPid);
  const cpu0 = cpuTicks(DIRECTOR_CPU);
  const { stdout } = await nsRun(c.ns, args(o.seconds, MAX_PACKETS), { timeoutMs: o.seconds * 1000 + 20_000 });
  const rt1 = threadRuntimeNs(rxPid);
  const cpu1 = cpuTicks(DIRECTOR_CPU);
  const sent = JSON.parse(stdout.trim()) as { sent: number; elapsedS: number };
  await sleep(300); // let queues drain into the counters
  const perServer = (await serverRx(t)).map((n, i) => n - before[i]!);
  const delivered = perServer.reduce((a, n) => a + n, 0);
  const drops1 = await dropCounters(t);
  const drops = Object.fromEntries(Object.entries(drops1).map(([k, v]) => [k, v - (drops0[k] ?? 0)]).filter(([, v]) => v !== 0));
  return {
    mode, sent: sent.sent, delivered, perServer, seconds: sent.elapsedS, pps: delivered / sent.elapsedS,
    deliveredShare: delivered / Math.max(1, sent.sent),
    directorCpuShare: (rt1 - rt0) / 1e9 / sent.elapsedS,
    directorNsPerPacket: (rt1 - rt0) / Math.max(1, delivered),
    directorCpuBusy: (cpu1.busy - cpu0.busy) / Math.max(1, cpu1.all - cpu0.all),
    drops,
  };
}

/** Per mode (in the order given), the medians over its runs. */
export function forwardMedians<M extends string>(results: readonly ForwardRate<M>[], modes: readonly M[]): ForwardRateMedian<M>[] {
  return modes.filter((mode) => results.some((r) => r.mode === mode)).map((mode) => {
    const rs = results.filter((r) => r.mode === mode);
    const ns = median(rs.map((r) => r.directorNsPerPacket));
    return {
      mode, pps: median(rs.map((r) => r.pps)), sentPerS: median(rs.map((r) => r.sent / r.seconds)),
      deliveredShare: median(rs.map((r) => r.deliveredShare)), directorCpuShare: median(rs.map((r) => r.directorCpuShare)),
      directorNsPerPacket: ns, directorCpuCapacityPps: 1e9 / ns, runs: rs.map((r) => Math.round(r.pps)),
      drops: rs.reduce<Record<string, number>>((acc, r) => {
        for (const [k, v] of Object.entries(r.drops)) acc[k] = (acc[k] ?? 0) + v;
        return acc;
      }, {}),
    };
  });
}
