/**
 * A GET that returns the API server's JSON as plain objects, for the informers' list calls.
 *
 * client-node's generated list methods run every item through ObjectSerializer into model classes
 * (Date fields included); with 10,000 Services and 10,000 EndpointSlices that was most of the
 * director's start-up CPU and a large share of its heap, and it made listed objects differ from
 * watched ones, which client-node's Watch already hands over as plain JSON. The request is built
 * from the same KubeConfig the typed clients use (`applyToHTTPSOptions`: auth plugins, client
 * certificates, TLS settings, proxy agent), as client-node's Watch does for its fetch.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** An API error as the rest of the code reads it (client-node's ApiException shape: `.code`, `.body`). */
class RawApiError extends Error {
  constructor(readonly code: number, readonly body: string, path: string) {
    let message = body;
    try { message = (JSON.parse(body) as { message?: string }).message ?? body; } catch { /* not JSON */ }
    super(`HTTP ${code} from GET ${path}: ${message.split('\n')[0]}`);
  }
}

/** GETs `path` (with `query`) from the current cluster and parses the JSON body. */
export async function getJson(config: KubeConfig, path: string, query: Record<string, string>): Promise<unknown> {
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new Error('the Kubernetes configuration names no current cluster; set current-context or pass --kubeconfig');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  await config.applyToHTTPSOptions(opts);
  const headers = { ...(opts.headers as Record<string, string>), Accept: 'application/json' };
  const request = url.protocol === 'http:' ? http.request : https.request;
  return new Promise((resolve, reject) => {
    const req = request(url, { ...opts, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const code = res.statusCode ?? 0;
        if (code < 200 || code >= 300) { reject(new RawApiError(code, text, url.pathname)); return; }
        try { resolve(JSON.parse(text)); } catch (err) {
          reject(new Error(`GET ${url.pathname}: the response is not JSON (${(err as Error).message}); check the API server address`));
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * Drops what the controller never reads and what can dwarf the rest of an object: managedFields
 * and kubectl's last-applied copy of the whole object (client-go informers are commonly given the
 * same transform). Status writes stay correct without them: an update that omits managedFields
 * keeps the server's, and a /status write ignores metadata changes anyway.
 */
export function trimObject<T>(o: T): T {
  const meta = (o as { metadata?: { managedFields?: unknown; annotations?: Record<string, string> } } | null)?.metadata;
  if (meta) {
    if (meta.managedFields !== undefined) delete meta.managedFields;
    if (meta.annotations && LAST_APPLIED in meta.annotations) delete meta.annotations[LAST_APPLIED];
  }
  return o;
}
