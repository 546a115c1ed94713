/**
 * The Kubernetes controller: informers -> (IPAM plan, status writes) and (desired state for the
 * reconciler). One work queue carries three kinds of keys: `sync` (recompute everything from the
 * caches; bursts of informer events coalesce into one pass), `svc:NS/NAME` (write one Service's
 * status.loadBalancer.ingress) and `pool:NAME` (write one IPPool's status).
 *
 * Safety rules:
 *  - nothing is emitted before every informer has synced once;
 *  - caches are never cleared on errors, so an unreachable API server freezes the state instead
 *    of emptying it; only what the cluster reports gone is removed;
 *  - only the Lease holder allocates; its status writes carry the Service's resourceVersion
 *    (409 -> re-read, re-plan, retry).
 */
import type { KubeConfig, V1ConfigMap, V1EndpointSlice, V1Node, V1Service, V1LoadBalancerIngress } from '@kubernetes/client-node';
import { logger, type Logger } from '../../log.js';
import { addressValue, planAllocations, poolOf, validatePools, type AllocationPlan, type Pool, type RejectedPool } from '../../model/ipam.js';
import {
  isOurService, objectKey, serviceClaim, serviceRef, timeText,
  type IngressNginxOptions, type KubeDesiredOptions, type ObjectRef, type SourceProblem,
} from '../../model/kube-desired.js';
import type { DesiredState } from '../../model/types.js';
import { apiErrorCode, describeApiError, KubeApi, WATCHED } from './api-calls.js';
import { DesiredCache } from './desired-cache.js';
import { EventRecorder } from './event-recorder.js';
import { LeaseElection } from './lease-election.js';
import { DEFAULT_BACKOFF, WatchedCollection, type Backoff } from './watched-collection.js';
import { DEFAULT_QUEUE, WorkQueue, type WorkQueueOptions } from './work-queue.js';

/** An IPPool object as the API returns it. */
export interface IPPoolObject {
  apiVersion?: string;
  kind?: string;
  /**
   * creationTimestamp is typed Date only to fit client-node's KubernetesObject; listed and watched
   * pools are plain JSON (raw-get.ts), so at run time it is ISO text (timeText reads both).
   */
  metadata: { name: string; resourceVersion?: string; generation?: number; uid?: string; creationTimestamp?: Date };
  spec?: unknown;
  status?: { conditions?: PoolCondition[]; observedGeneration?: number };
}

interface PoolCondition {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
  lastTransitionTime?: string;
}

export interface KubeControllerOptions extends KubeDesiredOptions {
  /** This instance's name in the allocation Lease and in Events (default: hostname). */
  identity: string;
  leaseNamespace: string;
  leaseName: string;
  leaseDurationS: number;
  leaseRetryMs: number;
  /** Full recompute and status re-check even without events. */
  resyncMs: number;
  backoff: Backoff;
  queue: WorkQueueOptions;
}

export const CONTROLLER_DEFAULTS = {
  loadBalancerClass: 'xdir.io/director',
  classlessIsOurs: false,
  nodeAddressType: 'InternalIP',
  leaseName: 'xdir-director-allocator',
  leaseDurationS: 15,
  leaseRetryMs: 2000,
  resyncMs: 5 * 60_000,
  backoff: DEFAULT_BACKOFF,
  queue: DEFAULT_QUEUE,
} as const;

export interface PoolUsageReport {
  pool: string;
  /** Addresses in the pool (a float for huge IPv6 pools). */
  size: number;
  assigned: number;
}

const SYNC = 'sync';

function ingressEqual(a: V1LoadBalancerIngress[], b: V1LoadBalancerIngress[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.ip !== b[i]!.ip || a[i]!.hostname !== b[i]!.hostname || a[i]!.ipMode !== b[i]!.ipMode) return false;
  }
  return true;
}

/** Is `a` a later version than `b`? (resourceVersions are etcd revisions in practice; opaque otherwise.) */
function newerVersion(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b) return false;
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) > BigInt(b);
  return false;
}

export class KubeController {
  readonly api: KubeApi;
  readonly events: EventRecorder;
  private readonly log: Logger;
  private readonly services: WatchedCollection<V1Service>;
  private readonly endpointSlices: WatchedCollection<V1EndpointSlice>;
  private readonly nodes: WatchedCollection<V1Node>;
  private readonly ipPools: WatchedCollection<IPPoolObject & { metadata: { name: string } }>;
  private readonly configMaps?: WatchedCollection<V1ConfigMap>;
  private readonly collections: WatchedCollection<never>[];
  private readonly election: LeaseElection;
  private readonly queue: WorkQueue<string>;
  private readonly listeners = new Set<(s: DesiredState) => void>();
  /** Services we wrote, until the informer catches up with them. */
  private readonly fresher = new Map<string, V1Service>();
  private plan: AllocationPlan = { allocations: new Map(), problems: [], usage: [] };
  private pools: Pool[] = [];
  private rejectedPools: RejectedPool[] = [];
  private reported = new Set<string>();
  private lastState: DesiredState | null = null;
  private readonly desiredCache: DesiredCache;
  /** Services, IPPools or leadership changed since the last plan: plan addresses again. */
  private allocationDirty = true;
  /** Leadership changed (or a plan was made): compare every status with the plan again. */
  private statusCheckDirty = true;
  private resyncTimer?: NodeJS.Timeout;
  private syncedResolve!: () => void;
  private readonly synced = new Promise<void>((r) => { this.syncedResolve = r; });
  /** Counters for metrics and tests. */
  readonly stats = { syncs: 0, statusWrites: 0, statusConflicts: 0, emits: 0 };

  constructor(config: KubeConfig, readonly opts: KubeControllerOptions, log: Logger = logger('kube')) {
    this.log = log;
    this.api = new KubeApi(config);
    this.events = new EventRecorder(this.api, opts.identity, log);
    this.desiredCache = new DesiredCache(opts);
    const changed = (what: string, verb: string, obj?: unknown): void => {
      switch (what) {
        case 'services':
          this.allocationDirty = true;
          if (obj) this.desiredCache.serviceChanged(obj as V1Service);
          if (obj && verb === 'delete') this.fresher.delete(objectKey(obj as V1Service));
          break;
        case 'ippools': this.allocationDirty = true; break;
        case 'endpointslices': if (obj) this.desiredCache.sliceChanged(obj as V1EndpointSlice, verb === 'delete'); break;
        case 'nodes': this.desiredCache.nodesChanged(); break;
        case 'configmaps': this.desiredCache.configMapsChanged(); break;
      }
      this.queue.add(SYNC);
    };
    const make = <T extends { metadata?: object }>(name: string, path: string, list: () => Promise<{ items: T[] }>) =>
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      new WatchedCollection<any>(name, config, path, list as any, changed, log, opts.backoff) as WatchedCollection<T & any>;
    this.services = make('services', WATCHED.services.path(), () => this.api.listServices());
    this.endpointSlices = make('endpointslices', WATCHED.endpointSlices.path(), () => this.api.listEndpointSlices());
    this.nodes = make('nodes', WATCHED.nodes.path(), () => this.api.listNodes());
    this.ipPools = make('ippools', WATCHED.ipPools.path(), () => this.api.listIPPools());
    const ing = opts.ingressNginx;
    if (ing) this.configMaps = make('configmaps', WATCHED.configMaps.path(ing.namespace), () => this.api.listConfigMaps(ing.namespace));
    this.collections = [this.services, this.endpointSlices, this.nodes, this.ipPools, ...(this.configMaps ? [this.configMaps] : [])] as unknown as WatchedCollection<never>[];
    this.queue = new WorkQueue<string>(
      (key) => this.process(key),
      (key, err, retryInMs) => log.warn({ key, err: describeApiError(err), retryInMs }, 'kube work item failed; retrying'),
      opts.queue,
    );
    this.election = new LeaseElection(this.api, {
      namespace: opts.leaseNamespace, name: opts.leaseName, identity: opts.identity,
      leaseDurationS: opts.leaseDurationS, retryMs: opts.leaseRetryMs,
      // Leadership is no input of the plan: a new leader only checks statuses against it.
      onChange: () => { this.statusCheckDirty = true; this.queue.add(SYNC); },
    }, log);
  }

  start(signal?: AbortSignal): void {
    for (const c of this.collections) c.start();
    this.election.start();
    const resync = (): void => {
      this.resync();
      this.resyncTimer = setTimeout(resync, this.opts.resyncMs);
    };
    this.resyncTimer = setTimeout(resync, this.opts.resyncMs);
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  async stop(): Promise<void> {
    clearTimeout(this.resyncTimer);
    this.queue.shutdown();
    await this.election.stop();
    await Promise.all(this.collections.map((c) => c.stop()));
  }

  /** Resolves once every informer has synced and the first desired state was emitted. */
  whenSynced(): Promise<void> {
    return this.synced;
  }

  /** Calls `listener` with every new desired state (and at once with the current one, if any). */
  onState(listener: (s: DesiredState) => void): () => void {
    this.listeners.add(listener);
    if (this.lastState) listener(this.lastState);
    return () => this.listeners.delete(listener);
  }

  /** The last emitted desired state; null before the first sync. */
  current(): DesiredState | null {
    return this.lastState;
  }

  isLeader(): boolean {
    return this.election.isLeader();
  }

  /** Addresses per valid IPPool and how many are held (for metrics). */
  poolUsage(): PoolUsageReport[] {
    return this.plan.usage.map((u) => ({ pool: u.pool, size: Number(u.size), assigned: u.assigned }));
  }

  /** Resolves when no work is queued (tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Forces a full pass (tests, SIGHUP). */
  resync(): void {
    this.allocationDirty = true;
    this.desiredCache.invalidate();
    this.queue.add(SYNC);
  }

  // ---------------------------------------------------------------------------------------------

  private async process(key: string): Promise<void> {
    if (key === SYNC) return this.sync();
    if (key.startsWith('svc:')) return this.writeServiceStatus(key.slice(4));
    if (key.startsWith('pool:')) return this.writePoolStatus(key.slice(5));
  }

  private serviceList(): V1Service[] {
    return this.services.list().map((s) => {
      const k = objectKey(s);
      const mine = this.fresher.get(k);
      if (!mine) return s;
      if (newerVersion(mine.metadata?.resourceVersion, s.metadata?.resourceVersion)) return mine;
      this.fresher.delete(k);
      return s;
    });
  }

  private serviceByKey(key: string): V1Service | undefined {
    const [ns, name] = key.split('/') as [string, string];
    const cached = this.services.get(name, ns);
    const mine = this.fresher.get(key);
    if (cached && mine && newerVersion(mine.metadata?.resourceVersion, cached.metadata?.resourceVersion)) return mine;
    return cached;
  }

  private inOurPools(ip: string | undefined): boolean {
    const v = ip ? addressValue(ip) : null;
    // Rejected pools too: their addresses stay frozen while the Service is ours, and go when it leaves.
    return !!v && poolOf([...this.pools, ...this.rejectedPools], v.family, v.value) !== undefined;
  }

  /** What status.loadBalancer.ingress should say. */
  private wantedIngress(svc: V1Service): V1LoadBalancerIngress[] {
    const current = svc.status?.loadBalancer?.ingress ?? [];
    if (isOurService(svc, this.opts)) {
      return (this.plan.allocations.get(objectKey(svc))?.addresses ?? []).map((ip) => ({ ip, ipMode: 'VIP' }));
    }
    // No longer ours (class or type changed): release the addresses we handed out.
    return current.filter((i) => !this.inOurPools(i.ip));
  }

  private poolCondition(name: string): PoolCondition {
    const rejected = this.rejectedPools.find((r) => r.name === name);
    if (rejected) return { type: 'Ready', status: 'False', reason: rejected.reason, message: rejected.message };
    const usage = this.plan.usage.find((u) => u.pool === name);
    return { type: 'Ready', status: 'True', reason: 'Valid', message: `${usage?.size ?? 0n} addresses` };
  }

  private async sync(): Promise<void> {
    if (!this.collections.every((c) => c.synced)) return;
    this.stats.syncs++;

    // The data path first: it reads VIPs from Service status, never from the allocation plan, so
    // planning addresses (O(Services)) need not delay the state (a restarted director finds its
    // VIPs in status and programs them before re-checking allocations).
    const { desired, changed } = this.desiredCache.compute({
      service: (key) => { const [ns, name] = key.split('/') as [string, string]; return this.services.get(name, ns); },
      services: () => this.services.list(),
      nodes: () => this.nodes.list(),
      configMaps: () => this.configMaps?.list() ?? [],
    });
    const emitted = changed || !this.lastState;
    if (emitted) {
      this.lastState = desired.state;
      this.stats.emits++;
      for (const l of this.listeners) {
        try { l(desired.state); } catch (err) { this.log.error({ err }, 'desired-state listener failed'); }
      }
    }

    // Let the listeners' work (the reconciler's apply) start before the O(Services) planning.
    if (emitted && (this.allocationDirty || this.statusCheckDirty)) await new Promise((resolve) => setImmediate(resolve));
    const leader = this.election.isLeader();
    const poolObjects = this.ipPools.list();
    let services: V1Service[] | null = null;
    if (this.allocationDirty) {
      // Only Services and IPPools decide addresses: an EndpointSlice burst skips this.
      this.allocationDirty = false;
      this.statusCheckDirty = true;
      services = this.serviceList();
      ({ pools: this.pools, rejected: this.rejectedPools } = validatePools(poolObjects.map((p) => ({
        name: p.metadata.name, spec: p.spec, createdAt: timeText(p.metadata.creationTimestamp) || undefined,
      }))));
      this.plan = planAllocations(this.pools, services.filter((s) => isOurService(s, this.opts)).map(serviceClaim), this.rejectedPools);
    }
    if (this.statusCheckDirty && leader) {
      this.statusCheckDirty = false;
      for (const svc of services ?? this.serviceList()) {
        const current = svc.status?.loadBalancer?.ingress ?? [];
        if (!ingressEqual(this.wantedIngress(svc), current)) this.queue.add(`svc:${objectKey(svc)}`);
      }
      for (const p of poolObjects) {
        const want = this.poolCondition(p.metadata.name);
        const have = p.status?.conditions?.find((c) => c.type === 'Ready');
        if (!have || have.status !== want.status || have.reason !== want.reason || have.message !== want.message) {
          this.queue.add(`pool:${p.metadata.name}`);
        }
      }
    }

    if (leader) {
      this.report([
        ...this.rejectedPools.map((r) => ({ object: { kind: 'IPPool', name: r.name, uid: poolObjects.find((p) => p.metadata.name === r.name)?.metadata.uid }, reason: 'InvalidIPPool', message: r.message })),
        ...this.plan.problems.map((p) => {
          const svc = this.serviceByKey(p.key);
          return { object: svc ? serviceRef(svc) : { kind: 'Service', name: p.key }, reason: p.reason, message: p.message };
        }),
        ...desired.problems,
      ]);
    }
    this.syncedResolve();
  }

  /** Warning Events for problems that are new since the last pass (a fixed problem can be reported again later). */
  private report(problems: SourceProblem[]): void {
    const next = new Set<string>();
    for (const p of problems) {
      const id = `${p.object.kind}/${p.object.namespace ?? ''}/${p.object.name}|${p.reason}|${p.message}`;
      next.add(id);
      if (!this.reported.has(id)) this.events.record(p.object, 'Warning', p.reason, p.message);
    }
    this.reported = next;
  }

  private async writeServiceStatus(key: string): Promise<void> {
    if (!this.election.isLeader()) return;
    const svc = this.serviceByKey(key);
    if (!svc) return;
    const current = svc.status?.loadBalancer?.ingress ?? [];
    const want = this.wantedIngress(svc);
    if (ingressEqual(want, current)) return;
    const body: V1Service = { ...svc, status: { ...svc.status, loadBalancer: { ...svc.status?.loadBalancer, ingress: want } } };
    try {
      const updated = await this.api.updateServiceStatus(body);
      this.stats.statusWrites++;
      this.fresher.set(key, updated);
      const ref: ObjectRef = serviceRef(svc);
      const ips = want.map((i) => i.ip).join(', ');
      if (want.length > 0) this.events.record(ref, 'Normal', 'IPAllocated', `Assigned IP ${ips}`);
      else this.events.record(ref, 'Normal', 'IPReleased', `Released IP ${current.map((i) => i.ip).join(', ')}`);
    } catch (err) {
      const code = apiErrorCode(err);
      if (code === 404) return; // deleted meanwhile: its address is free in the next pass
      if (code !== 409) throw err;
      // Someone changed the Service since our cache saw it: re-read, re-plan, and the pass re-queues us if still needed.
      this.stats.statusConflicts++;
      const [namespace, name] = key.split('/') as [string, string];
      try {
        this.fresher.set(key, await this.api.getService(namespace, name));
      } catch (e) {
        if (apiErrorCode(e) !== 404) throw e;
      }
      this.allocationDirty = true;
      this.queue.add(SYNC);
    }
  }

  private async writePoolStatus(name: string): Promise<void> {
    if (!this.election.isLeader()) return;
    const pool = this.ipPools.get(name);
    if (!pool) return;
    const want = this.poolCondition(name);
    const have = pool.status?.conditions?.find((c) => c.type === 'Ready');
    if (have && have.status === want.status && have.reason === want.reason && have.message === want.message) return;
    const lastTransitionTime = have?.status === want.status && have.lastTransitionTime
      ? have.lastTransitionTime : new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const body: IPPoolObject = {
      ...pool,
      status: {
        ...pool.status,
        observedGeneration: pool.metadata.generation,
        conditions: [...(pool.status?.conditions ?? []).filter((c) => c.type !== 'Ready'), { ...want, lastTransitionTime }],
      },
    };
    try {
      await this.api.updateIPPoolStatus(body);
    } catch (err) {
      // 409: our cache was behind (often our own previous write); the watch event that brings the
      // newer version triggers another pass, which writes again only if still needed.
      if (apiErrorCode(err) !== 409) throw err;
      this.log.debug({ pool: name }, 'IPPool status write conflicted; waiting for the newer version');
    }
  }
}

export type { IngressNginxOptions };
