/**
 * Observability wiring: one stats hub feeding the gRPC API and the Prometheus endpoint.
 * The run command calls startObservability() once the data path exists; stop() (or the signal)
 * shuts everything down. Both endpoints are read-only views of the data path.
 */
import type { Dataplane } from '../dataplane/dataplane.js';
import { logger } from '../log.js';
import { DIRECTOR_SERVICE_NAME } from './grpc/proto.js';
import { startGrpcServer, type GrpcServerOptions, type RunningGrpcServer } from './grpc/server.js';
import { DEFAULT_GRPC_ADDRESS } from './grpc/listen-address.js';
import { DEFAULT_METRICS_ADDRESS, startMetricsServer, type Readiness, type RunningMetricsServer } from './metrics/http-server.js';
import { createMetricsRegistry, type ControlPlaneStatus } from './metrics/registry.js';
import { StatsHub, type StatsHubOptions } from './stats-hub.js';

export { StatsHub } from './stats-hub.js';
export type { Readiness } from './metrics/http-server.js';

const log = logger('observability');

export interface ObservabilityOptions {
  dataplane: Pick<Dataplane, 'kind' | 'readStats' | 'services'>;
  /** gRPC API; `false` = off. */
  grpc?: GrpcServerOptions | false;
  /** Prometheus endpoint; `false` = off. Default address 127.0.0.1:9469. */
  metrics?: { address?: string; processMetrics?: boolean } | false;
  /** Stats hub tuning (reading period bounds, per-subscriber queue). */
  stats?: Omit<StatsHubOptions, 'dataplane'>;
  /** True once the data path is loaded and the first sync is done (/readyz, grpc.health.v1). */
  readiness: Readiness;
  /** Reconcile-loop and source health for the metrics (applies, failures, rejected inputs). */
  controlPlane?: () => ControlPlaneStatus;
  /** Why the fallback data path (IPVS) runs, if it does. */
  fallbackReason?: () => string | undefined;
  signal?: AbortSignal;
  /** Poll the counters on a timer (default true). Tests pass false and drive `hub.tick()`. */
  poll?: boolean;
}

export interface Observability {
  readonly hub: StatsHub;
  /** gRPC target clients dial, if gRPC is on. */
  readonly grpcTarget?: string;
  /** http://host:port of the metrics endpoint, if on. */
  readonly metricsUrl?: string;
  stop(): Promise<void>;
}

export async function startObservability(opts: ObservabilityOptions): Promise<Observability> {
  const hub = new StatsHub({ dataplane: opts.dataplane, ...opts.stats });
  let grpcServer: RunningGrpcServer | undefined;
  let metricsServer: RunningMetricsServer | undefined;
  let unwatch: (() => void) | undefined;

  const stop = async (): Promise<void> => {
    unwatch?.();
    hub.stop();
    await Promise.all([grpcServer?.stop(), metricsServer?.stop()]);
  };

  try {
    if (opts.grpc !== false) {
      grpcServer = await startGrpcServer(
        { hub, dataplane: opts.dataplane, fallbackReason: opts.fallbackReason },
        opts.grpc ?? {},
      );
      // grpc.health.v1 follows readiness, checked after each reading.
      const health = grpcServer.health;
      let last: boolean | undefined;
      const update = (): void => {
        Promise.resolve().then(opts.readiness).then((ready) => {
          if (ready === last) return;
          last = ready;
          const status = ready ? 'SERVING' : 'NOT_SERVING';
          health.setStatus('', status);
          health.setStatus(DIRECTOR_SERVICE_NAME, status);
        }, (err: unknown) => log.warn({ err: String(err) }, 'readiness check failed'));
      };
      unwatch = hub.onSample(update);
      update();
    }
    if (opts.metrics !== false) {
      const registry = createMetricsRegistry({
        hub, dataplane: opts.dataplane, fallbackReason: opts.fallbackReason,
        processMetrics: opts.metrics?.processMetrics, controlPlane: opts.controlPlane,
      });
      metricsServer = await startMetricsServer(registry, opts.readiness, opts.metrics?.address ?? DEFAULT_METRICS_ADDRESS);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  if (opts.poll !== false) hub.start(opts.signal);
  opts.signal?.addEventListener('abort', () => { void stop(); }, { once: true });
  return { hub, grpcTarget: grpcServer?.target, metricsUrl: metricsServer?.url, stop };
}

/** The flags of the observability endpoints, for node:util parseArgs in the run command. */
export const OBSERVABILITY_FLAGS = {
  grpc: { type: 'string' },
  'grpc-tls-cert': { type: 'string' },
  'grpc-tls-key': { type: 'string' },
  'grpc-tls-client-ca': { type: 'string' },
  'grpc-insecure': { type: 'boolean' },
  'no-grpc': { type: 'boolean' },
  'metrics-address': { type: 'string' },
  'no-metrics': { type: 'boolean' },
  'stats-interval-ms': { type: 'string' },
} as const;

export const OBSERVABILITY_USAGE = `observability:
  --grpc ADDR              gRPC API address: unix:/path, HOST:PORT, [IPv6]:PORT (default ${DEFAULT_GRPC_ADDRESS})
  --grpc-tls-cert FILE     server certificate (PEM); with --grpc-tls-key turns TLS on
  --grpc-tls-key FILE      server private key (PEM)
  --grpc-tls-client-ca FILE  require client certificates signed by this CA (mutual TLS)
  --grpc-insecure          allow a non-loopback --grpc address without TLS
  --no-grpc                no gRPC API
  --metrics-address ADDR   Prometheus /metrics, /healthz, /readyz (default ${DEFAULT_METRICS_ADDRESS})
  --no-metrics             no metrics endpoint
  --stats-interval-ms N    counter reading period without Watch subscribers (default 1000)`;

type FlagValues = { [K in keyof typeof OBSERVABILITY_FLAGS]?: (typeof OBSERVABILITY_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

/** parseArgs values -> the grpc/metrics/stats parts of ObservabilityOptions. */
export function observabilityOptionsFromFlags(v: FlagValues): Pick<ObservabilityOptions, 'grpc' | 'metrics' | 'stats'> {
  let baseIntervalMs: number | undefined;
  if (v['stats-interval-ms'] !== undefined) {
    baseIntervalMs = Number(v['stats-interval-ms']);
    if (!Number.isInteger(baseIntervalMs) || baseIntervalMs < 100) {
      throw new Error(`--stats-interval-ms '${v['stats-interval-ms']}' must be an integer >= 100`);
    }
  }
  return {
    grpc: v['no-grpc'] ? false : {
      address: v.grpc,
      tlsCert: v['grpc-tls-cert'],
      tlsKey: v['grpc-tls-key'],
      tlsClientCa: v['grpc-tls-client-ca'],
      insecure: v['grpc-insecure'] === true,
    },
    metrics: v['no-metrics'] ? false : { address: v['metrics-address'] },
    stats: baseIntervalMs ? { baseIntervalMs } : undefined,
  };
}
