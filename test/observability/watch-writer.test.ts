/**
 * Watch snapshots of streams in the same state share one encoded body; each stream adds only its
 * own sequence and drop count. Checked through a real grpc-js server and client: the direct framed
 * write (shared body by reference) is what this grpc-js version gets, and what the client decodes
 * is the whole message.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { startGrpcServer } from '../../control/observability/grpc/server.js';
import { StatsHub, type Subscription } from '../../control/observability/stats-hub.js';
import { directorServiceDefinition, type StatsSnapshotMsg, type WatchRequestMsg } from '../../control/observability/grpc/proto.js';
import { encodeStatsSnapshot } from '../../control/observability/grpc/snapshot-codec.js';
import { encodedBody, serializeWatchMessage, sharedBodyOf, watchSender } from '../../control/observability/grpc/watch-writer.js';
import { FakeDataplane } from './fake-dataplane.js';
import { StreamCollector, directorClient, tempDir, waitFor } from './grpc-helpers.js';

const decode = (directorServiceDefinition().Watch as grpc.MethodDefinition<unknown, StatsSnapshotMsg>).responseDeserialize;

function setup() {
  const dp = new FakeDataplane();
  const web = dp.addService('198.18.0.10', 80, 'tcp', { '198.18.1.1': 1, '198.18.1.2': 1 });
  dp.addService('fd00::10', 53, 'udp', { 'fd00::1:1': 1 });
  const hub = new StatsHub({ dataplane: dp, baseIntervalMs: 1000, minIntervalMs: 100 });
  const tick = async (): Promise<void> => { dp.advance(100); await hub.tick(); };
  return { dp, web, hub, tick };
}

const compact = { intervalMs: 100, changesOnly: true, compact: true };

test('streams in the same state share one encoded body per reading; a stream in another state gets its own', async () => {
  const { dp, web, hub, tick } = setup();
  await tick();
  const same = [hub.subscribe(compact), hub.subscribe(compact), hub.subscribe(compact)];
  for (const s of same) s.take(); // the complete first snapshot
  dp.forward(web, '198.18.1.1', 5, 100);
  await tick();
  const late = hub.subscribe(compact); // joins now: its first snapshot is complete, with names
  const got = same.map((s) => s.take()!);
  const bodies = got.map((m) => sharedBodyOf(m));
  assert.ok(bodies[0], 'a hub snapshot carries its shared body');
  assert.ok(bodies.every((b) => b === bodies[0]), 'one body for the three streams');
  assert.ok(got.every((m) => encodedBody(sharedBodyOf(m)!) === encodedBody(bodies[0]!)), 'encoded once: the same Buffer');
  const first = late.take()!;
  assert.is.not(sharedBodyOf(first), bodies[0], 'a stream that needs a complete snapshot gets its own variant');
  assert.ok(first.service_keys!.length > 0);
  hub.stop();
});

test('the shared body plus a stream\'s own fields decodes as the whole message', async () => {
  const { dp, web, hub, tick } = setup();
  await tick();
  const subs: Subscription[] = [hub.subscribe(compact), hub.subscribe({ intervalMs: 100 })];
  dp.forward(web, '198.18.1.2', 3, 64);
  await tick();
  for (const s of subs) {
    for (let m = s.take(); m; m = s.take()) {
      const whole = decode(encodeStatsSnapshot(m));
      assert.equal(decode(serializeWatchMessage(m)), whole);
      assert.is(whole.sequence !== '0', true, 'the stream\'s own sequence is in it');
    }
  }
  hub.stop();
});

test('through real grpc-js: Watch writes the shared body directly, and the client decodes the whole message', async () => {
  const { dp, web, hub, tick } = setup();
  const tmp = tempDir('xdir-watch-writer-');
  const server = new grpc.Server();
  const direct: boolean[] = [];
  const sent: StatsSnapshotMsg[] = [];
  let sub: Subscription | undefined;
  const watch = directorServiceDefinition().Watch as grpc.MethodDefinition<WatchRequestMsg, StatsSnapshotMsg>;
  server.addService({ Watch: { ...watch, responseSerialize: serializeWatchMessage } }, {
    Watch(call: grpc.ServerWritableStream<WatchRequestMsg, StatsSnapshotMsg>) {
      const send = watchSender(call);
      direct.push(send.direct);
      const s = hub.subscribe({ intervalMs: 100, changesOnly: call.request.changes_only, compact: call.request.compact });
      sub = s;
      s.onReady = () => { for (let m = s.take(); m; m = s.take()) { sent.push(m); send(m, () => {}); } };
      s.onReady();
      call.on('cancelled', () => s.close());
    },
  });
  const target = `unix:${join(tmp.dir, 'w.sock')}`;
  await new Promise<void>((resolve, reject) => server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const client = directorClient(target);
  try {
    await tick();
    const stream = new StreamCollector(client.Watch({ interval_ms: 100, changes_only: true, compact: true }));
    await waitFor('the subscriber', () => sub !== undefined);
    await stream.until(1);
    dp.forward(web, '198.18.1.1', 7, 100);
    await tick();
    await stream.until(2);
    assert.equal(direct, [true], 'grpc-js exposes its HTTP/2 stream: no per-stream copy of the body');
    assert.is(stream.got.length, sent.length);
    stream.got.forEach((m, i) => assert.equal(m, decode(encodeStatsSnapshot(sent[i]!))));
    assert.equal(stream.got.map((m) => m.sequence), ['1', '2']);
    stream.stream.cancel();
  } finally {
    client.close();
    hub.stop();
    server.forceShutdown();
    tmp.cleanup();
  }
});

test('a Watch past its deadline ends with DEADLINE_EXCEEDED, and later readings write nothing to it', async () => {
  const { dp, hub, tick } = setup();
  const tmp = tempDir('xdir-watch-writer-');
  const server = await startGrpcServer({ hub, dataplane: dp }, { address: `unix:${join(tmp.dir, 'd.sock')}` });
  const client = directorClient(server.target);
  try {
    await tick();
    const w = new StreamCollector(client.Watch({ interval_ms: 100 }, { deadline: Date.now() + 300 }));
    await w.until(1);
    const ended = new Promise<grpc.ServiceError>((resolve) => w.stream.on('error', resolve));
    const err = await ended;
    assert.is(err.code, grpc.status.DEADLINE_EXCEEDED);
    for (let i = 0; i < 3; i++) await tick(); // the hub may still hold the subscriber for a moment
    await waitFor('the subscriber is gone', () => hub.counts().subscribers === 0);
  } finally {
    client.close();
    hub.stop();
    await server.stop();
    tmp.cleanup();
  }
});

test.run();
