/**
 * A direct-routing test network built from network namespaces, shared by the end-to-end tests,
 * the demo and the benchmarks:
 *
 *   clients (c1..)  director (dir)  real servers (rs1..)
 *        eth0            eth0            eth0  + VIPs on lo
 *          \               |              /
 *           p-c1         p-dir        p-rs1           <- veth peers, ports of br0
 *             `-------- br0 in the "switch" namespace (sw) ---------'
 *
 * One L2 segment, 198.18.0.0/24 and fd00:18::/64; VIPs 198.19.0.10 and fd00:19::10. Clients route the
 * VIPs via the director; real servers hold the VIPs on `lo` and never answer ARP/NDP for them, exactly
 * like LVS-DR real servers, so only the director attracts VIP traffic and replies go straight back.
 * The bridge lives in its own namespace: nothing is ever created in the host's network namespace.
 *
 * Every namespace name starts with a unique prefix `xd-<pid>-<random>-`. Teardown happens in
 * `destroy()`, at process exit, on SIGINT/SIGTERM, and for crashed runs in `cleanupStale()` (any
 * prefix whose pid is dead), so a failing test never leaves namespaces behind.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as readline from 'node:readline';
import {
  deleteNamespaceSync, ipIn, killStarted, listNamespacesSync, nsRun, nsSpawn, run, startedChildren, sysctlIn, waitExit,
  type ExecOptions, type ExecResult,
} from './netns.js';
import { compileBpf } from './bpf-compile.js';

export const VIP4 = '198.19.0.10';
export const VIP6 = 'fd00:19::10';
const SUBNET4 = '198.18.0';
const SUBNET6 = 'fd00:18:';
/** Per-topology bpffs mounts live here (the host's /sys/fs/bpf is not visible under `ip netns exec`). */
const RUN_DIR = '/run/xdir-test';
const SERVERS_DIR = fileURLToPath(new URL('./servers/', import.meta.url));

export type Role = 'client' | 'director' | 'server';

export interface NetNode {
  role: Role;
  /** Short name inside the topology: `c1`, `dir`, `rs1`. The HTTP/UDP servers answer with it. */
  name: string;
  /** Network namespace name (prefixed). */
  ns: string;
  /** The node's interface on the segment (inside its namespace). */
  ifname: 'eth0';
  /** Its peer, a port of the bridge in the switch namespace. */
  peer: string;
  ipv4: string;
  ipv6: string;
  mac: string;
}

/**
 * What the director's bridge port (its veth peer) gets. A veth transmits an XDP_TX frame by putting
 * it on the peer's XDP receive queue, which exists only while the peer has an XDP program (or, on
 * some kernels, GRO enabled); otherwise the frame is dropped. On this project's kernel (6.18) GRO
 * on the peer was not enough (frames vanished without a counter), so the default is `xdp-pass`: a
 * minimal XDP_PASS program on the peer. `gro` and `none` exist to show the difference.
 */
export type DirectorPeerSetup = 'xdp-pass' | 'gro' | 'none';

export interface TopologyOptions {
  clients?: number;
  servers?: number;
  /** Namespace name prefix; default `xd-<pid>-<random>-`. */
  prefix?: string;
  directorPeer?: DirectorPeerSetup;
}

export interface ServerProcesses {
  /** HTTP port(s), default [80]. */
  http?: number[];
  /** UDP echo port, default 53; 0 = none. */
  udp?: number;
}

export class Topology {
  readonly switchNs: string;
  readonly director: NetNode;
  readonly clients: NetNode[] = [];
  readonly servers: NetNode[] = [];
  readonly vip4 = VIP4;
  readonly vip6 = VIP6;
  private bpffsDir: string | null = null;
  private destroyed = false;
  private readonly exitHook = () => this.destroySync();

  private constructor(readonly prefix: string, clients: number, servers: number) {
    this.switchNs = `${prefix}sw`;
    const node = (role: Role, name: string, host: number): NetNode => ({
      role, name, ns: `${prefix}${name}`, ifname: 'eth0', peer: `p-${name}`,
      ipv4: `${SUBNET4}.${host}`, ipv6: `${SUBNET6}:${host}`,
      mac: `02:00:00:00:00:${String(host).padStart(2, "0")}`,
    });
    this.director = node('director', 'dir', 1);
    for (let i = 1; i <= clients; i++) this.clients.push(node('client', `c${i}`, 10 + i));
    for (let i = 1; i <= servers; i++) this.servers.push(node('server', `rs${i}`, 20 + i));
  }

  get nodes(): NetNode[] {
    return [this.director, ...this.clients, ...this.servers];
  }

  /** Builds the whole network; on any failure it removes what it built and rethrows. */
  static async create(opts: TopologyOptions = {}): Promise<Topology> {
    const prefix = opts.prefix ?? newPrefix();
    const t = new Topology(prefix, opts.clients ?? 1, opts.servers ?? 3);
    registerExitCleanup(t.exitHook);
    try {
      await t.build(opts.directorPeer ?? 'xdp-pass');
    } catch (err) {
      await t.destroy();
      throw err;
    }
    return t;
  }

  private async build(peerSetup: DirectorPeerSetup): Promise<void> {
    const sw = this.switchNs;
    await run('ip', ['netns', 'add', sw]);
    await sysctlIn(sw, { 'net.ipv6.conf.all.disable_ipv6': 1, 'net.ipv6.conf.default.disable_ipv6': 1 });
    // No STP (ports forward at once) and no multicast snooping (NDP multicast is simply flooded).
    await ipIn(sw, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0');
    await ipIn(sw, 'link', 'set', 'br0', 'up');
    for (const n of this.nodes) {
      await run('ip', ['netns', 'add', n.ns]);
      await ipIn(sw, 'link', 'add', n.peer, 'type', 'veth', 'peer', 'name', n.ifname, 'netns', n.ns);
      await ipIn(sw, 'link', 'set', n.peer, 'master', 'br0', 'up');
      await sysctlIn(n.ns, {
        'net.ipv4.conf.all.rp_filter': 0, 'net.ipv4.conf.default.rp_filter': 0,
        'net.ipv6.conf.all.accept_dad': 0, 'net.ipv6.conf.default.accept_dad': 0,
        // Kernel forwarding (the benchmark baseline) makes the director send ICMPv6 redirects, which
        // have no off switch on the sender; a redirected client would bypass the director mid-flow.
        'net.ipv4.conf.all.accept_redirects': 0, 'net.ipv4.conf.default.accept_redirects': 0,
        'net.ipv6.conf.all.accept_redirects': 0, 'net.ipv6.conf.default.accept_redirects': 0,
      });
      await ipIn(n.ns, 'link', 'set', 'lo', 'up');
      await ipIn(n.ns, 'link', 'set', n.ifname, 'address', n.mac, 'up');
      await ipIn(n.ns, 'addr', 'add', `${n.ipv4}/24`, 'dev', n.ifname);
      await ipIn(n.ns, 'addr', 'add', `${n.ipv6}/64`, 'dev', n.ifname, 'nodad');
    }
    for (const rs of this.servers) {
      // An LVS-DR real server: the VIPs on lo (accepted, never announced). arp_ignore=1 answers ARP
      // only for addresses on the asking interface; arp_announce=2 never uses the VIP as an ARP
      // source. IPv6 needs no switch: NDP answers only for addresses on the interface the
      // solicitation came in on (test/e2e checks that a real server stays silent for the VIP).
      await sysctlIn(rs.ns, {
        'net.ipv4.conf.all.arp_ignore': 1, 'net.ipv4.conf.all.arp_announce': 2,
        'net.ipv4.conf.eth0.arp_ignore': 1, 'net.ipv4.conf.eth0.arp_announce': 2,
      });
      await ipIn(rs.ns, 'addr', 'add', `${VIP4}/32`, 'dev', 'lo');
      await ipIn(rs.ns, 'addr', 'add', `${VIP6}/128`, 'dev', 'lo');
    }
    for (const c of this.clients) {
      // A veth leaves TCP/UDP checksums to "hardware" (CHECKSUM_PARTIAL) that never exists; a native
      // XDP program turns the skb into a bare frame, XDP_TX sends it on, and the real server
      // drops it for a bad checksum. On a wire the NIC fills checksums in, so clients here do it in
      // software, as any sender behind a real NIC effectively does.
      await nsRun(c.ns, ['ethtool', '-K', c.ifname, 'tx', 'off']);
      await ipIn(c.ns, 'route', 'add', `${VIP4}/32`, 'via', this.director.ipv4);
      await ipIn(c.ns, '-6', 'route', 'add', `${VIP6}/128`, 'via', this.director.ipv6);
    }
    // The director forwards nothing itself unless a benchmark turns kernel forwarding on; it never
    // sends ICMP redirects (clients and servers share its segment, so it would otherwise).
    await sysctlIn(this.director.ns, {
      'net.ipv4.conf.all.send_redirects': 0, 'net.ipv4.conf.eth0.send_redirects': 0,
    });
    await this.setDirectorPeer(peerSetup);
  }

  /** Prepares the director's bridge port for native XDP_TX (see DirectorPeerSetup). */
  async setDirectorPeer(setup: DirectorPeerSetup): Promise<void> {
    const peer = this.director.peer;
    if (setup === 'xdp-pass') {
      await ipIn(this.switchNs, 'link', 'set', 'dev', peer, 'xdpdrv', 'obj', await xdpPassObject(), 'sec', 'xdp');
    } else {
      await ipIn(this.switchNs, 'link', 'set', 'dev', peer, 'xdpdrv', 'off');
      await nsRun(this.switchNs, ['ethtool', '-K', peer, 'gro', setup === 'gro' ? 'on' : 'off']);
    }
  }

  /**
   * Makes the director forward VIP traffic with the kernel's own IP forwarding (no XDP): ECMP routes
   * to every real server, hashed on the L4 five-tuple, so flows spread over the same servers the XDP
   * path uses. The baseline of the benchmark.
   */
  async enableKernelForwarding(servers: NetNode[] = this.servers): Promise<void> {
    const d = this.director.ns;
    await sysctlIn(d, {
      'net.ipv4.ip_forward': 1, 'net.ipv6.conf.all.forwarding': 1,
      'net.ipv4.fib_multipath_hash_policy': 1, 'net.ipv6.fib_multipath_hash_policy': 1,
    });
    const hops = (fam: 4 | 6) => servers.flatMap((s) => ['nexthop', 'via', fam === 4 ? s.ipv4 : s.ipv6, 'weight', '1']);
    await ipIn(d, 'route', 'replace', `${VIP4}/32`, ...hops(4));
    await ipIn(d, '-6', 'route', 'replace', `${VIP6}/128`, ...hops(6));
    // Right after IPv6 forwarding is switched on, connections through it were reset for about a
    // second on an idle machine (root cause not found; DAD is off, next hops resolved). This is the
    // baseline path of tests and benchmarks only, so it simply settles before any traffic.
    await new Promise((r) => setTimeout(r, 2000));
  }

  async disableKernelForwarding(): Promise<void> {
    const d = this.director.ns;
    await sysctlIn(d, { 'net.ipv4.ip_forward': 0, 'net.ipv6.conf.all.forwarding': 0 });
    await run('ip', ['-n', d, 'route', 'del', `${VIP4}/32`], { allowFail: true });
    await run('ip', ['-n', d, '-6', 'route', 'del', `${VIP6}/128`], { allowFail: true });
  }

  /** A bpffs instance private to this topology, for the director's pinned maps (`--pin-root`). */
  bpffs(): string {
    if (this.bpffsDir) return this.bpffsDir;
    const dir = join(RUN_DIR, this.prefix.replace(/-$/, ''), 'bpffs');
    mkdirSync(dir, { recursive: true });
    execFileSync('mount', ['-t', 'bpf', 'bpf', dir]);
    this.bpffsDir = dir;
    return dir;
  }

  exec(node: NetNode | string, args: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return nsRun(typeof node === 'string' ? node : node.ns, args, opts);
  }

  spawn(node: NetNode | string, args: readonly string[], opts?: Parameters<typeof nsSpawn>[2]): ChildProcess {
    return nsSpawn(typeof node === 'string' ? node : node.ns, args, opts);
  }

  /** Starts the name-answering HTTP server(s) and UDP echo on every real server; resolves when all listen. */
  async startServers(what: ServerProcesses = {}): Promise<void> {
    const http = what.http ?? [80];
    const udp = what.udp ?? 53;
    const waits: Promise<void>[] = [];
    for (const rs of this.servers) {
      const h = this.spawn(rs, [process.execPath, join(SERVERS_DIR, 'http-name.mjs'), rs.name, ...http.map(String)]);
      waits.push(waitForLines(h, http.length, `HTTP server on ${rs.name}`));
      if (udp) {
        const u = this.spawn(rs, [process.execPath, join(SERVERS_DIR, 'udp-name.mjs'), rs.name, String(udp), VIP4, VIP6]);
        waits.push(waitForLines(u, 2, `UDP server on ${rs.name}`));
      }
    }
    await Promise.all(waits);
  }

  /** Kills everything started in this topology's namespaces, deletes them and the bpffs mount. */
  async destroy(): Promise<void> {
    const mine = (c: ChildProcess) => c.spawnargs.some((a) => a.startsWith(this.prefix));
    const pending = [...liveChildren(mine)].map((c) => waitExit(c, 2000));
    killStarted('SIGKILL', mine);
    await Promise.all(pending);
    this.destroySync();
  }

  /** Synchronous teardown (exit handlers cannot wait). Idempotent. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    killStarted('SIGKILL', (c) => c.spawnargs.some((a) => a.startsWith(this.prefix)));
    removePrefix(this.prefix);
    unregisterExitCleanup(this.exitHook);
  }
}

/** Builds a topology, runs `fn`, and always tears the topology down. */
export async function withTopology<T>(opts: TopologyOptions, fn: (t: Topology) => Promise<T>): Promise<T> {
  const t = await Topology.create(opts);
  try {
    return await fn(t);
  } finally {
    await t.destroy();
  }
}

/** Compiles test/lib/xdp-pass.bpf.c once per process (clang is a build prerequisite). */
let passObject: Promise<string> | null = null;
export function xdpPassObject(): Promise<string> {
  passObject ??= (async () => {
    const src = fileURLToPath(new URL('./xdp-pass.bpf.c', import.meta.url));
    mkdirSync(RUN_DIR, { recursive: true });
    const out = join(RUN_DIR, `xdp-pass-${process.pid}.o`);
    await compileBpf(src, out);
    process.once('exit', () => rmSync(out, { force: true }));
    return out;
  })();
  return passObject;
}

function newPrefix(): string {
  return `xd-${process.pid}-${Math.random().toString(36).slice(2, 6)}-`;
}

const PREFIX_RE = /^xd-(\d+)-[0-9a-z]+-/;

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

function removePrefix(prefix: string): void {
  for (const ns of listNamespacesSync()) if (ns.startsWith(prefix)) deleteNamespaceSync(ns);
  const dir = join(RUN_DIR, prefix.replace(/-$/, ''));
  if (existsSync(dir)) {
    try { execFileSync('umount', [join(dir, 'bpffs')], { stdio: 'ignore' }); } catch { /* not mounted */ }
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Removes what earlier runs left behind. With a prefix: every namespace and bpffs mount of that
 * prefix. Without: those of every `xd-<pid>-...` prefix whose pid is no longer alive (a run that was
 * killed before its own cleanup could run), leaving concurrent runs alone.
 */
export function cleanupStale(prefix?: string): string[] {
  const prefixes = new Set<string>();
  const consider = (name: string) => {
    const m = PREFIX_RE.exec(name);
    if (prefix ? name.startsWith(prefix) : m && !alive(Number(m[1]))) prefixes.add(prefix ?? m![0]);
  };
  listNamespacesSync().forEach(consider);
  if (existsSync(RUN_DIR)) readdirSync(RUN_DIR).forEach((d) => consider(`${d}-`));
  for (const p of prefixes) removePrefix(p);
  if (existsSync(RUN_DIR)) {
    for (const f of readdirSync(RUN_DIR)) {
      const m = /^xdp-pass-(\d+)\.o$/.exec(f);
      if (m && !alive(Number(m[1]))) rmSync(join(RUN_DIR, f), { force: true });
    }
  }
  return [...prefixes];
}

const exitHooks = new Set<() => void>();
let hooksInstalled = false;

function registerExitCleanup(hook: () => void): void {
  exitHooks.add(hook);
  if (hooksInstalled) return;
  hooksInstalled = true;
  const runHooks = () => { for (const h of [...exitHooks]) { try { h(); } catch { /* best effort */ } } };
  process.on('exit', runHooks);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      runHooks();
      process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const)[sig]);
    });
  }
}

function unregisterExitCleanup(hook: () => void): void {
  exitHooks.delete(hook);
}

function* liveChildren(pred: (c: ChildProcess) => boolean): Iterable<ChildProcess> {
  for (const c of startedChildren()) if (pred(c) && c.exitCode === null && c.signalCode === null) yield c;
}

/** Resolves once `child` has printed `n` lines on stdout (its "ready" lines); rejects if it exits first. */
export function waitForLines(child: ChildProcess, n: number, what: string, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    let stderr = '';
    child.stderr?.on('data', (d) => { stderr += d; });
    const rl = readline.createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`${what} not ready after ${timeoutMs} ms: ${stderr.trim()}`)), timeoutMs);
    rl.on('line', () => { if (++seen === n) { clearTimeout(timer); resolve(); } });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (seen < n) reject(new Error(`${what} exited (${code}) before it was ready: ${stderr.trim()}`));
    });
  });
}
