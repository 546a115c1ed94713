/**
 * The API server fixture, exercised with the real @kubernetes/client-node: the protocol details
 * our controller depends on behave as kube-apiserver's do.
 */
import { readFileSync } from 'node:fs';
import {
  CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, V1MicroTime, Watch, setHeaderOptions,
  type V1Service,
} from '@kubernetes/client-node';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeKubeApiServer } from './kube-apiserver.js';

let server: FakeKubeApiServer;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let kc: KubeConfig;

test.before(async () => {
  server = await FakeKubeApiServer.start();
  server.registerCrd(readFileSync(new URL('../../deploy/ippool-crd.yaml', import.meta.url), 'utf8'));
  kc = new KubeConfig();
  kc.loadFromFile(server.writeKubeconfig());
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
});
test.after(async () => { await server.close(); });

const svc = (name: string): V1Service => ({
  metadata: { name, labels: { app: name } },
  spec: { type: 'LoadBalancer', ports: [{ port: 80, protocol: 'TCP' }] },
  status: { loadBalancer: { ingress: [{ ip: '198.18.0.1' }] } },
});

/** Collects watch events until `stop` says so (bounded by the caller's waits). */
async function watchEvents(path: string, query: Record<string, string>): Promise<{ events: { type: string; object: any }[]; done: Promise<unknown>; abort: () => void }> {
  const events: { type: string; object: any }[] = [];
  let finish!: (e: unknown) => void;
  const done = new Promise((r) => { finish = r; });
  const ctl = await new Watch(kc).watch(path, query, (type, object) => events.push({ type, object }), (err) => finish(err ?? 'closed'));
  return { events, done, abort: () => ctl.abort() };
}

/** Typed client results are class instances; compare their JSON. */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v ?? null));

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('create: 201 with server metadata, status dropped; 409 AlreadyExists; list carries the global resourceVersion', async () => {
  const created = await core.createNamespacedService({ namespace: 'default', body: svc('a') });
  assert.ok(created.metadata?.uid);
  assert.is(created.metadata?.generation, 1);
  assert.ok(created.metadata?.creationTimestamp instanceof Date);
  assert.is(created.status?.loadBalancer?.ingress, undefined, 'status is not settable on create');
  const err = await core.createNamespacedService({ namespace: 'default', body: svc('a') }).catch((e) => e);
  assert.is(err.code, 409);
  assert.is(JSON.parse(err.body).reason, 'AlreadyExists');
  await core.createNamespacedConfigMap({ namespace: 'other', body: { metadata: { name: 'x' } } });
  const list = await core.listServiceForAllNamespaces();
  assert.is(list.metadata?.resourceVersion, server.resourceVersion, 'the list RV is the global one, not the newest item\'s');
  assert.is.not(list.metadata?.resourceVersion, created.metadata?.resourceVersion);
});

test('update: stale resourceVersion -> 409 Conflict; a no-op keeps the resourceVersion; status subresource is separate', async () => {
  const cur = await core.readNamespacedService({ namespace: 'default', name: 'a' });
  const noop = await core.replaceNamespacedService({ namespace: 'default', name: 'a', body: cur });
  assert.is(noop.metadata?.resourceVersion, cur.metadata?.resourceVersion);
  const withStatus = { ...cur, status: { loadBalancer: { ingress: [{ ip: '198.18.0.9' }] } } };
  const main = await core.replaceNamespacedService({ namespace: 'default', name: 'a', body: { ...withStatus, metadata: { ...cur.metadata, labels: { app: 'a', v: '2' } } } });
  assert.is(main.status?.loadBalancer?.ingress, undefined, 'the main resource ignores status');
  const stale = await core.replaceNamespacedServiceStatus({ namespace: 'default', name: 'a', body: withStatus }).catch((e) => e);
  assert.is(stale.code, 409);
  assert.is(JSON.parse(stale.body).reason, 'Conflict');
  const st = await core.replaceNamespacedServiceStatus({ namespace: 'default', name: 'a', body: { ...main, metadata: { ...main.metadata, labels: { ignored: 'yes' } }, status: withStatus.status } });
  assert.equal(plain(st.status?.loadBalancer?.ingress), [{ ip: '198.18.0.9' }]);
  assert.is(st.metadata?.labels?.ignored, undefined, '/status changes only status');
});

test('patch: JSON patch by default, merge and strategic merge by header; resourceVersion in a patch is a precondition', async () => {
  const p1 = await core.patchNamespacedService({ namespace: 'default', name: 'a', body: [{ op: 'add', path: '/metadata/annotations', value: { x: '1' } }] });
  assert.is(p1.metadata?.annotations?.x, '1');
  const p2 = await core.patchNamespacedService({ namespace: 'default', name: 'a', body: { metadata: { annotations: { x: null, y: '2' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  assert.equal(plain(p2.metadata?.annotations), { y: '2' });
  const p3 = await core.patchNamespacedService({ namespace: 'default', name: 'a', body: { metadata: { labels: { z: '3' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch));
  assert.is(p3.metadata?.labels?.z, '3');
  const stale = await core.patchNamespacedService({ namespace: 'default', name: 'a', body: { metadata: { resourceVersion: '1', labels: { w: '4' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch)).catch((e) => e);
  assert.is(stale.code, 409);
  const st = await core.patchNamespacedServiceStatus({ namespace: 'default', name: 'a', body: { status: { loadBalancer: { ingress: [{ ip: '198.18.0.7', ipMode: 'VIP' }] } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  assert.equal(plain(st.status?.loadBalancer?.ingress), [{ ip: '198.18.0.7', ipMode: 'VIP' }]);
});

test('custom resources: schema admission (422), PUT without resourceVersion 422, strategic merge 415', async () => {
  const g = { group: 'xdir.io', version: 'v1alpha1', plural: 'ippools' };
  const bad = await custom.createClusterCustomObject({ ...g, body: { apiVersion: 'xdir.io/v1alpha1', kind: 'IPPool', metadata: { name: 'bad' }, spec: { addresses: ['nope'] } } }).catch((e) => e);
  assert.is(bad.code, 422);
  const pool = await custom.createClusterCustomObject({ ...g, body: { apiVersion: 'xdir.io/v1alpha1', kind: 'IPPool', metadata: { name: 'p' }, spec: { addresses: ['198.18.0.0/30'], unknownField: 1 } } });
  assert.is(pool.spec.unknownField, undefined, 'unknown fields are pruned');
  const noRv = await custom.replaceClusterCustomObject({ ...g, name: 'p', body: { ...pool, metadata: { name: 'p' } } }).catch((e) => e);
  assert.is(noRv.code, 422);
  const smp = await custom.patchClusterCustomObject({ ...g, name: 'p', body: { spec: { autoAssign: false } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch)).catch((e) => e);
  assert.is(smp.code, 415);
  const st = await custom.replaceClusterCustomObjectStatus({ ...g, name: 'p', body: { ...pool, spec: { addresses: ['198.18.9.0/30'] }, status: { conditions: [{ type: 'Ready', status: 'True' }] } } });
  assert.equal([st.spec.addresses, st.status.conditions[0].status], [['198.18.0.0/30'], 'True']);
});

test('watch: replay from a resourceVersion, selector transitions, bookmarks on request, 410 after compaction', async () => {
  const from = server.resourceVersion;
  await core.createNamespacedService({ namespace: 'w', body: svc('one') });
  const w = await watchEvents('/api/v1/namespaces/w/services', { resourceVersion: from, labelSelector: 'app in (one,two)', allowWatchBookmarks: 'true' });
  await until('replayed ADDED', () => w.events.length === 1);
  assert.equal([w.events[0]!.type, w.events[0]!.object.metadata.name], ['ADDED', 'one']);
  server.apply({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'w', name: 'one', labels: { app: 'moved' } }, spec: { type: 'ClusterIP' } });
  await until('leaves the selector -> DELETED', () => w.events.length === 2);
  assert.is(w.events[1]!.type, 'DELETED');
  server.sendBookmarks();
  await until('bookmark', () => w.events.length === 3);
  assert.equal([w.events[2]!.type, w.events[2]!.object.metadata.resourceVersion], ['BOOKMARK', server.resourceVersion]);
  server.dropWatches();
  assert.is(await w.done, 'closed');
  server.compact();
  const old = await watchEvents('/api/v1/services', { resourceVersion: from });
  await old.done;
  assert.equal([old.events[0]!.type, old.events[0]!.object.code, old.events[0]!.object.reason], ['ERROR', 410, 'Expired']);
});

test('list chunking: limit/continue pages share the first page\'s resourceVersion; an old token is 410', async () => {
  for (const n of ['p1', 'p2', 'p3']) await core.createNamespacedConfigMap({ namespace: 'pages', body: { metadata: { name: n } } });
  const first = await core.listNamespacedConfigMap({ namespace: 'pages', limit: 2 });
  assert.equal(first.items.map((c) => c.metadata?.name), ['p1', 'p2']);
  assert.ok(first.metadata?._continue);
  await core.createNamespacedConfigMap({ namespace: 'pages', body: { metadata: { name: 'p4' } } });
  const second = await core.listNamespacedConfigMap({ namespace: 'pages', limit: 2, _continue: first.metadata!._continue });
  assert.equal(second.items.map((c) => c.metadata?.name), ['p3'], 'pages come from the first page\'s snapshot');
  assert.not.ok(second.metadata?._continue);
  assert.is(second.metadata?.resourceVersion, first.metadata?.resourceVersion);
  const again = await core.listNamespacedConfigMap({ namespace: 'pages', limit: 2 });
  await core.createNamespacedConfigMap({ namespace: 'pages', body: { metadata: { name: 'p5' } } });
  server.compact();
  const expired = await core.listNamespacedConfigMap({ namespace: 'pages', limit: 2, _continue: again.metadata!._continue }).catch((e) => e);
  assert.is(expired.code, 410);
});

test('delete honours finalizers; 404 when absent', async () => {
  await core.createNamespacedConfigMap({ namespace: 'f', body: { metadata: { name: 'held', finalizers: ['example.com/keep'] } } });
  const del = await core.deleteNamespacedConfigMap({ namespace: 'f', name: 'held' });
  assert.ok(del);
  const still = await core.readNamespacedConfigMap({ namespace: 'f', name: 'held' });
  assert.ok(still.metadata?.deletionTimestamp);
  await core.replaceNamespacedConfigMap({ namespace: 'f', name: 'held', body: { ...still, metadata: { ...still.metadata, finalizers: [] } } });
  const gone = await core.readNamespacedConfigMap({ namespace: 'f', name: 'held' }).catch((e) => e);
  assert.is(gone.code, 404);
});

test('Leases: MicroTime with 6 fractional digits is required', async () => {
  const coord = kc.makeApiClient(CoordinationV1Api);
  const ok = await coord.createNamespacedLease({ namespace: 'l', body: { metadata: { name: 'x' }, spec: { holderIdentity: 'me', renewTime: new V1MicroTime() } } });
  assert.match(String(ok.spec?.renewTime), /\.\d{6}Z$/);
  const bad = await coord.createNamespacedLease({ namespace: 'l', body: { metadata: { name: 'y' }, spec: { renewTime: new Date() as V1MicroTime } } }).catch((e) => e);
  assert.is(bad.code, 422);
});

test.run();
