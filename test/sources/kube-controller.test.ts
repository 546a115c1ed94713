/**
 * The Kubernetes controller against the API server fixture, with the real @kubernetes/client-node
 * over HTTP, the real Reconciler, and a recording data path.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { API_CALLS } from '../../control/sources/kube/index.js';
import type { FakeKubeApiServer } from '../lib/kube-apiserver.js';
import {
  endpointSlice, ipPool, lbService, node, startCluster, startDirector, statusIPs, waitFor, type Director,
} from './kube-helpers.js';

let server: FakeKubeApiServer;
const directors: Director[] = [];

async function freshCluster(): Promise<void> {
  for (const d of directors.splice(0)) await d.stop();
  if (server) await server.close();
  server = await startCluster();
  server.apply(node('n1', '198.18.1.1'));
  server.apply(node('n2', '198.18.1.2'));
  server.apply(ipPool('main', { addresses: ['198.18.0.10-198.18.0.13'] }));
}

function director(opts: Parameters<typeof startDirector>[1] = {}): Director {
  const d = startDirector(server, opts);
  directors.push(d);
  return d;
}

const allRequests: FakeKubeApiServer['requests'] = [];
test.after.each(() => { if (server) allRequests.push(...server.requests.splice(0)); });
test.after(async () => {
  for (const d of directors.splice(0)) await d.stop();
  await server?.close();
});

test('nothing is emitted before every informer synced; an empty cluster then emits an empty state', async () => {
  await freshCluster();
  server.setUnavailable(true);
  const d = director();
  const seen: number[] = [];
  d.controller.onState((s) => seen.push(s.services.length));
  await waitFor('informers to fail at least once', () => d.controller.api.counts.get('listServices'));
  assert.is(d.controller.current(), null, 'no state while the API server is unreachable at start');
  assert.equal(seen, []);
  server.setUnavailable(false);
  await d.controller.whenSynced();
  assert.equal(d.controller.current()?.services, []);
});

test('Service + EndpointSlices -> VIP allocated, written to status with ipMode VIP, programmed', async () => {
  await freshCluster();
  const d = director();
  await d.controller.whenSynced();
  server.apply(lbService('shop', 'web', { local: true }));
  server.apply(endpointSlice('shop', 'web', [{ ip: '10.0.0.1', node: 'n1' }, { ip: '10.0.0.2', node: 'n1' }]));
  await waitFor('status to carry the VIP', () => statusIPs(server, 'shop', 'web').length === 1);
  const svc = server.get('Service', 'shop', 'web')!;
  assert.equal(svc.status.loadBalancer.ingress, [{ ip: '198.18.0.10', ipMode: 'VIP' }]);
  await waitFor('the data path to program it', () => d.dataplane.programmed.has('tcp/198.18.0.10:80'));
  assert.equal(d.dataplane.backends('tcp/198.18.0.10:80'), ['198.18.1.1=2']);
  await waitFor('an IPAllocated event', () => server.list('Event').find((e) => e.reason === 'IPAllocated' && e.involvedObject.name === 'web'));
  assert.equal(d.controller.poolUsage(), [{ pool: 'main', size: 4, assigned: 1 }]);
});

test('scale, terminate, delete: the data path follows; terminating endpoints drain', async () => {
  await freshCluster();
  const d = director();
  await d.controller.whenSynced();
  server.apply(lbService('shop', 'web', { local: true }));
  server.apply(endpointSlice('shop', 'web', [{ ip: '10.0.0.1', node: 'n1' }]));
  const key = 'tcp/198.18.0.10:80';
  await waitFor('programmed', () => d.dataplane.backends(key).join() === '198.18.1.1=1');
  // Scale up onto n2.
  server.apply(endpointSlice('shop', 'web', [{ ip: '10.0.0.1', node: 'n1' }, { ip: '10.0.0.3', node: 'n2' }]));
  await waitFor('n2 added', () => d.dataplane.backends(key).join() === '198.18.1.1=1,198.18.1.2=1');
  // The pod on n1 terminates: n1 drains, it does not vanish.
  server.apply(endpointSlice('shop', 'web', [{ ip: '10.0.0.1', node: 'n1', ready: false, serving: true, terminating: true }, { ip: '10.0.0.3', node: 'n2' }]));
  await waitFor('n1 draining', () => d.dataplane.backends(key).join() === '198.18.1.1=0,198.18.1.2=1');
  // It is gone.
  server.apply(endpointSlice('shop', 'web', [{ ip: '10.0.0.3', node: 'n2' }]));
  await waitFor('n1 removed', () => d.dataplane.backends(key).join() === '198.18.1.2=1');
  // Delete the Service: the virtual service goes, the address is free again.
  server.remove('Service', 'shop', 'web');
  await waitFor('service removed', () => !d.dataplane.programmed.has(key));
  server.apply(lbService('shop', 'api'));
  await waitFor('the freed address reused', () => statusIPs(server, 'shop', 'api')[0] === '198.18.0.10');
});

test('class change releases the address; a class-less Service is served only with the flag', async () => {
  await freshCluster();
  const d = director();
  await d.controller.whenSynced();
  server.apply(lbService('shop', 'web'));
  await waitFor('allocated', () => statusIPs(server, 'shop', 'web').length === 1);
  server.apply({ ...lbService('shop', 'web', { cls: 'example.com/other' }), status: undefined } as never);
  await waitFor('released on class change', () => statusIPs(server, 'shop', 'web').length === 0);
  server.apply(lbService('shop', 'classless', { cls: null }));
  await d.controller.idle();
  assert.equal(statusIPs(server, 'shop', 'classless'), []);
  await d.stop();
  directors.splice(directors.indexOf(d), 1);
  const e = director({ classlessServices: true, identity: 'director-e' });
  await waitFor('class-less served with the flag', () => statusIPs(server, 'shop', 'classless').length === 1);
  await e.controller.whenSynced();
});

test('bad input is reported as Events and skipped; the rest keeps working', async () => {
  await freshCluster();
  server.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'ingress-nginx', name: 'tcp-services' }, data: { '9000': 'shop/web:80', '9001': 'no-slash:80' } });
  server.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'ingress-nginx', name: 'udp-services' }, data: { '5353': 'kube-system/dns:53' } });
  server.apply(endpointSlice('ingress-nginx', 'ingress-nginx-controller', [{ ip: '198.18.1.2', node: 'n2' }]));
  const d = director({ ingressNginx: { vips: ['198.18.0.100'] } });
  await d.controller.whenSynced();
  server.apply(lbService('shop', 'web', { annotations: { 'xdir.io/backend-mode': 'pods' } }));
  server.apply(lbService('shop', 'wants-taken', { annotations: { 'xdir.io/load-balancer-ips': '198.18.0.10' } }));
  await waitFor('web programmed on nodes despite the bad annotation', () => d.dataplane.programmed.has('tcp/198.18.0.11:80') || d.dataplane.programmed.has('tcp/198.18.0.10:80'));
  await waitFor('ingress-nginx entries programmed', () => d.dataplane.programmed.has('tcp/198.18.0.100:9000') && d.dataplane.programmed.has('udp/198.18.0.100:5353'));
  assert.equal(d.dataplane.backends('tcp/198.18.0.100:9000'), ['198.18.1.2=1']);
  assert.not.ok(d.dataplane.programmed.has('tcp/198.18.0.100:9001'));
  const warnings = await waitFor('three warnings', () => {
    const w = server.list('Event').filter((e) => e.type === 'Warning');
    return w.length >= 2 ? w : null;
  });
  const reasons = warnings!.map((e) => `${e.involvedObject.kind}/${e.involvedObject.name}:${e.reason}`);
  assert.ok(reasons.includes('ConfigMap/tcp-services:InvalidEntry'), reasons.join());
  assert.ok(reasons.includes('Service/web:InvalidAnnotation'), reasons.join());
  // The requested address goes to whichever Service holds it first; the other gets a Warning.
  const taken = statusIPs(server, 'shop', 'web')[0] === '198.18.0.10';
  if (taken) await waitFor('a RequestedAddressTaken warning', () => server.list('Event').find((e) => e.reason === 'RequestedAddressTaken'));
  // Bad input is reported once, not on every pass.
  d.controller.resync();
  await d.controller.idle();
  const invalid = server.list('Event').filter((e) => e.reason === 'InvalidEntry');
  assert.is(invalid.length, 1);
});

test('bad pools: admission rejects bad syntax (422); semantic errors land in status and an Event', async () => {
  await freshCluster();
  const d = director();
  await d.controller.whenSynced();
  // Through the real client, as kubectl would: the CRD schema rejects a malformed address.
  const { CustomObjectsApi } = await import('@kubernetes/client-node');
  const custom = d.controller.api.config.makeApiClient(CustomObjectsApi);
  const err = await custom.createClusterCustomObject({ group: 'xdir.io', version: 'v1alpha1', plural: 'ippools', body: ipPool('typo', { addresses: ['198.18.0.300/24'] }) }).catch((e) => e);
  server.requests.splice(0); // the test's own request, not the controller's
  assert.is(err.code, 422);
  assert.match(String(err.body), /spec.addresses\[0\]/);
  server.apply(ipPool('hostbits', { addresses: ['198.18.5.1/24'] }));
  server.apply(ipPool('overlap', { addresses: ['198.18.0.12/31'] }));
  const hostbits = await waitFor('hostbits status', () => server.get('IPPool', undefined, 'hostbits')?.status?.conditions?.[0]);
  assert.equal([hostbits.status, hostbits.reason], ['False', 'InvalidSpec']);
  assert.match(hostbits.message, /did you mean 198\.18\.5\.0\/24/);
  const overlap = await waitFor('overlap status', () => server.get('IPPool', undefined, 'overlap')?.status?.conditions?.[0]);
  assert.equal([overlap.status, overlap.reason], ['False', 'Overlap']);
  const good = await waitFor('main status', () => server.get('IPPool', undefined, 'main')?.status?.conditions?.[0]);
  assert.equal([good.status, good.reason], ['True', 'Valid']);
  await waitFor('InvalidIPPool events', () => server.list('Event').filter((e) => e.reason === 'InvalidIPPool').length === 2);
  // The valid pool keeps working.
  server.apply(lbService('shop', 'web'));
  await waitFor('allocated from main', () => statusIPs(server, 'shop', 'web')[0] === '198.18.0.10');
});

test('exhaustion: a Service waits with a Warning and gets an address when one frees up', async () => {
  await freshCluster();
  const d = director();
  await d.controller.whenSynced();
  for (let i = 0; i < 5; i++) server.apply(lbService('shop', `s${i}`));
  await waitFor('four allocated', () => [0, 1, 2, 3, 4].filter((i) => statusIPs(server, 'shop', `s${i}`).length === 1).length === 4);
  const waiting = [0, 1, 2, 3, 4].find((i) => statusIPs(server, 'shop', `s${i}`).length === 0)!;
  await waitFor('PoolExhausted warning', () => server.list('Event').find((e) => e.reason === 'PoolExhausted' && e.involvedObject.name === `s${waiting}`));
  assert.equal(d.controller.poolUsage(), [{ pool: 'main', size: 4, assigned: 4 }]);
  const victim = [0, 1, 2, 3, 4].find((i) => i !== waiting)!;
  const freed = statusIPs(server, 'shop', `s${victim}`)[0];
  server.remove('Service', 'shop', `s${victim}`);
  await waitFor('the waiting Service gets the freed address', () => statusIPs(server, 'shop', `s${waiting}`)[0] === freed);
});

test('a 409 on the status write re-reads and retries', async () => {
  await freshCluster();
  const d = director();
  await d.controller.whenSynced();
  let injected = false;
  server.beforeUpdate = (r) => {
    if (injected || r.resource !== 'services/status' || r.name !== 'web') return;
    injected = true;
    const cur = server.get('Service', 'shop', 'web')!;
    server.apply({ ...cur, metadata: { ...cur.metadata, labels: { touched: 'yes' } }, status: undefined } as never);
  };
  server.apply(lbService('shop', 'web'));
  await waitFor('allocated after the conflict', () => statusIPs(server, 'shop', 'web').length === 1);
  server.beforeUpdate = undefined;
  assert.ok(injected);
  assert.ok(d.controller.stats.statusConflicts >= 1);
  assert.is(server.get('Service', 'shop', 'web')!.metadata.labels.touched, 'yes', 'the other writer\'s change survives');
});

test('watches dropped and history compacted -> 410 -> relist: only the real delta reaches the data path', async () => {
  await freshCluster();
  const d = director();
  await d.controller.whenSynced();
  for (const n of ['a', 'b', 'c']) {
    server.apply(lbService('shop', n, { local: true }));
    server.apply(endpointSlice('shop', n, [{ ip: '10.0.1.1', node: 'n1' }, { ip: '10.0.1.2', node: 'n2' }]));
  }
  await waitFor('three services programmed', () => d.dataplane.programmed.size === 3 && [...d.dataplane.programmed.values()].every((s) => s.backends.length === 2));
  await d.reconciler.idle();
  const before = d.dataplane.changes.length;
  const relistsBefore = d.controller.api.counts.get('listEndpointSlices')!;
  const vipOfB = statusIPs(server, 'shop', 'b')[0]!;
  // Every watch drops; while the clients reconnect a change happens and history is compacted:
  // resuming from their resourceVersion fails with 410 and they must relist.
  server.dropWatches({ hold: true });
  await waitFor('every informer to try again', () => server.heldWatchCount >= 4);
  server.apply(endpointSlice('shop', 'b', [{ ip: '10.0.1.2', node: 'n2' }]));
  server.compact();
  server.resumeWatches();
  await waitFor('the change to arrive by relist', () => d.dataplane.backends(`tcp/${vipOfB}:80`).join() === '198.18.1.2=1');
  await waitFor('informers watching again', () => server.watchCount() >= 4);
  await d.reconciler.idle();
  const after = d.dataplane.changes.slice(before);
  assert.equal(after, [{ added: [], updated: [`tcp/${vipOfB}:80`], removed: [] }]);
  assert.ok(d.controller.api.counts.get('listEndpointSlices')! > relistsBefore, 'the 410 made the informer relist');
  // Unreachable for a while: nothing is removed, nothing changes.
  server.setUnavailable(true);
  await waitFor('informers to notice', () => server.watchCount() === 0);
  server.setUnavailable(false);
  server.apply(lbService('shop', 'd'));
  await waitFor('new service after the outage', () => statusIPs(server, 'shop', 'd').length === 1 && d.dataplane.programmed.size === 4);
  assert.is(d.dataplane.changes.slice(before).flatMap((c) => c.removed).length, 0);
});

test('API unreachable: state frozen (not emptied), informers restart with backoff', async () => {
  await freshCluster();
  const d = director();
  await d.controller.whenSynced();
  server.apply(lbService('shop', 'web'));
  await waitFor('programmed', () => d.dataplane.programmed.size === 1);
  const emitsBefore = d.controller.stats.emits;
  server.setUnavailable(true);
  const listsBefore = d.controller.api.counts.get('listServices') ?? 0;
  // While it is down every reconnect fails; the informer stops and is restarted with backoff.
  await waitFor('several failed reconnects', async () => {
    const restarts = (d.controller as unknown as { services: { restarts: number } }).services.restarts;
    return restarts >= 2;
  });
  assert.is(d.controller.stats.emits, emitsBefore, 'no new state while unreachable');
  assert.is(d.dataplane.programmed.size, 1);
  server.setUnavailable(false);
  server.remove('Service', 'shop', 'web');
  await waitFor('the real delete arrives', () => d.dataplane.programmed.size === 0);
  assert.ok((d.controller.api.counts.get('listServices') ?? 0) >= listsBefore);
});

test('restart recovery: a new controller keeps every address from status and writes nothing', async () => {
  await freshCluster();
  const a = director();
  await a.controller.whenSynced();
  server.apply(lbService('shop', 'x'));
  server.apply(lbService('shop', 'y', { annotations: { 'xdir.io/load-balancer-ips': '198.18.0.13' } }));
  await waitFor('allocated', () => statusIPs(server, 'shop', 'x').length === 1 && statusIPs(server, 'shop', 'y').length === 1);
  const x = statusIPs(server, 'shop', 'x')[0], y = statusIPs(server, 'shop', 'y')[0];
  await a.stop();
  directors.splice(directors.indexOf(a), 1);
  // A pool listed first in name order now covers nothing used; the plan must still keep x and y.
  server.apply(ipPool('aaa-first', { addresses: ['198.18.3.0/30'] }));
  const b = director({ identity: 'director-b' });
  await b.controller.whenSynced();
  await waitFor('b leads', () => b.controller.isLeader());
  b.controller.resync();
  await b.controller.idle();
  assert.is(b.controller.stats.statusWrites, 0);
  assert.equal([statusIPs(server, 'shop', 'x')[0], statusIPs(server, 'shop', 'y')[0]], [x, y]);
  server.apply(lbService('shop', 'z'));
  await waitFor('new service allocated', () => statusIPs(server, 'shop', 'z').length === 1);
  assert.is(statusIPs(server, 'shop', 'z')[0], '198.18.3.0');
});

test('two controllers racing for addresses never hand out one address twice', async () => {
  await freshCluster();
  server.apply(ipPool('main', { addresses: ['198.18.0.0/26'] }));
  const a = director({ identity: 'director-a' });
  const b = director({ identity: 'director-b' });
  await Promise.all([a.controller.whenSynced(), b.controller.whenSynced()]);
  for (let i = 0; i < 20; i++) server.apply(lbService('shop', `s${i}`, { annotations: i % 4 === 0 ? { 'xdir.io/allow-shared-ip': 'k' } : {}, ports: [{ port: 1000 + i }] }));
  const ipsOf = () => Array.from({ length: 20 }, (_, i) => statusIPs(server, 'shop', `s${i}`)[0]).filter(Boolean) as string[];
  await waitFor('all 20 allocated', () => ipsOf().length === 20);
  // Sharing-key Services may share; nobody else may.
  const unshared = Array.from({ length: 20 }, (_, i) => i).filter((i) => i % 4 !== 0).map((i) => statusIPs(server, 'shop', `s${i}`)[0]);
  assert.is(new Set(unshared).size, unshared.length);
  assert.ok(!unshared.some((ip) => ip === statusIPs(server, 'shop', 's0')[0]));
  const leader = a.controller.isLeader() ? a : b;
  const follower = leader === a ? b : a;
  assert.is(follower.controller.stats.statusWrites, 0, 'only the Lease holder writes allocations');
  // Both instances program the same data path.
  await waitFor('both programmed', () => a.dataplane.programmed.size === 20 && b.dataplane.programmed.size === 20);
  // The leader goes away; the other takes over and allocates.
  await leader.stop();
  directors.splice(directors.indexOf(leader), 1);
  await waitFor('takeover', () => follower.controller.isLeader());
  for (let i = 20; i < 25; i++) server.apply(lbService('shop', `s${i}`, { ports: [{ port: 1000 + i }] }));
  await waitFor('five more allocated', () => Array.from({ length: 5 }, (_, i) => statusIPs(server, 'shop', `s${20 + i}`)[0]).every(Boolean));
  const all = Array.from({ length: 25 }, (_, i) => i).filter((i) => i % 4 !== 0 || i >= 20).map((i) => statusIPs(server, 'shop', `s${i}`)[0]);
  assert.is(new Set(all).size, all.length);
  const lease = server.get('Lease', 'xdir-system', 'xdir-director-allocator')!;
  assert.is(lease.spec.holderIdentity, follower.controller.opts.identity);
  assert.match(lease.spec.renewTime, /\.\d{6}Z$/);
});

test('a leader that stops gives the Lease up at once, even with a renewal in flight', async () => {
  // Renewals every 5 ms: a stop() nearly always lands while one is between its read and its write.
  for (let i = 0; i < 5; i++) {
    await freshCluster();
    const d = director({ identity: `director-${i}`, leaseRetryMs: 5 });
    await waitFor('leading', () => d.controller.isLeader());
    await new Promise((r) => setTimeout(r, 20 + i * 7));
    await d.stop();
    directors.splice(directors.indexOf(d), 1);
    const lease = server.get('Lease', 'xdir-system', 'xdir-director-allocator')!;
    assert.not.ok(lease.spec.holderIdentity, `round ${i}: the Lease is released, not left to expire`);
    assert.is(lease.spec.leaseDurationSeconds, 1);
  }
});

test('every request the controller made is in API_CALLS (what deploy/rbac.yaml grants)', () => {
  const allowed = new Set(Object.values(API_CALLS).map((c) => `${c.verb} ${c.group}/${c.resource}`));
  const made = new Set(allRequests.map((r) => `${r.verb} ${r.group}/${r.resource}`));
  const extra = [...made].filter((m) => !allowed.has(m));
  assert.equal(extra, [], `requests outside API_CALLS: ${extra.join(', ')}`);
  for (const must of ['update /services/status', 'watch discovery.k8s.io/endpointslices', 'create /events', 'update coordination.k8s.io/leases']) {
    assert.ok(made.has(must), `expected the controller to make ${must}`);
  }
});

test.run();
