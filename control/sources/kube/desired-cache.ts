/**
 * desiredFromCluster, incrementally: the same pure per-part functions
 * (control/model/kube-desired.ts), but fed by informer events, so a Service's virtual services are
 * recomputed only when the Service or one of its EndpointSlices changed (all of them when Nodes
 * change). With 10,000 Services an EndpointSlice update costs one Service's work plus one linear
 * assembly of the output, instead of re-parsing every endpoint in the cluster.
 *
 * The output equals desiredFromCluster's up to order (the data path keys services by
 * serviceKey; order carries no meaning); a virtual service claimed by two Services goes to the
 * smaller `namespace/name`, as there.
 */
import type { V1ConfigMap, V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import {
  desiredForIngressNginx, desiredForService, indexNodes, isOurService, objectKey, serviceRef, sliceEndpoints,
  type DesiredPart, type EndpointInfo, type KubeDesired, type KubeDesiredOptions, type NodeIndex, type ObjectRef, type SourceProblem,
} from '../../model/kube-desired.js';
import { serviceKey, type VirtualService } from '../../model/types.js';

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
  json: string;
}

const INGRESS = '\u0000ingress-nginx';

export class DesiredCache {
  private readonly slices = new Map<string, { serviceKey: string; endpoints: EndpointInfo[] }>();
  private readonly slicesOfService = new Map<string, Set<string>>();
  private readonly parts = new Map<string, Part>();
  /** Virtual service key -> the parts claiming it (almost always one). */
  private readonly claims = new Map<string, Map<string, VirtualService>>();
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

  /** The desired state now, and whether it differs from the previous call's. */
  compute(cluster: ClusterReader): { desired: KubeDesired; changed: boolean } {
    let changed = this.last === null;
    this.recomputed = 0;
    if (this.allDirty) {
      this.nodeIndex = indexNodes(cluster.nodes(), this.opts.nodeAddressType);
      for (const s of cluster.services()) this.dirty.add(objectKey(s));
      for (const k of this.parts.keys()) if (k !== INGRESS) this.dirty.add(k);
      this.ingressDirty = true;
      this.allDirty = false;
    }
    const update = (key: string, part: DesiredPart | null, ref: ObjectRef): void => {
      const prior = this.parts.get(key);
      const json = part ? JSON.stringify(part) : '';
      if (prior && prior.json === json) return; // keep the prior objects: identical output keeps identity
      if (!prior && !part) return;
      changed = true;
      for (const vs of prior?.part.services ?? []) {
        const k = serviceKey(vs);
        const m = this.claims.get(k);
        m?.delete(key);
        if (m?.size === 0) this.claims.delete(k);
      }
      if (!part) { this.parts.delete(key); return; }
      this.parts.set(key, { part, ref, json });
      for (const vs of part.services) {
        const k = serviceKey(vs);
        let m = this.claims.get(k);
        if (!m) this.claims.set(k, (m = new Map()));
        m.set(key, vs);
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
    if (!changed && this.last) return { desired: this.last, changed: false };
    this.last = this.assemble();
    return { desired: this.last, changed: true };
  }

  private assemble(): KubeDesired {
    const services: VirtualService[] = [];
    const problems: SourceProblem[] = [];
    for (const p of this.parts.values()) if (p.part.problems.length) problems.push(...p.part.problems);
    for (const [vsKey, m] of this.claims) {
      if (m.size === 1) { services.push(m.values().next().value!); continue; }
      // ingress-nginx entries lose to Services, Services to Services with smaller keys.
      const rank = (k: string) => (k === INGRESS ? '\uffff' : k);
      const keys = [...m.keys()].sort((a, b) => (rank(a) < rank(b) ? -1 : 1));
      const winner = m.get(keys[0]!)!;
      services.push(winner);
      for (const loser of keys.slice(1)) {
        problems.push({ object: this.parts.get(loser)!.ref, reason: 'DuplicateVirtualService', message: `${vsKey} is already served for ${winner.origin}; ignoring this one` });
      }
    }
    return { state: { services }, problems };
  }
}
