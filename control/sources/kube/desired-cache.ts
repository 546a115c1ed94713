/**
 * desiredFromCluster, incrementally: the same pure per-part functions
 * (control/model/kube-desired.ts), but fed by informer events, so a Service's virtual services are
 * recomputed only when the Service or one of its EndpointSlices changed (all of them when Nodes
 * change). With 10,000 Services an EndpointSlice update costs one Service's work plus a copy of
 * the output array; the state it returns names what changed (DesiredState.delta), so the data
 * path need not diff the other 9,999 either.
 *
 * The output equals desiredFromCluster's up to order (the data path keys services by
 * serviceKey; order carries no meaning); a virtual service claimed by two Services goes to the
 * smaller `namespace/name`, as there.
 */
import type { V1ConfigMap, V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import {
  desiredForIngressNginx, desiredForService, indexNodes, isOurService, objectKey, sameDesiredPart, serviceRef, sliceEndpoints,
  type DesiredPart, type EndpointInfo, type KubeDesired, type KubeDesiredOptions, type NodeIndex, type ObjectRef, type SourceProblem,
} from '../../model/kube-desired.js';
import { serviceKey, type DesiredState, type VirtualService } from '../../model/types.js';

/** How the cache reads the informers' current objects. */
export interface ClusterReader {
  service(key: string): V1Service | undefined;
  services(): readonly V1Service[];
  nodes(): readonly V1Node[];
  configMaps(): readonly V1ConfigMap[];
}

interface Part {
  part: DesiredPart;
  ref: ObjectRef;
}

const INGRESS = '\u0000ingress-nginx';

export class DesiredCache {
  private readonly slices = new Map<string, { serviceKey: string; endpoints: EndpointInfo[] }>();
  private readonly slicesOfService = new Map<string, Set<string>>();
  private readonly parts = new Map<string, Part>();
  /** Virtual service key -> the parts claiming it (almost always one). */
  private readonly claims = new Map<string, Map<string, VirtualService>>();
  /** Virtual service keys claimed by more than one part (reported as duplicates). */
  private readonly contested = new Set<string>();
  /** Parts that report problems. */
  private readonly withProblems = new Set<string>();
  /** The output: winners in no particular order, and where each sits in `services`. */
  private services: VirtualService[] = [];
  private readonly slot = new Map<string, number>();
  private revision = 0;
  private readonly dirty = new Set<string>();
  private allDirty = true;
  private ingressDirty = true;
  private nodeIndex: NodeIndex = new Map();
  private last: KubeDesired | null = null;
  /** Services recomputed by the last compute() (tests, metrics). */
  recomputed = 0;

  constructor(private readonly opts: KubeDesiredOptions) {}

  private get ingressServiceKey(): string | undefined {
    const ing = this.opts.ingressNginx;
    return ing && `${ing.namespace}/${ing.controllerService}`;
  }

  serviceChanged(svc: V1Service): void {
    this.dirty.add(objectKey(svc));
  }

  sliceChanged(slice: V1EndpointSlice, deleted: boolean): void {
    const key = objectKey(slice);
    const old = this.slices.get(key);
    if (old) {
      this.slicesOfService.get(old.serviceKey)?.delete(key);
      this.markEndpoints(old.serviceKey);
      this.slices.delete(key);
    }
    if (deleted) return;
    const parsed = sliceEndpoints(slice);
    if (!parsed) return;
    this.slices.set(key, parsed);
    let set = this.slicesOfService.get(parsed.serviceKey);
    if (!set) this.slicesOfService.set(parsed.serviceKey, (set = new Set()));
    set.add(key);
    this.markEndpoints(parsed.serviceKey);
  }

  nodesChanged(): void {
    this.allDirty = true;
  }

  /** Recompute everything on the next compute() (periodic resync: a guard against missed events). */
  invalidate(): void {
    this.allDirty = true;
  }

  configMapsChanged(): void {
    this.ingressDirty = true;
  }

  private markEndpoints(key: string): void {
    this.dirty.add(key);
    if (key === this.ingressServiceKey) this.ingressDirty = true;
  }

  private endpointsOf(key: string): EndpointInfo[] {
    const set = this.slicesOfService.get(key);
    if (!set || set.size === 0) return [];
    if (set.size === 1) return this.slices.get(set.values().next().value!)!.endpoints;
    return [...set].sort().flatMap((k) => this.slices.get(k)!.endpoints);
  }

  /**
   * The desired state now, and whether its services differ from the previous call's. The state
   * carries a delta against the previous one (types.ts DesiredDelta): only the virtual services
   * whose definition changed, so a data path need not diff all of them.
   */
  compute(cluster: ClusterReader): { desired: KubeDesired; changed: boolean } {
    this.recomputed = 0;
    if (this.allDirty) {
      this.nodeIndex = indexNodes(cluster.nodes(), this.opts.nodeAddressType);
      for (const s of cluster.services()) this.dirty.add(objectKey(s));
      for (const k of this.parts.keys()) if (k !== INGRESS) this.dirty.add(k);
      this.ingressDirty = true;
      this.allDirty = false;
    }
    /** Virtual service keys whose claims changed in this pass. */
    const touched = new Set<string>();
    let problemsChanged = false;
    const update = (key: string, part: DesiredPart | null, ref: ObjectRef): void => {
      const prior = this.parts.get(key);
      // Keep the prior objects when the output is the same: identical output keeps identity, so
      // data paths skip it by reference.
      if (prior && part && sameDesiredPart(prior.part, part)) { prior.ref = ref; return; }
      if (!prior && !part) return;
      if (prior?.part.problems.length || part?.problems.length) problemsChanged = true;
      for (const vs of prior?.part.services ?? []) {
        const k = serviceKey(vs);
        const m = this.claims.get(k);
        m?.delete(key);
        if (m?.size === 0) this.claims.delete(k);
        touched.add(k);
      }
      if (!part) { this.parts.delete(key); this.withProblems.delete(key); return; }
      this.parts.set(key, { part, ref });
      if (part.problems.length) this.withProblems.add(key); else this.withProblems.delete(key);
      for (const vs of part.services) {
        const k = serviceKey(vs);
        let m = this.claims.get(k);
        if (!m) this.claims.set(k, (m = new Map()));
        m.set(key, vs);
        touched.add(k);
      }
    };
    for (const key of this.dirty) {
      const svc = cluster.service(key);
      this.recomputed++;
      if (!svc || !isOurService(svc, this.opts)) update(key, null, { kind: 'Service', name: key });
      else update(key, desiredForService(svc, this.endpointsOf(key), this.nodeIndex), serviceRef(svc));
    }
    this.dirty.clear();
    const ing = this.opts.ingressNginx;
    if (ing && this.ingressDirty) {
      const part = desiredForIngressNginx(ing, cluster.configMaps(), this.endpointsOf(this.ingressServiceKey!), this.nodeIndex);
      update(INGRESS, part, { kind: 'ConfigMap', namespace: ing.namespace, name: ing.tcpConfigMap });
    }
    this.ingressDirty = false;

    const changes = this.settle(touched);
    if (changes.size > 0 || touched.size > 0) problemsChanged = true; // duplicates may have moved
    const first = this.last === null;
    if (!first && changes.size === 0 && !problemsChanged) return { desired: this.last!, changed: false };
    const since = this.revision;
    const state: DesiredState = changes.size > 0 || first
      ? (first ? { services: this.services, revision: ++this.revision } : { services: this.services, revision: ++this.revision, delta: { since, changes } })
      : this.last!.state;
    this.last = { state, problems: this.problems() };
    return { desired: this.last, changed: first || changes.size > 0 };
  }

  /** Who wins each touched virtual service now; updates `services` (a new array when anything moved) and returns what changed. */
  private settle(touched: ReadonlySet<string>): Map<string, VirtualService | null> {
    const changes = new Map<string, VirtualService | null>();
    let services: VirtualService[] | null = null; // copied on first write: emitted arrays stay as they were
    for (const k of touched) {
      const m = this.claims.get(k);
      if (m && m.size > 1) this.contested.add(k); else this.contested.delete(k);
      const winner = m ? (m.size === 1 ? m.values().next().value! : m.get(this.rankedClaimants(m)[0]!)!) : null;
      const at = this.slot.get(k);
      const current = at === undefined ? null : this.services[at]!;
      if (winner === current) continue;
      services ??= this.services.slice();
      changes.set(k, winner);
      if (winner && at !== undefined) {
        services[at] = winner;
      } else if (winner) {
        this.slot.set(k, services.length);
        services.push(winner);
      } else if (at !== undefined) {
        // Swap-remove: order carries no meaning.
        const lastVs = services.pop()!;
        this.slot.delete(k);
        if (at < services.length) { services[at] = lastVs; this.slot.set(serviceKey(lastVs), at); }
      }
      this.services = services;
    }
    return changes;
  }

  /** Claimants of one virtual service, winner first: ingress-nginx entries lose to Services, Services to Services with smaller keys. */
  private rankedClaimants(m: ReadonlyMap<string, VirtualService>): string[] {
    const rank = (k: string) => (k === INGRESS ? '\uffff' : k);
    return [...m.keys()].sort((a, b) => (rank(a) < rank(b) ? -1 : 1));
  }

  private problems(): SourceProblem[] {
    const problems: SourceProblem[] = [];
    for (const key of this.withProblems) problems.push(...this.parts.get(key)!.part.problems);
    for (const vsKey of this.contested) {
      const m = this.claims.get(vsKey)!;
      const keys = this.rankedClaimants(m);
      const winner = m.get(keys[0]!)!;
      for (const loser of keys.slice(1)) {
        problems.push({ object: this.parts.get(loser)!.ref, reason: 'DuplicateVirtualService', message: `${vsKey} is already served for ${winner.origin}; ignoring this one` });
      }
    }
    return problems;
  }
}
