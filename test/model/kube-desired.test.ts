import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1ConfigMap, V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import {
  desiredFromCluster, isOurService, parseIngressNginxEntry, serviceClaim,
  type ClusterSnapshot, type KubeDesiredOptions,
} from '../../control/model/kube-desired.js';

const opts: KubeDesiredOptions = { loadBalancerClass: 'xdir.io/director', classlessIsOurs: false, nodeAddressType: 'InternalIP' };

function node(name: string, ip: string, extra: { ready?: boolean; labels?: Record<string, string>; ip6?: string } = {}): V1Node {
  const addresses = [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }];
  if (extra.ip6) addresses.push({ type: 'InternalIP', address: extra.ip6 });
  return {
    metadata: { name, labels: extra.labels },
    status: { addresses, conditions: [{ type: 'Ready', status: extra.ready === false ? 'False' : 'True' }] },
  } as V1Node;
}

function service(name: string, spec: Record<string, unknown> = {}, ips: string[] = ['198.18.0.10'], annotations: Record<string, string> = {}): V1Service {
  return {
    metadata: { namespace: 'ns', name, annotations, creationTimestamp: new Date('2026-01-01T00:00:00Z') },
    spec: { type: 'LoadBalancer', loadBalancerClass: 'xdir.io/director', ports: [{ name: 'http', port: 80, protocol: 'TCP' }], ...spec },
    status: { loadBalancer: { ingress: ips.map((ip) => ({ ip, ipMode: 'VIP' })) } },
  } as unknown as V1Service;
}

type Ep = { ip: string; node?: string; ready?: boolean; serving?: boolean; terminating?: boolean };
function slice(svc: string, eps: Ep[], port = 8080, ns = 'ns', name = `${svc}-abc`): V1EndpointSlice {
  return {
    metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svc } },
    addressType: eps[0]?.ip.includes(':') ? 'IPv6' : 'IPv4',
    ports: [{ name: 'http', port, protocol: 'TCP' }],
    endpoints: eps.map((e) => ({ addresses: [e.ip], nodeName: e.node, conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating } })),
  } as V1EndpointSlice;
}

const nodes = [node('n1', '198.18.1.1'), node('n2', '198.18.1.2'), node('n3', '198.18.1.3', { ready: false })];
const snap = (p: Partial<ClusterSnapshot>): ClusterSnapshot => ({ services: [], endpointSlices: [], nodes, configMaps: [], ...p });

test('class decides ownership; class-less Services only with the flag', () => {
  assert.ok(isOurService(service('a'), opts));
  assert.not.ok(isOurService(service('b', { loadBalancerClass: 'other' }), opts));
  assert.not.ok(isOurService(service('c', { type: 'ClusterIP' }), opts));
  const classless = service('d', { loadBalancerClass: undefined });
  assert.not.ok(isOurService(classless, opts));
  assert.ok(isOurService(classless, { ...opts, classlessIsOurs: true }));
});

test('Cluster policy: every node is a backend; not-ready nodes drain', () => {
  const { state, problems } = desiredFromCluster(snap({ services: [service('web')] }), opts);
  assert.equal(problems, []);
  assert.equal(state.services, [{
    vip: '198.18.0.10', port: 80, protocol: 'tcp', scheduler: 'mh', persistence: 0, origin: 'kube:ns/web',
    backends: [{ address: '198.18.1.1', weight: 1 }, { address: '198.18.1.2', weight: 1 }, { address: '198.18.1.3', weight: 0 }],
  }]);
});

test('Local policy: only nodes with ready endpoints, weighted by count; terminating endpoints drain', () => {
  const svc = service('web', { externalTrafficPolicy: 'Local' });
  const eps = slice('web', [
    { ip: '10.0.0.1', node: 'n1' }, { ip: '10.0.0.2', node: 'n1' },
    { ip: '10.0.0.3', node: 'n2', ready: false, serving: true, terminating: true },
    { ip: '10.0.0.4', node: 'n3', ready: false }, // not ready, not terminating: not a backend
  ]);
  const { state } = desiredFromCluster(snap({ services: [svc], endpointSlices: [eps] }), opts);
  assert.equal(state.services[0]!.backends, [{ address: '198.18.1.1', weight: 2 }, { address: '198.18.1.2', weight: 0 }]);
});

test('excluded nodes and nodes without the address type are left out', () => {
  const ns = [node('n1', '198.18.1.1', { labels: { 'node.kubernetes.io/exclude-from-external-load-balancers': '' } }), node('n2', '198.18.1.2')];
  const { state } = desiredFromCluster({ services: [service('web')], endpointSlices: [], nodes: ns, configMaps: [] }, { ...opts, nodeAddressType: 'ExternalIP' });
  assert.equal(state.services[0]!.backends, []);
  const internal = desiredFromCluster({ services: [service('web')], endpointSlices: [], nodes: ns, configMaps: [] }, opts);
  assert.equal(internal.state.services[0]!.backends, [{ address: '198.18.1.2', weight: 1 }]);
});

test('endpoints mode uses pod addresses; a port mismatch is reported and skipped', () => {
  const svc = service('direct', {}, ['198.18.0.11'], { 'xdir.io/backend-mode': 'endpoints' });
  const ok = desiredFromCluster(snap({
    services: [svc],
    endpointSlices: [slice('direct', [{ ip: '10.0.0.1', node: 'n1' }, { ip: '10.0.0.2', terminating: true, ready: false, serving: true }], 80)],
  }), opts);
  assert.equal(ok.problems, []);
  assert.equal(ok.state.services[0]!.backends, [{ address: '10.0.0.1', weight: 1 }, { address: '10.0.0.2', weight: 0 }]);
  const bad = desiredFromCluster(snap({ services: [svc], endpointSlices: [slice('direct', [{ ip: '10.0.0.1' }], 8080)] }), opts);
  assert.equal(bad.state.services, []);
  assert.is(bad.problems[0]!.reason, 'EndpointPortMismatch');
});

test('bad annotations are reported and fall back; SCTP ports are skipped; affinity maps to persistence', () => {
  const svc = service('x', {
    sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
    ports: [{ port: 80, protocol: 'TCP' }, { port: 9, protocol: 'SCTP' }, { port: 53, protocol: 'UDP' }],
  }, ['198.18.0.12'], { 'xdir.io/backend-mode': 'pods', 'xdir.io/scheduler': 'fastest' });
  const { state, problems } = desiredFromCluster(snap({ services: [svc] }), opts);
  assert.equal(problems.map((p) => p.reason).sort(), ['InvalidAnnotation', 'InvalidAnnotation', 'UnsupportedProtocol']);
  assert.equal(state.services.map((s) => `${s.protocol}/${s.port}/${s.persistence}/${s.scheduler}`), ['tcp/80/600/mh', 'udp/53/600/mh']);
});

test('no VIP in status yet -> no virtual service; IPv6 VIPs get IPv6 node addresses', () => {
  assert.equal(desiredFromCluster(snap({ services: [service('pending', {}, [])] }), opts).state.services, []);
  const ns6 = [node('n1', '198.18.1.1', { ip6: 'fd00::1:1' })];
  const { state } = desiredFromCluster({ services: [service('six', {}, ['FD00::10'])], endpointSlices: [], nodes: ns6, configMaps: [] }, opts);
  assert.equal(state.services.map((s) => [s.vip, s.backends]), [['fd00::10', [{ address: 'fd00::1:1', weight: 1 }]]]);
});

test('ingress-nginx entries parse; malformed ones are rejected with the reason', () => {
  assert.equal(parseIngressNginxEntry('9000', 'default/example-go:8080', 'tcp'),
    { port: 9000, protocol: 'tcp', target: { namespace: 'default', service: 'example-go', port: '8080' }, decodeProxy: false, encodeProxy: false });
  assert.is(parseIngressNginxEntry('9001', 'ns/svc:http::PROXY', 'tcp').encodeProxy, true);
  assert.throws(() => parseIngressNginxEntry('70000', 'a/b:1', 'tcp'), /port number/);
  assert.throws(() => parseIngressNginxEntry('53', 'kube-dns:53', 'udp'), /NAMESPACE\/SERVICE/);
  assert.throws(() => parseIngressNginxEntry('53', 'a/b:53:PROXI', 'udp'), /PROXY or empty/);
  assert.throws(() => parseIngressNginxEntry('53', 'a/b', 'udp'), /must be NAMESPACE/);
});

test('ingress-nginx ConfigMaps -> services on the VIP whose backends are the controller pods\' nodes', () => {
  const ing = { namespace: 'ingress-nginx', tcpConfigMap: 'tcp-services', udpConfigMap: 'udp-services', controllerService: 'ingress-nginx-controller', vips: ['198.18.0.100'] };
  const tcp = { metadata: { namespace: 'ingress-nginx', name: 'tcp-services' }, data: { '9000': 'default/app:8080', '9001': 'garbage' } } as V1ConfigMap;
  const udp = { metadata: { namespace: 'ingress-nginx', name: 'udp-services' }, data: { '53': 'kube-system/kube-dns:53' } } as V1ConfigMap;
  const ctl = slice('ingress-nginx-controller', [
    { ip: '198.18.1.1', node: 'n1' }, { ip: '198.18.1.2', node: 'n2', ready: false, terminating: true, serving: true },
  ], 80, 'ingress-nginx');
  const { state, problems } = desiredFromCluster(snap({ configMaps: [tcp, udp], endpointSlices: [ctl] }), { ...opts, ingressNginx: ing });
  assert.equal(state.services.map((s) => [s.protocol, s.port, s.backends]), [
    ['tcp', 9000, [{ address: '198.18.1.1', weight: 1 }, { address: '198.18.1.2', weight: 0 }]],
    ['udp', 53, [{ address: '198.18.1.1', weight: 1 }, { address: '198.18.1.2', weight: 0 }]],
  ]);
  assert.is(problems.length, 1);
  assert.equal(problems[0]!.object, { kind: 'ConfigMap', namespace: 'ingress-nginx', name: 'tcp-services', uid: undefined });
  assert.match(problems[0]!.message, /"9001".*garbage|garbage/);
});

test('two Services on one VIP:port: the first by name wins, the other is reported', () => {
  const a = service('a'), b = service('b');
  const { state, problems } = desiredFromCluster(snap({ services: [b, a] }), opts);
  assert.is(state.services.length, 1);
  assert.is(state.services[0]!.origin, 'kube:ns/a');
  assert.is(problems[0]!.reason, 'DuplicateVirtualService');
});

test('serviceClaim reads requests, sharing key, families and status (Date or string timestamps)', () => {
  const svc = service('c', { ipFamilies: ['IPv6', 'IPv4'], ipFamilyPolicy: 'RequireDualStack', loadBalancerIP: '198.18.0.1' },
    ['fd00::5'], { 'xdir.io/load-balancer-ips': 'fd00::9, 198.18.0.9', 'xdir.io/allow-shared-ip': 'k' });
  const c = serviceClaim(svc);
  assert.equal([c.key, c.families, c.requireAllFamilies, c.requested, c.sharingKey, c.current, c.createdAt],
    ['ns/c', [6, 4], true, ['fd00::9', '198.18.0.9'], 'k', ['fd00::5'], '2026-01-01T00:00:00.000Z']);
  assert.equal(serviceClaim(service('d', { loadBalancerIP: '198.18.0.1' })).requested, ['198.18.0.1']);
});

test.run();
