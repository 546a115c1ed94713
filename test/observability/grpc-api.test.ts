import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as grpc from '@grpc/grpc-js';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startGrpcServer, type RunningGrpcServer } from '../../control/observability/grpc/server.js';
import { unary, type ListServicesResponseMsg, type StatsSnapshotMsg } from '../../control/observability/grpc/proto.js';
import { StatsHub } from '../../control/observability/stats-hub.js';
import { startObservability } from '../../control/observability/index.js';
import { FakeDataplane } from './fake-dataplane.js';
import { CompactView } from '../../control/observability/grpc/compact-view.js';
import { StreamCollector, callUnary, directorClient, healthClient, reflectionClient, tempDir, waitFor } from './grpc-helpers.js';

const tmp = tempDir('xdir-grpc-api-');
const dp = new FakeDataplane();
const web = dp.addService('198.18.0.10', 80, 'tcp', { '198.18.1.1': 3, '198.18.1.2': 0, '198.18.1.3': 1 }, ['198.18.1.3']);
const dns = dp.addService('fd00::10', 53, 'udp', { 'fd00::1:1': 1 });
const hub = new StatsHub({ dataplane: dp, minIntervalMs: 100, baseIntervalMs: 1000 });
let server: RunningGrpcServer;
const target = `unix:${join(tmp.dir, 'xdir.sock')}`;

test.before(async () => {
  server = await startGrpcServer({ hub, dataplane: dp, fallbackReason: () => undefined }, { address: target });
});
test.after(async () => {
  hub.stop();
  await server.stop();
  tmp.cleanup();
});

test('the socket is private to the owner and group', () => {
  assert.is(statSync(target.slice(5)).mode & 0o777, 0o660);
});

test('GetSnapshot before the first reading says to retry', async () => {
  const c = directorClient(server.target);
  try {
    await unary(c, 'GetSnapshot', {});
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as grpc.ServiceError).code, grpc.status.UNAVAILABLE);
    assert.match((err as grpc.ServiceError).details, /retry/);
  } finally { c.close(); }
});

test('Watch streams cumulative counters and rates of the right VIP and backend', async () => {
  const c = directorClient(server.target);
  const w = new StreamCollector(c.Watch({ interval_ms: 100, vips: ['198.18.0.10'] }));
  // Let the server register the subscriber before the first reading.
  await waitFor('the Watch subscriber', () => hub.counts().subscribers === 1);
  dp.advance(100); await hub.tick();
  await w.until(1);
  for (let i = 1; i <= 3; i++) {
    dp.forward(web, '198.18.1.1', 7, 64);
    dp.forward(dns, 'fd00::1:1', 1000, 64); // filtered out
    dp.advance(100);
    await hub.tick();
    await w.until(1 + i);
  }
  const last = w.got[3]!;
  assert.is(last.sequence, '4');
  assert.equal(last.services.map((s) => s.key), [web], 'filtered to one VIP');
  assert.equal(last.services[0]!.total, { packets: '21', bytes: String(21 * 64) });
  assert.is(last.services[0]!.rate.packets_per_second, 70);
  assert.equal(last.backends.map((b) => b.address), ['198.18.1.1', '198.18.1.2', '198.18.1.3']);
  assert.equal(last.backends[0]!.total.packets, '21');
  assert.equal(last.reasons.find((r) => r.reason === 'forwarded')!.total.packets, '3021', 'reasons are data-path wide');
  c.close();
});

test('a compact changes-only Watch, expanded by the client, says what a plain Watch says, in fewer bytes', async () => {
  const c = directorClient(server.target);
  const before = hub.counts().subscribers;
  const plain = new StreamCollector(c.Watch({ interval_ms: 100, vips: ['198.18.0.10'] }));
  const compact = new StreamCollector(c.Watch({ interval_ms: 100, vips: ['198.18.0.10'], changes_only: true, compact: true }));
  await waitFor('two Watch subscribers', () => hub.counts().subscribers === before + 2);
  const view = new CompactView();
  for (let i = 1; i <= 3; i++) {
    if (i !== 2) dp.forward(web, '198.18.1.3', 5, 100);
    dp.advance(100);
    await hub.tick();
    await plain.until(i);
    await compact.until(i);
    const got = view.apply(compact.got[i - 1]!);
    const want = plain.got[i - 1]!;
    assert.ok(got, 'the first compact snapshot carries its name table');
    assert.equal(got!.services.map((s) => [s.key, s.vip, s.port, s.protocol, s.total, s.rate]), want.services.map((s) => [s.key, s.vip, s.port, s.protocol, s.total, s.rate]));
    assert.equal(got!.backends.map((b) => [b.address, b.total, b.rate]), want.backends.map((b) => [b.address, b.total, b.rate]));
    assert.equal(got!.reasons, want.reasons);
  }
  assert.equal(compact.got[0]!.service_keys, [web]);
  assert.equal(compact.got[1]!.service_keys, [], 'the name table is sent once');
  assert.equal(compact.got[2]!.compact_backends!.id_deltas, [], 'nothing changed in the second interval: nothing listed');
  plain.stream.cancel();
  compact.stream.cancel();
  c.close();
});

test('GetSnapshot returns the latest reading with 64-bit counters intact', async () => {
  dp.forward(web, '198.18.1.1', 0);
  dp.serviceCounters.set(web, { packets: 2n ** 63n + 5n, bytes: 2n ** 64n - 1n });
  dp.advance(100); await hub.tick();
  const c = directorClient(server.target);
  const snap = await unary<unknown, StatsSnapshotMsg>(c, 'GetSnapshot', { vips: [web] });
  assert.equal(snap.services[0]!.total, { packets: (2n ** 63n + 5n).toString(), bytes: (2n ** 64n - 1n).toString() });
  assert.is(snap.data_path, 'DATA_PATH_XDP');
  c.close();
});

test('ListServices shows services, weights, backend states and the data path', async () => {
  const c = directorClient(server.target);
  const res = await unary<unknown, ListServicesResponseMsg>(c, 'ListServices', {});
  assert.is(res.data_path, 'DATA_PATH_XDP');
  assert.is(res.fallback_reason, '');
  assert.equal(res.services.map((s) => s.key), [web, dns]);
  const states = Object.fromEntries(res.services[0]!.backends.map((b) => [b.address, [b.weight, b.state]]));
  assert.equal(states, {
    '198.18.1.1': [3, 'BACKEND_STATE_ACTIVE'],
    '198.18.1.2': [0, 'BACKEND_STATE_DRAINING'],
    '198.18.1.3': [1, 'BACKEND_STATE_MAC_UNRESOLVED'],
  });
  const filtered = await unary<unknown, ListServicesResponseMsg>(c, 'ListServices', { vips: ['fd00::10'] });
  assert.equal(filtered.services.map((s) => s.protocol), ['PROTOCOL_UDP']);
  c.close();
});

test('grpc.health.v1 answers', async () => {
  const h = healthClient(server.target);
  const before = await callUnary<{ status: string }>(h, 'Check', { service: '' });
  assert.is(before.status, 'NOT_SERVING');
  server.health.setStatus('', 'SERVING');
  const after = await callUnary<{ status: string }>(h, 'Check', { service: '' });
  assert.is(after.status, 'SERVING');
  h.close();
});

test('server reflection lists the Director and health services', async () => {
  const r = reflectionClient(server.target);
  type Reply = { list_services_response?: { service: { name: string }[] } };
  const call = (r.ServerReflectionInfo as () => grpc.ClientDuplexStream<unknown, Reply>).call(r);
  const reply = new Promise<string[]>((resolve, reject) => {
    call.on('data', (m: Reply) => { resolve(m.list_services_response!.service.map((s) => s.name)); call.end(); });
    call.on('error', reject);
  });
  call.write({ list_services: '*' });
  const names = await reply;
  assert.ok(names.includes('xdir.v1.Director'), names.join(','));
  assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
  r.close();
});

test('the API has no method that changes the data path', () => {
  const c = directorClient(server.target);
  const methods = Object.keys(Object.getPrototypeOf(c)).filter((k) => /^[A-Z]/.test(k)).sort();
  assert.equal(methods, ['GetSnapshot', 'ListServices', 'Watch']);
  c.close();
});

test('a non-loopback address without TLS is refused unless --grpc-insecure', async () => {
  const h = new StatsHub({ dataplane: dp });
  try {
    await startGrpcServer({ hub: h, dataplane: dp }, { address: '0.0.0.0:0' });
    assert.unreachable('should refuse');
  } catch (err) {
    assert.match((err as Error).message, /refusing to serve the gRPC API on 0\.0\.0\.0:0 without TLS.*--grpc-insecure/);
  }
  const s = await startGrpcServer({ hub: h, dataplane: dp }, { address: '0.0.0.0:0', insecure: true });
  await s.stop();
  const lo = await startGrpcServer({ hub: h, dataplane: dp }, { address: '127.0.0.1:0' });
  assert.match(lo.target, /^127\.0\.0\.1:\d+$/);
  await lo.stop();
});

test('a second server does not steal a socket in use', async () => {
  try {
    await startGrpcServer({ hub, dataplane: dp }, { address: target });
    assert.unreachable('should refuse');
  } catch (err) {
    assert.match((err as Error).message, /another process is serving on it/);
  }
});

test('startObservability: health follows readiness, stop() closes everything', async () => {
  const d = tempDir('xdir-obs-');
  let ready = false;
  const obs = await startObservability({
    dataplane: dp, readiness: () => ready, poll: false,
    grpc: { address: `unix:${join(d.dir, 's.sock')}` }, metrics: { address: '127.0.0.1:0' },
  });
  const h = healthClient(obs.grpcTarget!);
  await obs.hub.tick();
  assert.is((await callUnary<{ status: string }>(h, 'Check', { service: 'xdir.v1.Director' })).status, 'NOT_SERVING');
  ready = true;
  await obs.hub.tick();
  await new Promise((r) => setImmediate(r));
  assert.is((await callUnary<{ status: string }>(h, 'Check', { service: 'xdir.v1.Director' })).status, 'SERVING');
  h.close();
  await obs.stop();
  d.cleanup();
});

test.run();
