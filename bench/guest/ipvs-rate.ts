/**
 * Runs INSIDE the IPVS guest (started by bench/ipvs-guest.ts): the end-to-end UDP packet-rate
 * measurement of bench/e2e.ts (bench/lib/udp-rate.ts: bounded sendmmsg flood, small datagrams,
 * several flows, counted as packets received on the real servers' interfaces), on one topology, with
 * the director forwarding by each data path in turn:
 *   xdp-native         `xdir run --dataplane xdp` on the director's veth, its program in native mode (XDP_TX)
 *   xdp-generic        the same program and maps attached in generic (skb) mode
 *   ipvs               the IPVS data path in DR mode (VIPs on the director's lo)
 *   kernel-forwarding  ip_forward with ECMP routes to the same real servers
 * Only one path at a time can bring a VIP packet to a real server: ip_forward is off except in
 * kernel-forwarding, the director's XDP program is detached outside the xdp modes, and without IPVS
 * the VIP on lo would end the packet at the director.
 * The modes run interleaved for BENCH_ROUNDS rounds. Prints one line `BENCH-RESULT {json}`.
 *
 * Usage: node ipvs-rate.mjs SENDER CLI   (SENDER: compiled bench/udp-flood.c; CLI: bundled control/cli.ts)
 * Env: BENCH_SECONDS (per measurement, default 2), BENCH_ROUNDS (5), BENCH_FLOWS (16), BENCH_PAYLOAD (18).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../control/sources/file/parse.js';
import { DirectorProcess } from '../../test/lib/director.js';
import { startIpvsDirector } from '../../test/lib/ipvs-director.js';
import { ipIn } from '../../test/lib/netns.js';
import { Topology } from '../../test/lib/topology.js';
import { benchConfigText, udpFlood, type UdpRate } from '../lib/udp-rate.js';

export type GuestMode = 'xdp-native' | 'xdp-generic' | 'ipvs' | 'kernel-forwarding';

export interface GuestBenchResult {
  kernel: string;
  cpus: number;
  rounds: number;
  flood: { seconds: number; flows: number; payload: number };
  runs: (UdpRate<GuestMode> & { round: number })[];
  /** Seconds from the guest's start of this script to the end of each phase. */
  timeline: { phase: string; s: number }[];
}

const [sender, cli] = process.argv.slice(2);
if (!sender || !cli) throw new Error('usage: ipvs-rate.mjs SENDER CLI (started by bench/ipvs-guest.ts)');
const ROUNDS = Math.max(1, Math.min(10, Number(process.env.BENCH_ROUNDS ?? 5)));
// Emulated: every process start costs seconds, hence generous slack around each bounded flood.
const flood = {
  seconds: Number(process.env.BENCH_SECONDS ?? 2), flows: Number(process.env.BENCH_FLOWS ?? 16),
  payload: Number(process.env.BENCH_PAYLOAD ?? 18), slackS: 60,
};
const started = performance.now();
const timeline: GuestBenchResult['timeline'] = [];
const mark = (phase: string) => {
  timeline.push({ phase, s: Math.round((performance.now() - started) / 100) / 10 });
  process.stderr.write(`guest bench: ${phase} done at ${timeline.at(-1)!.s} s\n`); // progress in the guest's out.log
};

/** The XDP program on the director's interface, as bpftool shows it. */
async function attachedXdp(): Promise<{ id: number; mode: string }> {
  const { stdout } = await t.exec(t.director, ['bpftool', '-j', 'net', 'show', 'dev', t.director.ifname]);
  const xdp = (JSON.parse(stdout) as { xdp?: { id: number; mode: string }[] }[])[0]?.xdp ?? [];
  if (xdp.length !== 1) throw new Error(`expected one XDP program on the director's ${t.director.ifname}, bpftool shows ${stdout.trim()}`);
  return { id: xdp[0]!.id, mode: xdp[0]!.mode };
}

const dir = mkdtempSync(join(tmpdir(), 'xdir-bench-'));
const t = await Topology.create({ clients: 1, servers: 3, directorPeer: 'none' });
const runs: GuestBenchResult['runs'] = [];
let director: DirectorProcess | null = null;
mark('topology');
try {
  const config = join(dir, 'xdir.yaml');
  writeFileSync(config, benchConfigText(t));
  const parsed = parseConfig(readFileSync(config, 'utf8'), config);
  if (!parsed.ok) throw new Error(`bench config does not parse: ${JSON.stringify(parsed.errors)}`);

  // One director for every round: under emulation a start (node, libbpf, the verifier) takes 15-50 s,
  // so instead of restarting it per mode, its loaded program is detached and re-attached in the
  // mode each measurement needs (bpftool by program id), the director's maps staying as they are.
  await t.setDirectorPeer('xdp-pass');
  director = await DirectorProcess.start(t, {
    config, cli, xdpMode: 'native', waitReady: false, pinRoot: join(t.bpffs(), 'xdir'), extraArgs: ['--dataplane', 'xdp', '--detach-on-exit'],
  });
  await director.waitForLog(/director running/, 180_000);
  const programId = (await attachedXdp()).id;
  const attachDirectorProgram = async (mode: 'xdp-native' | 'xdp-generic' | null): Promise<void> => {
    const dev = t.director.ifname;
    for (const type of ['xdpdrv', 'xdpgeneric']) await t.exec(t.director, ['bpftool', 'net', 'detach', type, 'dev', dev], { allowFail: true });
    if (!mode) return;
    await t.exec(t.director, ['bpftool', 'net', 'attach', mode === 'xdp-native' ? 'xdpdrv' : 'xdpgeneric', 'id', String(programId), 'dev', dev]);
    const now = await attachedXdp();
    const want = mode === 'xdp-native' ? 'driver' : 'generic';
    if (now.id !== programId || now.mode !== want) throw new Error(`director program ${programId} not attached in ${want} mode: ${JSON.stringify(now)}`);
  };
  await attachDirectorProgram(null);
  mark('director start');

  for (let round = 1; round <= ROUNDS; round++) {
    await t.setDirectorPeer('none');
    await t.enableKernelForwarding();
    runs.push({ ...(await udpFlood(t, sender, 'kernel-forwarding', flood)), round });
    await t.disableKernelForwarding();
    mark(`round ${round} kernel-forwarding`);

    const ipvs = await startIpvsDirector(t, join(dir, 'ipvs-services.json'));
    try {
      await ipvs.dataplane.apply(parsed.state);
      runs.push({ ...(await udpFlood(t, sender, 'ipvs', flood)), round });
    } finally {
      await ipvs.dataplane.stop({ detach: true });
      // The VIPs on the director's lo would make it deliver, not forward, in the other modes.
      await ipIn(t.director.ns, 'addr', 'del', `${t.vip4}/32`, 'dev', 'lo');
      await ipIn(t.director.ns, 'addr', 'del', `${t.vip6}/128`, 'dev', 'lo');
    }
    mark(`round ${round} ipvs`);

    for (const mode of ['xdp-native', 'xdp-generic'] as const) {
      // Native XDP_TX on a veth needs the peer's XDP queue (see DirectorPeerSetup); generic does not.
      await t.setDirectorPeer(mode === 'xdp-native' ? 'xdp-pass' : 'none');
      await attachDirectorProgram(mode);
      runs.push({ ...(await udpFlood(t, sender, mode, flood)), round });
      await attachDirectorProgram(null);
      mark(`round ${round} ${mode}`);
    }
  }
} finally {
  await director?.stop();
  await t.destroy();
  rmSync(dir, { recursive: true, force: true });
}
const result: GuestBenchResult = {
  kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), cpus: cpus().length, rounds: ROUNDS,
  flood: { seconds: flood.seconds, flows: flood.flows, payload: flood.payload }, runs, timeline,
};
process.stdout.write(`BENCH-RESULT ${JSON.stringify(result)}\n`);
