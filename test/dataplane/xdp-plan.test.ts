import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { IdAllocator } from '../../control/dataplane/xdp/ids.js';
import { commitPlan, emptyProgrammedState, planApply, type MapOp, type ProgrammedState } from '../../control/dataplane/xdp/plan.js';
import { RingCache } from '../../control/dataplane/xdp/ring-cache.js';
import { VIP_F_HASH_SRC_ONLY } from '../../control/dataplane/xdp/codecs.js';
import type { Backend, DesiredState, VirtualService } from '../../control/model/types.js';

const RING = 251;
const opts = { ringSize: RING };

function svc(vip: string, port: number, backends: Backend[], over: Partial<VirtualService> = {}): VirtualService {
  return { vip, port, protocol: 'tcp', scheduler: 'mh', persistence: 0, backends, ...over };
}
const A = svc('198.18.0.10', 80, [
  { address: '198.18.1.1', weight: 1 },
  { address: '198.18.1.2', weight: 1 },
  { address: '198.18.1.3', weight: 0 },
]);
const B = svc('fd00::10', 53, [{ address: 'fd00::1', weight: 2 }, { address: 'fd00::2', weight: 1 }], { protocol: 'udp' });
const C = svc('198.18.0.10', 443, [{ address: '198.18.1.2', weight: 1 }]);

const kinds = (ops: MapOp[]) => ops.map((o) => o.kind);
const desired = (...services: VirtualService[]): DesiredState => ({ services });
const fresh = (maxVips = 16, maxBackends = 64) => emptyProgrammedState(maxVips, maxBackends);

/** What a restarted director rebuilds from the maps: ids, entries and rings, but no service definitions. */
function asAdopted(s: ProgrammedState): ProgrammedState {
  const vips = new Map([...s.vips].map(([k, v]) => {
    const ringIds = new Set(v.ring ?? []);
    const members = [...s.backends.values()].filter((b) => ringIds.has(b.id)).map((b) => b.address);
    return [k, { ...v, ring: v.ring ? Uint32Array.from(v.ring) : null, ringInput: null, service: null, backendAddresses: members }];
  }));
  return {
    vips,
    backends: new Map([...s.backends].map(([k, v]) => [k, { ...v }])),
    vipIds: IdAllocator.adopt(s.vipIds.capacity, 'VIP', [...vips.values()].map((v) => [v.key, v.id] as [string, number])),
    backendIds: IdAllocator.adopt(s.backendIds.capacity, 'backend', [...s.backends.values()].map((b) => [b.address, b.id] as [string, number])),
  };
}

test('first apply: backends, then rings, then vips; draining backends get an entry but no slots', () => {
  const p = planApply(fresh(), desired(A, B, C), opts);
  assert.equal(p.result, { servicesAdded: 3, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 0 });
  const k = kinds(p.ops);
  const last = (kind: string) => k.lastIndexOf(kind as MapOp['kind']);
  const first = (kind: string) => k.indexOf(kind as MapOp['kind']);
  assert.ok(last('backend-set') < first('ring-set'), k.join(' '));
  assert.ok(last('ring-set') < first('vip-set'), k.join(' '));
  assert.is(k.filter((x) => x === 'backend-set').length, 5, 'shared backend 198.18.1.2 is written once');
  assert.is(k.filter((x) => x === 'ring-set').length, 3);
  assert.is(k.filter((x) => x === 'vip-set').length, 3);
  const ringA = p.next.vips.get('tcp/198.18.0.10:80')!.ring!;
  const drainingId = p.next.backends.get('198.18.1.3')!.id;
  assert.is(ringA.length, RING);
  assert.not.ok(ringA.includes(drainingId));
  assert.equal(new Set(ringA), new Set([p.next.backends.get('198.18.1.1')!.id, p.next.backends.get('198.18.1.2')!.id]));
  // weights 2:1 in B
  const ringB = p.next.vips.get('udp/[fd00::10]:53')!.ring!;
  const heavy = ringB.filter((id) => id === p.next.backends.get('fd00::1')!.id).length;
  assert.ok(Math.abs(heavy / RING - 2 / 3) < 0.02, `fd00::1 holds ${heavy} of ${RING}`);
  assert.equal(p.skipped, []);
});

test('the same desired state again writes nothing', () => {
  const p1 = planApply(fresh(), desired(A, B, C), opts);
  const p2 = planApply(p1.next, desired(C, B, A), opts);
  assert.equal(p2.ops, []);
  assert.equal(p2.result, { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 3 });
});

test('after a restart (state adopted from the maps) the same desired state writes nothing', () => {
  const p1 = planApply(fresh(), desired(A, B, C), opts);
  const p2 = planApply(asAdopted(p1.next), desired(A, B, C), opts);
  assert.equal(p2.ops, []);
  assert.equal(p2.result, { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 3 });
  // A real change after adoption is still found by comparing ring contents.
  const p3 = planApply(asAdopted(p1.next), desired({ ...A, backends: A.backends.slice(1) }, B, C), opts);
  assert.equal(kinds(p3.ops), ['ring-set', 'backend-clear']);
  assert.equal(p3.result, { servicesAdded: 0, servicesUpdated: 1, servicesRemoved: 0, servicesUnchanged: 2 });
});

test('removing a backend rewrites only that VIP ring, then clears the backend', () => {
  const p1 = planApply(fresh(), desired(A, B, C), opts);
  const B2 = { ...B, backends: B.backends.slice(0, 1) };
  const p2 = planApply(p1.next, desired(A, B2, C), opts);
  assert.equal(kinds(p2.ops), ['ring-set', 'backend-clear']);
  assert.is((p2.ops[0] as { service: string }).service, 'udp/[fd00::10]:53');
  assert.is((p2.ops[1] as { address: string }).address, 'fd00::2');
  assert.is(p2.next.backends.has('fd00::2'), false);
  assert.equal(p2.result, { servicesAdded: 0, servicesUpdated: 1, servicesRemoved: 0, servicesUnchanged: 2 });
  // The other VIPs keep the very same ring.
  assert.is(p2.next.vips.get('tcp/198.18.0.10:80')!.ring, p1.next.vips.get('tcp/198.18.0.10:80')!.ring);
});

test('a shared backend removed from one service stays for the other', () => {
  const p1 = planApply(fresh(), desired(A, C), opts);
  const A2 = { ...A, backends: A.backends.filter((b) => b.address !== '198.18.1.2') };
  const p2 = planApply(p1.next, desired(A2, C), opts);
  assert.equal(kinds(p2.ops), ['ring-set']);
  assert.ok(p2.next.backends.has('198.18.1.2'));
});

test('removing a service deletes its vips entry before its ring and frees its ids', () => {
  const p1 = planApply(fresh(), desired(A, B), opts);
  const p2 = planApply(p1.next, desired(A), opts);
  assert.equal(kinds(p2.ops), ['vip-delete', 'ring-delete', 'backend-clear', 'backend-clear']);
  assert.equal(p2.result.servicesRemoved, 1);
  assert.is(p2.next.vipIds.size, 1);
  assert.is(p2.next.backendIds.get('fd00::1'), undefined);
});

test('a service whose backends all drain loses its ring but keeps its vips entry', () => {
  const p1 = planApply(fresh(), desired(A), opts);
  const drained = { ...A, backends: A.backends.map((b) => ({ ...b, weight: 0 })) };
  const p2 = planApply(p1.next, desired(drained), opts);
  assert.equal(kinds(p2.ops), ['ring-delete']);
  assert.is(p2.next.vips.get('tcp/198.18.0.10:80')!.ring, null);
  assert.is(p2.next.backends.size, 3, 'draining backends keep their entries');
  // and back
  const p3 = planApply(p2.next, desired(A), opts);
  assert.equal(kinds(p3.ops), ['ring-set']);
  // a brand-new all-draining service: vips entry, no ring
  const p4 = planApply(fresh(), desired(drained), opts);
  assert.not.ok(kinds(p4.ops).includes('ring-set'));
  assert.ok(kinds(p4.ops).includes('vip-set'));
});

test('weights changes rewrite the ring; persistence toggles the hash-source flag only', () => {
  const p1 = planApply(fresh(), desired(A), opts);
  const heavier = { ...A, backends: A.backends.map((b) => (b.address === '198.18.1.1' ? { ...b, weight: 3 } : b)) };
  assert.equal(kinds(planApply(p1.next, desired(heavier), opts).ops), ['ring-set']);
  const sticky = { ...A, persistence: 300 };
  const p2 = planApply(p1.next, desired(sticky), opts);
  assert.equal(kinds(p2.ops), ['vip-set']);
  assert.is((p2.ops[0] as { flags: number }).flags, VIP_F_HASH_SRC_ONLY);
  // scheduler is IPVS-only: a change is an update with no writes
  const p3 = planApply(p1.next, desired({ ...A, scheduler: 'rr' }), opts);
  assert.equal(p3.ops, []);
  assert.is(p3.result.servicesUpdated, 1);
});

test('MACs: a static MAC wins, learned MACs fill in, a change rewrites only the backend entry', () => {
  const withMac = { ...A, backends: A.backends.map((b) => (b.address === '198.18.1.1' ? { ...b, mac: '02:00:00:00:00:01' } : b)) };
  const learned = new Map([['198.18.1.1', '02:00:00:00:00:99'], ['198.18.1.2', '02:00:00:00:00:02']]);
  const p1 = planApply(fresh(), desired(withMac), { ...opts, learnedMacs: learned });
  assert.is(p1.next.backends.get('198.18.1.1')!.mac, '02:00:00:00:00:01');
  assert.is(p1.next.backends.get('198.18.1.2')!.mac, '02:00:00:00:00:02');
  assert.is(p1.next.backends.get('198.18.1.3')!.mac, null);
  const relearned = new Map([...learned, ['198.18.1.3', '02:00:00:00:00:03']]);
  const p2 = planApply(p1.next, desired(withMac), { ...opts, learnedMacs: relearned });
  assert.equal(p2.ops, [{ kind: 'backend-set', id: p1.next.backends.get('198.18.1.3')!.id, entry: { address: '198.18.1.3', mac: '02:00:00:00:00:03' }, prevMac: null }]);
});

test('MACs: a changed MAC names the last known one as the MAC its flows move from (through a lost MAC too); a new id names none', () => {
  const learned = new Map([['198.18.1.1', '02:00:00:00:00:01'], ['198.18.1.2', '02:00:00:00:00:02'], ['198.18.1.3', '02:00:00:00:00:03']]);
  const p1 = planApply(fresh(), desired(A), { ...opts, learnedMacs: learned });
  assert.ok(p1.ops.filter((op) => op.kind === 'backend-set').every((op) => op.kind === 'backend-set' && op.prevMac === null), 'new ids: no previous MAC');
  const id = (a: string) => p1.next.backends.get(a)!.id;
  // .1 moved to another NIC (learned), .2 is lost (the kernel no longer knows it), .3 is edited to a static MAC.
  const edited = { ...A, backends: A.backends.map((b) => (b.address === '198.18.1.3' ? { ...b, mac: '02:00:00:00:00:33' } : b)) };
  const relearned = new Map([['198.18.1.1', '02:00:00:00:00:11'], ['198.18.1.2', null], ['198.18.1.3', '02:00:00:00:00:03']]);
  const p2 = planApply(p1.next, desired(edited), { ...opts, learnedMacs: relearned });
  assert.equal(p2.ops, [
    { kind: 'backend-set', id: id('198.18.1.1'), entry: { address: '198.18.1.1', mac: '02:00:00:00:00:11' }, prevMac: '02:00:00:00:00:01' },
    { kind: 'backend-set', id: id('198.18.1.2'), entry: { address: '198.18.1.2', mac: null }, prevMac: '02:00:00:00:00:02' },
    { kind: 'backend-set', id: id('198.18.1.3'), entry: { address: '198.18.1.3', mac: '02:00:00:00:00:33' }, prevMac: '02:00:00:00:00:03' },
  ]);
  // .2 comes back with a new MAC (a replaced server): its flows move from the last known one.
  const back = new Map([...relearned, ['198.18.1.2', '02:00:00:00:00:22']]);
  const p3 = planApply(p2.next, desired(edited), { ...opts, learnedMacs: back });
  assert.equal(p3.ops, [{ kind: 'backend-set', id: id('198.18.1.2'), entry: { address: '198.18.1.2', mac: '02:00:00:00:00:22' }, prevMac: '02:00:00:00:00:02' }]);
});

test('freed ids are reused last (FIFO), and never within the apply that frees them', () => {
  const p1 = planApply(fresh(16, 4), desired(svc('198.18.0.10', 80, [{ address: '198.18.1.1', weight: 1 }])), opts);
  const old = p1.next.backends.get('198.18.1.1')!.id;
  const p2 = planApply(p1.next, desired(svc('198.18.0.10', 80, [{ address: '198.18.1.2', weight: 1 }])), opts);
  assert.is.not(p2.next.backends.get('198.18.1.2')!.id, old);
  const vipOld = p1.next.vips.get('tcp/198.18.0.10:80')!.id;
  const p3 = planApply(p1.next, desired(svc('198.18.0.11', 80, [{ address: '198.18.1.1', weight: 1 }])), opts);
  assert.is.not(p3.next.vips.get('tcp/198.18.0.11:80')!.id, vipOld);
  // cycle through all 4 backend ids: the first freed id comes back only after the others
  let state = p1.next;
  const seen: number[] = [];
  for (let i = 2; i <= 6; i++) {
    state = planApply(state, desired(svc('198.18.0.10', 80, [{ address: `198.18.1.${i}`, weight: 1 }])), opts).next;
    seen.push(state.backends.get(`198.18.1.${i}`)!.id);
  }
  assert.equal(seen, [1, 2, 3, 0, 1]);
});

test('when ids run out the service is skipped with a reason, and the others are programmed', () => {
  const p = planApply(fresh(2, 64), desired(A, B, C), opts);
  assert.is(p.next.vips.size, 2);
  assert.equal(p.skipped.map((s) => s.service), ['tcp/198.18.0.10:443']);
  assert.match(p.skipped[0]!.reason, /no free VIP id/);
  const q = planApply(fresh(16, 4), desired(A, B), opts);
  assert.equal(q.skipped.map((s) => s.service), ['udp/[fd00::10]:53']);
  assert.match(q.skipped[0]!.reason, /no free backend id/);
  assert.is(q.next.backendIds.size, 3, 'ids taken for the skipped service are given back');
  assert.not.ok(q.ops.some((o) => o.kind === 'backend-set' && o.entry.address.startsWith('fd00')));
});

test('a service whose new definition was rejected is kept as programmed, not removed', () => {
  const p1 = planApply(fresh(), desired(A, B), opts);
  const p2 = planApply(p1.next, desired(A), { ...opts, retain: new Set(['udp/[fd00::10]:53']) });
  assert.equal(p2.ops, []);
  assert.is(p2.next.vips.get('udp/[fd00::10]:53'), p1.next.vips.get('udp/[fd00::10]:53'));
  assert.ok(p2.next.backends.has('fd00::2'), 'its backends stay too');
  assert.equal(p2.result, { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 2 });
});

test('planning never modifies the current state; commitPlan moves the allocators on', () => {
  const p1 = planApply(fresh(), desired(A, B), opts);
  const s1 = commitPlan(p1.next);
  const snapshot = { vips: [...s1.vips], backends: [...s1.backends], vipIds: s1.vipIds.entries(), backendIds: s1.backendIds.entries() };
  const p2 = planApply(s1, desired(A, C), opts); // drops B, adds C
  assert.equal({ vips: [...s1.vips], backends: [...s1.backends], vipIds: s1.vipIds.entries(), backendIds: s1.backendIds.entries() }, snapshot);
  assert.is(p2.next.vips.get('tcp/198.18.0.10:80'), s1.vips.get('tcp/198.18.0.10:80'), 'unchanged entries are shared');
  const s2 = commitPlan(p2.next);
  assert.is(s2.vipIds, s1.vipIds, 'committed into the same allocator');
  assert.equal(s2.vipIds.entries().map(([k]) => k).sort(), ['tcp/198.18.0.10:443', 'tcp/198.18.0.10:80']);
  assert.is(s2.backendIds.get('fd00::1'), undefined);
  // The same state again (the very objects) writes nothing, and so does an equal copy.
  assert.equal(planApply(s2, desired(A, C), opts).ops, []);
  const copy = planApply(s2, desired(structuredClone(A), structuredClone(C)), opts);
  assert.equal(copy.ops, []);
  assert.equal(copy.result, { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 2 });
});

test('services with the same backends share one ring; a cache carries rings across applies', () => {
  const twin = svc('198.18.0.20', 80, [...A.backends]);
  const ringCache = new RingCache();
  const p = planApply(fresh(), desired(A, twin), { ...opts, ringCache });
  const ringA = p.next.vips.get('tcp/198.18.0.10:80')!.ring!;
  assert.is(p.next.vips.get('tcp/198.18.0.20:80')!.ring, ringA);
  assert.is(p.ops.filter((o) => o.kind === 'ring-set').length, 2, 'each VIP still gets its own ring map');
  const third = svc('198.18.0.30', 80, [...A.backends].reverse());
  const q = planApply(commitPlan(p.next), desired(A, twin, third), { ...opts, ringCache });
  assert.is(q.next.vips.get('tcp/198.18.0.30:80')!.ring, ringA);
});

test('a service skipped for want of ids takes none; the next service gets them', () => {
  const big = svc('198.18.0.40', 80, [1, 2, 3, 4, 5].map((i) => ({ address: `198.18.3.${i}`, weight: 1 })));
  const small = svc('198.18.0.41', 80, [{ address: '198.18.3.9', weight: 1 }]);
  const p = planApply(fresh(16, 4), desired(big, small), opts);
  assert.equal(p.skipped.map((s) => s.service), ['tcp/198.18.0.40:80']);
  assert.is(p.next.backends.get('198.18.3.9')!.id, 0, 'ids the skipped service took went back to the front');
  assert.is(p.next.vips.get('tcp/198.18.0.41:80')!.id, 0);
});

test('a static MAC given by a service kept after a rejected update stays', () => {
  const withMac = svc('198.18.0.50', 80, [{ address: '198.18.4.1', weight: 1, mac: '02:00:00:00:00:41' }]);
  const p1 = planApply(fresh(), desired(withMac, C), opts);
  const p2 = planApply(p1.next, desired(C), { ...opts, retain: new Set(['tcp/198.18.0.50:80']) });
  assert.equal(p2.ops, []);
  assert.is(p2.next.backends.get('198.18.4.1')!.mac, '02:00:00:00:00:41');
});

test.run();
