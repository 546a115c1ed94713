/**
 * The Prometheus metrics of the director. Data-path counters are cumulative values kept by the
 * data path, so they are not incremented here: each scrape copies them from the stats hub's latest
 * reading (collect() callbacks). A scrape never reads the BPF maps itself.
 *
 * Label cardinality is bounded by configuration: one series per configured service
 * (vip, port, protocol), per configured backend, per reason name.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { StatsSample } from '../../dataplane/dataplane.js';
import { parseServiceKey } from '../snapshot.js';
import type { HubDataplane, StatsHub } from '../stats-hub.js';

export interface MetricsDeps {
  hub: StatsHub;
  dataplane: HubDataplane;
  /** Why the fallback data path runs, if it does. */
  fallbackReason?: () => string | undefined;
  /** Also export process metrics (CPU, RSS, event-loop lag, ...). Default true. */
  processMetrics?: boolean;
}

/** bigint counters become doubles; exact up to 2^53, which a counter does not reach in practice. */
const num = (v: bigint): number => Number(v);

export function createMetricsRegistry(deps: MetricsDeps): Registry {
  const { hub, dataplane } = deps;
  const registry = new Registry();
  const registers = [registry];
  const latest = (): StatsSample | undefined => hub.latest();

  const serviceLabels = (key: string): { vip: string; port: string; protocol: string } | null => {
    const p = parseServiceKey(key);
    return p ? { vip: p.vip, port: String(p.port), protocol: p.protocol } : null;
  };

  new Counter({
    name: 'xdir_service_packets_total',
    help: 'Packets the data path handled for a virtual service (port 0 = all ports).',
    labelNames: ['vip', 'port', 'protocol'] as const,
    registers,
    collect() {
      this.reset();
      const s = latest();
      if (!s) return;
      for (const [key, c] of s.services) {
        const l = serviceLabels(key);
        if (l) this.inc(l, num(c.packets));
      }
    },
  });

  new Counter({
    name: 'xdir_service_bytes_total',
    help: 'Bytes (layer 2 frame length for XDP) the data path handled for a virtual service.',
    labelNames: ['vip', 'port', 'protocol'] as const,
    registers,
    collect() {
      this.reset();
      const s = latest();
      if (!s) return;
      for (const [key, c] of s.services) {
        const l = serviceLabels(key);
        if (l) this.inc(l, num(c.bytes));
      }
    },
  });

  new Counter({
    name: 'xdir_backend_packets_total',
    help: 'Packets sent to a backend (real server), over all the services it serves.',
    labelNames: ['backend'] as const,
    registers,
    collect() {
      this.reset();
      for (const [backend, c] of latest()?.backends ?? []) this.inc({ backend }, num(c.packets));
    },
  });

  new Counter({
    name: 'xdir_backend_bytes_total',
    help: 'Bytes sent to a backend (real server), over all the services it serves.',
    labelNames: ['backend'] as const,
    registers,
    collect() {
      this.reset();
      for (const [backend, c] of latest()?.backends ?? []) this.inc({ backend }, num(c.bytes));
    },
  });

  new Counter({
    name: 'xdir_packets_by_reason_total',
    help: 'Packets by verdict or event reason (forwarded, pass-not-vip, drop-fragment, flow-new, ...).',
    labelNames: ['reason'] as const,
    registers,
    collect() {
      this.reset();
      for (const [reason, c] of latest()?.reasons ?? []) this.inc({ reason }, num(c.packets));
    },
  });

  new Counter({
    name: 'xdir_bytes_by_reason_total',
    help: 'Bytes by verdict or event reason.',
    labelNames: ['reason'] as const,
    registers,
    collect() {
      this.reset();
      for (const [reason, c] of latest()?.reasons ?? []) this.inc({ reason }, num(c.bytes));
    },
  });

  new Gauge({
    name: 'xdir_dataplane_info',
    help: 'The active data path (xdp, or the ipvs fallback); always 1.',
    labelNames: ['dataplane'] as const,
    registers,
    collect() {
      this.reset();
      this.set({ dataplane: dataplane.kind }, 1);
    },
  });

  new Gauge({
    name: 'xdir_dataplane_fallback',
    help: '1 when the director runs the fallback data path (IPVS) because XDP could not be used; the reason is in the log and in ListServices.',
    registers,
    collect() {
      this.set(deps.fallbackReason?.() ? 1 : 0);
    },
  });

  new Gauge({
    name: 'xdir_services',
    help: 'Virtual services programmed in the data path.',
    registers,
    collect() {
      this.set(dataplane.services().length);
    },
  });

  new Gauge({
    name: 'xdir_stats_last_read_timestamp_seconds',
    help: 'Unix time of the latest counter reading (0 = none yet).',
    registers,
    collect() {
      this.set((latest()?.takenAtMs ?? 0) / 1000);
    },
  });

  new Gauge({
    name: 'xdir_stats_read_duration_seconds',
    help: 'Time the latest reading of all data-path counters took.',
    registers,
    collect() {
      this.set(hub.counts().lastReadDurationMs / 1000);
    },
  });

  new Gauge({
    name: 'xdir_stats_read_interval_seconds',
    help: 'Current period of counter readings (the finest Watch interval, within the configured bounds).',
    registers,
    collect() {
      this.set(hub.periodMs() / 1000);
    },
  });

  new Counter({
    name: 'xdir_stats_reads_total',
    help: 'Readings of the data-path counters (one per period, whatever the number of subscribers).',
    registers,
    collect() {
      this.reset();
      this.inc(hub.counts().reads);
    },
  });

  new Counter({
    name: 'xdir_stats_read_errors_total',
    help: 'Failed readings of the data-path counters.',
    registers,
    collect() {
      this.reset();
      this.inc(hub.counts().readErrors);
    },
  });

  new Gauge({
    name: 'xdir_grpc_watch_subscribers',
    help: 'Open Watch streams.',
    registers,
    collect() {
      this.set(hub.counts().subscribers);
    },
  });

  new Counter({
    name: 'xdir_grpc_watch_snapshots_sent_total',
    help: 'Snapshots handed to Watch streams.',
    registers,
    collect() {
      this.reset();
      this.inc(num(hub.counts().snapshotsSent));
    },
  });

  new Counter({
    name: 'xdir_grpc_watch_snapshots_dropped_total',
    help: 'Snapshots dropped (oldest first) because a Watch client did not read them in time.',
    registers,
    collect() {
      this.reset();
      this.inc(num(hub.counts().snapshotsDropped));
    },
  });

  new Counter({
    name: 'xdir_grpc_watch_slow_disconnects_total',
    help: 'Watch streams closed because their client stopped reading.',
    registers,
    collect() {
      this.reset();
      this.inc(hub.counts().subscribersClosedTooSlow);
    },
  });

  if (deps.processMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    // prom-client names these gauges `_total`, which Prometheus reserves for counters (promtool
    // rejects them); the per-type gauges without the suffix carry the same numbers.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      registry.removeSingleMetric(name);
    }
  }
  return registry;
}
