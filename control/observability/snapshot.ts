/**
 * Pure conversions from data-path readings to the `xdir.v1` messages: cumulative counters, rates
 * over the interval between two readings, VIP filters. No I/O, so the hub, the unary calls and
 * the tests all share one definition of what a snapshot says.
 */
import type { Counter, DataplaneKind, ServiceStatus, StatsSample } from '../dataplane/dataplane.js';
import type { Protocol } from '../model/types.js';
import type {
  BackendStatsMsg, CounterMsg, DataPathName, ListServicesResponseMsg, ProtocolName, RateMsg,
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
}

const same = (a: Counter, b: Counter | undefined): boolean => b !== undefined && a.packets === b.packets && a.bytes === b.bytes;

/** A snapshot without its per-stream fields (sequence, dropped_snapshots), which the caller sets. */
export function buildSnapshot({ current, baseline, services, vips, changesOnly }: SnapshotInput): StatsSnapshotMsg {
  const onlyChanged = changesOnly === true && baseline !== undefined;
  const index = services instanceof ServiceIndex ? services : new ServiceIndex(services);
  const filtered = vips.some((v) => v.trim() !== '');
  const intervalMs = baseline ? Math.max(0, current.takenAtMs - baseline.takenAtMs) : 0;
  const seconds = intervalMs / 1000;

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
    services: serviceMsgs,
    backends: backendMsgs,
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
