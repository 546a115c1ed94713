/**
 * Text rendering of services, counters and rates for `xdir status` and `xdir top`. Pure: strings in,
 * strings out, so the commands only do I/O.
 */
import type {
  BackendStateName, CounterMsg, ListServicesResponseMsg, RateMsg, StatsSnapshotMsg,
} from './grpc/proto.js';

const STATE_TEXT: Record<BackendStateName, string> = {
  BACKEND_STATE_UNSPECIFIED: '?',
  BACKEND_STATE_ACTIVE: 'active',
  BACKEND_STATE_DRAINING: 'draining',
  BACKEND_STATE_MAC_UNRESOLVED: 'mac-unresolved',
};

export function dataPathText(name: string): string {
  return name === 'DATA_PATH_XDP' ? 'xdp' : name === 'DATA_PATH_IPVS' ? 'ipvs' : 'unknown';
}

/** 1234567 -> "1.23M"; below 1000 as is. */
export function si(n: number, unit = ''): string {
  const abs = Math.abs(n);
  const [d, s] = abs >= 1e12 ? [1e12, 'T'] : abs >= 1e9 ? [1e9, 'G'] : abs >= 1e6 ? [1e6, 'M'] : abs >= 1e3 ? [1e3, 'k'] : [1, ''];
  const v = n / d;
  const text = d === 1 ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2);
  return `${text}${s}${unit}`;
}

function bytesText(bytes: string | number): string {
  return si(Number(bytes), 'B');
}

/** Columns padded to the widest cell; the last column is not padded. Numbers (right-aligned) start with a digit. */
export function table(rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length); });
  return rows
    .map((r) => r.map((c, i) => {
      if (i === r.length - 1 && !rightAligned.has(i)) return c;
      return rightAligned.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!);
    }).join('  ').trimEnd())
    .join('\n');
}

function rateText(r: RateMsg | undefined): [string, string] {
  if (!r) return ['-', '-'];
  return [si(r.packets_per_second, 'pps'), si(r.bytes_per_second * 8, 'bps')];
}

function drops(snap: StatsSnapshotMsg): { packets: bigint; parts: string[] } {
  let packets = 0n;
  const parts: string[] = [];
  for (const r of snap.reasons) {
    if (!r.reason.startsWith('drop-')) continue;
    const p = BigInt(r.total.packets);
    packets += p;
    if (p > 0n) parts.push(`${r.reason} ${p}`);
  }
  return { packets, parts };
}

/** `xdir status`: services with their backends and cumulative counters, then reasons. */
export function formatStatus(list: ListServicesResponseMsg, snap: StatsSnapshotMsg | undefined): string {
  const out: string[] = [];
  const fallback = list.fallback_reason ? ` (fallback: ${list.fallback_reason})` : '';
  out.push(`data path: ${dataPathText(list.data_path)}${fallback}`);
  const svcStats = new Map((snap?.services ?? []).map((s) => [s.key, s.total]));
  const beStats = new Map((snap?.backends ?? []).map((b) => [b.address, b.total]));
  const count = (c: CounterMsg | undefined): [string, string] => (c ? [c.packets, bytesText(c.bytes)] : ['-', '-']);
  const rows: string[][] = [['SERVICE / BACKEND', 'SCHED', 'WEIGHT', 'STATE', 'PACKETS', 'BYTES']];
  for (const s of list.services) {
    const persistence = s.persistence_s > 0 ? `${s.scheduler} p${s.persistence_s}s` : s.scheduler;
    rows.push([s.key, persistence, '', `${s.backends.length} backend${s.backends.length === 1 ? '' : 's'}`, ...count(svcStats.get(s.key))]);
    for (const b of s.backends) {
      rows.push([`  ${b.address}`, '', String(b.weight), STATE_TEXT[b.state] ?? b.state, ...count(beStats.get(b.address))]);
    }
  }
  if (list.services.length === 0) out.push('no virtual services');
  else out.push(table(rows, new Set([2, 4, 5])));
  if (snap) {
    const d = drops(snap);
    out.push('');
    out.push(`drops: ${d.packets} packets${d.parts.length ? ` (${d.parts.join(', ')})` : ''}`);
    const reasons: string[][] = [['REASON', 'PACKETS', 'BYTES']];
    for (const r of snap.reasons) reasons.push([r.reason, r.total.packets, bytesText(r.total.bytes)]);
    out.push(table(reasons, new Set([1, 2])));
    out.push('');
    out.push(`counters read at ${new Date(Number(snap.taken_at_ms)).toISOString()}`);
  } else {
    out.push('');
    out.push('no counters yet (the director has not read the data path yet; retry in a second)');
  }
  return out.join('\n');
}

/** One `xdir top` frame: rates per VIP service, per backend, per reason. `maxRows` bounds each table. */
export function formatTopFrame(snap: StatsSnapshotMsg, list: ListServicesResponseMsg | undefined, maxRows = 20): string {
  const out: string[] = [];
  const d = drops(snap);
  const when = new Date(Number(snap.taken_at_ms)).toISOString().slice(11, 19);
  const missed = snap.dropped_snapshots !== '0' ? `  (missed ${snap.dropped_snapshots} frames)` : '';
  out.push(`xdir top — ${dataPathText(snap.data_path)} — ${when} — every ${snap.rate_interval_ms || '?'} ms — drops ${d.packets}${missed}   q: quit`);
  out.push('');
  const byRate = <T extends { rate: RateMsg }>(a: T, b: T): number => b.rate.packets_per_second - a.rate.packets_per_second;
  const svc = [...snap.services].sort(byRate);
  const rows: string[][] = [['SERVICE', 'PKT/S', 'BIT/S', 'PACKETS']];
  for (const s of svc.slice(0, maxRows)) rows.push([s.key, ...rateText(s.rate), s.total.packets]);
  out.push(table(rows, new Set([1, 2, 3])));
  if (svc.length > maxRows) out.push(`… ${svc.length - maxRows} more services`);
  out.push('');
  const state = new Map<string, string>();
  for (const s of list?.services ?? []) for (const b of s.backends) state.set(b.address, `${STATE_TEXT[b.state] ?? b.state} w${b.weight}`);
  const be = [...snap.backends].sort(byRate);
  const brows: string[][] = [['BACKEND', 'STATE', 'PKT/S', 'BIT/S', 'PACKETS']];
  for (const b of be.slice(0, maxRows)) brows.push([b.address, state.get(b.address) ?? '', ...rateText(b.rate), b.total.packets]);
  out.push(table(brows, new Set([2, 3, 4])));
  if (be.length > maxRows) out.push(`… ${be.length - maxRows} more backends`);
  out.push('');
  const rrows: string[][] = [['REASON', 'PKT/S', 'PACKETS']];
  for (const r of snap.reasons) rrows.push([r.reason, si(r.rate.packets_per_second, 'pps'), r.total.packets]);
  out.push(table(rrows, new Set([1, 2])));
  return out.join('\n');
}
