/**
 * The XDP data path's reconcile step as a pure function: (what the maps hold now, what is desired)
 * -> the map writes that turn one into the other, in an order that is safe for packets in flight,
 * and the state the maps will hold afterwards. No I/O: xdp-dataplane.ts executes the writes.
 *
 * Safe order: (1) backend entries (new ids, changed MACs; each id's previous MAC first, cleared for
 * an id new to its server) before any ring names them; (2) each new
 * or changed ring, built whole in a fresh inner map and swapped in with one update; (3) vips
 * entries, a new VIP only once its ring exists; (4) removals: a VIP's vips entry before its ring,
 * rings no longer wanted; (5) backend ids no ring names any more are cleared and freed. New ids
 * are taken before old ones are freed, so no id changes meaning within one apply.
 *
 * Cost: O(what changed) plus one cheap pass over the desired services and the backends. A service
 * that is the very object last programmed for its key is skipped on sight (sources keep unchanged
 * services identical); ids are taken in drafts (ids.ts) rather than copies of the allocators; the
 * next state shares every unchanged entry with the current one (so neither may be modified); VIPs
 * with the same backends share one ring build (ring-cache.ts). Given the delta from the state last
 * planned (PlanOptions.changes) and the learned MACs that moved since (macChanges), even the pass
 * over every service and every backend is skipped: O(changes) alone.
 */
import { buildMaglevRing } from '../../model/maglev.js';
import { serviceKey, type DesiredState, type VirtualService } from '../../model/types.js';
import type { ApplyResult } from '../dataplane.js';
import { VIP_F_HASH_SRC_ONLY, type BackendEntry, type VipKey } from './codecs.js';
import { IdAllocator, IdDraft, type IdSpace } from './ids.js';
import { MapEdit } from './layered-map.js';
import { RingCache } from './ring-cache.js';

export interface ProgrammedBackend {
  id: number;
  address: string;
  /** MAC in the entry (MAC_VALID set), or null. */
  mac: string | null;
  /**
   * backend_prev_macs[id]: the backend's last known MAC before `mac`, or null. The program moves
   * this backend's flows that still hold it to `mac` (docs/decisions/0008).
   */
  prevMac: string | null;
}

export interface ProgrammedVip {
  /** serviceKey(). */
  key: string;
  vipKey: VipKey;
  id: number;
  flags: number;
  /** Backend id per slot, or null when the VIP has no ring (no backend with weight > 0). Shared: never modify. */
  ring: Uint32Array | null;
  /** What the ring was built from (see ringSignature); null when adopted from the maps, so the ring's contents decide. */
  ringInput: string | null;
  /** The service as last applied; null when adopted from the maps and not applied since. */
  service: VirtualService | null;
  /** Backend addresses this VIP keeps alive (ring members and, once applied, its draining backends). */
  backendAddresses: readonly string[];
}

/** Which programmed VIPs keep one backend alive. */
interface BackendUse {
  /** VIPs whose backendAddresses name it. */
  readonly vips: number;
  /** The static MACs their definitions give it (one per VIP that gives one). */
  readonly staticMacs: readonly string[];
}

/** What the maps hold. States share unchanged parts with the states planned from them: never modify one. */
export interface ProgrammedState {
  /** By serviceKey(). */
  vips: ReadonlyMap<string, ProgrammedVip>;
  /** By backend address. */
  backends: ReadonlyMap<string, ProgrammedBackend>;
  vipIds: IdSpace;
  backendIds: IdSpace;
  /** By backend address; derived from `vips` (planApply computes it when absent, e.g. after adopting the maps). */
  backendUses?: ReadonlyMap<string, BackendUse>;
}

export function emptyProgrammedState(maxVips: number, maxBackends: number): ProgrammedState {
  return { vips: new Map(), backends: new Map(), vipIds: new IdAllocator(maxVips, 'VIP'), backendIds: new IdAllocator(maxBackends, 'backend') };
}

export type MapOp =
  /** Zero backend_stats[id]: the id is new to its backend. */
  | { kind: 'backend-stats-reset'; id: number; address: string }
  /** backend_prev_macs[id] = prevMac (null: none), then backends[id] = entry. */
  | { kind: 'backend-set'; id: number; entry: BackendEntry; prevMac: string | null }
  /** Zero vip_stats[id]: the id is new to its VIP. */
  | { kind: 'vip-stats-reset'; id: number; service: string }
  /** Build a fresh inner map holding `ring` and swap it into rings[vipId]. */
  | { kind: 'ring-set'; vipId: number; ring: Uint32Array; service: string }
  | { kind: 'vip-set'; key: VipKey; vipId: number; flags: number; service: string }
  | { kind: 'vip-delete'; key: VipKey; service: string }
  | { kind: 'ring-delete'; vipId: number; service: string }
  /** Write the empty entry (family 0) so a restart sees the id as free. */
  | { kind: 'backend-clear'; id: number; address: string };

export interface SkippedService {
  service: string;
  reason: string;
}

export interface Plan {
  ops: MapOp[];
  next: ProgrammedState;
  result: ApplyResult;
  /** Desired services that could not be programmed (and why); an existing one keeps its old programming. */
  skipped: SkippedService[];
}

export interface PlanOptions {
  ringSize: number;
  /** MACs learned from the neighbour table, by backend address (a static MAC in the service wins). */
  learnedMacs?: ReadonlyMap<string, string | null>;
  /**
   * Keys of services that are absent from `desired` only because their new definition was
   * rejected (ValidationError.key): kept exactly as programmed instead of being removed.
   */
  retain?: ReadonlySet<string>;
  /** Rings built by earlier applies (default: a cache for this apply only). */
  ringCache?: RingCache;
  /**
   * What differs between `desired` and the state `current` was planned from (DesiredState.delta
   * after validation: service key -> its new definition, or null when gone or rejected). Given,
   * only these services are looked at: O(changes) instead of a pass over every service. Only
   * valid when `current` is exactly what planning that earlier state gave (no drift, no re-read).
   */
  changes?: ReadonlyMap<string, VirtualService | null>;
  /**
   * The backend addresses whose learned MAC may differ from the last plan, when `current` is
   * exactly what that plan gave: the other backends' entries are then looked at only when a
   * service change touches them (instead of a pass over every backend). Absent: all are checked.
   */
  macChanges?: ReadonlySet<string>;
}

/** The inputs that fully determine a ring: backends (address, weight, id) in canonical order, and the ring size. */
export function ringSignature(service: VirtualService, ids: ReadonlyMap<string, number>, ringSize: number): string {
  const parts = service.backends
    .filter((b) => b.weight > 0)
    .map((b) => `${b.address}=${b.weight}@${ids.get(b.address)}`)
    .sort();
  return `${ringSize}|${parts.join(',')}`;
}

function sameRing(a: Uint32Array | null, b: Uint32Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameService(a: VirtualService, b: VirtualService): boolean {
  const norm = (s: VirtualService) => JSON.stringify({
    s: s.scheduler, p: s.persistence,
    b: [...s.backends].sort(byAddress).map((x) => [x.address, x.weight, x.mac ?? null]),
  });
  return norm(a) === norm(b);
}

function byAddress(x: { address: string }, y: { address: string }): number {
  return x.address < y.address ? -1 : x.address > y.address ? 1 : 0;
}

/** The VIP's ring as backend ids, or null when it has no backend with weight > 0. */
export function buildRing(service: VirtualService, ids: ReadonlyMap<string, number>, ringSize: number): Uint32Array | null {
  const ring = buildMaglevRing(service.backends, ringSize);
  if (!ring) return null;
  const idOfIndex = Uint32Array.from(ring.backends, (b) => ids.get(b.address)!);
  // The slots are this build's own array: mapped to ids in place rather than into a second ring.
  const slots = ring.slots;
  for (let i = 0; i < slots.length; i++) slots[i] = idOfIndex[slots[i]!]!;
  return slots;
}

/** serviceKey() per service object (services are immutable): unchanged services cost no string building. */
const keyOfObject = new WeakMap<VirtualService, string>();
function keyOf(service: VirtualService): string {
  let key = keyOfObject.get(service);
  if (key === undefined) {
    key = serviceKey(service);
    keyOfObject.set(service, key);
  }
  return key;
}

const NO_MACS: readonly string[] = [];

/** Static MACs the VIP's definition gives its backends, or null when it gives none. */
function staticMacsOf(v: ProgrammedVip): Map<string, string> | null {
  let out: Map<string, string> | null = null;
  if (v.service) for (const b of v.service.backends) if (b.mac !== undefined) (out ??= new Map()).set(b.address, b.mac);
  return out;
}

/** How many VIPs keep each backend alive, and the static MACs they give it. */
function backendUsesOf(vips: ReadonlyMap<string, ProgrammedVip>): Map<string, BackendUse> {
  const out = new Map<string, BackendUse>();
  for (const v of vips.values()) addUse(out, v, 1, null);
  return out;
}

type UsesWriter = Pick<MapEdit<string, BackendUse>, 'get' | 'set' | 'delete'>;

/** Adds (+1) or removes (-1) one VIP's use of its backends; `touched` collects the addresses. */
function addUse(uses: UsesWriter, v: ProgrammedVip, delta: 1 | -1, touched: Set<string> | null): void {
  const macs = staticMacsOf(v);
  for (const address of v.backendAddresses) {
    touched?.add(address);
    const old = uses.get(address);
    const count = (old?.vips ?? 0) + delta;
    if (count <= 0) { uses.delete(address); continue; }
    let staticMacs = old?.staticMacs ?? NO_MACS;
    const mac = macs?.get(address);
    if (mac !== undefined) {
      if (delta > 0) staticMacs = [...staticMacs, mac];
      else { const i = staticMacs.indexOf(mac); if (i !== -1) staticMacs = [...staticMacs.slice(0, i), ...staticMacs.slice(i + 1)]; }
    }
    uses.set(address, { vips: count, staticMacs });
  }
}

/**
 * The static MAC a backend gets: the one it has if a VIP still gives it, else the lowest given.
 * (Two services giving one backend different MACs is a configuration mistake; this choice is
 * stable across applies and restarts, so the entry does not flap.)
 */
function staticMacFor(use: BackendUse | undefined, current: string | null): string | undefined {
  if (!use || use.staticMacs.length === 0) return undefined;
  if (current !== null && use.staticMacs.includes(current)) return current;
  return use.staticMacs.reduce((a, b) => (b < a ? b : a));
}

/**
 * Plans the writes from `current` to `desired`. `desired` must be validated (validate.ts):
 * canonical addresses, unique service keys and backends. Pure: `current` is not modified; the
 * id spaces of `next` are drafts over those of `current` (commitPlan() once the writes landed).
 */
export function planApply(current: ProgrammedState, desired: DesiredState, opts: PlanOptions): Plan {
  const vipIds = current.vipIds.draft();
  const backendIds = current.backendIds.draft();
  const rings = opts.ringCache ?? new RingCache();
  const ringPrefix = `${opts.ringSize}|`;
  const uses = current.backendUses ?? backendUsesOf(current.vips);
  const backendOps: MapOp[] = [];
  const ringOps: MapOp[] = [];
  const vipOps: MapOp[] = [];
  const removeOps: MapOp[] = [];
  const freeOps: MapOp[] = [];
  const skipped: SkippedService[] = [];
  const result: ApplyResult = { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 0 };
  // The next state shares all that did not change with the current one.
  const nextVips = new MapEdit(current.vips);
  const nextUses = new MapEdit(uses);
  /** Backend addresses whose uses changed. */
  const touched = new Set<string>();
  const changeUse = (v: ProgrammedVip, delta: 1 | -1) => addUse(nextUses, v, delta, touched);
  /** Desired services whose key is programmed. */
  let matched = 0;
  const delta = opts.changes;
  const toPlan: Iterable<VirtualService> = delta ? definedIn(delta) : desired.services;

  for (const service of toPlan) {
    const key = keyOf(service);
    const cur = current.vips.get(key);
    if (cur) {
      matched++;
      // The very object programmed last time, for this ring size: its backends keep their ids while
      // it names them, so its ring, flags and entries are as they were. Nothing to look at.
      if (cur.service === service && cur.ringInput !== null && cur.ringInput.startsWith(ringPrefix)) {
        result.servicesUnchanged++;
        continue;
      }
    }
    const vipMark = vipIds.mark(), backendMark = backendIds.mark();
    /** Skips the service: ids taken for it go back where they were; an existing one keeps its old programming. */
    const skip = (reason: string) => {
      vipIds.rollbackTo(vipMark);
      backendIds.rollbackTo(backendMark);
      skipped.push({ service: key, reason });
    };
    const vipId = cur ? cur.id : vipIds.allocate(key);
    if (vipId === null) { skip(`no free VIP id: all ${vipIds.capacity} are in use (raise max VIPs)`); continue; }
    const ids = new Map<string, number>();
    let full = false;
    for (const b of [...service.backends].sort(byAddress)) {
      const id = backendIds.allocate(b.address);
      if (id === null) { full = true; break; }
      ids.set(b.address, id);
    }
    if (full) { skip(`no free backend id: all ${backendIds.capacity} are in use (raise max backends)`); continue; }

    const signature = ringSignature(service, ids, opts.ringSize);
    let ring: Uint32Array | null;
    let ringChanged: boolean;
    if (cur && cur.ringInput === signature) {
      ring = cur.ring;
      ringChanged = false;
    } else {
      const cached = rings.get(signature);
      try {
        ring = cached ?? buildRing(service, ids, opts.ringSize);
      } catch (err) {
        skip(`cannot build its Maglev ring: ${(err as Error).message}`);
        continue;
      }
      if (ring && !cached) rings.set(signature, ring); // registered once per build, not per sharer
      ringChanged = !sameRing(cur?.ring ?? null, ring);
      if (!ringChanged && cur) ring = cur.ring; // keep the one object; contents are equal
    }
    const flags = service.persistence > 0 ? VIP_F_HASH_SRC_ONLY : 0;
    const vipKey: VipKey = { vip: service.vip, port: service.port, protocol: service.protocol };

    if (!cur) ringOps.push({ kind: 'vip-stats-reset', id: vipId, service: key });
    if (ringChanged && ring) ringOps.push({ kind: 'ring-set', vipId, ring, service: key });
    if (ringChanged && !ring) removeOps.push({ kind: 'ring-delete', vipId, service: key });
    if (!cur || cur.flags !== flags) vipOps.push({ kind: 'vip-set', key: vipKey, vipId, flags, service: key });

    if (!cur) result.servicesAdded++;
    // An adopted service (no definition on record) whose maps already match counts as unchanged.
    else if (ringChanged || cur.flags !== flags || (cur.service !== null && !sameService(cur.service, service))) result.servicesUpdated++;
    else result.servicesUnchanged++;

    const next: ProgrammedVip = {
      key, vipKey, id: vipId, flags, ring, ringInput: signature, service,
      backendAddresses: service.backends.map((b) => b.address),
    };
    nextVips.set(key, next);
    if (cur) changeUse(cur, -1);
    changeUse(next, 1);
  }

  const remove = (key: string, cur: ProgrammedVip) => {
    if (opts.retain?.has(key)) {
      result.servicesUnchanged++;
      return;
    }
    removeOps.push({ kind: 'vip-delete', key: cur.vipKey, service: key });
    if (cur.ring) removeOps.push({ kind: 'ring-delete', vipId: cur.id, service: key });
    vipIds.release(key);
    nextVips.delete(key);
    changeUse(cur, -1);
    result.servicesRemoved++;
  };
  if (delta) {
    // The delta names every removal (null); a key it does not name is as it was.
    for (const [key, service] of delta) {
      const cur = current.vips.get(key);
      if (service === null && cur) remove(key, cur);
    }
  } else if (matched < current.vips.size) {
    // Every programmed key is desired unless fewer matched than there are: only then look for removals.
    const wanted = new Set<string>();
    for (const service of desired.services) wanted.add(keyOf(service));
    for (const [key, cur] of current.vips) if (!wanted.has(key)) remove(key, cur);
  }

  // Backends: every entry's MAC is checked (learned MACs change without any service changing);
  // entries no VIP uses any more are cleared; new ones written.
  const finalUses = nextUses.result();
  const nextBackends = new MapEdit(current.backends);
  const frees: { address: string; id: number; programmed: boolean }[] = [];
  const macOf = (address: string, mac: string | null) =>
    staticMacFor(finalUses.get(address), mac) ?? opts.learnedMacs?.get(address) ?? null;
  // Knowing which learned MACs moved, only those backends and the ones a service change touched
  // can differ: uses change only through changeUse (which notes the address in `touched`), an
  // entry's MAC only through its uses or learning.
  const backendsToCheck: Iterable<[string, ProgrammedBackend]> = opts.macChanges
    ? programmedAmong(current.backends, touched, opts.macChanges)
    : current.backends;
  for (const [address, cur] of backendsToCheck) {
    if (!finalUses.has(address)) { frees.push({ address, id: cur.id, programmed: true }); continue; }
    const mac = macOf(address, cur.mac);
    if (mac === cur.mac) continue;
    // Same address, same server: the flows still on its last known MAC follow it to the new one
    // (through null too: a server replaced after being down moves from its old MAC to its new).
    const prevMac = cur.mac ?? cur.prevMac;
    backendOps.push({ kind: 'backend-set', id: cur.id, entry: { address, mac }, prevMac });
    nextBackends.set(address, { ...cur, mac, prevMac });
  }
  for (const address of touched) {
    if (current.backends.has(address)) continue;
    const id = backendIds.get(address);
    if (!finalUses.has(address)) {
      if (id !== undefined) frees.push({ address, id, programmed: false });
      continue;
    }
    if (id === undefined) throw new Error(`backend ${address} is in use but has no id (internal error)`);
    const entry: BackendEntry = { address, mac: macOf(address, null) };
    // prevMac null: an id new to this server must move no flow of the server it named before.
    backendOps.push({ kind: 'backend-stats-reset', id, address }, { kind: 'backend-set', id, entry, prevMac: null });
    nextBackends.set(address, { id, ...entry, prevMac: null });
  }
  // Ascending ids, as the maps are laid out (stable: a stats reset stays before its entry).
  backendOps.sort((a, b) => (a as { id: number }).id - (b as { id: number }).id);
  frees.sort((a, b) => a.id - b.id);
  for (const f of frees) {
    if (f.programmed) freeOps.push({ kind: 'backend-clear', id: f.id, address: f.address });
    backendIds.release(f.address);
    nextBackends.delete(f.address);
  }

  const vipsNext = nextVips.result();
  // Unchanged services were not visited: they are every programmed one not added or updated.
  if (delta) result.servicesUnchanged = vipsNext.size - result.servicesAdded - result.servicesUpdated;
  return {
    ops: [...backendOps, ...ringOps, ...vipOps, ...removeOps, ...freeOps],
    next: {
      vips: vipsNext,
      backends: nextBackends.result(),
      vipIds: vipIds.changed ? vipIds : current.vipIds,
      backendIds: backendIds.changed ? backendIds : current.backendIds,
      backendUses: finalUses,
    },
    result,
    skipped,
  };
}

/** The new definitions a delta gives (its removals are handled apart). */
function* definedIn(changes: ReadonlyMap<string, VirtualService | null>): Iterable<VirtualService> {
  for (const s of changes.values()) if (s !== null) yield s;
}

/** The programmed backends among `a` and `b` (each once). */
function* programmedAmong(
  backends: ReadonlyMap<string, ProgrammedBackend>, a: ReadonlySet<string>, b: ReadonlySet<string>,
): Iterable<[string, ProgrammedBackend]> {
  for (const address of a) {
    const cur = backends.get(address);
    if (cur) yield [address, cur];
  }
  for (const address of b) {
    const cur = a.has(address) ? undefined : backends.get(address);
    if (cur) yield [address, cur];
  }
}

/**
 * The state to keep once all of a plan's writes landed: its id drafts committed into the
 * allocators they were taken from (O(changes)). After a failed write, drop the plan instead.
 */
export function commitPlan(next: ProgrammedState): ProgrammedState {
  const commit = (ids: IdSpace) => (ids instanceof IdDraft ? ids.commit() : ids);
  return { ...next, vipIds: commit(next.vipIds), backendIds: commit(next.backendIds) };
}
