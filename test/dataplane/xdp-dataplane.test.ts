/**
 * XdpDataplane against the real object, real verifier and real maps (pinned under a fresh bpffs
 * directory), without attaching: packets go through BPF_PROG_TEST_RUN. Covers what the maps hold
 * after apply(), that a change writes only the difference, that a restart adopts the maps and then
 * writes nothing, that repair() finds entries changed by hand (and only then re-reads), weights and
 * draining, MACs from the kernel neighbour table, stats and detach.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { BpfMap } from '../../control/bpf/index.js';
import {
  decodeBackend, decodeRing, decodeU32, decodeVipKey, decodeVipMeta, encodeBackend, encodeRing, encodeU32, encodeVipKey,
  VIP_F_HASH_SRC_ONLY, decodeBackendPrevMac, encodeBackendPrevMac, encodeVipFilter, vipFilterHas,
} from '../../control/dataplane/xdp/codecs.js';
import type { MapOp } from '../../control/dataplane/xdp/plan.js';
import { NetlinkNeighbourResolver } from '../../control/dataplane/xdp/neighbours-netlink.js';
import { XdpDataplane, type XdpDataplaneOptions } from '../../control/dataplane/xdp/xdp-dataplane.js';
import { serviceKey, type Backend, type DesiredState, type VirtualService } from '../../control/model/types.js';
import { deleteNamespaceSync, waitFor } from '../lib/netns.js';
import { TCP_FLAGS, frame, frameMacs } from '../lib/packets.js';
import { privilegedTest } from '../lib/privileged.js';
import { withPinned } from '../lib/pinned-maps.js';

const RING = 1031;
const XDP_DROP = 1, XDP_TX = 3;

function svc(vip: string, port: number, backends: Backend[], over: Partial<VirtualService> = {}): VirtualService {
  return { vip, port, protocol: 'tcp', scheduler: 'mh', persistence: 0, backends, ...over };
}
const WEB = svc('198.18.0.10', 80, [
  { address: '198.18.2.1', weight: 3, mac: '02:be:00:00:00:01' },
  { address: '198.18.2.2', weight: 1, mac: '02:be:00:00:00:02' },
  { address: '198.18.2.3', weight: 0, mac: '02:be:00:00:00:03' },
]);
const DNS6 = svc('fd00::10', 53, [{ address: 'fd00:2::1', weight: 1 }, { address: 'fd00:2::2', weight: 1 }], { protocol: 'udp' });
const STICKY = svc('198.18.0.11', 443, [{ address: '198.18.2.2', weight: 1, mac: '02:be:00:00:00:02' }], { persistence: 600 });
const STATE: DesiredState = { services: [WEB, DNS6, STICKY] };

interface Harness {
  dp: XdpDataplane;
  ops: MapOp[];
  pinRoot: string;
}

function newPinRoot(): string {
  return `/sys/fs/bpf/xdir-test-${randomBytes(6).toString('hex')}`;
}

async function started(pinRoot: string, extra: Partial<XdpDataplaneOptions> = {}, signal?: AbortSignal): Promise<Harness> {
  const ops: MapOp[] = [];
  const dp = new XdpDataplane({
    interface: 'lo', attach: false, pinRoot, ringSize: RING, maxVips: 16, maxBackends: 64, flowTableSize: 4096,
    onMapWrite: (op) => ops.push(op), ...extra,
  });
  await dp.start(signal);
  return { dp, ops, pinRoot };
}

/** Runs `fn` with a started data path on a fresh pin root, removed afterwards whatever happens. */
async function withDataplane(fn: (h: Harness) => Promise<void>, extra: Partial<XdpDataplaneOptions> = {}): Promise<void> {
  const pinRoot = newPinRoot();
  let h: Harness | null = null;
  try {
    h = await started(pinRoot, extra);
    await fn(h);
  } finally {
    await h?.dp.stop();
    rmSync(pinRoot, { recursive: true, force: true });
  }
}

/** What the pinned maps hold, read through the loader independently of the data path. */
function readMaps(pinRoot: string) {
  const open = (name: string) => BpfMap.fromPin(`${pinRoot}/${name}`);
  const vipsMap = open('vips'), backendsMap = open('backends'), ringsMap = open('rings');
  try {
    const vips = new Map<string, { vipId: number; flags: number }>();
    for (const k of vipsMap.keys()) vips.set(serviceKey(decodeVipKey(k)), decodeVipMeta(vipsMap.lookup(k)!));
    const backends = new Map<number, { address: string; mac: string | null }>();
    for (let id = 0; id < backendsMap.maxEntries; id++) {
      const b = decodeBackend(backendsMap.lookup(encodeU32(id))!);
      if (b) backends.set(id, b);
    }
    const rings = new Map<number, { mapId: number; ring: Uint32Array }>();
    for (const k of ringsMap.keys()) {
      const mapId = decodeU32(ringsMap.lookup(k)!);
      const inner = BpfMap.fromId(mapId);
      try {
        rings.set(decodeU32(k), { mapId, ring: decodeRing(inner.lookup(encodeU32(0))!) });
      } finally {
        inner.close();
      }
    }
    return { vips, backends, rings, idOf: (addr: string) => [...backends].find(([, b]) => b.address === addr)?.[0] };
  } finally {
    vipsMap.close(); backendsMap.close(); ringsMap.close();
  }
}

function count(ring: Uint32Array, id: number): number {
  let n = 0;
  for (const v of ring) if (v === id) n++;
  return n;
}

privilegedTest('apply programs vips, backends and rings; weights and draining show in the rings', () => withDataplane(async ({ dp, pinRoot }) => {
  const r = await dp.apply(STATE);
  assert.equal(r, { servicesAdded: 3, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 0 });
  const m = readMaps(pinRoot);
  assert.equal([...m.vips.keys()].sort(), ['tcp/198.18.0.10:80', 'tcp/198.18.0.11:443', 'udp/[fd00::10]:53']);
  assert.is(m.vips.get('tcp/198.18.0.11:443')!.flags, VIP_F_HASH_SRC_ONLY);
  assert.is(m.vips.get('tcp/198.18.0.10:80')!.flags, 0);
  assert.is(m.backends.size, 5, 'one entry per distinct backend, draining included');
  assert.equal(m.backends.get(m.idOf('198.18.2.1')!), { address: '198.18.2.1', mac: '02:be:00:00:00:01' });
  assert.equal(m.backends.get(m.idOf('fd00:2::1')!), { address: 'fd00:2::1', mac: null }, 'no MAC, no resolver: MAC_VALID unset');
  const web = m.rings.get(m.vips.get('tcp/198.18.0.10:80')!.vipId)!.ring;
  assert.is(web.length, RING);
  const heavy = count(web, m.idOf('198.18.2.1')!), light = count(web, m.idOf('198.18.2.2')!);
  assert.is(heavy + light, RING, 'the draining backend holds no slot');
  assert.ok(Math.abs(heavy / RING - 0.75) < 0.02, `weight 3:1 gives ${heavy}:${light}`);
  const status = dp.services().find((s) => s.key === 'tcp/198.18.0.10:80')!;
  assert.equal(status.backends.map((b) => b.state), ['active', 'active', 'draining']);
}));

privilegedTest('a change writes only the difference; unchanged VIPs keep their ring map', () => withDataplane(async ({ dp, ops, pinRoot }) => {
  await dp.apply(STATE);
  const before = readMaps(pinRoot);
  ops.length = 0;
  const DNS6b = { ...DNS6, backends: [...DNS6.backends, { address: 'fd00:2::3', weight: 1 }] };
  const r = await dp.apply({ services: [WEB, DNS6b, STICKY] });
  assert.equal(r, { servicesAdded: 0, servicesUpdated: 1, servicesRemoved: 0, servicesUnchanged: 2 });
  assert.equal(ops.map((o) => o.kind), ['backend-stats-reset', 'backend-set', 'ring-set']);
  const after = readMaps(pinRoot);
  const idOf = (m: typeof before, key: string) => m.vips.get(key)!.vipId;
  assert.is(after.rings.get(idOf(after, 'tcp/198.18.0.10:80'))!.mapId, before.rings.get(idOf(before, 'tcp/198.18.0.10:80'))!.mapId);
  assert.is(after.rings.get(idOf(after, 'tcp/198.18.0.11:443'))!.mapId, before.rings.get(idOf(before, 'tcp/198.18.0.11:443'))!.mapId);
  assert.is.not(after.rings.get(idOf(after, 'udp/[fd00::10]:53'))!.mapId, before.rings.get(idOf(before, 'udp/[fd00::10]:53'))!.mapId);

  // Remove a service: its vips entry, then its ring, then backends nothing else uses.
  ops.length = 0;
  const r2 = await dp.apply({ services: [WEB, STICKY] });
  assert.is(r2.servicesRemoved, 1);
  assert.equal(ops.map((o) => o.kind), ['vip-delete', 'ring-delete', 'backend-clear', 'backend-clear', 'backend-clear']);
  const gone = readMaps(pinRoot);
  assert.is(gone.vips.size, 2);
  assert.is(gone.rings.size, 2);
  assert.is(gone.backends.size, 3);
}));

privilegedTest('a rejected new definition leaves the running service as it was', () => withDataplane(async ({ dp, ops, pinRoot }) => {
  await dp.apply(STATE);
  const before = readMaps(pinRoot);
  ops.length = 0;
  const broken = { ...DNS6, backends: [{ address: '198.18.2.9', weight: 1 }] }; // IPv4 backend on an IPv6 VIP
  const r = await dp.apply({ services: [WEB, broken, STICKY] });
  assert.equal(ops, []);
  assert.equal(r, { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 3 });
  assert.equal(readMaps(pinRoot).rings, before.rings);
}));

privilegedTest('a restart adopts the maps, and the same desired state then writes nothing', async () => {
  const pinRoot = newPinRoot();
  try {
    const first = await started(pinRoot);
    await first.dp.apply(STATE);
    const before = readMaps(pinRoot);
    await first.dp.stop(); // default: maps stay pinned

    const second = await started(pinRoot);
    try {
      const adopted = second.dp.services();
      assert.equal(adopted.map((s) => s.key), ['tcp/198.18.0.10:80', 'tcp/198.18.0.11:443', 'udp/[fd00::10]:53']);
      assert.equal(adopted[0]!.backends.map((b) => b.address).sort(), ['198.18.2.1', '198.18.2.2'], 'ring members, before any apply');
      const r = await second.dp.apply(STATE);
      assert.equal(second.ops, [], 'no map write after a restart with an unchanged desired state');
      assert.equal(r, { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 3 });
      const after = readMaps(pinRoot);
      assert.equal([...after.rings].map(([id, x]) => [id, x.mapId]), [...before.rings].map(([id, x]) => [id, x.mapId]));
      assert.equal(after.backends, before.backends);
      // The draining backend, in no ring, kept its id and entry across the restart.
      assert.ok(after.idOf('198.18.2.3') !== undefined);
      assert.equal(second.dp.services().find((s) => s.key === 'tcp/198.18.0.10:80')!.backends.map((b) => b.state), ['active', 'active', 'draining']);
    } finally {
      await second.dp.stop();
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
});

privilegedTest('a write failing half-way leaves the data path as the maps are; the next apply finishes the job', async () => {
  let failAt = -1;
  const ops: MapOp[] = [];
  await withDataplane(async ({ dp, pinRoot }) => {
    await dp.apply({ services: [WEB] });
    ops.length = 0;
    failAt = 6; // the 6th write (DNS6's ring) lands, then fails: after the new backends, before any vips entry
    let failed = false;
    try {
      await dp.apply(STATE);
    } catch (err) {
      failed = true;
      assert.match((err as Error).message, /the maps were re-read/);
    }
    assert.ok(failed, 'the apply reports the failed write');
    assert.ok(ops.some((o) => o.kind === 'ring-set'), 'a ring was written before the failure');
    failAt = -1;
    const half = readMaps(pinRoot);
    assert.equal([...half.vips.keys()], ['tcp/198.18.0.10:80'], 'no new VIP was published without its ring');
    assert.equal(dp.services().map((s) => s.key), ['tcp/198.18.0.10:80']);
    const r = await dp.apply(STATE);
    assert.is(r.servicesAdded, 2);
    const m = readMaps(pinRoot);
    assert.equal([...m.vips.keys()].sort(), ['tcp/198.18.0.10:80', 'tcp/198.18.0.11:443', 'udp/[fd00::10]:53']);
    assert.is(m.backends.size, 5);
    for (const v of m.vips.values()) for (const id of new Set(m.rings.get(v.vipId)!.ring)) assert.ok(m.backends.has(id), `ring names backend ${id}`);
    ops.length = 0;
    await dp.apply(STATE);
    assert.equal(ops, [], 'and then nothing is left to write');
  }, { onMapWrite: (op) => { ops.push(op); if (failAt >= 0 && --failAt === 0) throw new Error('injected write failure'); } });
});

privilegedTest('a write failing after a VIP landed: the prefilter keeps that VIP through later deletes', async () => {
  let failOnVipSet = false;
  await withDataplane(async ({ dp, pinRoot }) => {
    const filter = () => withPinned(pinRoot, 'vip_filter', (m) => m.lookup(encodeU32(0))!);
    await dp.apply({ services: [WEB] });
    failOnVipSet = true; // DNS6's vips entry lands, then the apply fails; STICKY's never does
    await dp.apply(STATE).then(() => assert.unreachable('the apply fails'), () => {});
    assert.equal([...readMaps(pinRoot).vips.keys()].sort(), ['tcp/198.18.0.10:80', 'udp/[fd00::10]:53']);
    // DNS6 stays, WEB goes: the filter the delete writes must still hold DNS6's address.
    await dp.apply({ services: [DNS6] });
    assert.ok(filter().equals(encodeVipFilter(['fd00::10'])), 'the filter holds exactly the live VIP');
  }, { onMapWrite: (op) => { if (failOnVipSet && op.kind === 'vip-set') { failOnVipSet = false; throw new Error('injected write failure'); } } });
});

/** The maps' content keyed by what it means (service key, backend address), not by ids or inner map ids. */
function mapsByMeaning(pinRoot: string) {
  const m = readMaps(pinRoot);
  const addressOf = (id: number) => m.backends.get(id)?.address ?? `?${id}`;
  const vips = [...m.vips].map(([key, v]) => {
    const ring = m.rings.get(v.vipId)?.ring;
    return [key, v.flags, ring ? [...ring].map(addressOf).join(',') : null] as const;
  }).sort();
  const backends = [...m.backends.values()].map((b) => `${b.address} ${b.mac}`).sort();
  return { vips, backends };
}

privilegedTest('states with a delta (incremental sources) are applied from the delta alone, to the same maps as a full apply', () => withDataplane(async ({ dp, ops, pinRoot }) => {
  const key = (s: VirtualService) => serviceKey(s);
  await dp.apply({ services: [WEB, DNS6, STICKY], revision: 1 });
  // WEB reweighted, DNS6 removed, a new service added; STICKY not named (unchanged).
  const web2 = { ...WEB, backends: WEB.backends.map((b) => (b.address === '198.18.2.3' ? { ...b, weight: 2 } : b)) };
  const extra = svc('198.18.0.12', 80, [{ address: '198.18.2.4', weight: 1, mac: '02:be:00:00:00:04' }]);
  const services2 = [web2, STICKY, extra];
  ops.length = 0;
  const r = await dp.apply({
    services: services2, revision: 2,
    delta: { since: 1, changes: new Map<string, VirtualService | null>([[key(web2), web2], [key(DNS6), null], [key(extra), extra]]) },
  });
  assert.equal(r, { servicesAdded: 1, servicesUpdated: 1, servicesRemoved: 1, servicesUnchanged: 1 });
  assert.not.ok(ops.some((o) => 'service' in o && o.service === key(STICKY)), 'nothing is written for a service the delta does not name');

  // The same state applied whole by a fresh director gives the same maps.
  const otherRoot = newPinRoot();
  const other = await started(otherRoot);
  try {
    await other.dp.apply({ services: services2 });
    assert.equal(mapsByMeaning(pinRoot), mapsByMeaning(otherRoot));
  } finally {
    await other.dp.stop();
    rmSync(otherRoot, { recursive: true, force: true });
  }

  // A delta from a state this data path never applied (revision 3 skipped) is not trusted: the
  // whole state is planned, and what revision 3 removed goes.
  await dp.apply({ services: [web2, extra], revision: 4, delta: { since: 3, changes: new Map() } });
  assert.equal(mapsByMeaning(pinRoot).vips.map(([k]) => k), [key(web2), key(extra)].sort());
}));

privilegedTest('a service skipped for want of VIP ids is programmed once an id is free, also when the freeing state has a delta', () => withDataplane(async ({ dp, pinRoot }) => {
  await dp.apply({ services: [WEB, DNS6, STICKY], revision: 1 });
  assert.equal(mapsByMeaning(pinRoot).vips.map(([k]) => k), [serviceKey(WEB), serviceKey(DNS6)].sort(), 'STICKY is skipped: 2 VIP ids');
  // DNS6 goes (its id is free from the next apply on: ids never change meaning within one), then
  // a state whose delta names nothing: STICKY, skipped before and named by neither, is programmed.
  await dp.apply({ services: [WEB, STICKY], revision: 2, delta: { since: 1, changes: new Map([[serviceKey(DNS6), null]]) } });
  await dp.apply({ services: [WEB, STICKY], revision: 3, delta: { since: 2, changes: new Map() } });
  assert.equal(mapsByMeaning(pinRoot).vips.map(([k]) => k), [serviceKey(WEB), serviceKey(STICKY)].sort());
}, { maxVips: 2 }));

privilegedTest('after repair() found drift, the next apply looks at every service even when its state has a delta', () => withDataplane(async ({ dp, pinRoot }) => {
  await dp.apply({ services: [WEB, DNS6, STICKY], revision: 1 });
  const before = mapsByMeaning(pinRoot);
  const id = readMaps(pinRoot).idOf('198.18.2.1')!;
  withPinned(pinRoot, 'backends', (m) => m.update(encodeU32(id), encodeBackend({ address: '198.18.2.1', mac: '02:ee:ee:ee:ee:ee' })));
  await dp.repair();
  // The delta names only DNS6; WEB's backend entry drifted and is restored all the same.
  const dns2 = { ...DNS6, persistence: 30 };
  await dp.apply({ services: [WEB, dns2, STICKY], revision: 2, delta: { since: 1, changes: new Map([[serviceKey(dns2), dns2]]) } });
  const after = mapsByMeaning(pinRoot);
  assert.equal(after.backends, before.backends, 'the overwritten backend entry is restored');
}));

privilegedTest('a large apply (writes in batches) gives the maps one-service-at-a-time applies give; repair then finds no drift', async () => {
  const pool = Array.from({ length: 40 }, (_, i) => `198.18.3.${i + 1}`);
  const services = Array.from({ length: 48 }, (_, v) => svc(`198.18.4.${v + 1}`, 80,
    [0, 1, 2].map((j) => ({ address: pool[(v * 7 + j * 3) % pool.length]!, weight: 1 + j, mac: `02:be:00:00:01:${(10 + ((v + j) % 80)).toString(16).padStart(2, '0')}` })),
    { persistence: v % 5 === 0 ? 60 : 0 }));
  const rootA = newPinRoot(), rootB = newPinRoot(), rootC = newPinRoot();
  const hs: Harness[] = [];
  try {
    const a = await started(rootA, { maxVips: 64 }); hs.push(a);
    const b = await started(rootB, { maxVips: 64 }); hs.push(b);
    await a.dp.apply({ services });
    for (let k = 1; k <= services.length; k++) await b.dp.apply({ services: services.slice(0, k) });
    assert.is(readMaps(rootA).vips.size, services.length);
    assert.equal(mapsByMeaning(rootA), mapsByMeaning(rootB));
    assert.equal(vipGenerations(rootA), vipGenerations(rootB), 'the same ids and generations');
    for (const [key, g] of vipGenerations(rootA)) assert.is(g.gen, g.current, `${key}: a live VIP's generation`);
    assert.is(a.dp.writes, a.ops.length, 'every batched write is reported');

    a.ops.length = 0;
    await a.dp.repair();
    await a.dp.apply({ services });
    assert.equal(a.ops, [], 'the ring map ids recorded from the batch are the ones in the maps');

    // Most services reweighted at once: their rings are replaced in batches, the others kept.
    const ringIdsBefore = readMaps(rootA).rings;
    const changed = services.map((s, v) => (v % 8 === 0 ? s : { ...s, backends: s.backends.map((x) => ({ ...x, weight: 4 - x.weight })) }));
    await a.dp.apply({ services: changed });
    const after = readMaps(rootA);
    for (const [v, s] of services.entries()) {
      const id = after.vips.get(serviceKey(s))!.vipId;
      if (v % 8 === 0) assert.is(after.rings.get(id)!.mapId, ringIdsBefore.get(id)!.mapId, `${serviceKey(s)} keeps its ring`);
      else assert.is.not(after.rings.get(id)!.mapId, ringIdsBefore.get(id)!.mapId, `${serviceKey(s)} has a new ring`);
    }
    const c = await started(rootC, { maxVips: 64 }); hs.push(c);
    await c.dp.apply({ services: changed });
    assert.equal(mapsByMeaning(rootA), mapsByMeaning(rootC));
    a.ops.length = 0;
    await a.dp.repair();
    await a.dp.apply({ services: changed });
    assert.equal(a.ops, []);
  } finally {
    for (const h of hs) await h.dp.stop();
    for (const r of [rootA, rootB, rootC]) rmSync(r, { recursive: true, force: true });
  }
});

privilegedTest('repair() finds entries changed by hand; the next apply restores them and only them', () => withDataplane(async ({ dp, ops, pinRoot }) => {
  await dp.apply(STATE);
  const before = readMaps(pinRoot);
  const vipIdOf = (m: typeof before, key: string) => m.vips.get(key)!.vipId;

  // Nothing drifted: repair reads the entries, writes nothing and keeps every ring.
  ops.length = 0;
  const writes = dp.writes;
  await dp.repair();
  assert.equal(ops, [], 'an unchanged director\'s repair writes nothing');
  assert.is(dp.writes, writes);
  assert.equal(readMaps(pinRoot).rings, before.rings);
  await dp.apply(STATE);
  assert.equal(ops, [], 'and the apply after it writes nothing either');

  // By hand: delete WEB's vips entry, point a shared backend at a wrong MAC, remove STICKY's ring.
  const vipsMap = BpfMap.fromPin(`${pinRoot}/vips`), backendsMap = BpfMap.fromPin(`${pinRoot}/backends`);
  const ringsMap = BpfMap.fromPin(`${pinRoot}/rings`);
  try {
    assert.ok(vipsMap.delete(encodeVipKey({ vip: WEB.vip, port: WEB.port, protocol: WEB.protocol })));
    backendsMap.update(encodeU32(before.idOf('198.18.2.2')!), encodeBackend({ address: '198.18.2.2', mac: '02:ee:ee:ee:ee:ee' }));
    assert.ok(ringsMap.delete(encodeU32(vipIdOf(before, 'tcp/198.18.0.11:443'))));
  } finally {
    vipsMap.close(); backendsMap.close(); ringsMap.close();
  }
  const fresh = await dp.apply(STATE);
  assert.equal(fresh.servicesUnchanged, 3, 'without repair, apply plans from what it wrote and sees nothing to do');

  ops.length = 0;
  await dp.repair();
  const r = await dp.apply(STATE);
  assert.equal(r, { servicesAdded: 1, servicesUpdated: 1, servicesRemoved: 0, servicesUnchanged: 1 });
  const after = readMaps(pinRoot);
  assert.equal([...after.vips.keys()].sort(), [...before.vips.keys()].sort(), 'the deleted vips entry is back');
  assert.is(after.vips.get('tcp/198.18.0.10:80')!.flags, 0);
  assert.equal(after.backends, before.backends, 'the overwritten backend entry is restored, every id kept');
  assert.equal(after.rings.get(vipIdOf(after, 'tcp/198.18.0.11:443'))!.ring, before.rings.get(vipIdOf(before, 'tcp/198.18.0.11:443'))!.ring, 'the removed ring is back');
  assert.equal(after.rings.get(vipIdOf(after, 'tcp/198.18.0.10:80'))!.ring, before.rings.get(vipIdOf(before, 'tcp/198.18.0.10:80'))!.ring);
  assert.is(after.rings.get(vipIdOf(after, 'udp/[fd00::10]:53'))!.mapId, before.rings.get(vipIdOf(before, 'udp/[fd00::10]:53'))!.mapId,
    'a VIP that did not drift keeps its ring map');
  assert.not.ok(ops.some((o) => 'service' in o && o.service === 'udp/[fd00::10]:53'), 'nothing is written for a VIP that did not drift');
  ops.length = 0;
  await dp.repair();
  await dp.apply(STATE);
  assert.equal(ops, [], 'once repaired, nothing is left to write');

  // By hand: swap in another inner map whose ring sends every slot to one backend.
  const webId = vipIdOf(after, 'tcp/198.18.0.10:80');
  const skewed = BpfMap.create({ type: 'array', name: 'skewed', keySize: 4, valueSize: 4 * RING, maxEntries: 1 });
  const rings = BpfMap.fromPin(`${pinRoot}/rings`);
  try {
    skewed.update(encodeU32(0), encodeRing(new Uint32Array(RING).fill(after.idOf('198.18.2.1')!)));
    rings.update(encodeU32(webId), encodeU32(skewed.fd));
  } finally {
    skewed.close(); rings.close();
  }
  await dp.repair();
  await dp.apply(STATE);
  assert.equal(ops.map((o) => o.kind), ['ring-set'], 'only the replaced ring is rewritten');
  assert.equal(readMaps(pinRoot).rings.get(webId)!.ring, before.rings.get(vipIdOf(before, 'tcp/198.18.0.10:80'))!.ring);
}));

const DIRECTOR_MAC = '02:d1:00:00:00:01';
function syn(dst: string, dport: number, sport = 40000): Buffer {
  return frame({
    dstMac: DIRECTOR_MAC, srcMac: '02:c1:00:00:00:01',
    ip: { version: 4, src: '198.18.1.1', dst },
    l4: { kind: 'tcp', sport, dport, flags: TCP_FLAGS.SYN },
  });
}

privilegedTest('packets to a VIP go to its backends and are counted; all-draining VIPs drop new flows', () => withDataplane(async ({ dp }) => {
  await dp.apply(STATE);
  const prog = dp.program();
  const macs = new Set<string>();
  for (let sport = 40000; sport < 40064; sport++) {
    const out = prog.testRun({ data: syn('198.18.0.10', 80, sport) });
    assert.is(out.retval, XDP_TX);
    macs.add(frameMacs(out.data).dst);
  }
  assert.equal([...macs].sort(), ['02:be:00:00:00:01', '02:be:00:00:00:02'], 'both active backends, never the draining one');
  const stats = await dp.readStats();
  assert.is(stats.dataplane, 'xdp');
  assert.is(stats.services.get('tcp/198.18.0.10:80')!.packets, 64n);
  assert.is(stats.services.get('udp/[fd00::10]:53')!.packets, 0n);
  const perBackend = (stats.backends.get('198.18.2.1')?.packets ?? 0n) + (stats.backends.get('198.18.2.2')?.packets ?? 0n);
  assert.is(perBackend, 64n);
  assert.is(stats.reasons.get('forwarded')!.packets, 64n);
  assert.is(stats.reasons.get('flow-new')!.packets, 64n);

  const drained = { ...WEB, backends: WEB.backends.map((b) => ({ ...b, weight: 0 })) };
  await dp.apply({ services: [drained, DNS6, STICKY] });
  assert.equal(dp.services().find((s) => s.key === 'tcp/198.18.0.10:80')!.backends.map((b) => b.state), ['draining', 'draining', 'draining']);
  const existing = prog.testRun({ data: syn('198.18.0.10', 80, 40000) });
  assert.is(existing.retval, XDP_TX, 'an existing flow keeps its backend while draining');
  const fresh = prog.testRun({ data: syn('198.18.0.10', 80, 50000) });
  assert.is(fresh.retval, XDP_DROP);
  assert.is((await dp.readStats()).reasons.get('drop-no-backend')!.packets, 1n);
}));

function ack(dst: string, dport: number, sport = 40000): Buffer {
  return frame({
    dstMac: DIRECTOR_MAC, srcMac: '02:c1:00:00:00:01',
    ip: { version: 4, src: '198.18.1.1', dst },
    l4: { kind: 'tcp', sport, dport, flags: TCP_FLAGS.ACK },
  });
}

/** vip_meta.gen of every VIP against vip_gens[vip_id]: equal while the VIP lives. */
function vipGenerations(pinRoot: string): Map<string, { vipId: number; gen: number; current: number }> {
  const vips = BpfMap.fromPin(`${pinRoot}/vips`), gens = BpfMap.fromPin(`${pinRoot}/vip_gens`);
  try {
    const out = new Map<string, { vipId: number; gen: number; current: number }>();
    for (const k of vips.keys()) {
      const meta = decodeVipMeta(vips.lookup(k)!);
      out.set(serviceKey(decodeVipKey(k)), { vipId: meta.vipId, gen: meta.gen, current: decodeU32(gens.lookup(encodeU32(meta.vipId))!) });
    }
    return out;
  } finally {
    vips.close(); gens.close();
  }
}

privilegedTest('repair() gives a VIP whose generation was edited by hand a fresh one (its cached flows count for it again)', () => withDataplane(async ({ dp, pinRoot }) => {
  await dp.apply(STATE);
  const web = vipGenerations(pinRoot).get(serviceKey(WEB))!;
  const epochNow = () => withPinned(pinRoot, 'cache_epoch', (m) => decodeU32(m.lookup(encodeU32(0))!));
  const epochBefore = epochNow();
  // vip_gens moved on by hand; vips still says web.gen
  withPinned(pinRoot, 'vip_gens', (m) => m.update(encodeU32(web.vipId), encodeU32(web.gen + 7)));
  await dp.repair();
  const after = vipGenerations(pinRoot);
  const fixed = after.get(serviceKey(WEB))!;
  assert.is(fixed.gen, fixed.current, 'the entry and vip_gens agree again');
  assert.is.not(fixed.gen, web.gen, 'with a generation the stale cached flows do not carry');
  assert.is.not(fixed.gen, web.gen + 7, 'and not the hand-written one either');
  for (const [key, g] of after) assert.is(g.gen, g.current, `${key}: a live VIP's generation`);
  assert.is.not(epochNow(), epochBefore, 'the cache epoch moved on: cached flows are decided again');
}));

privilegedTest('removing a service stops its established flows at once, also those the program\'s flow cache holds, across a restart', async () => {
  const pinRoot = newPinRoot();
  const PASS = 2;
  try {
    const first = await started(pinRoot);
    await first.dp.apply(STATE);
    for (const [key, g] of vipGenerations(pinRoot)) assert.is(g.gen, g.current, `${key}: a live VIP's generation`);
    assert.is(first.dp.program().testRun({ data: syn('198.18.0.10', 80) }).retval, XDP_TX, 'SYN');
    const backend = (data: Buffer) => frameMacs(data).dst;
    const chosen = backend(first.dp.program().testRun({ data: ack('198.18.0.10', 80) }).data);
    await first.dp.stop(); // maps stay pinned

    const second = await started(pinRoot);
    try {
      const prog = second.dp.program();
      for (let i = 0; i < 3; i++) {
        const out = prog.testRun({ data: ack('198.18.0.10', 80) });
        assert.is(out.retval, XDP_TX, `established after the restart (${i})`);
        assert.is(backend(out.data), chosen, 'same backend');
      }
      const webId = vipGenerations(pinRoot).get('tcp/198.18.0.10:80')!.vipId;
      await second.dp.apply({ services: [DNS6, STICKY] });
      assert.is(prog.testRun({ data: ack('198.18.0.10', 80) }).retval, PASS, 'the removed VIP\'s flow goes to the kernel');
      const current = withPinned(pinRoot, 'vip_gens', (m) => decodeU32(m.lookup(encodeU32(webId))!));
      await second.dp.apply(STATE);
      const again = vipGenerations(pinRoot).get('tcp/198.18.0.10:80')!;
      assert.is(again.gen, again.current, 're-added: alive');
      if (again.vipId === webId) assert.is.not(again.gen, current, 'a new generation for the id');
    } finally {
      await second.dp.stop();
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
});

privilegedTest('every map indexed by backend id is sized to --max-backends, every one indexed by VIP id to --max-vips', async () => {
  // By name: a future backend_* or vip_* map is checked without touching this test.
  await withDataplane(async ({ pinRoot }) => {
    const sizes = new Map(readdirSync(pinRoot).map((name) => {
      return [name, withPinned(pinRoot, name, (m) => m.maxEntries)] as const;
    }));
    const byBackend = [...sizes.keys()].filter((n) => n.startsWith('backend'));
    const byVip = [...sizes.keys()].filter((n) => /^vip|^rings$/.test(n) && n !== 'vip_filter');
    assert.ok(byBackend.length >= 4 && byVip.length >= 4, `found ${byBackend.join(', ')}; ${byVip.join(', ')}`);
    for (const n of byBackend) assert.is(sizes.get(n), 64, `${n} has max_entries = max backends`);
    for (const n of byVip) assert.is(sizes.get(n), 16, `${n} has max_entries = max VIPs`);
  });
});

privilegedTest('the VIP prefilter holds the programmed VIP addresses: set before a VIP is written, narrowed after one goes, published at start, repaired', async () => {
  const pinRoot = newPinRoot();
  const filter = () => withPinned(pinRoot, 'vip_filter', (m) => m.lookup(encodeU32(0))!);
  const setFilter = (value: Buffer) => withPinned(pinRoot, 'vip_filter', (m) => m.update(encodeU32(0), value));
  const both = encodeVipFilter(['198.18.0.10', '198.18.0.11']);
  try {
    const bitAtWrite: boolean[] = [];
    const first = await started(pinRoot, { onMapWrite: (op) => { if (op.kind === 'vip-set') bitAtWrite.push(vipFilterHas(filter(), op.key.vip)); } });
    try {
      assert.ok(filter().equals(encodeVipFilter([])), 'published at start: ready, no VIP');
      await first.dp.apply(STATE);
      assert.equal(bitAtWrite, [true, true, true], 'each VIP\'s bit was set before its vips entry was written');
      assert.ok(filter().equals(encodeVipFilter(['198.18.0.10', 'fd00::10', '198.18.0.11'])), 'exactly the VIP addresses');
      await first.dp.apply({ services: [WEB, STICKY] });
      assert.ok(filter().equals(both), 'a deleted VIP\'s address is gone');
      // A VIP whose flags change (persistence) is the same VIP: deleting it afterwards clears its bit.
      await first.dp.apply({ services: [WEB, { ...STICKY, persistence: 0 }] });
      await first.dp.apply({ services: [WEB] });
      assert.ok(filter().equals(encodeVipFilter(['198.18.0.10'])), 'counted once across a flags change');
      await first.dp.apply({ services: [WEB, STICKY] });
      // A hand edit (or a filter left wide by a failed apply) is rewritten by repair().
      setFilter(encodeVipFilter([]));
      await first.dp.repair();
      assert.ok(filter().equals(both), 'repair() rewrites the filter');
    } finally {
      await first.dp.stop();
    }
    // An older version's pin root has no filter (and no backend_prev_macs): created, and written
    // at start, before any apply, from the VIPs the maps hold.
    rmSync(`${pinRoot}/vip_filter`);
    rmSync(`${pinRoot}/backend_prev_macs`);
    const second = await started(pinRoot);
    try {
      assert.ok(filter().equals(both), 'an old pin root: written at start');
    } finally {
      await second.dp.stop();
    }
    // A filter that is ready but lacks VIPs (an older version added them after a newer one wrote
    // it) is not trusted either.
    setFilter(encodeVipFilter(['198.18.0.11']));
    const third = await started(pinRoot);
    try {
      assert.ok(filter().equals(both), 'a stale filter: rewritten at start');
      await third.dp.apply({ services: [WEB, STICKY] });
      assert.equal(third.ops, [], 'nothing else to write');
    } finally {
      await third.dp.stop();
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
});

privilegedTest('a previous MAC is cleared when its id goes to another server, and one written for another server is cleared on adoption', async () => {
  const pinRoot = newPinRoot();
  const prevOf = (id: number) => withPinned(pinRoot, 'backend_prev_macs', (m) => decodeBackendPrevMac(m.lookup(encodeU32(id))!));
  const one = (address: string, mac: string) => ({ services: [svc('198.18.0.10', 80, [{ address, weight: 1, mac }])] });
  try {
    let id = -1;
    const first = await started(pinRoot, { maxBackends: 2 });
    try {
      await first.dp.apply(one('198.18.2.1', '02:be:00:00:00:01'));
      await first.dp.apply(one('198.18.2.1', '02:be:00:00:00:11'));
      id = readMaps(pinRoot).idOf('198.18.2.1')!;
      assert.equal(prevOf(id), { address: '198.18.2.1', mac: '02:be:00:00:00:01' }, 'a MAC change names the previous MAC');
      // .1 goes (its id is freed after .2 takes the other one), then .3 comes: two ids, so .3 reuses .1's.
      await first.dp.apply(one('198.18.2.2', '02:be:00:00:00:02'));
      await first.dp.apply({ services: [svc('198.18.0.10', 80, [{ address: '198.18.2.2', weight: 1, mac: '02:be:00:00:00:02' }, { address: '198.18.2.3', weight: 1, mac: '02:be:00:00:00:03' }])] });
      const m = readMaps(pinRoot);
      assert.ok([m.idOf('198.18.2.2'), m.idOf('198.18.2.3')].includes(id), 'the id was reused');
      assert.is(prevOf(id), null, 'an id new to its server names no previous MAC');
      // An older version reused an id without knowing backend_prev_macs: the entry names another server.
      withPinned(pinRoot, 'backend_prev_macs', (m) => m.update(encodeU32(id), encodeBackendPrevMac('198.18.2.9', '02:be:00:00:00:09')));
    } finally {
      await first.dp.stop();
    }
    const second = await started(pinRoot, { maxBackends: 2 });
    try {
      assert.is(prevOf(id), null, 'cleared on adoption');
    } finally {
      await second.dp.stop();
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
});

privilegedTest('MACs come from the kernel neighbour table, including ones learned or changed after apply', async () => {
  const ns = `xd-${process.pid}-${randomBytes(3).toString('hex')}-nb`;
  const ip = (...args: string[]) => execFileSync('ip', ['-n', ns, ...args], { stdio: 'pipe' });
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
    ip('link', 'set', 'v0', 'up');
    ip('link', 'set', 'v1', 'up');
    ip('addr', 'add', '198.18.2.254/24', 'dev', 'v0');
    ip('neigh', 'replace', '198.18.2.1', 'lladdr', '02:be:00:00:01:01', 'dev', 'v0', 'nud', 'permanent');
    const resolver = new NetlinkNeighbourResolver({ netns: ns, waitMs: 0 });
    const noMacs = svc('198.18.0.10', 80, [{ address: '198.18.2.1', weight: 1 }, { address: '198.18.2.2', weight: 1 }]);
    await withDataplane(async ({ dp, pinRoot }) => {
      await dp.apply({ services: [noMacs] });
      let m = readMaps(pinRoot);
      assert.is(m.backends.get(m.idOf('198.18.2.1')!)!.mac, '02:be:00:00:01:01');
      assert.is(m.backends.get(m.idOf('198.18.2.2')!)!.mac, null);
      assert.equal(dp.services()[0]!.backends.map((b) => b.state), ['active', 'mac-unresolved']);
      // The kernel learns the second neighbour; the refresh timer picks it up without an apply.
      ip('neigh', 'replace', '198.18.2.2', 'lladdr', '02:be:00:00:01:02', 'dev', 'v0', 'nud', 'permanent');
      await waitFor('the refreshed MAC in the backends map', () => {
        m = readMaps(pinRoot);
        return m.backends.get(m.idOf('198.18.2.2')!)!.mac === '02:be:00:00:01:02';
      }, 10_000, 50);
      assert.equal(dp.services()[0]!.backends.map((b) => b.state), ['active', 'active']);
      // A rejected edit of the service (an IPv6 backend on an IPv4 VIP) keeps its learned MACs.
      const bad = svc('198.18.0.10', 80, [{ address: '198.18.2.1', weight: 1 }, { address: 'fd00::1', weight: 1 }]);
      await dp.apply({ services: [bad] });
      m = readMaps(pinRoot);
      assert.is(m.backends.get(m.idOf('198.18.2.1')!)!.mac, '02:be:00:00:01:01', 'a rejected edit keeps the learned MAC');
      assert.is(m.backends.get(m.idOf('198.18.2.2')!)!.mac, '02:be:00:00:01:02');
      // A known MAC that changes (a replaced server or NIC) is followed by the refresh too. An entry
      // the kernel lost (garbage-collected: XDP traffic does not keep it in use) is not a change:
      // the backend keeps its MAC. The entry goes first, so the refresh that shows the new MAC of
      // .1 has seen .2 missing.
      await dp.apply({ services: [noMacs] });
      // Established flows, one per backend (and each in this CPU's flow cache): the one on .1 must
      // follow its server to the new MAC, the one on .2 stays.
      const prog = dp.program();
      const to = (sport: number) => frameMacs(prog.testRun({ data: syn('198.18.0.10', 80, sport) }).data).dst;
      const sports = new Map<string, number>();
      for (let sport = 41000; sports.size < 2 && sport < 41100; sport++) if (!sports.has(to(sport))) sports.set(to(sport), sport);
      const [on1, on2] = [sports.get('02:be:00:00:01:01')!, sports.get('02:be:00:00:01:02')!];
      assert.ok(on1 && on2, 'a flow on each backend');
      for (const sport of [on1, on2]) prog.testRun({ data: ack('198.18.0.10', 80, sport) });
      ip('neigh', 'del', '198.18.2.2', 'dev', 'v0');
      ip('neigh', 'replace', '198.18.2.1', 'lladdr', '02:be:00:00:01:11', 'dev', 'v0', 'nud', 'permanent');
      await waitFor('the changed MAC in the backends map', () => {
        m = readMaps(pinRoot);
        return m.backends.get(m.idOf('198.18.2.1')!)!.mac === '02:be:00:00:01:11';
      }, 10_000, 50);
      assert.is(m.backends.get(m.idOf('198.18.2.2')!)!.mac, '02:be:00:00:01:02', 'a lost neighbour entry keeps the MAC');
      assert.equal(dp.services()[0]!.backends.map((b) => b.state), ['active', 'active']);
      const established = (sport: number) => frameMacs(prog.testRun({ data: ack('198.18.0.10', 80, sport) }).data).dst;
      assert.is(established(on1), '02:be:00:00:01:11', 'the established flow follows its server to the new MAC');
      assert.is(established(on2), '02:be:00:00:01:02', 'the other backend\'s flow stays');
    }, { interface: 'v0', neighbours: resolver, macRefreshMs: 50 });
  } finally {
    deleteNamespaceSync(ns);
  }
});

privilegedTest('a restart without CAP_SYS_ADMIN (the DaemonSet\'s capabilities) adopts the maps; live flows keep their backend', async () => {
  const pinRoot = newPinRoot();
  try {
    const first = await started(pinRoot);
    await first.dp.apply(STATE);
    const before = readMaps(pinRoot);
    // Flows established before the restart, and the backend each one went to.
    const sent = [40001, 40002, 40003, 40004, 40005, 40006].map((sport) => {
      const out = first.dp.program().testRun({ data: syn('198.18.0.10', 80, sport) });
      assert.is(out.retval, XDP_TX);
      return { sport, mac: frameMacs(out.data).dst };
    });
    await first.dp.stop();
    // Rings cannot be read back without CAP_SYS_ADMIN: the restarted director rewrites them with the same content.
    const child = execFileSync('capsh', ['--drop=cap_sys_admin', '--', '-c',
      `exec ${process.execPath} --import tsx ${new URL('./xdp-adopt.child.ts', import.meta.url).pathname} ${pinRoot} ${RING} '${JSON.stringify(STATE)}'`],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const got = JSON.parse(child.trim().split('\n').pop()!) as { result?: { servicesAdded: number; servicesRemoved: number }; error?: string };
    assert.is(got.error, undefined, `restart without CAP_SYS_ADMIN failed: ${got.error}`);
    assert.is(got.result!.servicesAdded, 0);
    assert.is(got.result!.servicesRemoved, 0);
    const after = readMaps(pinRoot);
    assert.equal([...after.vips], [...before.vips], 'vips entries unchanged');
    assert.equal([...after.backends], [...before.backends], 'backend entries unchanged');
    const again = await started(pinRoot);
    try {
      await again.dp.apply(STATE);
      assert.equal(again.ops, [], 'the rewritten rings equal the desired ones: nothing left to write');
      for (const { sport, mac } of sent) {
        const out = again.dp.program().testRun({ data: syn('198.18.0.10', 80, sport) });
        assert.is(frameMacs(out.data).dst, mac, `flow from port ${sport} kept its backend`);
      }
    } finally {
      await again.dp.stop();
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
});

privilegedTest('a start after a stop plans every service once: a delta relative to the state before the stop is not trusted', async () => {
  await withDataplane(async ({ dp, pinRoot }) => {
    await dp.apply({ ...STATE, revision: 1 });
    await dp.stop();
    // While stopped, a VIP entry goes (by hand, or another writer).
    withPinned(pinRoot, 'vips', (m) => m.delete(encodeVipKey({ vip: '198.18.0.11', port: 443, protocol: 'tcp' })));
    await dp.start();
    // The next state names no change since revision 1: only a plan of every service sees the gap.
    await dp.apply({ ...STATE, revision: 2, delta: { since: 1, changes: new Map() } });
    assert.ok(readMaps(pinRoot).vips.has('tcp/198.18.0.11:443'), 'the missing VIP is written again');
  });
});

privilegedTest('stop({ detach: true }) removes the pinned maps; the default keeps them', async () => {
  const pinRoot = newPinRoot();
  try {
    const h = await started(pinRoot);
    await h.dp.apply(STATE);
    await h.dp.stop();
    assert.ok(existsSync(`${pinRoot}/vips`));
    const h2 = await started(pinRoot);
    await h2.dp.stop({ detach: true });
    assert.not.ok(existsSync(pinRoot));
    // An abort (SIGTERM) followed by stop({ detach: true }) still detaches and unpins.
    const ac = new AbortController();
    const h3 = await started(pinRoot, {}, ac.signal);
    ac.abort();
    await h3.dp.stop();
    assert.ok(existsSync(`${pinRoot}/vips`));
    await h3.dp.stop({ detach: true });
    assert.not.ok(existsSync(pinRoot));
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
});

test.run();
