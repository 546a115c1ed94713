/**
 * Planning from a delta (PlanOptions.changes) must give what planning every service gives: the
 * same writes and the same next state, over random sequences of additions, removals, weight and
 * MAC changes, rejected definitions kept as programmed, and learned MACs moving on their own.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { commitPlan, emptyProgrammedState, planApply, type MapOp, type ProgrammedState } from '../../control/dataplane/xdp/plan.js';
import { RingCache } from '../../control/dataplane/xdp/ring-cache.js';
import { serviceKey, type Backend, type DesiredState, type VirtualService } from '../../control/model/types.js';
import { mulberry32 as rng } from '../lib/prng.js';
import { ValidationMemo, validateDesiredState } from '../../control/model/validate.js';

const RING = 251;


const BACKENDS = Array.from({ length: 12 }, (_, i) => `198.18.1.${i + 1}`);

function randomService(r: () => number, vipIndex: number): VirtualService {
  const backends: Backend[] = [];
  for (const address of BACKENDS) {
    if (r() < 0.35) {
      const b: Backend = { address, weight: Math.floor(r() * 3) };
      backends.push(r() < 0.15 ? { ...b, mac: `02:00:00:00:00:0${1 + Math.floor(r() * 3)}` } : b);
    }
  }
  return { vip: `198.18.0.${vipIndex + 1}`, port: 80, protocol: 'tcp', scheduler: 'mh', persistence: r() < 0.2 ? 60 : 0, backends };
}

/** A state's content without its sharing structure (ids, entries, rings, uses), for comparison. */
function content(s: ProgrammedState): unknown {
  const vips = [...s.vips.values()].map((v) => ({
    key: v.key, id: v.id, flags: v.flags, ring: v.ring ? [...v.ring] : null, backends: [...v.backendAddresses].sort(),
  })).sort((a, b) => (a.key < b.key ? -1 : 1));
  const backends = [...s.backends.values()].map((b) => ({ ...b })).sort((a, b) => a.id - b.id);
  return { vips, backends, vipIds: s.vipIds.entries(), backendIds: s.backendIds.entries() };
}

const opsText = (ops: MapOp[]) => ops.map((o) => JSON.stringify(o, (_k, v) => (v instanceof Uint32Array ? [...v] : v))).sort();

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`delta planning equals full planning (seed ${seed})`, () => {
    const r = rng(seed);
    const rings = new RingCache();
    let state: ProgrammedState = emptyProgrammedState(16, 16);
    /** Desired services by key, in a stable order; the programmed view of the last step. */
    let services = new Map<string, VirtualService>();
    let learned = new Map<string, string | null>();
    for (let step = 0; step < 60; step++) {
      const next = new Map(services);
      const changes = new Map<string, VirtualService | null>();
      const retain = new Set<string>();
      const edits = 1 + Math.floor(r() * 3);
      for (let e = 0; e < edits; e++) {
        const v = Math.floor(r() * 10);
        const key = serviceKey({ vip: `198.18.0.${v + 1}`, port: 80, protocol: 'tcp' });
        const roll = r();
        if (roll < 0.2) { next.delete(key); changes.set(key, null); }
        else if (roll < 0.27 && state.vips.has(key)) { next.delete(key); changes.set(key, null); retain.add(key); } // rejected: kept
        else { const s = randomService(r, v); next.set(key, s); changes.set(key, s); retain.delete(key); }
      }
      // Learned MACs move on their own now and then.
      const nextLearned = new Map(learned);
      const macChanges = new Set<string>();
      if (r() < 0.3) {
        const a = BACKENDS[Math.floor(r() * BACKENDS.length)]!;
        const mac = r() < 0.3 ? null : `02:00:00:00:01:0${Math.floor(r() * 4)}`;
        if ((nextLearned.get(a) ?? null) !== mac) macChanges.add(a);
        nextLearned.set(a, mac);
      }
      // The delta lists changes in the order of the desired services (ids are handed out in
      // planning order; the same order gives the same ids).
      const order = [...next.keys()];
      const orderedChanges = new Map<string, VirtualService | null>();
      for (const k of order) if (changes.has(k)) orderedChanges.set(k, changes.get(k)!);
      for (const [k, s] of changes) if (s === null) orderedChanges.set(k, null);
      const desired: DesiredState = { services: order.map((k) => next.get(k)!) };

      const common = { ringSize: RING, learnedMacs: nextLearned, retain, ringCache: rings };
      const full = planApply(state, desired, common);
      const delta = planApply(state, desired, { ...common, changes: orderedChanges, macChanges });
      assert.equal(opsText(delta.ops), opsText(full.ops), `ops at step ${step}`);
      assert.equal(delta.result, full.result, `result at step ${step}`);
      assert.equal(delta.skipped, full.skipped, `skipped at step ${step}`);
      assert.equal(content(delta.next), content(full.next), `next state at step ${step}`);
      // Every service planned, but the backend pass told which learned MACs moved: the same again.
      const fullKnown = planApply(state, desired, { ...common, macChanges });
      assert.equal(opsText(fullKnown.ops), opsText(full.ops), `ops (known MAC changes) at step ${step}`);
      assert.equal(content(fullKnown.next), content(full.next), `next state (known MAC changes) at step ${step}`);
      state = commitPlan(delta.next);
      // A rejected definition leaves the service as programmed: the next delta is relative to that.
      for (const k of retain) { const kept = services.get(k); if (kept) next.set(k, kept); }
      services = next;
      learned = nextLearned;
    }
  });
}

test('a service whose new definition was rejected, then deleted, is removed (validate, then plan from the delta)', () => {
  const memo = new ValidationMemo();
  const web = (address: string): VirtualService => ({
    vip: '198.18.0.10', port: 80, protocol: 'tcp', scheduler: 'mh', persistence: 0, backends: [{ address, weight: 1 }],
  });
  const dns: VirtualService = { vip: '198.18.0.11', port: 53, protocol: 'udp', scheduler: 'mh', persistence: 0, backends: [{ address: '198.18.9.2', weight: 1 }] };
  const WEB = serviceKey(web('198.18.9.1'));
  let state = emptyProgrammedState(8, 8);
  // As XdpDataplane.apply does it: validate with the memo; keep what was rejected; plan the delta when there is one.
  const apply = (input: DesiredState) => {
    const v = validateDesiredState(input, memo);
    const retain = new Set(v.errors.flatMap((e) => (e.key === undefined ? [] : [e.key])));
    const changes = v.state.delta?.changes;
    state = commitPlan(planApply(state, v.state, { ringSize: RING, retain, ...(changes ? { changes } : {}) }).next);
  };
  apply({ services: [web('198.18.9.1'), dns], revision: 1 });
  apply({ services: [web('not an address'), dns], revision: 2, delta: { since: 1, changes: new Map([[WEB, web('not an address')]]) } });
  assert.ok(state.vips.has(WEB), 'a rejected edit keeps the last good version programmed');
  apply({ services: [dns], revision: 3, delta: { since: 2, changes: new Map([[WEB, null]]) } });
  assert.not.ok(state.vips.has(WEB), 'deleting it removes it from the data path');
  assert.ok(state.vips.has(serviceKey(dns)));
});

test('a delta naming nothing plans nothing, whatever the number of services', () => {
  const services = Array.from({ length: 200 }, (_, i) => ({
    vip: `198.18.${i >> 8}.${i & 0xff}`, port: 80, protocol: 'tcp' as const, scheduler: 'mh' as const, persistence: 0,
    backends: [{ address: '198.18.9.1', weight: 1 }, { address: '198.18.9.2', weight: 1 }],
  }));
  const first = planApply(emptyProgrammedState(256, 8), { services }, { ringSize: RING });
  const state = commitPlan(first.next);
  const p = planApply(state, { services }, { ringSize: RING, changes: new Map(), macChanges: new Set() });
  assert.equal(p.ops, []);
  assert.equal(p.result, { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 200 });
  assert.is(p.next.vips, state.vips, 'the state is shared, not copied');
});

test.run();
