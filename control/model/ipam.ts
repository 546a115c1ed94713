/**
 * IP address management for LoadBalancer Services: which VIPs a Service gets from the IPPools.
 * Pure: the Kubernetes source feeds it every pool and every Service it owns and writes back what
 * changed. Planning the whole cluster at once (instead of one Service at a time) makes the answer
 * deterministic: two controllers with the same view compute the same plan, and a restarted
 * controller keeps every address already in a Service's status.
 */
import { formatAddress, parseAddress } from './address.js';
import type { Family } from './types.js';

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

/** A Kubernetes LabelSelector (matchLabels AND matchExpressions). */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** `spec` of the IPPool custom resource (deploy/ippool-crd.yaml). */
export interface IPPoolSpec {
  /** CIDRs (`198.18.0.0/28`, `fd00::/120`) and inclusive ranges (`198.18.0.10-198.18.0.20`). */
  addresses: string[];
  /** Hand out addresses to Services that did not ask for one. Default true. */
  autoAssign?: boolean;
  /** Skip IPv4 addresses ending in .0 or .255 when auto-assigning (old clients treat them as broadcast). */
  avoidBuggyIPs?: boolean;
  /** Only Services whose labels match may draw from the pool. */
  serviceSelector?: LabelSelector;
  /** Only Services in these namespaces may draw from the pool (empty or absent: all). */
  namespaces?: string[];
}

export interface AddressRange {
  family: Family;
  first: bigint;
  last: bigint;
  /** The text it came from, for messages. */
  text: string;
}

/** A validated pool. */
export interface Pool {
  name: string;
  ranges: AddressRange[];
  autoAssign: boolean;
  avoidBuggyIPs: boolean;
  serviceSelector?: LabelSelector;
  namespaces?: string[];
}

export interface RejectedPool {
  name: string;
  reason: 'InvalidSpec' | 'Overlap';
  message: string;
  /** The older valid pool it overlaps (reason Overlap). */
  overlaps?: string;
  /**
   * Its ranges, when they parsed: addresses Services already hold in them stay frozen (kept, never
   * handed out again) instead of being released.
   */
  ranges?: AddressRange[];
}

/** One IPPool object as the source sees it. */
export interface IPPoolInput {
  name: string;
  spec: unknown;
  /** metadata.creationTimestamp (ISO text): on overlap the older pool wins. Absent: newest. */
  createdAt?: string;
}

/** What one Service asks of IPAM. */
export interface ServiceClaim {
  /** `namespace/name`. */
  key: string;
  namespace: string;
  labels: Record<string, string>;
  /** Address families in preference order (Service spec.ipFamilies). */
  families: Family[];
  /** RequireDualStack: every family must be served or the Service gets nothing. Otherwise only the first. */
  requireAllFamilies: boolean;
  /** Requested addresses (annotation or spec.loadBalancerIP), as written by the user. */
  requested: string[];
  /** Services with the same non-empty key may share an address when their ports do not overlap. */
  sharingKey?: string;
  ports: { port: number; protocol: string }[];
  /** Addresses in the Service's status now: kept across controller restarts when still valid. */
  current: string[];
  /** creationTimestamp (ISO text): older Services win conflicts. */
  createdAt: string;
}

export type ClaimProblemReason =
  | 'RequestedAddressInvalid'
  | 'RequestedAddressNotInPool'
  | 'RequestedAddressTaken'
  | 'AddressConflict'
  | 'NoMatchingPool'
  | 'PoolExhausted'
  /** A status address lies in a rejected, deleted or no-longer-serving pool: kept, nothing new comes from there. */
  | 'AddressFrozen';

export interface ClaimProblem {
  key: string;
  reason: ClaimProblemReason;
  message: string;
}

export interface Allocation {
  key: string;
  /** Canonical addresses in the claim's family order; empty when nothing could be allocated. */
  addresses: string[];
}

export interface PoolUsage {
  pool: string;
  /** Number of addresses in the pool (IPv6 pools can be huge, hence bigint). */
  size: bigint;
  /** Distinct addresses of the pool held by at least one Service. */
  assigned: number;
}

export interface AllocationPlan {
  allocations: Map<string, Allocation>;
  problems: ClaimProblem[];
  usage: PoolUsage[];
}

// ---------------------------------------------------------------------------------------------
// Pools

// Both run once or more per Service per allocation pass (10,000 Services: 30,000+ calls), so they
// convert 32 bits at a time instead of byte by byte through BigInt.
function u32(bytes: Uint8Array, i: number): number {
  return ((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0;
}

function toBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = 0; i < bytes.length; i += 4) v = (v << 32n) | BigInt(u32(bytes, i));
  return v;
}

function fromBigInt(value: bigint, family: Family): string {
  if (family === 4) {
    const n = Number(value);
    return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
  }
  const bytes = new Uint8Array(16);
  let v = value;
  for (let i = bytes.length - 1; i >= 0; i--) { bytes[i] = Number(v & 0xffn); v >>= 8n; }
  return formatAddress(bytes);
}

/** Address text -> {family, value}; null when it is not an address. */
export function addressValue(text: string): { family: Family; value: bigint } | null {
  const p = parseAddress(text.trim());
  return p ? { family: p.family, value: toBigInt(p.bytes) } : null;
}

/** Parses one entry of `spec.addresses`; throws a message saying what is wrong. */
export function parseAddressRange(text: string): AddressRange {
  if (typeof text !== 'string' || text.trim() === '') throw new Error('an address entry must be a non-empty string');
  const t = text.trim();
  const slash = t.indexOf('/');
  if (slash !== -1) {
    const base = addressValue(t.slice(0, slash));
    const lenText = t.slice(slash + 1);
    if (!base) throw new Error(`"${t}": "${t.slice(0, slash)}" is not an IP address`);
    const bits = base.family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) {
      throw new Error(`"${t}": prefix length must be 0..${bits}`);
    }
    const hostBits = BigInt(bits - Number(lenText));
    const mask = (1n << hostBits) - 1n;
    if ((base.value & mask) !== 0n) {
      const net = fromBigInt(base.value & ~mask, base.family);
      throw new Error(`"${t}" has host bits set; did you mean ${net}/${lenText}?`);
    }
    return { family: base.family, first: base.value, last: base.value | mask, text: t };
  }
  const dash = t.indexOf('-');
  if (dash !== -1) {
    const a = addressValue(t.slice(0, dash));
    const b = addressValue(t.slice(dash + 1));
    if (!a || !b) throw new Error(`"${t}": a range is FIRST-LAST with two IP addresses`);
    if (a.family !== b.family) throw new Error(`"${t}": both ends of a range must be the same address family`);
    if (a.value > b.value) throw new Error(`"${t}": the first address is after the last`);
    return { family: a.family, first: a.value, last: b.value, text: t };
  }
  const single = addressValue(t);
  if (!single) throw new Error(`"${t}" is neither a CIDR (a.b.c.d/n) nor a range (FIRST-LAST)`);
  return { family: single.family, first: single.value, last: single.value, text: t };
}

function validateSelector(sel: unknown, where: string): LabelSelector | undefined {
  if (sel === undefined || sel === null) return undefined;
  if (typeof sel !== 'object') throw new Error(`${where} must be a label selector object`);
  const s = sel as LabelSelector;
  if (s.matchLabels !== undefined) {
    if (typeof s.matchLabels !== 'object' || s.matchLabels === null) throw new Error(`${where}.matchLabels must be a map`);
    for (const [k, v] of Object.entries(s.matchLabels)) {
      if (typeof v !== 'string') throw new Error(`${where}.matchLabels.${k} must be a string`);
    }
  }
  for (const [i, r] of (s.matchExpressions ?? []).entries()) {
    const ops = ['In', 'NotIn', 'Exists', 'DoesNotExist'];
    if (!r || typeof r.key !== 'string' || !ops.includes(r.operator)) {
      throw new Error(`${where}.matchExpressions[${i}] needs a key and an operator (${ops.join(', ')})`);
    }
    if ((r.operator === 'In' || r.operator === 'NotIn') && (!Array.isArray(r.values) || r.values.length === 0)) {
      throw new Error(`${where}.matchExpressions[${i}]: operator ${r.operator} needs values`);
    }
  }
  return s;
}

/** Validates one pool's spec. */
export function parsePool(name: string, spec: unknown): { pool: Pool } | { rejected: RejectedPool } {
  try {
    if (!spec || typeof spec !== 'object') throw new Error('spec is missing');
    const s = spec as Partial<IPPoolSpec>;
    if (!Array.isArray(s.addresses) || s.addresses.length === 0) throw new Error('spec.addresses must list at least one CIDR or range');
    const ranges = s.addresses.map((a) => parseAddressRange(a));
    for (let i = 0; i < ranges.length; i++) {
      for (let j = i + 1; j < ranges.length; j++) {
        if (overlaps(ranges[i]!, ranges[j]!)) throw new Error(`"${ranges[i]!.text}" overlaps "${ranges[j]!.text}"`);
      }
    }
    if (s.autoAssign !== undefined && typeof s.autoAssign !== 'boolean') throw new Error('spec.autoAssign must be true or false');
    if (s.avoidBuggyIPs !== undefined && typeof s.avoidBuggyIPs !== 'boolean') throw new Error('spec.avoidBuggyIPs must be true or false');
    if (s.namespaces !== undefined && (!Array.isArray(s.namespaces) || s.namespaces.some((n) => typeof n !== 'string'))) {
      throw new Error('spec.namespaces must be a list of namespace names');
    }
    return {
      pool: {
        name,
        ranges,
        autoAssign: s.autoAssign ?? true,
        avoidBuggyIPs: s.avoidBuggyIPs ?? false,
        serviceSelector: validateSelector(s.serviceSelector, 'spec.serviceSelector'),
        namespaces: s.namespaces && s.namespaces.length > 0 ? s.namespaces : undefined,
      },
    };
  } catch (err) {
    return { rejected: { name, reason: 'InvalidSpec', message: `IPPool ${name}: ${(err as Error).message}`, ranges: parsableRanges(spec) } };
  }
}

/** The entries of a rejected spec that do parse: enough to say which pool a held address came from. */
function parsableRanges(spec: unknown): AddressRange[] {
  const addresses = (spec as Partial<IPPoolSpec> | undefined)?.addresses;
  if (!Array.isArray(addresses)) return [];
  return addresses.flatMap((a) => { try { return [parseAddressRange(a)]; } catch { return []; } });
}

function overlaps(a: AddressRange, b: AddressRange): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

/** Creation time in ms for ordering; unknown or unparsable times count as newest. */
function createdMs(createdAt: string | undefined): number {
  const ms = createdAt ? Date.parse(createdAt) : NaN;
  return Number.isNaN(ms) ? Infinity : ms;
}

/**
 * Validates every pool. An address must belong to one pool (or usage and selectors become
 * ambiguous), so of two overlapping pools one is rejected: the NEWER one (creationTimestamp; same
 * second: the later name). Adding a bad pool must never take addresses away from a pool that was
 * already serving, which name order would do to `prod` when someone adds `aaa-test`.
 * `pools` comes back in name order (the auto-assignment order).
 */
export function validatePools(specs: IPPoolInput[]): { pools: Pool[]; rejected: RejectedPool[] } {
  const accepted: { pool: Pool; ms: number }[] = [];
  const rejected: RejectedPool[] = [];
  const byAge = specs.map((s) => ({ ...s, ms: createdMs(s.createdAt) }))
    .sort((a, b) => (a.ms === b.ms ? 0 : a.ms < b.ms ? -1 : 1) || cmp(a.name, b.name));
  for (const { name, spec, ms } of byAge) {
    const r = parsePool(name, spec);
    if ('rejected' in r) { rejected.push(r.rejected); continue; }
    let clash: { older: { pool: Pool; ms: number }; mine: AddressRange; theirs: AddressRange } | undefined;
    for (const older of accepted) {
      for (const mine of r.pool.ranges) {
        const theirs = older.pool.ranges.find((x) => overlaps(x, mine));
        if (theirs) { clash = { older, mine, theirs }; break; }
      }
      if (clash) break;
    }
    if (clash) {
      const other = clash.older.pool.name;
      const age = clash.older.ms === ms ? 'was created in the same second and sorts first by name' : 'is older';
      rejected.push({
        name, reason: 'Overlap', overlaps: other, ranges: r.pool.ranges,
        message: `IPPool ${name} overlaps IPPool ${other} (${clash.mine.text} and ${clash.theirs.text}; ${other} ${age}, so ${other} keeps serving); ` +
          `an address can belong to one pool only: change ${name}'s addresses or delete it`,
      });
      continue;
    }
    accepted.push({ pool: r.pool, ms });
  }
  return {
    pools: accepted.map((a) => a.pool).sort((a, b) => cmp(a.name, b.name)),
    rejected: rejected.sort((a, b) => cmp(a.name, b.name)),
  };
}

export function poolSize(pool: Pool): bigint {
  return pool.ranges.reduce((n, r) => n + (r.last - r.first + 1n), 0n);
}

// ---------------------------------------------------------------------------------------------
// Selectors

export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const r of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    const v = labels[r.key];
    switch (r.operator) {
      case 'In': if (!has || !r.values!.includes(v!)) return false; break;
      case 'NotIn': if (has && r.values!.includes(v!)) return false; break;
      case 'Exists': if (!has) return false; break;
      case 'DoesNotExist': if (has) return false; break;
    }
  }
  return true;
}

function poolServes(pool: Pool, claim: ServiceClaim): boolean {
  if (pool.namespaces && !pool.namespaces.includes(claim.namespace)) return false;
  return selectorMatches(pool.serviceSelector, claim.labels);
}

/** The pool whose ranges hold the address (`family`, `value` as from addressValue), if any. */
export function poolOf<P extends { ranges?: AddressRange[] }>(pools: P[], family: Family, value: bigint): P | undefined {
  return pools.find((p) => (p.ranges ?? []).some((r) => r.family === family && r.first <= value && value <= r.last));
}

// ---------------------------------------------------------------------------------------------
// Planning

interface Holder {
  key: string;
  sharingKey?: string;
  ports: { port: number; protocol: string }[];
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function portsOverlap(a: Holder['ports'], b: Holder['ports']): boolean {
  return a.some((x) => b.some((y) => x.port === y.port && x.protocol.toUpperCase() === y.protocol.toUpperCase()));
}

/** Why `claim` may not use an address held by `holders`; null when it may. */
function sharingRefusal(holders: Holder[] | undefined, claim: ServiceClaim): string | null {
  if (!holders || holders.length === 0) return null;
  for (const h of holders) {
    if (h.key === claim.key) continue;
    if (!claim.sharingKey || h.sharingKey !== claim.sharingKey) {
      return `held by ${h.key}` + (h.sharingKey ? ` (sharing key "${h.sharingKey}")` : ' (not shared)');
    }
    if (portsOverlap(h.ports, claim.ports)) return `held by ${h.key} with overlapping ports`;
  }
  return null;
}

function familyOf(text: string): Family {
  return text.includes(':') ? 6 : 4;
}

function isBuggy(family: Family, value: bigint): boolean {
  if (family !== 4) return false;
  const last = value & 0xffn;
  return last === 0n || last === 255n;
}

function frozenMessage(address: string, c: ServiceClaim, pool: Pool | undefined, rejectedPool: RejectedPool | undefined): string {
  const where = rejectedPool
    ? `lies in IPPool ${rejectedPool.name}, which is rejected (${rejectedPool.reason}${rejectedPool.overlaps ? `: overlaps IPPool ${rejectedPool.overlaps}` : ''})`
    : pool
      ? `lies in IPPool ${pool.name}, which does not serve ${c.key} (spec.namespaces or spec.serviceSelector)`
      : 'lies in no IPPool (its pool was deleted or no longer lists it)';
  return `status address ${address} ${where}: the Service keeps it while it exists, but no address is handed out from there; ` +
    'to move the Service, request an address of a valid pool (xdir.io/load-balancer-ips) or recreate it' +
    (rejectedPool ? `; or fix IPPool ${rejectedPool.name}` : '');
}

/**
 * Plans the addresses of every claim. Order of precedence:
 *  1. addresses already in a Service's status (restart recovery), oldest Service first;
 *  2. requested addresses;
 *  3. automatic assignment, oldest Service first, lowest free address of the first pool (by name).
 * Claims not in `claims` hold nothing: deleting a Service or moving it to another class releases it.
 *
 * A status address whose pool was rejected (`rejected`), deleted, or edited so it no longer serves
 * the Service is FROZEN: the Service keeps it (a bad or missing pool must not take a working VIP
 * away; a typo in a selector is as bad as an overlap) and an AddressFrozen problem says so, but
 * nothing is handed out from there again, not even to a Service sharing the address. Only the
 * Service itself moves a held address: a changed request, its families, its deletion or class.
 */
export function planAllocations(pools: Pool[], claims: ServiceClaim[], rejected: RejectedPool[] = []): AllocationPlan {
  const holders = new Map<string, Holder[]>();
  const held = new Map<string, Map<Family, string>>(); // claim key -> family -> address
  const problems: ClaimProblem[] = [];
  const byAge = [...claims].sort((a, b) => cmp(a.createdAt, b.createdAt) || cmp(a.key, b.key));

  const hold = (claim: ServiceClaim, address: string): void => {
    const list = holders.get(address) ?? [];
    list.push({ key: claim.key, sharingKey: claim.sharingKey, ports: claim.ports });
    holders.set(address, list);
    const mine = held.get(claim.key) ?? new Map<Family, string>();
    mine.set(familyOf(address), address);
    held.set(claim.key, mine);
  };
  const wanted = (c: ServiceClaim): Family[] => (c.requireAllFamilies ? c.families : c.families.slice(0, 1));
  const requestedCanonical = (c: ServiceClaim): string[] | null => {
    const out: string[] = [];
    for (const r of c.requested) {
      const v = addressValue(r);
      if (!v) return null;
      out.push(fromBigInt(v.value, v.family));
    }
    return out;
  };

  // 1. Keep what status already says (frozen when its pool no longer serves it), unless the Service moved.
  for (const c of byAge) {
    const req = c.requested.length ? requestedCanonical(c) : [];
    for (const text of c.current) {
      const v = addressValue(text);
      if (!v || !wanted(c).includes(v.family) || held.get(c.key)?.has(v.family)) continue;
      const address = fromBigInt(v.value, v.family);
      if (req && req.length > 0 && !req.includes(address)) continue; // the request changed: move
      if (req === null) continue;
      const pool = poolOf(pools, v.family, v.value);
      const serving = !!pool && poolServes(pool, c);
      const refusal = sharingRefusal(holders.get(address), c);
      if (refusal) {
        problems.push({ key: c.key, reason: 'AddressConflict', message: `status address ${address} is ${refusal}; choosing another` });
        continue;
      }
      hold(c, address);
      if (!serving) problems.push({ key: c.key, reason: 'AddressFrozen', message: frozenMessage(address, c, pool, poolOf(rejected, v.family, v.value)) });
    }
  }

  // 2. Requested addresses: all or nothing.
  for (const c of byAge) {
    if (c.requested.length === 0) continue;
    const req = requestedCanonical(c);
    if (req === null) {
      problems.push({ key: c.key, reason: 'RequestedAddressInvalid', message: `requested address list "${c.requested.join(',')}" contains something that is not an IP address` });
      continue;
    }
    let ok = true;
    for (const address of req) {
      if (held.get(c.key) && [...held.get(c.key)!.values()].includes(address)) continue;
      const v = addressValue(address)!;
      const pool = poolOf(pools, v.family, v.value);
      if (!pool || !poolServes(pool, c)) {
        const bad = pool ? undefined : poolOf(rejected, v.family, v.value);
        const why = bad ? ` (IPPool ${bad.name} is rejected: ${bad.reason})` : '';
        problems.push({ key: c.key, reason: 'RequestedAddressNotInPool', message: `requested address ${address} is not in any IPPool this Service may use${why}` });
        ok = false;
        break;
      }
      const refusal = sharingRefusal(holders.get(address), c);
      if (refusal) {
        problems.push({ key: c.key, reason: 'RequestedAddressTaken', message: `requested address ${address} is ${refusal}` });
        ok = false;
        break;
      }
    }
    if (!ok) {
      release(c.key);
      continue;
    }
    for (const address of req) if (![...(held.get(c.key)?.values() ?? [])].includes(address)) hold(c, address);
  }

  // 3. Automatic assignment for what is still missing.
  const cursor = new Map<AddressRange, bigint>(); // nothing is freed during planning: scans only move forward
  const nextFree = (pool: Pool, family: Family): string | null => {
    for (const r of pool.ranges) {
      if (r.family !== family) continue;
      for (let v = cursor.get(r) ?? r.first; v <= r.last; v++) {
        if (pool.avoidBuggyIPs && isBuggy(family, v)) continue;
        const address = fromBigInt(v, family);
        if (holders.has(address)) continue;
        cursor.set(r, v);
        return address;
      }
      cursor.set(r, r.last + 1n);
    }
    return null;
  };
  for (const c of byAge) {
    if (c.requested.length > 0) continue;
    const fams = wanted(c);
    const missing = fams.filter((f) => !held.get(c.key)?.has(f));
    let failed = false;
    for (const family of missing) {
      const candidates = pools.filter((p) => p.autoAssign && poolServes(p, c) && p.ranges.some((r) => r.family === family));
      let address: string | null = null;
      if (c.sharingKey) {
        // Join a Service already holding an address under the same key.
        for (const [a, hs] of holders) {
          if (familyOf(a) !== family || !hs.some((h) => h.sharingKey === c.sharingKey)) continue;
          const v = addressValue(a)!;
          const pool = poolOf(pools, family, v.value);
          if (pool && poolServes(pool, c) && !sharingRefusal(hs, c)) { address = a; break; }
        }
      }
      for (const p of candidates) {
        if (address) break;
        address = nextFree(p, family);
      }
      if (address) { hold(c, address); continue; }
      failed = true;
      problems.push(candidates.length === 0
        ? { key: c.key, reason: 'NoMatchingPool', message: `no IPPool with autoAssign serves IPv${family} addresses to this Service` }
        : { key: c.key, reason: 'PoolExhausted', message: `every IPv${family} address in IPPool ${candidates.map((p) => p.name).join(', ')} is in use` });
    }
    if (failed && c.requireAllFamilies) release(c.key);
  }

  function release(key: string): void {
    for (const address of held.get(key)?.values() ?? []) {
      const rest = (holders.get(address) ?? []).filter((h) => h.key !== key);
      if (rest.length) holders.set(address, rest); else holders.delete(address);
    }
    held.delete(key);
  }

  const allocations = new Map<string, Allocation>();
  for (const c of claims) {
    const mine = held.get(c.key);
    allocations.set(c.key, { key: c.key, addresses: c.families.map((f) => mine?.get(f)).filter((a): a is string => !!a) });
  }
  const usage = pools.map((p) => {
    let assigned = 0;
    for (const a of holders.keys()) {
      const v = addressValue(a)!;
      if (poolOf([p], v.family, v.value)) assigned++;
    }
    return { pool: p.name, size: poolSize(p), assigned };
  });
  return { allocations, problems, usage };
}
