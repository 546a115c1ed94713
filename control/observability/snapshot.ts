/**
 * Pure conversions from data-path readings to the `xdir.v1` messages: cumulative counters, rates
 * over the interval between two readings, VIP filters. No I/O, so the hub, the unary calls and
 * the tests all share one definition of what a snapshot says.
 */
import type { Counter, DataplaneKind, ServiceStatus, StatsSample } from '../dataplane/dataplane.js';
import type { Protocol } from '../model/types.js';
import type {
  BackendStatsMsg, CompactCountersMsg, CounterMsg, DataPathName, ListServicesResponseMsg, ProtocolName, RateMsg,
  ReasonStatsMsg, ServiceStatsMsg, StatsSnapshotMsg, VirtualServiceMsg,
} from './grpc/proto.js';

const ZERO: Counter = { packets: 0n, bytes: 0n };

export function dataPathName(kind: DataplaneKind): DataPathName {
  return kind === 'xdp' ? 'DATA_PATH_XDP' : 'DATA_PATH_IPVS';
}

export function protocolName(p: Protocol): ProtocolName {
  return p === 'tcp' ? 'PROTOCOL_TCP' : 'PROTOCOL_UDP';
}

/** `tcp/198.18.0.10:80`, `udp/[fd00::10]:53`, `tcp/198.18.0.10:*` back to its parts (null if not a key). */
export function parseServiceKey(key: string): { vip: string; port: number; protocol: Protocol } | null {
  const m = /^(tcp|udp)\/(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d+|\*)$/.exec(key);
  if (!m) return null;
  return { protocol: m[1] as Protocol, vip: (m[2] ?? m[3])!, port: m[4] === '*' ? 0 : Number(m[4]) };
}

/**
 * A predicate over services from a list of VIP filters (VIP address or service key, case-insensitive).
 * An empty list selects everything.
 */
export function serviceFilter(vips: readonly string[]): (s: { key: string; vip: string }) => boolean {
  const wanted = new Set(vips.map((v) => v.trim().toLowerCase()).filter((v) => v !== ''));
  if (wanted.size === 0) return () => true;
  return (s) => wanted.has(s.vip.toLowerCase()) || wanted.has(s.key.toLowerCase());
}

function counterMsg(c: Counter): CounterMsg {
  return { packets: c.packets.toString(), bytes: c.bytes.toString() };
}

/** Per-second rate of a cumulative counter; a counter that went backwards (data path recreated) reads 0. */
function rateMsg(cur: Counter, base: Counter | undefined, seconds: number): RateMsg {
  if (!base || seconds <= 0) return { packets_per_second: 0, bytes_per_second: 0 };
  const dp = cur.packets >= base.packets ? Number(cur.packets - base.packets) : 0;
  const db = cur.bytes >= base.bytes ? Number(cur.bytes - base.bytes) : 0;
  return { packets_per_second: dp / seconds, bytes_per_second: db / seconds };
}

/**
 * Lookup tables over the programmed services, built once per reading and shared by every snapshot
 * built from it (a filtered snapshot then costs the size of its selection, not of the whole table).
 */
export class ServiceIndex {
  readonly byKey = new Map<string, ServiceStatus>();
  private readonly keysByVip = new Map<string, string[]>();

  constructor(readonly services: readonly ServiceStatus[]) {
    for (const s of services) {
      this.byKey.set(s.key, s);
      const vip = s.vip.toLowerCase();
      const list = this.keysByVip.get(vip);
      if (list) list.push(s.key);
      else this.keysByVip.set(vip, [s.key]);
    }
  }

  /** Keys a filter selects among the programmed services and those with counters in `sample`. */
  select(vips: readonly string[], sample: StatsSample): string[] {
    const wanted = vips.map((v) => v.trim().toLowerCase()).filter((v) => v !== '');
    const keys = new Set<string>();
    if (wanted.length === 0) {
      for (const k of sample.services.keys()) keys.add(k);
      for (const k of this.byKey.keys()) keys.add(k);
    } else {
      const selected = serviceFilter(wanted);
      for (const w of wanted) {
        for (const k of this.keysByVip.get(w) ?? []) keys.add(k);
        if (this.byKey.has(w)) keys.add(w);
      }
      // Counters of a service no longer (or not yet) listed by the data path.
      if (sample.services.size !== this.byKey.size) {
        for (const k of sample.services.keys()) {
          if (this.byKey.has(k)) continue;
          const p = parseServiceKey(k);
          if (p && selected({ key: k, vip: p.vip })) keys.add(k);
        }
      }
    }
    return [...keys].sort();
  }
}

export interface SnapshotInput {
  current: StatsSample;
  /** The earlier reading rates are computed from; none = rates are 0. */
  baseline?: StatsSample;
  /** The services as programmed (for VIP/port/protocol of each key and the backends of a filtered view). */
  services: readonly ServiceStatus[] | ServiceIndex;
  /** VIP filters (see serviceFilter). */
  vips: readonly string[];
  /** List only services and backends whose counters differ from the baseline (when there is one). */
  changesOnly?: boolean;
  /**
   * Compact form: counters as packed columns indexed by `names` (which must be the table of this
   * filter for `current`, see nameTable; `services` is then not used); the table itself is
   * included when `withNames`.
   */
  compact?: { names: NameTable; withNames: boolean };
  /**
   * The unfiltered name table for `current` (see nameTable), if the caller has one: an unfiltered
   * plain snapshot is then built from its columns (array walks instead of lookups by name). Same
   * result either way.
   */
  table?: NameTable;
}

/** Per table: whether it lists every programmed service of an index (else the plain path adds them). */
const covers = new WeakMap<NameTable, WeakMap<ServiceIndex, boolean>>();
function coversIndex(table: NameTable, index: ServiceIndex): boolean {
  if (!table.inSampleOrder) return false;
  let m = covers.get(table);
  if (!m) covers.set(table, (m = new WeakMap()));
  let v = m.get(index);
  if (v === undefined) {
    const keys = new Set(table.serviceKeys);
    v = true;
    for (const k of index.byKey.keys()) if (!keys.has(k)) { v = false; break; }
    m.set(index, v);
  }
  return v;
}

/** Service ids of a table in key order (the order plain snapshots list services in), once per table. */
const sortedIds = new WeakMap<NameTable, number[]>();
function serviceIdsByKey(table: NameTable): number[] {
  let ids = sortedIds.get(table);
  if (!ids) {
    const keys = table.serviceKeys;
    ids = keys.map((_, i) => i).sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0));
    sortedIds.set(table, ids);
  }
  return ids;
}

/** The plain, unfiltered services and backends from a table's columns (see SnapshotInput.table). */
function plainFromColumns(
  table: NameTable, index: ServiceIndex, current: StatsSample, baseline: StatsSample | undefined, onlyChanged: boolean, seconds: number,
): { services: ServiceStatsMsg[]; backends: BackendStatsMsg[] } {
  const cur = columnsOf(table, current);
  const base = baseline ? columnsOf(table, baseline) : undefined;
  const services: ServiceStatsMsg[] = [];
  for (const id of serviceIdsByKey(table)) {
    const key = table.serviceKeys[id]!;
    const parts = index.byKey.get(key) ?? parseServiceKey(key);
    if (!parts) continue;
    const total = cur.services[id]!;
    const b = base?.services[id];
    if (onlyChanged && (total === b || same(total, b))) continue;
    services.push({
      key, vip: parts.vip, port: parts.port, protocol: protocolName(parts.protocol),
      total: counterMsg(total), rate: rateMsg(total, b, seconds),
    });
  }
  const backends: BackendStatsMsg[] = [];
  for (let id = 0; id < cur.backends.length; id++) {
    const total = cur.backends[id]!;
    const b = base?.backends[id];
    if (onlyChanged && (total === b || same(total, b))) continue;
    backends.push({ address: table.backendAddresses[id]!, total: counterMsg(total), rate: rateMsg(total, b, seconds) });
  }
  return { services, backends };
}

/**
 * The names compact ids refer to, for one filter: id i of a service is serviceKeys[i], of a
 * backend backendAddresses[i]. `version` changes whenever either list does. `columns` caches the
 * counters of readings aligned to the ids, so a reading is laid out once per table however many
 * snapshots are built from it, and diffs are array walks rather than lookups by name.
 */
export interface NameTable {
  readonly version: number;
  readonly serviceKeys: readonly string[];
  readonly backendAddresses: readonly string[];
  /** Ids follow the readings' own order (no filter): laying a reading out is a walk of its maps. */
  readonly inSampleOrder: boolean;
  readonly columns: WeakMap<StatsSample, Columns>;
}

interface Columns { services: readonly Counter[]; backends: readonly Counter[] }

/** Backend addresses of the selected services, each once, in service order. */
function backendsOf(index: ServiceIndex, keys: readonly string[]): string[] {
  const seen = new Set<string>();
  for (const k of keys) for (const b of index.byKey.get(k)?.backends ?? []) seen.add(b.address);
  return [...seen];
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

/** Whether a map's keys, in order, are exactly `names`. */
function keysAre(m: ReadonlyMap<string, unknown>, names: readonly string[]): boolean {
  if (m.size !== names.length) return false;
  let i = 0;
  for (const k of m.keys()) if (k !== names[i++]) return false;
  return true;
}

/**
 * The name table of a filter for a reading: the previous table (same version) when nothing was
 * added, removed or reordered, else a new one numbered `nextVersion`. Without a filter the table
 * is the reading's own entries in the reading's order (the data path keeps that order stable), so
 * checking it costs one walk and no sort, and the programmed services are not needed at all.
 * With a filter: the selected services (sorted) and their backends, from `index()`.
 */
export function nameTable(
  index: () => ServiceIndex, vips: readonly string[], current: StatsSample, previous: NameTable | undefined, nextVersion: number,
): NameTable {
  const filtered = vips.some((v) => v.trim() !== '');
  if (!filtered) {
    if (previous?.inSampleOrder && keysAre(current.services, previous.serviceKeys) && keysAre(current.backends, previous.backendAddresses)) return previous;
    return {
      version: nextVersion, serviceKeys: [...current.services.keys()], backendAddresses: [...current.backends.keys()],
      inSampleOrder: true, columns: new WeakMap(),
    };
  }
  const ix = index();
  const serviceKeys = ix.select(vips, current);
  const backendAddresses = backendsOf(ix, serviceKeys);
  if (previous && !previous.inSampleOrder && sameList(previous.serviceKeys, serviceKeys) && sameList(previous.backendAddresses, backendAddresses)) return previous;
  return { version: nextVersion, serviceKeys, backendAddresses, inSampleOrder: false, columns: new WeakMap() };
}

/** A reading's counters laid out by the table's ids (cached on the table). */
function columnsOf(table: NameTable, sample: StatsSample): Columns {
  let c = table.columns.get(sample);
  if (c) return c;
  const lay = (m: ReadonlyMap<string, Counter>, names: readonly string[]): Counter[] =>
    table.inSampleOrder && keysAre(m, names) ? [...m.values()] : names.map((n) => m.get(n) ?? ZERO);
  c = { services: lay(sample.services, table.serviceKeys), backends: lay(sample.backends, table.backendAddresses) };
  table.columns.set(sample, c);
  return c;
}

/** A counter as a number when exact, else the bigint (the encoder takes both). */
const u64 = (v: bigint): number | bigint => (v <= 9007199254740991n ? Number(v) : v);

/**
 * Packed columns for every id, or only those whose counters differ from the baseline. Deltas are
 * over the baseline (0 without one, or when a counter went backwards).
 */
function compactCounters(
  current: readonly Counter[], baseline: readonly Counter[] | undefined, onlyChanged: boolean,
): CompactCountersMsg {
  const out: CompactCountersMsg = { id_deltas: [], packets: [], bytes: [], packets_delta: [], bytes_delta: [] };
  let lastId = 0;
  for (let id = 0; id < current.length; id++) {
    const cur = current[id]!;
    const base = baseline?.[id];
    if (onlyChanged && base && (cur === base || (cur.packets === base.packets && cur.bytes === base.bytes))) continue;
    out.id_deltas.push(id - lastId);
    lastId = id;
    out.packets.push(u64(cur.packets));
    out.bytes.push(u64(cur.bytes));
    out.packets_delta.push(base && cur.packets >= base.packets ? u64(cur.packets - base.packets) : 0);
    out.bytes_delta.push(base && cur.bytes >= base.bytes ? u64(cur.bytes - base.bytes) : 0);
  }
  return out;
}

const same = (a: Counter, b: Counter | undefined): boolean => b !== undefined && a.packets === b.packets && a.bytes === b.bytes;

/** A snapshot without its per-stream fields (sequence, dropped_snapshots), which the caller sets. */
export function buildSnapshot({ current, baseline, services, vips, changesOnly, compact, table }: SnapshotInput): StatsSnapshotMsg {
  const onlyChanged = changesOnly === true && baseline !== undefined;
  const intervalMs = baseline ? Math.max(0, current.takenAtMs - baseline.takenAtMs) : 0;
  if (compact) {
    const { names, withNames } = compact;
    const cur = columnsOf(names, current);
    const base = baseline ? columnsOf(names, baseline) : undefined;
    return {
      ...snapshotHead(current, baseline, intervalMs, onlyChanged),
      services: [],
      backends: [],
      names_version: String(names.version),
      service_keys: withNames ? [...names.serviceKeys] : [],
      backend_addresses: withNames ? [...names.backendAddresses] : [],
      compact_services: compactCounters(cur.services, base?.services, onlyChanged),
      compact_backends: compactCounters(cur.backends, base?.backends, onlyChanged),
    };
  }
  const index = services instanceof ServiceIndex ? services : new ServiceIndex(services);
  const filtered = vips.some((v) => v.trim() !== '');
  const seconds = intervalMs / 1000;
  if (!filtered && table && coversIndex(table, index)) {
    return { ...snapshotHead(current, baseline, intervalMs, onlyChanged), ...plainFromColumns(table, index, current, baseline, onlyChanged, seconds) };
  }

  const serviceMsgs: ServiceStatsMsg[] = [];
  const backendsOfSelected = new Set<string>();
  for (const key of index.select(vips, current)) {
    const status = index.byKey.get(key);
    const parts = status ?? parseServiceKey(key);
    if (!parts) continue;
    if (filtered && status) for (const b of status.backends) backendsOfSelected.add(b.address);
    const total = current.services.get(key) ?? ZERO;
    if (onlyChanged && same(total, baseline.services.get(key) ?? ZERO)) continue;
    serviceMsgs.push({
      key,
      vip: parts.vip,
      port: parts.port,
      protocol: protocolName(parts.protocol),
      total: counterMsg(total),
      rate: rateMsg(total, baseline?.services.get(key) ?? (baseline ? ZERO : undefined), seconds),
    });
  }

  const backendMsgs: BackendStatsMsg[] = [];
  const backendEntries: Iterable<[string, Counter]> = filtered
    ? [...backendsOfSelected].map((a): [string, Counter] => [a, current.backends.get(a) ?? ZERO])
    : current.backends;
  for (const [address, total] of backendEntries) {
    if (onlyChanged && same(total, baseline.backends.get(address) ?? ZERO)) continue;
    backendMsgs.push({
      address,
      total: counterMsg(total),
      rate: rateMsg(total, baseline?.backends.get(address) ?? (baseline ? ZERO : undefined), seconds),
    });
  }
  // Backends stay in the data path's order (stable): sorting 100,000 addresses per reading costs
  // more than any client gains; viewers sort by what they show.

  return { ...snapshotHead(current, baseline, intervalMs, onlyChanged), services: serviceMsgs, backends: backendMsgs };
}

/** The fields every form shares: times, data path and the (always complete) reasons. */
function snapshotHead(current: StatsSample, baseline: StatsSample | undefined, intervalMs: number, onlyChanged: boolean): Omit<StatsSnapshotMsg, 'services' | 'backends'> {
  const seconds = intervalMs / 1000;
  const reasonMsgs: ReasonStatsMsg[] = [];
  for (const [reason, total] of current.reasons) {
    reasonMsgs.push({
      reason,
      total: counterMsg(total),
      rate: rateMsg(total, baseline?.reasons.get(reason) ?? (baseline ? ZERO : undefined), seconds),
    });
  }
  return {
    taken_at_ms: String(current.takenAtMs),
    data_path: dataPathName(current.dataplane),
    rate_interval_ms: intervalMs,
    sequence: '0',
    dropped_snapshots: '0',
    reasons: reasonMsgs,
    changes_only: onlyChanged,
  };
}

const STATE_NAMES = {
  active: 'BACKEND_STATE_ACTIVE',
  draining: 'BACKEND_STATE_DRAINING',
  'mac-unresolved': 'BACKEND_STATE_MAC_UNRESOLVED',
} as const;

export function listServices(
  kind: DataplaneKind,
  services: readonly ServiceStatus[],
  vips: readonly string[],
  fallbackReason: string | undefined,
): ListServicesResponseMsg {
  const selected = serviceFilter(vips);
  const out: VirtualServiceMsg[] = services
    .filter((s) => selected(s))
    .map((s) => ({
      key: s.key,
      vip: s.vip,
      port: s.port,
      protocol: protocolName(s.protocol),
      scheduler: s.scheduler,
      persistence_s: s.persistence,
      backends: s.backends.map((b) => ({
        address: b.address,
        weight: b.weight,
        state: STATE_NAMES[b.state],
        mac: b.mac ?? '',
      })),
    }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { data_path: dataPathName(kind), fallback_reason: fallbackReason ?? '', services: out };
}
