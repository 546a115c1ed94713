/**
 * The XDP data path's reconcile step as a pure function: (what the maps hold now, what is desired)
 * -> the map writes that turn one into the other, in an order that is safe for packets in flight,
 * and the state the maps will hold afterwards. No I/O: xdp-dataplane.ts executes the writes.
 *
 * Safe order: (1) backend entries (new ids, changed MACs) before any ring names them; (2) each new
 * or changed ring, built whole in a fresh inner map and swapped in with one update; (3) vips
 * entries, a new VIP only once its ring exists; (4) removals: a VIP's vips entry before its ring,
 * rings no longer wanted; (5) backend ids no ring names any more are cleared and freed. New ids
 * are taken before old ones are freed, so no id changes meaning within one apply.
 */
import { buildMaglevRing } from '../../model/maglev.js';
import { serviceKey, type DesiredState, type VirtualService } from '../../model/types.js';
import type { ApplyResult } from '../dataplane.js';
import { VIP_F_HASH_SRC_ONLY, type BackendEntry, type VipKey } from './codecs.js';
import { IdAllocator } from './ids.js';

export interface ProgrammedBackend {
  id: number;
  address: string;
  /** MAC in the entry (MAC_VALID set), or null. */
  mac: string | null;
}

export interface ProgrammedVip {
  /** serviceKey(). */
  key: string;
  vipKey: VipKey;
  id: number;
  flags: number;
  /** Backend id per slot, or null when the VIP has no ring (no backend with weight > 0). */
  ring: Uint32Array | null;
  /** What the ring was built from (see ringSignature); null when adopted from the maps, so the ring's contents decide. */
  ringInput: string | null;
  /** The service as last applied; null when adopted from the maps and not applied since. */
  service: VirtualService | null;
  /** Backend addresses this VIP keeps alive (ring members and, once applied, its draining backends). */
  backendAddresses: readonly string[];
}

export interface ProgrammedState {
  /** By serviceKey(). */
  vips: Map<string, ProgrammedVip>;
  /** By backend address. */
  backends: Map<string, ProgrammedBackend>;
  vipIds: IdAllocator;
  backendIds: IdAllocator;
}

export function emptyProgrammedState(maxVips: number, maxBackends: number): ProgrammedState {
  return { vips: new Map(), backends: new Map(), vipIds: new IdAllocator(maxVips, 'VIP'), backendIds: new IdAllocator(maxBackends, 'backend') };
}

export type MapOp =
  /** Zero backend_stats[id]: the id is new to its backend. */
  | { kind: 'backend-stats-reset'; id: number; address: string }
  | { kind: 'backend-set'; id: number; entry: BackendEntry }
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
    b: [...s.backends].sort((x, y) => (x.address < y.address ? -1 : 1)).map((x) => [x.address, x.weight, x.mac ?? null]),
  });
  return norm(a) === norm(b);
}

/** The VIP's ring as backend ids, or null when it has no backend with weight > 0. */
export function buildRing(service: VirtualService, ids: ReadonlyMap<string, number>, ringSize: number): Uint32Array | null {
  const ring = buildMaglevRing(service.backends, ringSize);
  if (!ring) return null;
  const idOfIndex = Uint32Array.from(ring.backends, (b) => ids.get(b.address)!);
  const out = new Uint32Array(ring.slots.length);
  for (let i = 0; i < out.length; i++) out[i] = idOfIndex[ring.slots[i]!]!;
  return out;
}

/**
 * Plans the writes from `current` to `desired`. `desired` must be validated (validate.ts):
 * canonical addresses, unique service keys and backends.
 */
export function planApply(current: ProgrammedState, desired: DesiredState, opts: PlanOptions): Plan {
  const vipIds = current.vipIds.clone();
  const backendIds = current.backendIds.clone();
  const backendOps: MapOp[] = [];
  const ringOps: MapOp[] = [];
  const vipOps: MapOp[] = [];
  const removeOps: MapOp[] = [];
  const freeOps: MapOp[] = [];
  const skipped: SkippedService[] = [];
  const result: ApplyResult = { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: 0 };
  const nextVips = new Map<string, ProgrammedVip>();
  /** Static MACs from the configuration, first service wins. */
  const staticMac = new Map<string, string>();

  for (const service of desired.services) {
    const key = serviceKey(service);
    const cur = current.vips.get(key);
    const keepOld = (reason: string) => {
      skipped.push({ service: key, reason });
      if (cur) nextVips.set(key, cur);
    };
    const vipId = cur ? cur.id : vipIds.allocate(key);
    if (vipId === null) { keepOld(`no free VIP id: all ${vipIds.capacity} are in use (raise max VIPs)`); continue; }
    const ids = new Map<string, number>();
    let full = false;
    for (const b of [...service.backends].sort((x, y) => (x.address < y.address ? -1 : 1))) {
      const id = backendIds.allocate(b.address);
      if (id === null) { full = true; break; }
      ids.set(b.address, id);
    }
    if (full) {
      if (!cur) vipIds.release(key);
      keepOld(`no free backend id: all ${backendIds.capacity} are in use (raise max backends)`);
      continue;
    }
    for (const b of service.backends) if (b.mac !== undefined && !staticMac.has(b.address)) staticMac.set(b.address, b.mac);

    const signature = ringSignature(service, ids, opts.ringSize);
    let ring: Uint32Array | null;
    let ringChanged: boolean;
    if (cur && cur.ringInput === signature) {
      ring = cur.ring;
      ringChanged = false;
    } else {
      try {
        ring = buildRing(service, ids, opts.ringSize);
      } catch (err) {
        if (!cur) vipIds.release(key);
        keepOld(`cannot build its Maglev ring: ${(err as Error).message}`);
        continue;
      }
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

    nextVips.set(key, {
      key, vipKey, id: vipId, flags, ring, ringInput: signature, service,
      backendAddresses: service.backends.map((b) => b.address),
    });
  }

  for (const [key, cur] of current.vips) {
    if (nextVips.has(key)) continue;
    if (opts.retain?.has(key)) {
      nextVips.set(key, cur);
      result.servicesUnchanged++;
      continue;
    }
    removeOps.push({ kind: 'vip-delete', key: cur.vipKey, service: key });
    if (cur.ring) removeOps.push({ kind: 'ring-delete', vipId: cur.id, service: key });
    vipIds.release(key);
    result.servicesRemoved++;
  }

  const referenced = new Set<string>();
  for (const v of nextVips.values()) for (const a of v.backendAddresses) referenced.add(a);
  const nextBackends = new Map<string, ProgrammedBackend>();
  for (const [address, id] of backendIds.entries()) {
    const cur = current.backends.get(address);
    if (!referenced.has(address)) {
      if (cur) freeOps.push({ kind: 'backend-clear', id, address });
      backendIds.release(address);
      continue;
    }
    const mac = staticMac.get(address) ?? opts.learnedMacs?.get(address) ?? null;
    const entry: BackendEntry = { address, mac };
    if (!cur) backendOps.push({ kind: 'backend-stats-reset', id, address });
    if (!cur || cur.mac !== mac) backendOps.push({ kind: 'backend-set', id, entry });
    nextBackends.set(address, { id, address, mac });
  }

  return {
    ops: [...backendOps, ...ringOps, ...vipOps, ...removeOps, ...freeOps],
    next: { vips: nextVips, backends: nextBackends, vipIds, backendIds },
    result,
    skipped,
  };
}
