/**
 * Shared setup for tests of the Kubernetes source: the API server fixture with the IPPool CRD from
 * deploy/, cluster objects, a recording data path behind the real Reconciler, and bounded waits.
 */
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import type { ApplyResult, Dataplane, ServiceStatus, StatsSample } from '../../control/dataplane/dataplane.js';
import { Reconciler } from '../../control/reconciler.js';
import { startKubeSource, type KubeController, type KubeSourceOptions } from '../../control/sources/kube/index.js';
import { serviceKey, type DesiredState, type VirtualService } from '../../control/model/types.js';
import { FakeKubeApiServer, type KubeObject } from '../lib/kube-apiserver.js';

export const CRD_PATH = new URL('../../deploy/ippool-crd.yaml', import.meta.url);

export async function startCluster(): Promise<FakeKubeApiServer> {
  const server = await FakeKubeApiServer.start();
  server.registerCrd(readFileSync(CRD_PATH, 'utf8'));
  return server;
}

export function kubeConfigFor(server: FakeKubeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(server.writeKubeconfig());
  return kc;
}

/** Waits (polling) until `check` returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function node(name: string, ip: string): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Node', metadata: { name },
    status: { addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

export function ipPool(name: string, spec: Record<string, unknown>): KubeObject {
  return { apiVersion: 'xdir.io/v1alpha1', kind: 'IPPool', metadata: { name }, spec };
}

export function lbService(ns: string, name: string, opts: { ports?: { port: number; protocol?: string; name?: string }[]; annotations?: Record<string, string>; local?: boolean; cls?: string | null } = {}): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { namespace: ns, name, annotations: opts.annotations ?? {} },
    spec: {
      type: 'LoadBalancer',
      ...(opts.cls === null ? {} : { loadBalancerClass: opts.cls ?? 'xdir.io/director' }),
      externalTrafficPolicy: opts.local ? 'Local' : 'Cluster',
      ports: (opts.ports ?? [{ port: 80 }]).map((p) => ({ name: p.name ?? `p${p.port}`, port: p.port, protocol: p.protocol ?? 'TCP', targetPort: p.port })),
    },
  };
}

export type Ep = { ip: string; node?: string; ready?: boolean; serving?: boolean; terminating?: boolean };

export function endpointSlice(ns: string, service: string, eps: Ep[], name = `${service}-x1`, port = 80): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ports: [{ name: `p${port}`, port, protocol: 'TCP' }],
    endpoints: eps.map((e) => ({
      addresses: [e.ip], nodeName: e.node,
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
    })),
  };
}

export function statusIPs(server: FakeKubeApiServer, ns: string, name: string): string[] {
  const svc = server.get('Service', ns, name);
  return (svc?.status?.loadBalancer?.ingress ?? []).map((i: { ip: string }) => i.ip);
}

/** A data path that records what it is asked to program (the interface's contract, no kernel). */
export class RecordingDataplane implements Dataplane {
  readonly kind = 'xdp' as const;
  readonly programmed = new Map<string, VirtualService>();
  /** One entry per apply() that changed something: the keys added, updated, removed. */
  readonly changes: { added: string[]; updated: string[]; removed: string[] }[] = [];
  applies = 0;

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  private readonly keys = new WeakMap<VirtualService, string>();
  /** Revision of the last state applied (DesiredState.revision), for its successor's delta. */
  private appliedRevision: number | undefined;
  /** Applies that used the state's delta instead of a full diff (tests). */
  deltaApplies = 0;

  async apply(desired: DesiredState): Promise<ApplyResult> {
    this.applies++;
    const added: string[] = [], updated: string[] = [], removed: string[] = [];
    const delta = desired.delta;
    if (delta && this.appliedRevision !== undefined && delta.since === this.appliedRevision) {
      // Like a real data path would: touch only what the delta names.
      this.deltaApplies++;
      for (const [k, s] of delta.changes) {
        const prev = this.programmed.get(k);
        if (!s) { if (prev) { this.programmed.delete(k); removed.push(k); } continue; }
        if (!prev) added.push(k);
        else if (prev !== s && JSON.stringify(prev) !== JSON.stringify(s)) updated.push(k);
        this.programmed.set(k, s);
      }
    } else {
      const keyOf = (s: VirtualService): string => {
        let k = this.keys.get(s);
        if (k === undefined) this.keys.set(s, (k = serviceKey(s)));
        return k;
      };
      const next = new Map(desired.services.map((s) => [keyOf(s), s]));
      for (const [k, s] of next) {
        const prev = this.programmed.get(k);
        if (!prev) added.push(k);
        else if (prev !== s && JSON.stringify(prev) !== JSON.stringify(s)) updated.push(k);
      }
      for (const k of this.programmed.keys()) if (!next.has(k)) removed.push(k);
      this.programmed.clear();
      for (const [k, s] of next) this.programmed.set(k, s);
    }
    this.appliedRevision = desired.revision;
    if (added.length + updated.length + removed.length > 0) this.changes.push({ added, updated, removed });
    return { servicesAdded: added.length, servicesUpdated: updated.length, servicesRemoved: removed.length, servicesUnchanged: this.programmed.size - added.length - updated.length };
  }

  services(): ServiceStatus[] {
    return [...this.programmed.values()].map((s) => ({
      key: serviceKey(s), vip: s.vip, port: s.port, protocol: s.protocol, scheduler: s.scheduler, persistence: s.persistence,
      backends: s.backends.map((b) => ({ address: b.address, weight: b.weight, state: b.weight === 0 ? 'draining' as const : 'active' as const })),
    }));
  }

  async readStats(): Promise<StatsSample> {
    return { takenAtMs: Date.now(), dataplane: 'xdp', services: new Map(), backends: new Map(), reasons: new Map() };
  }

  backends(key: string): string[] {
    return (this.programmed.get(key)?.backends ?? []).map((b) => `${b.address}=${b.weight}`);
  }
}

export interface Director {
  controller: KubeController;
  reconciler: Reconciler;
  dataplane: RecordingDataplane;
  stop(): Promise<void>;
}

/** A director as `xdir run --kubeconfig` wires it: kube source -> Reconciler -> data path. */
export function startDirector(server: FakeKubeApiServer, opts: Partial<KubeSourceOptions> = {}): Director {
  const dataplane = new RecordingDataplane();
  const reconciler = new Reconciler({ dataplane, resyncMs: 0, retryBaseMs: 10 });
  reconciler.start();
  const controller = startKubeSource({
    kubeConfig: kubeConfigFor(server), identity: 'director-a', leaseNamespace: 'xdir-system',
    leaseDurationS: 2, leaseRetryMs: 100, backoff: { minMs: 50, maxMs: 400 },
    queue: { concurrency: 4, retryBaseMs: 20, retryMaxMs: 500 }, ...opts,
  });
  controller.onState((s) => reconciler.submit(s));
  return {
    controller, reconciler, dataplane,
    async stop() { await controller.stop(); await reconciler.stop(); },
  };
}
