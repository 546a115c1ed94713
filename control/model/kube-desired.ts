/**
 * Cluster objects -> virtual services. Pure: the Kubernetes source passes what its informers hold
 * and gets back the desired state plus the problems to report as Events.
 *
 * Which real servers a LoadBalancer Service gets (direct routing needs real servers on the
 * director's L2 segment that accept packets addressed to the VIP): by default the nodes, because
 * kube-proxy on every node accepts VIP:port once the VIP is in the Service's status and forwards it
 * to a pod. externalTrafficPolicy=Local -> only nodes with a ready endpoint, weighted by how many;
 * Cluster -> every node. The annotation `xdir.io/backend-mode: endpoints` sends straight to the pod
 * addresses instead (flat L2 pod networks). Terminating endpoints drain (weight 0); they never
 * vanish while they still serve.
 */
import type { V1ConfigMap, V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { canonicalAddress } from './address.js';
import type { ServiceClaim } from './ipam.js';
import { SCHEDULERS, type Backend, type DesiredState, type Family, type Protocol, type Scheduler, type VirtualService, serviceKey } from './types.js';

export const ANNOTATIONS = {
  /** Comma-separated requested VIPs (one per family); wins over spec.loadBalancerIP. */
  loadBalancerIPs: 'xdir.io/load-balancer-ips',
  /** Services with the same value may share a VIP when their ports do not overlap. */
  allowSharedIP: 'xdir.io/allow-shared-ip',
  /** `nodes` (default) or `endpoints`. */
  backendMode: 'xdir.io/backend-mode',
  /** IPVS scheduler (mh, sh, rr, wrr, lc, wlc); XDP always uses Maglev. */
  scheduler: 'xdir.io/scheduler',
} as const;

export const DEFAULT_LOAD_BALANCER_CLASS = 'xdir.io/director';
/** Cloud-provider convention: nodes carrying this label never receive load-balancer traffic. */
export const EXCLUDE_FROM_LB_LABEL = 'node.kubernetes.io/exclude-from-external-load-balancers';
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface IngressNginxOptions {
  namespace: string;
  tcpConfigMap: string;
  udpConfigMap: string;
  /** The ingress controller's Service; its EndpointSlices name the nodes running hostNetwork nginx. */
  controllerService: string;
  /** VIPs fronting the controllers (canonical or not; one per family). */
  vips: string[];
}

export interface KubeDesiredOptions {
  loadBalancerClass: string;
  /** Treat LoadBalancer Services without spec.loadBalancerClass as ours. */
  classlessIsOurs: boolean;
  nodeAddressType: 'InternalIP' | 'ExternalIP';
  ingressNginx?: IngressNginxOptions;
}

export interface ClusterSnapshot {
  services: readonly V1Service[];
  endpointSlices: readonly V1EndpointSlice[];
  nodes: readonly V1Node[];
  configMaps: readonly V1ConfigMap[];
}

export interface ObjectRef {
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
}

/** Bad or surprising input, reported (as a Warning Event) and skipped. */
export interface SourceProblem {
  object: ObjectRef;
  reason: string;
  message: string;
}

export interface KubeDesired {
  state: DesiredState;
  problems: SourceProblem[];
}

export function serviceRef(svc: V1Service): ObjectRef {
  return { kind: 'Service', namespace: svc.metadata?.namespace, name: svc.metadata?.name ?? '', uid: svc.metadata?.uid };
}

export function objectKey(o: { metadata?: { namespace?: string; name?: string } }): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

/** Is this Service one the director serves (and allocates for)? */
export function isOurService(svc: V1Service, opts: Pick<KubeDesiredOptions, 'loadBalancerClass' | 'classlessIsOurs'>): boolean {
  if (svc.spec?.type !== 'LoadBalancer') return false;
  const cls = svc.spec.loadBalancerClass;
  return cls ? cls === opts.loadBalancerClass : opts.classlessIsOurs;
}

/**
 * One text form for a timestamp. Listed and watched objects are plain JSON (strings, see
 * sources/kube/raw-get.ts); only objects from typed client-node calls (a Service the controller
 * just wrote or re-read) carry Date fields.
 */
export function timeText(t: unknown): string {
  if (t instanceof Date) return t.toISOString();
  return typeof t === 'string' ? t : '';
}

function statusAddresses(svc: V1Service): string[] {
  return (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter((ip): ip is string => !!ip);
}

/** What IPAM needs to know about one of our Services. */
export function serviceClaim(svc: V1Service): ServiceClaim {
  const ann = svc.metadata?.annotations ?? {};
  const families: Family[] = (svc.spec?.ipFamilies ?? ['IPv4']).map((f) => (f === 'IPv6' ? 6 : 4));
  const requestedText = ann[ANNOTATIONS.loadBalancerIPs] ?? svc.spec?.loadBalancerIP ?? '';
  return {
    key: objectKey(svc),
    namespace: svc.metadata?.namespace ?? '',
    labels: svc.metadata?.labels ?? {},
    families: families.length ? families : [4],
    requireAllFamilies: svc.spec?.ipFamilyPolicy === 'RequireDualStack',
    requested: requestedText.split(',').map((s) => s.trim()).filter(Boolean),
    sharingKey: ann[ANNOTATIONS.allowSharedIP] || undefined,
    ports: (svc.spec?.ports ?? []).map((p) => ({ port: p.port, protocol: p.protocol ?? 'TCP' })),
    current: statusAddresses(svc),
    createdAt: timeText(svc.metadata?.creationTimestamp),
  };
}

// ---------------------------------------------------------------------------------------------
// Nodes and endpoints

export interface NodeInfo {
  name: string;
  ready: boolean;
  excluded: boolean;
  addresses: Map<Family, string>;
}

/** Nodes by name, with the address of the configured type per family. */
export type NodeIndex = Map<string, NodeInfo>;

export function indexNodes(nodes: readonly V1Node[], type: KubeDesiredOptions['nodeAddressType']): NodeIndex {
  const out = new Map<string, NodeInfo>();
  for (const n of nodes) {
    const name = n.metadata?.name;
    if (!name) continue;
    const addresses = new Map<Family, string>();
    for (const a of n.status?.addresses ?? []) {
      if (a.type !== type) continue;
      const c = canonicalAddress(a.address);
      if (c && !addresses.has(c.includes(':') ? 6 : 4)) addresses.set(c.includes(':') ? 6 : 4, c);
    }
    const ready = (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
    const excluded = Object.prototype.hasOwnProperty.call(n.metadata?.labels ?? {}, EXCLUDE_FROM_LB_LABEL);
    out.set(name, { name, ready, excluded, addresses });
  }
  return out;
}

type EndpointState = 'ready' | 'draining';

export interface EndpointInfo {
  address: string;
  family: Family;
  nodeName?: string;
  state: EndpointState;
  /** Port number by port name, for the endpoints backend mode. */
  ports: Map<string, number>;
}

/** Ready endpoints serve; serving-but-terminating ones drain; the rest are not backends at all. */
function endpointState(c: { ready?: boolean; serving?: boolean; terminating?: boolean } | undefined): EndpointState | null {
  const terminating = c?.terminating === true;
  const ready = c?.ready ?? !terminating; // nil means ready (EndpointConditions docs)
  const serving = c?.serving ?? ready;
  if (ready && !terminating) return 'ready';
  if (terminating && serving) return 'draining';
  return null;
}

/** The endpoints of one EndpointSlice and the Service they belong to (`namespace/name`); null for FQDN or unowned slices. */
export function sliceEndpoints(s: V1EndpointSlice): { serviceKey: string; endpoints: EndpointInfo[] } | null {
  const svcName = s.metadata?.labels?.[SERVICE_NAME_LABEL];
  if (!svcName || (s.addressType !== 'IPv4' && s.addressType !== 'IPv6')) return null;
  const ports = new Map<string, number>();
  for (const p of s.ports ?? []) if (p.port !== undefined) ports.set(p.name ?? '', p.port);
  const endpoints: EndpointInfo[] = [];
  for (const e of s.endpoints ?? []) {
    const state = endpointState(e.conditions);
    if (!state) continue;
    for (const a of e.addresses ?? []) {
      const c = canonicalAddress(a);
      if (c) endpoints.push({ address: c, family: c.includes(':') ? 6 : 4, nodeName: e.nodeName, state, ports });
    }
  }
  return { serviceKey: `${s.metadata?.namespace ?? ''}/${svcName}`, endpoints };
}

function endpointsByService(slices: readonly V1EndpointSlice[]): Map<string, EndpointInfo[]> {
  const out = new Map<string, EndpointInfo[]>();
  for (const s of slices) {
    const parsed = sliceEndpoints(s);
    if (!parsed) continue;
    const list = out.get(parsed.serviceKey) ?? [];
    list.push(...parsed.endpoints);
    out.set(parsed.serviceKey, list);
  }
  return out;
}

function sortBackends(list: Backend[]): Backend[] {
  return list.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

/** Node backends weighted by ready endpoints on each node; nodes with only terminating ones drain. */
function nodesWithEndpoints(endpoints: readonly EndpointInfo[], nodes: NodeIndex, family: Family): Backend[] {
  const weight = new Map<string, number>();
  for (const e of endpoints) {
    const node = e.nodeName ? nodes.get(e.nodeName) : undefined;
    // hostNetwork pods without nodeName: the endpoint address is the node's address.
    const address = node ? node.addresses.get(family) : e.family === family ? e.address : undefined;
    if (!address || node?.excluded) continue;
    weight.set(address, (weight.get(address) ?? 0) + (e.state === 'ready' ? 1 : 0));
  }
  return sortBackends([...weight].map(([address, w]) => ({ address, weight: w })));
}

function allNodes(nodes: NodeIndex, family: Family): Backend[] {
  const out: Backend[] = [];
  for (const n of nodes.values()) {
    const address = n.addresses.get(family);
    if (address && !n.excluded) out.push({ address, weight: n.ready ? 1 : 0 });
  }
  return sortBackends(out);
}

// ---------------------------------------------------------------------------------------------
// ingress-nginx tcp/udp ConfigMaps

export interface IngressNginxEntry {
  port: number;
  protocol: Protocol;
  target: { namespace: string; service: string; port: string };
  decodeProxy: boolean;
  encodeProxy: boolean;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Parses one `PORT: NAMESPACE/SERVICE:PORT[:PROXY[:PROXY]]` entry; throws saying what is wrong. */
export function parseIngressNginxEntry(key: string, value: string, protocol: Protocol): IngressNginxEntry {
  if (!/^\d{1,5}$/.test(key) || Number(key) < 1 || Number(key) > 65535) {
    throw new Error(`key "${key}" must be a port number 1..65535`);
  }
  const parts = String(value).trim().split(':');
  if (parts.length < 2 || parts.length > 4) {
    throw new Error(`value "${value}" must be NAMESPACE/SERVICE:PORT[:PROXY[:PROXY]]`);
  }
  const [ref, port, decode = '', encode = ''] = parts as [string, string, string?, string?];
  const slash = ref.split('/');
  if (slash.length !== 2 || !DNS_LABEL.test(slash[0]!) || !DNS_LABEL.test(slash[1]!)) {
    throw new Error(`value "${value}": "${ref}" is not NAMESPACE/SERVICE`);
  }
  const portOk = /^\d{1,5}$/.test(port) ? Number(port) >= 1 && Number(port) <= 65535 : /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(port);
  if (!portOk) throw new Error(`value "${value}": service port "${port}" is neither 1..65535 nor a port name`);
  for (const p of [decode, encode]) {
    if (p !== '' && p !== 'PROXY') throw new Error(`value "${value}": "${p}" must be PROXY or empty`);
  }
  return {
    port: Number(key), protocol,
    target: { namespace: slash[0]!, service: slash[1]!, port },
    decodeProxy: decode === 'PROXY', encodeProxy: encode === 'PROXY',
  };
}

// ---------------------------------------------------------------------------------------------

function persistenceOf(svc: V1Service): number {
  if (svc.spec?.sessionAffinity !== 'ClientIP') return 0;
  return svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800;
}

/** Virtual services of one part of the cluster (a Service, or the ingress-nginx ConfigMaps) and its problems. */
export interface DesiredPart {
  services: VirtualService[];
  problems: SourceProblem[];
}

function sameBackends(a: readonly Backend[], b: readonly Backend[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.address !== b[i]!.address || a[i]!.weight !== b[i]!.weight || a[i]!.mac !== b[i]!.mac) return false;
  }
  return true;
}

/** Do two virtual services say the same (field by field, backends in order)? */
function sameVirtualService(a: VirtualService, b: VirtualService): boolean {
  return a === b || (a.vip === b.vip && a.port === b.port && a.protocol === b.protocol && a.scheduler === b.scheduler
    && a.persistence === b.persistence && a.origin === b.origin && sameBackends(a.backends, b.backends));
}

/** Do two parts produce the same services and problems? (Cheaper than comparing their JSON, and allocates nothing.) */
export function sameDesiredPart(a: DesiredPart, b: DesiredPart): boolean {
  if (a.services.length !== b.services.length || a.problems.length !== b.problems.length) return false;
  for (let i = 0; i < a.services.length; i++) if (!sameVirtualService(a.services[i]!, b.services[i]!)) return false;
  for (let i = 0; i < a.problems.length; i++) {
    const x = a.problems[i]!, y = b.problems[i]!;
    if (x.reason !== y.reason || x.message !== y.message || x.object.kind !== y.object.kind || x.object.namespace !== y.object.namespace
      || x.object.name !== y.object.name || x.object.uid !== y.object.uid) return false;
  }
  return true;
}

/** The virtual services of one of our Services (VIPs from its status x its TCP/UDP ports). */
export function desiredForService(svc: V1Service, eps: readonly EndpointInfo[], nodes: NodeIndex): DesiredPart {
  const services: VirtualService[] = [];
  const problems: SourceProblem[] = [];
  const ref = serviceRef(svc);
  const key = objectKey(svc);
  const ann = svc.metadata?.annotations ?? {};
  let mode = ann[ANNOTATIONS.backendMode] ?? 'nodes';
  if (mode !== 'nodes' && mode !== 'endpoints') {
    problems.push({ object: ref, reason: 'InvalidAnnotation', message: `${ANNOTATIONS.backendMode}: "${mode}" is not nodes or endpoints; using nodes` });
    mode = 'nodes';
  }
  let scheduler: Scheduler = 'mh';
  const schedText = ann[ANNOTATIONS.scheduler];
  if (schedText !== undefined) {
    if ((SCHEDULERS as readonly string[]).includes(schedText)) scheduler = schedText as Scheduler;
    else problems.push({ object: ref, reason: 'InvalidAnnotation', message: `${ANNOTATIONS.scheduler}: "${schedText}" is not one of ${SCHEDULERS.join(', ')}; using mh` });
  }
  const local = svc.spec?.externalTrafficPolicy === 'Local';
  for (const ipText of statusAddresses(svc)) {
    const vip = canonicalAddress(ipText);
    if (!vip) continue;
    const family: Family = vip.includes(':') ? 6 : 4;
    for (const p of svc.spec?.ports ?? []) {
      const protocol = (p.protocol ?? 'TCP').toLowerCase();
      if (protocol !== 'tcp' && protocol !== 'udp') {
        problems.push({ object: ref, reason: 'UnsupportedProtocol', message: `port ${p.port}/${p.protocol} skipped: the director forwards TCP and UDP` });
        continue;
      }
      let backends: Backend[];
      if (mode === 'endpoints') {
        const mine = eps.filter((e) => e.family === family);
        const wrongPort = mine.find((e) => (e.ports.get(p.name ?? '') ?? p.port) !== p.port);
        if (wrongPort) {
          // Direct routing keeps the destination port: the pod must listen on the Service port.
          problems.push({ object: ref, reason: 'EndpointPortMismatch', message: `port ${p.port}: endpoints listen on ${wrongPort.ports.get(p.name ?? '')}, but direct-to-endpoint mode needs targetPort == port; port skipped` });
          continue;
        }
        const seen = new Map<string, number>();
        for (const e of mine) seen.set(e.address, Math.max(seen.get(e.address) ?? 0, e.state === 'ready' ? 1 : 0));
        backends = sortBackends([...seen].map(([address, weight]) => ({ address, weight })));
      } else {
        backends = local ? nodesWithEndpoints(eps, nodes, family) : allNodes(nodes, family);
      }
      services.push({ vip, port: p.port, protocol, scheduler, persistence: persistenceOf(svc), backends, origin: `kube:${key}` });
    }
  }
  return { services, problems };
}

/** The ingress-nginx tcp/udp ConfigMap entries on the configured VIPs. */
export function desiredForIngressNginx(
  ing: IngressNginxOptions, configMaps: readonly V1ConfigMap[], controllerEndpoints: readonly EndpointInfo[], nodes: NodeIndex,
): DesiredPart {
  const services: VirtualService[] = [];
  const problems: SourceProblem[] = [];
  const vips = ing.vips.map((v) => canonicalAddress(v)).filter((v): v is string => !!v);
  for (const [name, protocol] of [[ing.tcpConfigMap, 'tcp'], [ing.udpConfigMap, 'udp']] as const) {
    const cm = configMaps.find((c) => c.metadata?.namespace === ing.namespace && c.metadata?.name === name);
    if (!cm) continue;
    const ref: ObjectRef = { kind: 'ConfigMap', namespace: ing.namespace, name, uid: cm.metadata?.uid };
    for (const [k, v] of Object.entries(cm.data ?? {}).sort(([a], [b]) => Number(a) - Number(b))) {
      let entry: IngressNginxEntry;
      try {
        entry = parseIngressNginxEntry(k, v, protocol);
      } catch (err) {
        problems.push({ object: ref, reason: 'InvalidEntry', message: `${name}: ${(err as Error).message}; entry skipped` });
        continue;
      }
      for (const vip of vips) {
        const family: Family = vip.includes(':') ? 6 : 4;
        services.push({
          vip, port: entry.port, protocol, scheduler: 'mh', persistence: 0,
          backends: nodesWithEndpoints(controllerEndpoints, nodes, family),
          origin: `kube:configmap/${ing.namespace}/${name}:${entry.port}`,
        });
      }
    }
  }
  return { services, problems };
}

/**
 * Joins parts in the order given (Services by key, then ingress-nginx): a virtual service claimed
 * twice goes to the first part and the other is reported. Output sorted by service key.
 */
export function mergeDesired(parts: readonly { part: DesiredPart; ref: ObjectRef }[]): KubeDesired {
  const problems: SourceProblem[] = [];
  const byKey = new Map<string, VirtualService>();
  for (const { part, ref } of parts) {
    problems.push(...part.problems);
    for (const vs of part.services) {
      const key = serviceKey(vs);
      const prior = byKey.get(key);
      if (prior) {
        problems.push({ object: ref, reason: 'DuplicateVirtualService', message: `${key} is already served for ${prior.origin}; ignoring this one` });
        continue;
      }
      byKey.set(key, vs);
    }
  }
  const services = [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, vs]) => vs);
  return { state: { services }, problems };
}

/** The desired state for every Service we own and every ingress-nginx entry. */
export function desiredFromCluster(snap: ClusterSnapshot, opts: KubeDesiredOptions): KubeDesired {
  const nodes = indexNodes(snap.nodes, opts.nodeAddressType);
  const endpoints = endpointsByService(snap.endpointSlices);
  const ours = snap.services.filter((s) => isOurService(s, opts)).sort((a, b) => (objectKey(a) < objectKey(b) ? -1 : 1));
  const parts = ours.map((svc) => ({ part: desiredForService(svc, endpoints.get(objectKey(svc)) ?? [], nodes), ref: serviceRef(svc) }));
  const ing = opts.ingressNginx;
  if (ing) {
    const ref: ObjectRef = { kind: 'ConfigMap', namespace: ing.namespace, name: ing.tcpConfigMap };
    parts.push({ part: desiredForIngressNginx(ing, snap.configMaps, endpoints.get(`${ing.namespace}/${ing.controllerService}`) ?? [], nodes), ref });
  }
  return mergeDesired(parts);
}
