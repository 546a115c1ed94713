/**
 * The incremental desired state (control/sources/kube/desired-cache.ts) always equals the pure
 * desiredFromCluster over the same objects, through a sequence of adds, updates and deletes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1ConfigMap, V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { desiredFromCluster, objectKey, type KubeDesiredOptions } from '../../control/model/kube-desired.js';
import { serviceKey } from '../../control/model/types.js';
import { DesiredCache } from '../../control/sources/kube/desired-cache.js';
import { endpointSlice, lbService, node } from './kube-helpers.js';

const opts: KubeDesiredOptions = {
  loadBalancerClass: 'xdir.io/director', classlessIsOurs: false, nodeAddressType: 'InternalIP',
  ingressNginx: { namespace: 'ingress-nginx', tcpConfigMap: 'tcp-services', udpConfigMap: 'udp-services', controllerService: 'ctl', vips: ['198.18.0.100'] },
};

class World {
  services = new Map<string, V1Service>();
  slices = new Map<string, V1EndpointSlice>();
  nodes = new Map<string, V1Node>();
  configMaps = new Map<string, V1ConfigMap>();
  cache = new DesiredCache(opts);
  /** The last state compute() returned, by key, to check each state's delta against. */
  prev: { revision?: number; byKey: Map<string, unknown> } | null = null;

  setService(s: V1Service) { this.services.set(objectKey(s), s); this.cache.serviceChanged(s); }
  delService(key: string) { const s = this.services.get(key)!; this.services.delete(key); this.cache.serviceChanged(s); }
  setSlice(s: V1EndpointSlice) { this.slices.set(objectKey(s), s); this.cache.sliceChanged(s, false); }
  delSlice(key: string) { const s = this.slices.get(key)!; this.slices.delete(key); this.cache.sliceChanged(s, true); }
  setNode(n: V1Node) { this.nodes.set(n.metadata!.name!, n); this.cache.nodesChanged(); }
  setConfigMap(c: V1ConfigMap) { this.configMaps.set(objectKey(c), c); this.cache.configMapsChanged(); }

  check(what: string) {
    const { desired } = this.cache.compute({
      service: (k) => this.services.get(k), services: () => [...this.services.values()],
      nodes: () => [...this.nodes.values()], configMaps: () => [...this.configMaps.values()],
    });
    const pure = desiredFromCluster({
      services: [...this.services.values()], endpointSlices: [...this.slices.values()],
      nodes: [...this.nodes.values()], configMaps: [...this.configMaps.values()],
    }, opts);
    const sorted = [...desired.state.services].sort((a, b) => (serviceKey(a) < serviceKey(b) ? -1 : 1));
    assert.equal(sorted, pure.state.services, what);
    // The delta names exactly the keys whose definition changed since the previous state.
    const byKey = new Map<string, unknown>(desired.state.services.map((s) => [serviceKey(s), s]));
    if (this.prev && desired.state.revision !== this.prev.revision) {
      const delta = desired.state.delta;
      assert.ok(delta, `${what}: a delta`);
      assert.is(delta.since, this.prev.revision, `${what}: delta relative to the previous state`);
      const differ = [...new Set([...byKey.keys(), ...this.prev.byKey.keys()])]
        .filter((k) => this.prev!.byKey.get(k) !== byKey.get(k)).sort();
      assert.equal([...delta.changes.keys()].sort(), differ, `${what}: delta keys`);
      for (const [k, v] of delta.changes) assert.is(v, byKey.get(k) ?? null, `${what}: delta entry ${k}`);
    }
    this.prev = { revision: desired.state.revision, byKey };
    const reasons = (ps: { reason: string; object: { name: string } }[]) => ps.map((p) => `${p.object.name}:${p.reason}`).sort();
    assert.equal(reasons(desired.problems), reasons(pure.problems), `${what}: problems`);
  }
}

const withVip = (s: ReturnType<typeof lbService>, ip: string) => ({ ...s, status: { loadBalancer: { ingress: [{ ip, ipMode: 'VIP' }] } } }) as unknown as V1Service;

test('incremental result equals the pure function through adds, updates and deletes', () => {
  const w = new World();
  w.check('empty');
  w.setNode(node('n1', '198.18.1.1') as V1Node);
  w.setNode(node('n2', '198.18.1.2') as V1Node);
  w.setService(withVip(lbService('a', 'web', { local: true }), '198.18.0.10'));
  w.setService(withVip(lbService('a', 'api'), '198.18.0.11'));
  w.check('two services');
  w.setSlice(endpointSlice('a', 'web', [{ ip: '10.0.0.1', node: 'n1' }]) as V1EndpointSlice);
  w.check('slice added');
  w.setSlice(endpointSlice('a', 'web', [{ ip: '10.0.0.2', node: 'n2' }], 'web-x2') as V1EndpointSlice);
  w.check('second slice');
  w.setSlice(endpointSlice('a', 'web', [{ ip: '10.0.0.1', node: 'n1', ready: false, serving: true, terminating: true }]) as V1EndpointSlice);
  w.check('terminating');
  w.setNode(node('n2', '198.18.1.22') as V1Node);
  w.check('node address changed');
  w.delSlice('a/web-x2');
  w.check('slice deleted');
  w.setService(withVip(lbService('a', 'dup'), '198.18.0.11'));
  w.check('duplicate VIP:port');
  w.setService(withVip(lbService('a', 'api', { cls: 'other' }), '198.18.0.11'));
  w.check('class changed: dup takes over');
  w.delService('a/web');
  w.check('service deleted');
  w.setConfigMap({ metadata: { namespace: 'ingress-nginx', name: 'tcp-services' }, data: { '9000': 'a/web:80', '9001': 'bad' } });
  w.setSlice(endpointSlice('ingress-nginx', 'ctl', [{ ip: '198.18.1.1', node: 'n1' }]) as V1EndpointSlice);
  w.check('ingress-nginx');
  w.setSlice(endpointSlice('ingress-nginx', 'ctl', [{ ip: '198.18.1.2', node: 'n2' }]) as V1EndpointSlice);
  w.check('ingress controller moved');
});

test('an unrelated change recomputes one Service and keeps the others\' objects', () => {
  const w = new World();
  w.setNode(node('n1', '198.18.1.1') as V1Node);
  for (let i = 0; i < 50; i++) {
    w.setService(withVip(lbService('b', `s${i}`, { local: true }), `198.18.2.${i}`));
    w.setSlice(endpointSlice('b', `s${i}`, [{ ip: `10.1.0.${i}`, node: 'n1' }]) as V1EndpointSlice);
  }
  w.check('fifty');
  const before = w.cache.compute({ service: (k) => w.services.get(k), services: () => [...w.services.values()], nodes: () => [...w.nodes.values()], configMaps: () => [] });
  assert.is(before.changed, false);
  w.setSlice(endpointSlice('b', 's7', [{ ip: '10.1.0.7', node: 'n1' }, { ip: '10.1.1.7', node: 'n1' }]) as V1EndpointSlice);
  const after = w.cache.compute({ service: (k) => w.services.get(k), services: () => [...w.services.values()], nodes: () => [...w.nodes.values()], configMaps: () => [] });
  assert.is(after.changed, true);
  assert.is(w.cache.recomputed, 1);
  const same = after.desired.state.services.filter((s) => before.desired.state.services.includes(s)).length;
  assert.is(same, 49);
});

test.run();
