/**
 * The metrics endpoint (node:http): /metrics for Prometheus, /healthz (the process answers) and
 * /readyz (the data path is loaded and the first sync is done). Loopback by default.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { isLoopbackHost } from '../grpc/listen-address.js';
import { logger } from '../../log.js';

const log = logger('metrics');

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9469';

export type Readiness = () => boolean | Promise<boolean>;

export interface RunningMetricsServer {
  /** `http://host:port` as bound. */
  readonly url: string;
  stop(): Promise<void>;
}

export function parseHostPort(text: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m || Number(m[3]) > 65535) throw new Error(`${flag} '${text}' is not HOST:PORT or [IPv6]:PORT (e.g. ${DEFAULT_METRICS_ADDRESS})`);
  return { host: (m[1] ?? m[2]) || '127.0.0.1', port: Number(m[3]) };
}

export async function startMetricsServer(
  registry: Registry,
  readiness: Readiness,
  address: string = DEFAULT_METRICS_ADDRESS,
): Promise<RunningMetricsServer> {
  const { host, port } = parseHostPort(address, '--metrics-address');
  if (!isLoopbackHost(host)) {
    // Read-only, but it lists every VIP and backend: the default stays on loopback.
    log.warn({ address }, 'metrics endpoint listens beyond loopback without TLS; it exposes the VIP and backend inventory');
  }
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, text, registry.contentType),
        (err: unknown) => reply(500, `cannot collect metrics: ${String(err)}\n`),
      );
    } else if (path === '/healthz') {
      reply(200, 'ok\n');
    } else if (path === '/readyz') {
      Promise.resolve()
        .then(readiness)
        .then(
          (ready) => reply(ready ? 200 : 503, ready ? 'ready\n' : 'not ready: data path not loaded or first sync not done\n'),
          (err: unknown) => reply(503, `not ready: ${String(err)}\n`),
        );
    } else {
      reply(404, 'not found: try /metrics, /healthz or /readyz\n');
    }
  });
  // Scrapers keep connections alive; do not let idle ones pin the process at shutdown.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen for metrics on ${address}: ${err.message}; pick another --metrics-address`)));
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  log.info({ url }, 'metrics listening');
  return {
    url,
    stop: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
