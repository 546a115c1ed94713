/**
 * Runs INSIDE the IPVS guest (started by bench/ipvs-guest.ts): one topology, one client flooding
 * UDP at a VIP, the director forwarding it by each data path in turn, the real servers' kernels as
 * the sink (no listener on the port: each datagram ends as UdpNoPorts, no user-space cost).
 * Modes: direct (client -> real server, no director), forward (the director's kernel IP forwarding,
 * ECMP over the real servers), ipvs (IPVS DR), xdp (the XDP path, when it loads on this kernel).
 * Prints one line `BENCH-RESULT {json}` for the host side.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { XdpDataplane } from '../../control/dataplane/xdp/xdp-dataplane.js';
import type { DesiredState } from '../../control/model/types.js';
import { ipIn, nsRun } from '../../test/lib/netns.js';
import { startIpvsDirector } from '../../test/lib/ipvs-director.js';
import { Topology } from '../../test/lib/topology.js';

const FLOOD = join(fileURLToPath(new URL('./', import.meta.url)), 'udp-flood.mjs');
const COUNT = Number(process.env.BENCH_PACKETS ?? 40_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PORT = 9; // nobody listens: the real server's kernel counts and drops

interface Row { mode: string; round: number; sent: number; delivered: number; ms: number; pps: number }

async function udpNoPorts(ns: string): Promise<number> {
  const snmp = (await nsRun(ns, ['cat', '/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const names = snmp[0]!.split(/\s+/), values = snmp[1]!.split(/\s+/);
  return Number(values[names.indexOf('NoPorts')]);
}

async function measure(t: Topology, mode: string, round: number, target: string): Promise<Row> {
  const before = await Promise.all(t.servers.map((s) => udpNoPorts(s.ns)));
  const { stdout } = await t.exec(t.clients[0]!, [process.execPath, FLOOD, target, String(PORT), String(COUNT), String(SECONDS)],
    { timeoutMs: (SECONDS + 30) * 1000 });
  const { sent, ms } = JSON.parse(stdout.trim().split('\n').pop()!) as { sent: number; ms: number };
  const after = await Promise.all(t.servers.map((s) => udpNoPorts(s.ns)));
  const delivered = after.reduce((a, v, i) => a + v - before[i]!, 0);
  return { mode, round, sent, delivered, ms: Math.round(ms), pps: Math.round(delivered / (ms / 1000)) };
}

const t = await Topology.create({ clients: 1, servers: 2, directorPeer: 'none' });
const rows: Row[] = [];
const unavailable: Record<string, string> = {};
const config: DesiredState = {
  services: [{
    vip: t.vip4, port: PORT, protocol: 'udp', scheduler: 'mh', persistence: 0,
    backends: t.servers.map((s) => ({ address: s.ipv4, weight: 1, mac: s.mac })),
  }],
};
try {
  // Warm up ARP/ND on every path once, so no round pays for resolution.
  await t.enableKernelForwarding();
  for (const s of t.servers) await measure(t, 'warmup', 0, s.ipv4);
  await measure(t, 'warmup', 0, t.vip4);
  await t.disableKernelForwarding();

  for (let round = 1; round <= ROUNDS; round++) {
    rows.push(await measure(t, 'direct', round, t.servers[0]!.ipv4));

    await t.enableKernelForwarding();
    rows.push(await measure(t, 'forward', round, t.vip4));
    await t.disableKernelForwarding();

    const ipvs = await startIpvsDirector(t, `/run/xdir-bench-${process.pid}.json`);
    await ipvs.dataplane.apply(config);
    rows.push(await measure(t, 'ipvs', round, t.vip4));
    await ipvs.dataplane.stop({ detach: true });
    // The VIPs on the director's lo would make it deliver, not forward, in the next round.
    await ipIn(t.director.ns, 'addr', 'del', `${t.vip4}/32`, 'dev', 'lo');
    await ipIn(t.director.ns, 'addr', 'del', `${t.vip6}/128`, 'dev', 'lo');
  }
  // XDP on this kernel: loading is the question (the 6.1 verifier is older than the host's).
  // Measuring it needs the director process inside the director's namespace; that is the e2e
  // bench's setup, so here XDP is only probed and reported.
  const probe = new XdpDataplane({ interface: 'lo', pinRoot: join(t.bpffs(), 'probe'), attach: false });
  try {
    await probe.start();
    unavailable.xdp = 'loads on this kernel; not measured here (run the e2e bench in the guest)';
  } catch (err) {
    unavailable.xdp = `does not load on this kernel: ${(err as Error).message.split('\n')[0]!.replace(/;[^;]*:\s*$/, '')}`;
  } finally {
    await probe.stop({ detach: true }).catch(() => undefined);
  }
} finally {
  await t.destroy();
}
process.stdout.write(`BENCH-RESULT ${JSON.stringify({ rows, unavailable, count: COUNT, seconds: SECONDS })}\n`);
