/**
 * The client side of the compact Watch form (WatchRequest.compact, usually with changes_only): keeps
 * the stream's name table and the last known counters of every entry, and turns each compact
 * snapshot back into the plain form (every selected service and backend listed, with its total
 * and rate), so viewers such as `xdir top` handle one shape whatever they asked the server for.
 */
import { protocolName, parseServiceKey } from '../snapshot.js';
import type { BackendStatsMsg, CompactCountersMsg, ServiceStatsMsg, StatsSnapshotMsg } from './proto.js';

interface Entry { packets: string; bytes: string; pps: number; bps: number }

const IDLE = { packets_per_second: 0, bytes_per_second: 0 };

class Column {
  names: string[] = [];
  entries: (Entry | undefined)[] = [];

  reset(names: string[]): void {
    this.names = names;
    this.entries = new Array(names.length);
  }

  /** Applies one compact column; entries it does not list are unchanged (rate 0) or, when complete, absent. */
  apply(c: CompactCountersMsg | null | undefined, seconds: number, complete: boolean): void {
    if (complete) this.entries = new Array(this.names.length);
    else for (const e of this.entries) if (e) { e.pps = 0; e.bps = 0; }
    if (!c) return;
    let id = 0;
    for (let i = 0; i < c.id_deltas.length; i++) {
      id += Number(c.id_deltas[i]);
      if (id >= this.names.length) throw new Error(`compact snapshot names id ${id}, beyond its name table (${this.names.length} entries)`);
      const dp = Number(c.packets_delta[i] ?? 0);
      const db = Number(c.bytes_delta[i] ?? 0);
      this.entries[id] = {
        packets: String(c.packets[i] ?? '0'),
        bytes: String(c.bytes[i] ?? '0'),
        pps: seconds > 0 ? dp / seconds : 0,
        bps: seconds > 0 ? db / seconds : 0,
      };
    }
  }
}

export class CompactView {
  private version: string | undefined;
  private readonly services = new Column();
  private readonly backends = new Column();

  /**
   * The plain form of `snap`; a plain snapshot passes through. Undefined for a compact snapshot
   * whose name table this view does not have (it comes again with the next one that carries it).
   */
  apply(snap: StatsSnapshotMsg): StatsSnapshotMsg | undefined {
    if (!snap.compact_services && !snap.compact_backends) return snap;
    const version = snap.names_version ?? '0';
    if (snap.service_keys?.length || snap.backend_addresses?.length) {
      this.version = version;
      this.services.reset([...(snap.service_keys ?? [])]);
      this.backends.reset([...(snap.backend_addresses ?? [])]);
    } else if (version !== this.version) {
      return undefined;
    }
    const seconds = snap.rate_interval_ms / 1000;
    const complete = !snap.changes_only;
    this.services.apply(snap.compact_services, seconds, complete);
    this.backends.apply(snap.compact_backends, seconds, complete);

    const services: ServiceStatsMsg[] = [];
    this.services.entries.forEach((e, id) => {
      const key = this.services.names[id]!;
      const parts = parseServiceKey(key);
      if (!e || !parts) return;
      services.push({
        key, vip: parts.vip, port: parts.port, protocol: protocolName(parts.protocol),
        total: { packets: e.packets, bytes: e.bytes },
        rate: e.pps || e.bps ? { packets_per_second: e.pps, bytes_per_second: e.bps } : IDLE,
      });
    });
    const backends: BackendStatsMsg[] = [];
    this.backends.entries.forEach((e, id) => {
      if (!e) return;
      backends.push({
        address: this.backends.names[id]!,
        total: { packets: e.packets, bytes: e.bytes },
        rate: e.pps || e.bps ? { packets_per_second: e.pps, bytes_per_second: e.bps } : IDLE,
      });
    });
    return {
      taken_at_ms: snap.taken_at_ms, data_path: snap.data_path, rate_interval_ms: snap.rate_interval_ms,
      sequence: snap.sequence, dropped_snapshots: snap.dropped_snapshots, reasons: snap.reasons,
      changes_only: false, services, backends,
    };
  }
}
