/**
 * Every Kubernetes API call the controller makes, in RBAC terms. The code issues calls only
 * through these entries (informers by their list/watch entries, writes through KubeApi), and
 * test/deploy/manifests.test.ts checks that deploy/rbac.yaml grants exactly these: neither a
 * missing permission nor a spare one.
 */
import {
  CoordinationV1Api, CoreV1Api, CustomObjectsApi,
  type CoreV1Event, type KubeConfig, type V1ConfigMap, type V1EndpointSlice, type V1Lease, type V1Node, type V1Service,
} from '@kubernetes/client-node';
import { getJson, trimObject } from './raw-get.js';

interface RawList<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** Where the permission is granted: cluster-wide (ClusterRole), or in the controller's own namespace (Role). */
export type ApiScope = 'cluster' | 'own-namespace' | 'ingress-namespace';

export interface ApiCall {
  group: string;
  resource: string;
  verb: 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete';
  scope: ApiScope;
}

export const IPPOOL_GROUP = 'xdir.io';
/** Objects per list request (kube-apiserver's chunking; client-go's pager uses 500 too). */
export const LIST_PAGE = 500;
export const IPPOOL_VERSION = 'v1alpha1';
export const IPPOOL_PLURAL = 'ippools';

export const API_CALLS = {
  listServices: { group: '', resource: 'services', verb: 'list', scope: 'cluster' },
  watchServices: { group: '', resource: 'services', verb: 'watch', scope: 'cluster' },
  getService: { group: '', resource: 'services', verb: 'get', scope: 'cluster' },
  updateServiceStatus: { group: '', resource: 'services/status', verb: 'update', scope: 'cluster' },
  listEndpointSlices: { group: 'discovery.k8s.io', resource: 'endpointslices', verb: 'list', scope: 'cluster' },
  watchEndpointSlices: { group: 'discovery.k8s.io', resource: 'endpointslices', verb: 'watch', scope: 'cluster' },
  listNodes: { group: '', resource: 'nodes', verb: 'list', scope: 'cluster' },
  watchNodes: { group: '', resource: 'nodes', verb: 'watch', scope: 'cluster' },
  listConfigMaps: { group: '', resource: 'configmaps', verb: 'list', scope: 'ingress-namespace' },
  watchConfigMaps: { group: '', resource: 'configmaps', verb: 'watch', scope: 'ingress-namespace' },
  listIPPools: { group: IPPOOL_GROUP, resource: IPPOOL_PLURAL, verb: 'list', scope: 'cluster' },
  watchIPPools: { group: IPPOOL_GROUP, resource: IPPOOL_PLURAL, verb: 'watch', scope: 'cluster' },
  updateIPPoolStatus: { group: IPPOOL_GROUP, resource: `${IPPOOL_PLURAL}/status`, verb: 'update', scope: 'cluster' },
  // Events go to the namespace of the object they are about (any namespace; cluster-scoped -> default).
  createEvent: { group: '', resource: 'events', verb: 'create', scope: 'cluster' },
  getLease: { group: 'coordination.k8s.io', resource: 'leases', verb: 'get', scope: 'own-namespace' },
  createLease: { group: 'coordination.k8s.io', resource: 'leases', verb: 'create', scope: 'own-namespace' },
  updateLease: { group: 'coordination.k8s.io', resource: 'leases', verb: 'update', scope: 'own-namespace' },
} as const satisfies Record<string, ApiCall>;

export type ApiCallName = keyof typeof API_CALLS;

/** An API error's HTTP code (client-node ApiException `.code`, watch errors `.statusCode`). */
export function apiErrorCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  if (e && typeof e.code === 'number') return e.code;
  if (e && typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** One line saying what failed, for logs and errors (ApiException messages carry whole bodies). */
export function describeApiError(err: unknown): string {
  const code = apiErrorCode(err);
  const body = (err as { body?: unknown })?.body;
  let message = (err as Error)?.message ?? String(err);
  if (typeof body === 'string') {
    try { message = JSON.parse(body).message ?? message; } catch { /* not JSON */ }
  } else if (body && typeof body === 'object' && 'message' in body) {
    message = String((body as { message: unknown }).message);
  }
  return code ? `HTTP ${code}: ${message.split('\n')[0]}` : message.split('\n')[0]!;
}

/** The typed clients, reachable only through calls named in API_CALLS. */
export class KubeApi {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly coordination: CoordinationV1Api;
  /** Calls made, by name (for metrics and tests). */
  readonly counts = new Map<ApiCallName, number>();

  constructor(readonly config: KubeConfig) {
    this.core = config.makeApiClient(CoreV1Api);
    this.custom = config.makeApiClient(CustomObjectsApi);
    this.coordination = config.makeApiClient(CoordinationV1Api);
  }

  private count(name: ApiCallName): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  /**
   * Lists in chunks of LIST_PAGE (limit/continue), so a 10,000-object list never sits in memory as
   * one response body plus its parsed copy; the pages join into one list with the first page's
   * resourceVersion, which the informer then watches from.
   *
   * Pages are decoded as plain JSON, not through client-node's ObjectSerializer: that turns every
   * item into model classes with Date fields, which cost most of a 10,000-Service start (CPU and
   * heap) and made listed objects differ from watched ones (always plain JSON). Requests still go
   * through the KubeConfig (auth plugins, TLS, proxy), as client-node's own Watch does.
   */
  private async paged<T>(name: ApiCallName, path: string): Promise<{ metadata: { resourceVersion?: string }; items: T[] }> {
    let items: T[] = [];
    let resourceVersion: string | undefined;
    let cont: string | undefined;
    do {
      this.count(name);
      const page = await getJson(this.config, path, { limit: String(LIST_PAGE), ...(cont ? { continue: cont } : {}) }) as RawList<T>;
      if (!Array.isArray(page?.items)) throw new Error(`GET ${path}: the API server answered without an items list; check that the server is a Kubernetes API server`);
      if (resourceVersion === undefined) { resourceVersion = page.metadata?.resourceVersion; items = page.items; }
      else for (const item of page.items) items.push(item);
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return { metadata: { resourceVersion }, items: items.map(trimObject) };
  }

  listServices() { return this.paged<V1Service>('listServices', WATCHED.services.path()); }
  listEndpointSlices() { return this.paged<V1EndpointSlice>('listEndpointSlices', WATCHED.endpointSlices.path()); }
  listNodes() { return this.paged<V1Node>('listNodes', WATCHED.nodes.path()); }
  listConfigMaps(namespace: string) { return this.paged<V1ConfigMap>('listConfigMaps', WATCHED.configMaps.path(namespace)); }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  listIPPools() { return this.paged<any>('listIPPools', WATCHED.ipPools.path()); }

  getService(namespace: string, name: string): Promise<V1Service> {
    this.count('getService');
    return this.core.readNamespacedService({ namespace, name });
  }

  updateServiceStatus(svc: V1Service): Promise<V1Service> {
    this.count('updateServiceStatus');
    return this.core.replaceNamespacedServiceStatus({ namespace: svc.metadata!.namespace!, name: svc.metadata!.name!, body: svc });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  updateIPPoolStatus(pool: any): Promise<unknown> {
    this.count('updateIPPoolStatus');
    return this.custom.replaceClusterCustomObjectStatus({
      group: IPPOOL_GROUP, version: IPPOOL_VERSION, plural: IPPOOL_PLURAL, name: pool.metadata.name, body: pool,
    });
  }

  createEvent(namespace: string, body: CoreV1Event): Promise<CoreV1Event> {
    this.count('createEvent');
    return this.core.createNamespacedEvent({ namespace, body });
  }

  getLease(namespace: string, name: string): Promise<V1Lease> {
    this.count('getLease');
    return this.coordination.readNamespacedLease({ namespace, name });
  }

  createLease(namespace: string, body: V1Lease): Promise<V1Lease> {
    this.count('createLease');
    return this.coordination.createNamespacedLease({ namespace, body });
  }

  updateLease(lease: V1Lease): Promise<V1Lease> {
    this.count('updateLease');
    return this.coordination.replaceNamespacedLease({ namespace: lease.metadata!.namespace!, name: lease.metadata!.name!, body: lease });
  }
}

/** Informer paths, paired with the list/watch entries they use. */
export const WATCHED = {
  services: { path: () => '/api/v1/services', list: API_CALLS.listServices, watch: API_CALLS.watchServices },
  endpointSlices: { path: () => '/apis/discovery.k8s.io/v1/endpointslices', list: API_CALLS.listEndpointSlices, watch: API_CALLS.watchEndpointSlices },
  nodes: { path: () => '/api/v1/nodes', list: API_CALLS.listNodes, watch: API_CALLS.watchNodes },
  configMaps: { path: (ns: string) => `/api/v1/namespaces/${ns}/configmaps`, list: API_CALLS.listConfigMaps, watch: API_CALLS.watchConfigMaps },
  ipPools: { path: () => `/apis/${IPPOOL_GROUP}/${IPPOOL_VERSION}/${IPPOOL_PLURAL}`, list: API_CALLS.listIPPools, watch: API_CALLS.watchIPPools },
} as const;
