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

export interface SnapshotInput {
  current: StatsSample;
  /** The earlier reading rates are computed from; none = rates are 0. */
  baseline?: StatsSample;
  /** The services as programmed (for VIP/port/protocol of each key and the backends of a filtered view). */
  services: readonly ServiceStatus[];
  /** VIP filters (see serviceFilter). */
  vips: readonly string[];
}

/** A snapshot without its per-stream fields (sequence, dropped_snapshots), which the caller sets. */
export function buildSnapshot({ current, baseline, services, vips }: SnapshotInput): StatsSnapshotMsg {
  const selected = serviceFilter(vips);
  const filtered = vips.length > 0;
  const intervalMs = baseline ? Math.max(0, current.takenAtMs - baseline.takenAtMs) : 0;
  const seconds = intervalMs / 1000;

  const byKey = new Map<string, ServiceStatus>();
  for (const s of services) byKey.set(s.key, s);
  const keys = new Set<string>(current.services.keys());
  for (const s of services) keys.add(s.key);

  const serviceMsgs: ServiceStatsMsg[] = [];
  const backendsOfSelected = new Set<string>();
  for (const key of keys) {
    const status = byKey.get(key);
    const parts = status ?? parseServiceKey(key);
    if (!parts) continue;
    if (!selected({ key, vip: parts.vip })) continue;
    if (filtered && status) for (const b of status.backends) backendsOfSelected.add(b.address);
    const total = current.services.get(key) ?? ZERO;
    serviceMsgs.push({
      key,
      vip: parts.vip,
      port: parts.port,
      protocol: protocolName(parts.protocol),
      total: counterMsg(total),
      rate: rateMsg(total, baseline?.services.get(key) ?? (baseline ? ZERO : undefined), seconds),
    });
  }
  serviceMsgs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

  const backendMsgs: BackendStatsMsg[] = [];
  for (const [address, total] of current.backends) {
    if (filtered && !backendsOfSelected.has(address)) continue;
    backendMsgs.push({
      address,
      total: counterMsg(total),
      rate: rateMsg(total, baseline?.backends.get(address) ?? (baseline ? ZERO : undefined), seconds),
    });
  }
  backendMsgs.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));

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
