/**
 * `make demo`: the director end to end on one machine, in about a minute.
 *
 * Builds the namespace topology (client, director, three real servers on one bridge), runs
 * `xdir run` with native XDP in the director namespace from a config file, sends bounded bursts of
 * real HTTP (IPv4) and UDP (IPv6) traffic, prints what the XDP program forwarded per backend while
 * it runs, edits the config mid-run (adds a backend, drains one, makes a typo) and shows traffic
 * follow, then tears everything down.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanupStale, Topology } from '../lib/topology.js';
import { DirectorProcess, writeConfig } from '../lib/director.js';
import { httpBurst, udpBurst, type BurstResult } from '../lib/traffic.js';
import { readPinnedStats } from '../lib/pinned-stats.js';
import { sleep } from '../lib/netns.js';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);
const say = (s = '') => process.stdout.write(`${s}\n`);

type Backends = { server: string; weight?: number }[];

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('demo: needs root (network namespaces, XDP); run `sudo make demo`');
    return 1;
  }
  cleanupStale();
  const t = await Topology.create({ clients: 1, servers: 3 });
  const dir = mkdtempSync(join(tmpdir(), 'xdir-demo-'));
  const config = join(dir, 'xdir.yaml');
  let director: DirectorProcess | null = null;
  let failures = 0;
  try {
    await t.startServers();
    const names = new Map(t.servers.flatMap((s) => [[s.ipv4, s.name], [s.ipv6, s.name]] as [string, string][]));
    say(bold('xdp-director demo: direct routing with XDP (native, veth) in network namespaces'));
    say(`  client ${t.clients[0]!.ipv4} -> director ${t.director.ipv4} (XDP) -> real servers ${t.servers.map((s) => `${s.name} ${s.ipv4}`).join(', ')}`);
    say(`  VIPs ${t.vip4} and ${t.vip6}, tcp/80 (HTTP) and udp/53; replies go from the real server straight to the client`);
    say(dim(`  namespaces ${t.prefix}*, config ${config}`));

    writeConfig(config, t, [{ server: 'rs1' }, { server: 'rs2' }]);
    director = await DirectorProcess.start(t, { config, xdpMode: 'native' });
    const pinRoot = director.opts.pinRoot!;
    say(dim(`  director running (pid ${director.child.pid}), maps pinned in ${pinRoot}`));

    const d = director;
    const reconfigure = async (backends: Backends) => {
      const from = d.logs.length;
      writeConfig(config, t, backends);
      const changed = await d.waitForLog(/config changed/, 10_000, from);
      const applied = await d.waitForLog(/desired state applied/, 10_000, d.logs.indexOf(changed));
      say(dim(`  director log: config changed, ${applied.servicesUpdated} services updated`));
    };

    /** One phase: bounded traffic, with the forwarded-packet counters sampled while it runs. */
    let phaseNo = 0;
    const phase = async (title: string, edit?: Backends) => {
      phaseNo++;
      say();
      say(bold(title));
      if (edit) await reconfigure(edit);
      const cols = t.servers.map((s) => s.name.padStart(8)).join('');
      say(`  ${'forwarded pkts'.padEnd(16)}${cols}`);
      const byName = async () => {
        const s = await readPinnedStats(pinRoot);
        const out: Record<string, number> = {};
        for (const [addr, n] of Object.entries(s.backends)) {
          const name = names.get(addr);
          if (name) out[name] = (out[name] ?? 0) + n;
        }
        return out;
      };
      const start = await byName();
      const c = t.clients[0]!;
      const traffic = Promise.all([httpBurst(t, c, t.vip4, 200, { concurrency: 6 }), udpBurst(t, c, t.vip6, 200, { concurrency: 6, sourcePortBase: 10_000 + 1000 * phaseNo })]);
      let done = false;
      void traffic.finally(() => { done = true; });
      const began = Date.now();
      let last = start;
      for (let i = 0; i < 8 && !done; i++) {
        await Promise.race([sleep(500), traffic]);
        const now = await byName();
        const row = t.servers.map((s) => String((now[s.name] ?? 0) - (last[s.name] ?? 0)).padStart(8)).join('');
        say(`  ${`+${((Date.now() - began) / 1000).toFixed(1)}s`.padEnd(16)}${row}`);
        last = now;
      }
      const [http, udp] = await traffic;
      const end = await byName();
      const total = t.servers.map((s) => String((end[s.name] ?? 0) - (start[s.name] ?? 0)).padStart(8)).join('');
      say(`  ${'total'.padEnd(16)}${total}`);
      const replies = (r: BurstResult) => t.servers.map((s) => `${s.name} ${r.byServer[s.name] ?? 0}`).join(', ');
      say(`  HTTP ${t.vip4}: ${http.ok}/${http.ok + http.errors} answered (${replies(http)})`);
      say(`  UDP  ${t.vip6}: ${udp.ok}/${udp.ok + udp.errors} answered (${replies(udp)})`);
      failures += http.errors + udp.errors;
    };

    await phase('1. rs1 and rs2, equal weights: new flows split between them');
    await phase('2. config edit: add rs3 with weight 2 -> it takes about half of the new flows',
      [{ server: 'rs1' }, { server: 'rs2' }, { server: 'rs3', weight: 2 }]);
    await phase('3. config edit: drain rs1 (weight 0) -> no new flows to rs1',
      [{ server: 'rs1', weight: 0 }, { server: 'rs2' }, { server: 'rs3', weight: 2 }]);

    say();
    say(bold('4. a typo in the config: reported with its line, the running state is kept'));
    const from = d.logs.length;
    writeFileSync(config, `services:\n  - vip: ${t.vip4}\n    port: 80\n    backends: [198.18.0.300]\n`);
    await d.waitForLog(/config edit rejected/, 10_000, from);
    for (const l of d.logs.slice(from).filter((x) => x.level >= 50)) say(`  director: ${l.msg}`);
    const after = await httpBurst(t, t.clients[0]!, t.vip4, 30);
    say(`  HTTP still answered: ${after.ok}/${after.ok + after.errors} (${t.servers.map((s) => `${s.name} ${after.byServer[s.name] ?? 0}`).join(', ')})`);
    failures += after.errors;

    say();
    say(failures === 0 ? bold('demo passed: every request and datagram was answered') : bold(`demo: ${failures} requests failed`));
    return failures === 0 ? 0 : 1;
  } catch (err) {
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
    if (director) console.error(director.output().split('\n').slice(-20).join('\n'));
    return 1;
  } finally {
    await director?.stop();
    await t.destroy();
    rmSync(dir, { recursive: true, force: true });
    say(dim('torn down: namespaces, bpffs mount and config removed'));
  }
}

main().then((code) => process.exit(code));
