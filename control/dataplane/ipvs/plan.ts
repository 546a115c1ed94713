/**
 * What IPVS should hold for a desired state, and the smallest list of kernel commands that gets
 * it there from what it holds now. Pure: no I/O; ipvs-dataplane.ts executes the plan.
 */
import { parseAddress } from '../../model/address.js';
import { serviceKey, type VirtualService } from '../../model/types.js';
import {
  CONN_F_DROUTE, SVC_F_HASHED, SVC_F_PERSISTENT, SVC_F_SCHED_MH_PORT, protocolNumber, type IpvsDest, type IpvsService, type IpvsServiceId,
} from './codec.js';

/**
 * IPVS schedules a port-0 ("all ports") service only when it is persistent (the kernel logs "port
 * zero only supported in persistent services" and drops the packet otherwise). An all-ports service
 * configured without persistence is therefore programmed persistent with this timeout, the smallest
 * IPVS has: a client's connections that overlap in time share a backend, later ones are scheduled
 * afresh.
 */
export const ALL_PORTS_MIN_PERSISTENCE_S = 1;

/** One virtual service as IPVS should hold it. */
export interface IpvsServiceSpec {
  key: string;
  service: IpvsService;
  /** By backend address. */
  dests: Map<string, IpvsDest>;
}

export type IpvsOp =
  | { op: 'add-service'; key: string; service: IpvsService }
  | { op: 'edit-service'; key: string; service: IpvsService }
  | { op: 'delete-service'; key: string; service: IpvsServiceId }
  | { op: 'add-dest' | 'edit-dest' | 'delete-dest'; key: string; service: IpvsServiceId; dest: IpvsDest };

export interface IpvsPlan {
  ops: IpvsOp[];
  added: string[];
  updated: string[];
  removed: string[];
  unchanged: string[];
  /** Desired services whose key is held in IPVS by someone else: left alone, reported. */
  conflicts: string[];
}

/**
 * The IPVS form of a (validated) virtual service: DR forwarding, destination port = service port.
 * `mh` mirrors the XDP path's Maglev choice: without persistence XDP hashes each flow (addresses
 * and ports), so mh gets its port flag (mh-port); with persistence XDP hashes the client address
 * only, which is mh's default, and the persistence template keeps the client on its backend.
 */
export function toIpvsSpec(vs: VirtualService): IpvsServiceSpec {
  const vip = parseAddress(vs.vip);
  if (!vip) throw new Error(`VIP '${vs.vip}' is not an IP address`);
  const scheduler = vs.scheduler ?? 'mh';
  const timeout = vs.port === 0 ? Math.max(vs.persistence, ALL_PORTS_MIN_PERSISTENCE_S) : vs.persistence;
  const service: IpvsService = {
    family: vip.family,
    protocol: protocolNumber(vs.protocol),
    address: vs.vip,
    port: vs.port,
    fwmark: 0,
    scheduler,
    flags: timeout > 0 ? SVC_F_PERSISTENT : scheduler === 'mh' ? SVC_F_SCHED_MH_PORT : 0,
    timeout,
    // Persistence per client address: /32 for IPv4 (a mask), /128 for IPv6 (a prefix length).
    netmask: vip.family === 4 ? 0xffffffff : 128,
  };
  const dests = new Map<string, IpvsDest>();
  for (const b of vs.backends) {
    const fam = parseAddress(b.address)?.family;
    if (fam !== vip.family) throw new Error(`backend ${b.address} is not of the VIP's family (IPv${vip.family})`);
    dests.set(b.address, {
      address: b.address, family: fam, port: vs.port, forward: CONN_F_DROUTE,
      weight: b.weight, upperThreshold: 0, lowerThreshold: 0,
    });
  }
  return { key: serviceKey(vs), service, dests };
}

function sameService(a: IpvsService, b: IpvsService): boolean {
  const persistent = (a.flags & SVC_F_PERSISTENT) !== 0;
  return a.scheduler === b.scheduler
    && (a.flags & ~SVC_F_HASHED) === (b.flags & ~SVC_F_HASHED)
    && (!persistent || (a.timeout === b.timeout && a.netmask === b.netmask))
    && (a.peName ?? '') === (b.peName ?? '');
}

function sameDest(a: IpvsDest, b: IpvsDest): boolean {
  return a.weight === b.weight && a.forward === b.forward && a.port === b.port
    && a.upperThreshold === b.upperThreshold && a.lowerThreshold === b.lowerThreshold;
}

/**
 * Commands turning `current` (the services we own, as the kernel holds them) into `desired`.
 * `foreign` are keys present in IPVS that we do not own; `keep` are keys whose desired entry was
 * bad input: what is programmed for them stays as it is. Within a service new destinations are
 * added before old ones go, so a service never passes through empty; services are removed last.
 */
export function planIpvs(
  desired: ReadonlyMap<string, IpvsServiceSpec>,
  current: ReadonlyMap<string, IpvsServiceSpec>,
  foreign: ReadonlySet<string> = new Set(),
  keep: ReadonlySet<string> = new Set(),
): IpvsPlan {
  const plan: IpvsPlan = { ops: [], added: [], updated: [], removed: [], unchanged: [], conflicts: [] };
  const removals: IpvsOp[] = [];
  for (const [key, want] of [...desired].sort(([a], [b]) => a.localeCompare(b))) {
    const have = current.get(key);
    if (!have) {
      if (foreign.has(key)) { plan.conflicts.push(key); continue; }
      plan.added.push(key);
      plan.ops.push({ op: 'add-service', key, service: want.service });
      for (const d of want.dests.values()) plan.ops.push({ op: 'add-dest', key, service: want.service, dest: d });
      continue;
    }
    const ops: IpvsOp[] = [];
    if (!sameService(want.service, have.service)) ops.push({ op: 'edit-service', key, service: want.service });
    for (const d of want.dests.values()) {
      const h = have.dests.get(d.address);
      if (!h) ops.push({ op: 'add-dest', key, service: want.service, dest: d });
      else if (!sameDest(d, h)) ops.push({ op: 'edit-dest', key, service: want.service, dest: d });
    }
    for (const h of have.dests.values()) {
      if (!want.dests.has(h.address)) ops.push({ op: 'delete-dest', key, service: have.service, dest: h });
    }
    if (ops.length) { plan.updated.push(key); plan.ops.push(...ops); } else plan.unchanged.push(key);
  }
  for (const [key, have] of current) {
    if (desired.has(key)) continue;
    if (keep.has(key)) { plan.unchanged.push(key); continue; }
    plan.removed.push(key);
    removals.push({ op: 'delete-service', key, service: have.service });
  }
  plan.ops.push(...removals);
  return plan;
}
