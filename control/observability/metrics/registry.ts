/**
 * The Prometheus metrics of the director. Data-path counters are cumulative values kept by the
 * data path, so they are not incremented here: each scrape copies them from the stats hub's latest
 * reading (collect() callbacks). A scrape never reads the BPF maps itself.
 *
 * Label cardinality is bounded by configuration: one series per configured service
 * (vip, port, protocol), per configured backend, per reason name.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Counter as DataplaneCounter, StatsSample } from '../../dataplane/dataplane.js';
import { parseServiceKey } from '../snapshot.js';
import type { HubDataplane, StatsHub } from '../stats-hub.js';

/** How the control plane is doing: counts since start, read at scrape time. */
export interface ControlPlaneStatus {
  /** Desired states applied to the data path. */
  applies: number;
  /** Applies that failed (each is retried with backoff). */
  applyFailures: number;
  /** Date.now() of the last successful apply, if any. */
  lastAppliedAtMs?: number;
  /** Source inputs rejected as invalid (config edits), the last good state kept running. */
  rejectedInputs: number;
}

export interface MetricsDeps {
  /** Reconcile loop and source health; absent: those metrics are not exported. */
  controlPlane?: () => ControlPlaneStatus;
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

  /**
   * A counter whose series mirror one map of the latest reading: `labelsOf` turns a map key into
   * the series' labels (null skips it), `field` picks packets or bytes.
   */
  const mirroredCounter = <L extends string>(
    name: string, help: string, labelNames: readonly L[],
    entries: (s: StatsSample) => Map<string, DataplaneCounter>, labelsOf: (key: string) => Record<L, string> | null,
    field: keyof DataplaneCounter,
  ): void => {
    new Counter({
      name, help, labelNames, registers,
      collect() {
        this.reset();
        const s = latest();
        if (!s) return;
        for (const [key, c] of entries(s)) {
          const labels = labelsOf(key);
          if (labels) this.inc(labels, num(c[field]));
        }
      },
    });
  };
  const SERVICE = ['vip', 'port', 'protocol'] as const;
  mirroredCounter('xdir_service_packets_total', 'Packets the data path handled for a virtual service (port 0 = all ports).',
    SERVICE, (s) => s.services, serviceLabels, 'packets');
  mirroredCounter('xdir_service_bytes_total', 'Bytes (layer 2 frame length for XDP) the data path handled for a virtual service.',
    SERVICE, (s) => s.services, serviceLabels, 'bytes');
  mirroredCounter('xdir_backend_packets_total', 'Packets sent to a backend (real server), over all the services it serves.',
    ['backend'] as const, (s) => s.backends, (backend) => ({ backend }), 'packets');
  mirroredCounter('xdir_backend_bytes_total', 'Bytes sent to a backend (real server), over all the services it serves.',
    ['backend'] as const, (s) => s.backends, (backend) => ({ backend }), 'bytes');
  mirroredCounter('xdir_packets_by_reason_total', 'Packets by verdict or event reason (forwarded, pass-not-vip, drop-fragment, flow-new, ...).',
    ['reason'] as const, (s) => s.reasons, (reason) => ({ reason }), 'packets');
  mirroredCounter('xdir_bytes_by_reason_total', 'Bytes by verdict or event reason.',
    ['reason'] as const, (s) => s.reasons, (reason) => ({ reason }), 'bytes');

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

  const cp = deps.controlPlane;
  if (cp) {
    const total = (name: string, help: string, value: (c: ControlPlaneStatus) => number): void => {
      new Counter({ name, help, registers, collect() { this.reset(); this.inc(value(cp())); } });
    };
    total('xdir_applies_total', 'Desired states applied to the data path.', (c) => c.applies);
    total('xdir_apply_failures_total', 'Applies to the data path that failed (retried with backoff; alert when it keeps rising).', (c) => c.applyFailures);
    total('xdir_source_rejections_total', 'Source inputs rejected as invalid (e.g. config edits); the last good state kept running.', (c) => c.rejectedInputs);
    new Gauge({
      name: 'xdir_last_apply_success_timestamp_seconds',
      help: 'Unix time of the last successful apply (0 before the first).',
      registers,
      collect() { this.set((cp().lastAppliedAtMs ?? 0) / 1000); },
    });
  }

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
