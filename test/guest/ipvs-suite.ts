/**
 * The IPVS data path against a kernel that has IPVS. Runs INSIDE the guest VM (test/guest/
 * run-in-guest.sh), started by test/dataplane/ipvs-guest.test.ts; `ipvsadm` is the independent
 * check of what the director programmed. Everything happens in network namespaces this file creates.
 *
 * 1-4: programming, in a namespace `prog` with a veth (DR destinations need a route to them).
 * 5:   real TCP and UDP through IPVS DR on the shared test topology (client, director, 2 real
 *      servers on a bridge, VIPs on the real servers' lo), replies straight back to the client.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Dataplane } from '../../control/dataplane/dataplane.js';
import { createDataplane, type SelectedDataplane } from '../../control/dataplane/select.js';
import type { DesiredState, VirtualService } from '../../control/model/types.js';
import { deleteNamespaceSync, ipIn, nsRun, run, waitFor } from '../lib/netns.js';
import { startIpvsDirector } from '../lib/ipvs-director.js';
import { Topology } from '../lib/topology.js';
import { httpBurst, udpBurst } from '../lib/traffic.js';
import { listServices, readStats, type IpvsadmService } from './ipvsadm.js';

const PROG = `xg-${process.pid}-prog`;
const OWNERSHIP = `/run/xdir-guest-${process.pid}/ipvs-services.json`;

if (!existsSync('/proc/net/ip_vs')) {
  throw new Error('this suite runs inside the IPVS guest (test/guest/run-in-guest.sh); this kernel has no IPVS');
}
let progDeleted = false;
function deleteProg(): void {
  if (!progDeleted) deleteNamespaceSync(PROG);
  progDeleted = true;
}
process.on('exit', deleteProg);

function svc(vip: string, port: number, protocol: 'tcp' | 'udp', scheduler: VirtualService['scheduler'], persistence: number,
  backends: [string, number][]): VirtualService {
  return { vip, port, protocol, scheduler, persistence, backends: backends.map(([address, weight]) => ({ address, weight })) };
}

/** What `ipvsadm -Ln` must show for a service, in the parser's terms. */
function expectService(key: string, scheduler: string, persistent: number, dests: [string, number, number][],
  extraFlags = ''): Pick<IpvsadmService, 'key' | 'scheduler' | 'persistent'> & { flags: string; dests: { address: string; port: number; forward: string; weight: number }[] } {
  const flags = [persistent ? `persistent ${persistent}` : '', extraFlags].filter(Boolean).join(' ');
  return { key, scheduler, persistent, flags, dests: dests.map(([address, port, weight]) => ({ address, port, forward: 'Route', weight })) };
}

function comparable(list: IpvsadmService[]) {
  return list
    .map((s) => ({ key: s.key, scheduler: s.scheduler, persistent: s.persistent, flags: s.flags,
      dests: s.dests.map(({ address, port, forward, weight }) => ({ address, port, forward, weight }))
        .sort((a, b) => a.address.localeCompare(b.address)) }))
    .sort((a, b) => a.key.localeCompare(b.key));
}

const A = svc('198.18.1.10', 80, 'tcp', 'mh', 0, [['198.18.0.11', 1], ['198.18.0.12', 1], ['198.18.0.13', 0]]);
const B = svc('198.18.1.10', 53, 'udp', 'wrr', 0, [['198.18.0.11', 3], ['198.18.0.12', 1]]);
const C = svc('fd00:19::10', 443, 'tcp', 'sh', 300, [['fd00:18::11', 1], ['fd00:18::12', 2]]);
const D = svc('198.18.1.20', 0, 'tcp', 'lc', 0, [['198.18.0.11', 1]]);
const E = svc('198.18.1.30', 8080, 'tcp', 'wlc', 60, [['198.18.0.14', 5]]);
const FOREIGN = 'tcp/198.18.1.99:8080';

const firstConfig: DesiredState = { services: [A, B, C, D, E] };
const firstExpected = [
  expectService('tcp/198.18.1.10:80', 'mh', 0, [['198.18.0.11', 80, 1], ['198.18.0.12', 80, 1], ['198.18.0.13', 80, 0]], '(mh-port)'),
  expectService('udp/198.18.1.10:53', 'wrr', 0, [['198.18.0.11', 53, 3], ['198.18.0.12', 53, 1]]),
  expectService('tcp/[fd00:19::10]:443', 'sh', 300, [['fd00:18::11', 443, 1], ['fd00:18::12', 443, 2]]),
  // All ports: IPVS schedules port 0 only for persistent services, so 1 s persistence is added.
  expectService('tcp/198.18.1.20:*', 'lc', 1, [['198.18.0.11', 0, 1]]),
  expectService('tcp/198.18.1.30:8080', 'wlc', 60, [['198.18.0.14', 8080, 5]]),
  expectService(FOREIGN, 'rr', 0, [['198.18.0.50', 8080, 7]]),
];

let selected: SelectedDataplane | null = null;
const dp = (): Dataplane => selected!.dataplane;

test.before(async () => {
  await run('ip', ['netns', 'add', PROG]);
  await ipIn(PROG, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  await ipIn(PROG, 'addr', 'add', '198.18.0.1/24', 'dev', 'v0');
  await ipIn(PROG, 'addr', 'add', 'fd00:18::1/64', 'dev', 'v0', 'nodad');
  await ipIn(PROG, 'link', 'set', 'v0', 'up');
  await ipIn(PROG, 'link', 'set', 'v1', 'up');
  // Somebody else's service, there before the director starts.
  await nsRun(PROG, ['ipvsadm', '-A', '-t', '198.18.1.99:8080', '-s', 'rr']);
  await nsRun(PROG, ['ipvsadm', '-a', '-t', '198.18.1.99:8080', '-r', '198.18.0.50:8080', '-g', '-w', '7']);
});

test.after(async () => {
  await selected?.dataplane.stop().catch(() => undefined);
  deleteProg();
});

test('--dataplane=ipvs programs several VIPs: ipvsadm -Ln shows exactly them (Route, schedulers, weights)', async () => {
  selected = await createDataplane({ dataplane: 'ipvs', ipvs: { netns: PROG, ownershipFile: OWNERSHIP } });
  assert.is(dp().kind, 'ipvs');
  assert.is(selected.fallbackReason, null);
  const result = await dp().apply(firstConfig);
  assert.equal(result, { servicesAdded: 5, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 0 });
  assert.equal(comparable(await listServices(PROG)), comparable(firstExpected as IpvsadmService[]));
  // The director's own view agrees, and names draining backends.
  const a = dp().services().find((s) => s.key === 'tcp/198.18.1.10:80')!;
  assert.equal(a.backends.map((b) => [b.address, b.state]), [['198.18.0.11', 'active'], ['198.18.0.12', 'active'], ['198.18.0.13', 'draining']]);
  assert.is(dp().services().length, 5, 'the foreign service is not listed as ours');
});

test('edits and deletions show up as exactly those diffs; the foreign service and a bad entry stay as they were', async () => {
  const before = comparable(await listServices(PROG));
  const A2 = svc('198.18.1.10', 80, 'tcp', 'rr', 0, [['198.18.0.11', 1], ['198.18.0.12', 0], ['198.18.0.15', 4]]);
  const D2 = svc('198.18.1.20', 0, 'tcp', 'lc', 30, [['198.18.0.11', 1]]);
  // C's new definition is invalid (an IPv4 backend on an IPv6 VIP): C keeps running as it was.
  const Cbad = svc('fd00:19::10', 443, 'tcp', 'sh', 300, [['198.18.0.11', 1]]);
  // The config also claims the foreign service: reported, never touched.
  const F = svc('198.18.1.99', 8080, 'tcp', 'mh', 0, [['198.18.0.11', 1]]);
  const result = await dp().apply({ services: [A2, Cbad, D2, E, F] });
  assert.equal(result, { servicesAdded: 0, servicesUpdated: 2, servicesRemoved: 1, servicesUnchanged: 2 });

  const after = comparable(await listServices(PROG));
  const byKey = (l: typeof after) => new Map(l.map((s) => [s.key, s]));
  const [b, a] = [byKey(before), byKey(after)];
  const changed = [...new Set([...b.keys(), ...a.keys()])].filter((k) => JSON.stringify(b.get(k)) !== JSON.stringify(a.get(k))).sort();
  assert.equal(changed, ['tcp/198.18.1.10:80', 'tcp/198.18.1.20:*', 'udp/198.18.1.10:53']);
  assert.equal(a.get('tcp/198.18.1.10:80'), comparable([expectService('tcp/198.18.1.10:80', 'rr', 0,
    [['198.18.0.11', 80, 1], ['198.18.0.12', 80, 0], ['198.18.0.15', 80, 4]]) as IpvsadmService])[0]);
  assert.is(a.get('tcp/198.18.1.20:*')!.persistent, 30);
  assert.not.ok(a.has('udp/198.18.1.10:53'), 'the deleted service is gone');
  assert.equal(a.get(FOREIGN), b.get(FOREIGN), 'the foreign service is untouched');
  assert.equal(a.get('tcp/[fd00:19::10]:443'), b.get('tcp/[fd00:19::10]:443'), 'the service with bad input keeps its last good state');
});

test('restart adopts the state without flushing: same services, nothing to do', async () => {
  const before = comparable(await listServices(PROG));
  const statusBefore = dp().services();
  await dp().stop(); // no detach: a restart must not drop traffic
  assert.equal(comparable(await listServices(PROG)), before, 'stop() without detach leaves IPVS as it is');
  selected = await createDataplane({ dataplane: 'ipvs', ipvs: { netns: PROG, ownershipFile: OWNERSHIP } });
  assert.equal(dp().services(), statusBefore, 'the restarted data path adopted every owned service');
  const A2 = svc('198.18.1.10', 80, 'tcp', 'rr', 0, [['198.18.0.11', 1], ['198.18.0.12', 0], ['198.18.0.15', 4]]);
  const D2 = svc('198.18.1.20', 0, 'tcp', 'lc', 30, [['198.18.0.11', 1]]);
  const result = await dp().apply({ services: [A2, C, D2, E] });
  assert.equal(result, { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 4 });
  assert.equal(comparable(await listServices(PROG)), before);
});

test('--dataplane=auto with XDP failing (no such interface) falls back to IPVS and says why', async () => {
  await dp().stop();
  selected = null;
  // A real bpffs for the pinned maps, so what fails is XDP itself, not a missing mount.
  const bpffs = `/run/xdir-guest-${process.pid}/bpffs`;
  mkdirSync(bpffs, { recursive: true });
  await run('mount', ['-t', 'bpf', 'bpf', bpffs]);
  const auto = await createDataplane({
    dataplane: 'auto',
    xdp: { interface: 'xdir-missing0', pinRoot: join(bpffs, 'xdir') },
    ipvs: { netns: PROG, ownershipFile: OWNERSHIP },
  });
  selected = auto;
  assert.is(auto.dataplane.kind, 'ipvs');
  assert.match(String(auto.fallbackReason), /^XDP could not start: /);
  console.log(`      fallbackReason: ${auto.fallbackReason}`);
  assert.is(auto.dataplane.services().length, 4, 'the fallback adopted the owned services');
});

test('stop with detach removes only the director\'s services', async () => {
  await dp().stop({ detach: true });
  selected = null;
  const left = await listServices(PROG);
  assert.equal(left.map((s) => s.key), [FOREIGN]);
  assert.equal(JSON.parse(readFileSync(OWNERSHIP, 'utf8')).services, []);
});

test('DR topology: TCP and UDP over IPv4 and IPv6 reach both real servers; replies go straight to the client', async () => {
  const t = await Topology.create({ clients: 1, servers: 2, directorPeer: 'none' });
  let topo: SelectedDataplane | null = null;
  try {
    const dir = t.director;
    const [c1] = t.clients as [typeof t.clients[0]];
    const own = `/run/xdir-guest-${process.pid}/topo-ipvs.json`;
    const rs = t.servers.map((s) => s.ipv4);
    const rs6 = t.servers.map((s) => s.ipv6);
    const config: DesiredState = {
      services: [
        svc(t.vip4, 80, 'tcp', 'mh', 0, rs.map((a) => [a, 1])),
        svc(t.vip4, 53, 'udp', 'mh', 0, rs.map((a) => [a, 1])),
        svc(t.vip6, 80, 'tcp', 'mh', 0, rs6.map((a) => [a, 1])),
        svc(t.vip6, 53, 'udp', 'mh', 0, rs6.map((a) => [a, 1])),
      ],
    };
    topo = await startIpvsDirector(t, own);
    assert.equal(await topo.dataplane.apply(config), { servicesAdded: 4, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 0 });
    await t.startServers({ http: [80], udp: 53 });

    // Every frame the client receives from a VIP, with its link-layer source.
    const capture = t.spawn(c1, ['timeout', '120', 'tcpdump', '-i', 'eth0', '-e', '-n', '-l', '-Q', 'in',
      `src host ${t.vip4} or src host ${t.vip6}`]);
    let captured = '';
    capture.stdout!.on('data', (d) => { captured += d; });
    let capErr = '';
    capture.stderr!.on('data', (d) => { capErr += d; });
    await waitFor('tcpdump to listen', () => /listening on/.test(capErr), 30_000, 100);

    const burst = (mode: 'http' | 'udp', host: string) =>
      (mode === 'http' ? httpBurst : udpBurst)(t, c1, host, 16, { concurrency: 4 });
    for (const [mode, host] of [['http', t.vip4], ['udp', t.vip4], ['http', t.vip6], ['udp', t.vip6]] as const) {
      const r = await burst(mode, host);
      assert.is(r.errors, 0, `${mode} ${host}: ${r.errorSamples.join('; ')}`);
      assert.is(r.ok, 16);
      assert.equal(Object.keys(r.byServer).sort(), ['rs1', 'rs2'], `${mode} ${host} reached both real servers: ${JSON.stringify(r.byServer)}`);
    }
    capture.kill('SIGINT');
    await new Promise((r) => capture.once('exit', r));

    const rsMacs = new Set(t.servers.map((s) => s.mac));
    const frames = captured.split('\n').filter((l) => l.includes(' > '));
    assert.ok(frames.length >= 64, `the client saw replies (${frames.length} frames)`);
    const fromDirector = frames.filter((l) => l.startsWith(dir.mac));
    assert.is(fromDirector.length, 0, `no reply came through the director: ${fromDirector.slice(0, 3).join(' | ')}`);
    assert.ok(frames.every((l) => rsMacs.has(l.split(' ')[1]!)), `every reply came from a real server's MAC:\n${frames.slice(0, 3).join('\n')}`);

    // IPVS saw the requests and none of the replies (DR), and the stats API reports the same counters.
    const stats = await readStats(dir.ns);
    const tcp4 = stats.get(`tcp/${t.vip4}:80`)!;
    assert.ok(tcp4.conns >= 16 && tcp4.inPackets > 0, JSON.stringify(tcp4));
    for (const [k, s] of stats) if (!k.includes(' -> ')) assert.is(s.outPackets, 0, `${k} outbound packets`);
    const sample = await topo.dataplane.readStats();
    assert.is(sample.dataplane, 'ipvs');
    const mine = sample.services.get(`tcp/${t.vip4}:80`)!;
    assert.ok(mine.packets >= BigInt(tcp4.inPackets), `stats API ${mine.packets} vs ipvsadm ${tcp4.inPackets}`);
    assert.ok(sample.backends.get(rs[0]!)!.packets > 0n && sample.backends.get(rs[1]!)!.packets > 0n);

    // A restart keeps the counters (nothing was flushed) and traffic keeps flowing.
    await topo.dataplane.stop();
    topo = await startIpvsDirector(t, own);
    assert.equal(await topo.dataplane.apply(config), { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 4 });
    const again = (await readStats(dir.ns)).get(`tcp/${t.vip4}:80`)!;
    assert.ok(again.conns >= tcp4.conns, `connection counter survived the restart (${again.conns} >= ${tcp4.conns})`);
    const r = await burst('http', t.vip4);
    assert.is(r.ok, 16);
  } finally {
    await topo?.dataplane.stop({ detach: true }).catch(() => undefined);
    await t.destroy();
  }
});

test.run();
