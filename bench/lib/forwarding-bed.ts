/**
 * The test bed bench/e2e.ts measures forwarding on: the ordinary topology (test/lib/topology.ts)
 * plus what makes the director's CPU, and not the sender, the thing a UDP flood measures. Applied
 * once and identically for every data path compared (XDP native, XDP generic, kernel forwarding):
 *
 * - The director's receive processing runs on its own CPU. Its eth0 gets veth NAPI (GRO on; the
 *   bridge port feeding it has TSO off, else veth skips NAPI for its skbs) in threaded mode, and that
 *   kernel thread is pinned to DIRECTOR_CPU at SCHED_FIFO priority: the place a NIC queue's softirq
 *   has on a real director, ahead of user space. Everything the director's forwarding triggers in
 *   the same softirq context (the switch port's receive, the bridge, the real server's receive) runs
 *   there too, for every path alike; handing it to the other CPU was tried and cost more per packet
 *   (cross-CPU wake-ups on this VM), see the results note.
 * - The sender is pinned to the other CPU (see forward-rate.ts).
 * - The switch namespace is a plain L2 switch: no bridge netfilter (its iptables hooks are on by
 *   default per namespace and were a tenth of the director CPU's time).
 * - The real servers drop the flood at tc ingress (bench/lib/sink-drop.bpf.c), after their
 *   interface counted it: no UDP socket lookup and ICMP port-unreachable route per packet.
 * - The client's bridge port runs an XDP_PASS program. The generator (bench/lib/flood-gen.bpf.c)
 *   redirects its frames into the client's veth, which hands them to the peer's XDP queue, and that
 *   exists only while the peer has a program. The frames then travel as skbs built on page buffers
 *   with XDP headroom, which is how a NIC's RX ring hands frames to XDP; a socket's skbs are not, and
 *   a veth's native XDP copies each of those into a fresh page first (a third of the director CPU
 *   when it was tried with a raw-socket sender). Same for every path.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Topology } from '../../test/lib/topology.js';
import { xdpPassObject } from '../../test/lib/topology.js';
import { ipIn, nsRun, run, sleep, sysctlIn } from '../../test/lib/netns.js';
import { compileBpf } from '../../test/lib/bpf-compile.js';

/** The CPU the director's receive thread owns; the sender gets SENDER_CPU. */
export const DIRECTOR_CPU = 1;
export const SENDER_CPU = 0;
/** SCHED_FIFO priority of the director's receive thread (the kernel's own threaded-IRQ default). */
const RX_THREAD_PRIORITY = 50;

/** Compiles bench/lib/NAME.bpf.c into `dir`. */
async function bpfObject(dir: string, name: string): Promise<string> {
  const src = fileURLToPath(new URL(`./${name}.bpf.c`, import.meta.url));
  mkdirSync(dir, { recursive: true });
  return compileBpf(src, join(dir, `${name}.bpf.o`));
}

/** The pinned packet generator of bench/udp-flood.c's xdp mode (bench/lib/flood-gen.bpf.c). */
export interface FloodGenerator {
  prog: string;
  cfgMap: string;
}

/**
 * Loads the generator into the topology's private bpffs (gone with the topology). The test run
 * that drives it is a syscall in the client's namespace, so the pins must be visible there: the
 * topology's bpffs is (the host's /sys/fs/bpf is not, under `ip netns exec`).
 */
async function loadGenerator(t: Topology, workDir: string): Promise<FloodGenerator> {
  const obj = await bpfObject(workDir, 'flood-gen');
  const prog = join(t.bpffs(), 'flood-gen-prog');
  const maps = join(t.bpffs(), 'flood-gen-maps');
  await run('bpftool', ['prog', 'load', obj, prog, 'type', 'xdp', 'pinmaps', maps]);
  return { prog, cfgMap: join(maps, 'flood_cfg') };
}

/**
 * Everything except the receive thread (that one is re-checked before every measurement).
 * Returns the loaded packet generator.
 */
export async function prepareBed(t: Topology, workDir: string): Promise<FloodGenerator> {
  if ((await import('node:os')).cpus().length < 2) throw new Error('bench-e2e needs 2 CPUs: one for the sender, one for the director');
  await sysctlIn(t.switchNs, {
    'net.bridge.bridge-nf-call-iptables': 0, 'net.bridge.bridge-nf-call-ip6tables': 0, 'net.bridge.bridge-nf-call-arptables': 0,
  });
  const sink = await bpfObject(workDir, 'sink-drop');
  for (const rs of t.servers) {
    await nsRun(rs.ns, ['tc', 'qdisc', 'add', 'dev', rs.ifname, 'clsact']);
    await nsRun(rs.ns, ['tc', 'filter', 'add', 'dev', rs.ifname, 'ingress', 'bpf', 'da', 'obj', sink, 'sec', 'tc']);
  }
  for (const c of t.clients) await ipIn(t.switchNs, 'link', 'set', 'dev', c.peer, 'xdpdrv', 'obj', await xdpPassObject(), 'sec', 'xdp');
  await nsRun(t.switchNs, ['ethtool', '-K', t.director.peer, 'tso', 'off']);
  await nsRun(t.director.ns, ['ethtool', '-K', t.director.ifname, 'gro', 'on']);
  return loadGenerator(t, workDir);
}

/** Pids of the kernel threads named napi/<dev>-<napi id> (any namespace: names are all /proc shows). */
function napiThreads(dev: string): Set<number> {
  const pids = new Set<number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').startsWith(`napi/${dev}-`)) pids.add(Number(d));
    } catch { /* exited meanwhile */ }
  }
  return pids;
}

/**
 * (Re)creates the director's threaded NAPI kernel thread and pins it: threaded off and on again,
 * and the one new `napi/eth0-*` thread is ours. Call after anything that may have replaced the
 * NAPI instance (attaching or detaching XDP). Returns the thread's pid.
 */
export async function pinDirectorRx(t: Topology): Promise<number> {
  const dev = t.director.ifname;
  const threaded = (v: 0 | 1) => nsRun(t.director.ns, ['sh', '-c', `echo ${v} > /sys/class/net/${dev}/threaded`]);
  await threaded(0);
  await sleep(100);
  const before = napiThreads(dev);
  await threaded(1);
  let fresh: number[] = [];
  for (let i = 0; i < 20 && fresh.length === 0; i++) {
    await sleep(50);
    fresh = [...napiThreads(dev)].filter((p) => !before.has(p));
  }
  if (fresh.length !== 1) {
    throw new Error(`expected one new napi/${dev}-* kernel thread for the director, found ${fresh.length}; `
      + 'is another topology switching threaded NAPI on at the same time? Run benches under /tmp/xdir-heavy.lock');
  }
  const pid = fresh[0]!;
  await run('taskset', ['-pc', String(DIRECTOR_CPU), String(pid)]);
  await run('chrt', ['-f', '-p', String(RX_THREAD_PRIORITY), String(pid)]);
  return pid;
}

/** CPU time (ns) a thread has run so far (/proc/PID/schedstat, first field). */
export function threadRuntimeNs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}
