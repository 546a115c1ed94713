/**
 * 100 concurrent Watch streams over a real unix socket, one of them never reading: its queue stays
 * bounded and its drops are counted, while the 99 others get every snapshot of their interval.
 * The hub is driven tick by tick (no timing assertions): after each reading we wait until the 99
 * readers have it, as a real 100 ms period would allow.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { startGrpcServer, type RunningGrpcServer } from '../../control/observability/grpc/server.js';
import { StatsHub } from '../../control/observability/stats-hub.js';
import { FakeDataplane } from './fake-dataplane.js';
import { StreamCollector, directorClient, tempDir, waitFor } from './grpc-helpers.js';

const MAX_PENDING = 4;
const TICKS = 40;
const tmp = tempDir('xdir-watch-bp-');
const dp = new FakeDataplane();
// 2,000 services make the stuck client's unfiltered snapshots ~150 kB, so HTTP/2 flow control
// stops its stream after a message or two; the readers filter to one VIP and stay small.
const keys: string[] = [];
for (let i = 0; i < 2000; i++) {
  keys.push(dp.addService(`198.18.${(i >> 8) + 10}.${i & 255}`, 80, 'tcp', { [`198.19.${i >> 8}.${i & 255}`]: 1 }));
}
let server: RunningGrpcServer;
let hub: StatsHub;

test.before(async () => {
  hub = new StatsHub({ dataplane: dp, minIntervalMs: 100, maxPending: MAX_PENDING, maxConsecutiveDrops: 0 });
  server = await startGrpcServer({ hub, dataplane: dp }, { address: `unix:${join(tmp.dir, 'xdir.sock')}` });
});
test.after(async () => {
  hub.stop();
  await server.stop();
  tmp.cleanup();
});

test('one stuck subscriber among 100: bounded queue, counted drops, the others keep their interval', async () => {
  const clients: grpc.Client[] = [];
  // The stuck client has its own connection, as a real separate process would.
  const stuckClient = directorClient(server.target, undefined, { 'grpc.use_local_subchannel_pool': 1 });
  clients.push(stuckClient);
  const stuck = stuckClient.Watch({ interval_ms: 100 });
  let stuckGot = 0;
  stuck.on('data', () => { stuckGot += 1; stuck.pause(); }); // reads one message, then never again
  stuck.on('error', () => {});

  const shared = directorClient(server.target);
  clients.push(shared);
  const readers = Array.from({ length: 99 }, (_, i) => new StreamCollector(shared.Watch({ interval_ms: 100, vips: [keys[i]!] })));
  await waitFor('100 subscribers', () => hub.counts().subscribers === 100);

  for (let t = 1; t <= TICKS; t++) {
    dp.forward(keys[0]!, '198.19.0.0', 10);
    dp.advance(100);
    await hub.tick();
    await Promise.all(readers.map((r) => r.until(t)));
  }

  for (const r of readers) assert.is(r.got.length, TICKS, 'every reader got every reading');
  const seqs = readers[0]!.got.map((s) => Number(s.sequence));
  assert.equal(seqs, Array.from({ length: TICKS }, (_, i) => i + 1));
  assert.is(readers[0]!.got[TICKS - 1]!.services[0]!.total.packets, String(10 * TICKS));
  for (const r of readers) assert.is(r.got[TICKS - 1]!.dropped_snapshots, '0');

  const states = hub.subscriberStates();
  const stuckState = states.find((s) => s.dropped > 0n);
  assert.ok(stuckState, 'the stuck subscriber has dropped snapshots');
  assert.ok(states.every((s) => s.pending <= MAX_PENDING), 'no queue above its bound');
  assert.is(states.filter((s) => s.dropped > 0n).length, 1, 'only the stuck one drops');
  assert.ok(stuckGot < TICKS, `the stuck client did not read everything (${stuckGot})`);
  assert.is(hub.counts().snapshotsDropped, stuckState!.dropped);
  assert.ok(hub.counts().snapshotsDropped > 0n);
  assert.is(dp.reads, TICKS, 'one reading per tick for 100 subscribers');

  stuck.cancel();
  for (const r of readers) r.stream.cancel();
  for (const c of clients) c.close();
  await waitFor('streams to close', () => hub.counts().subscribers === 0);
});

test('a subscriber stuck past the limit is disconnected and counted', async () => {
  const h = new StatsHub({ dataplane: dp, minIntervalMs: 100, maxPending: 2, maxConsecutiveDrops: 3 });
  const s = await startGrpcServer({ hub: h, dataplane: dp }, { address: `unix:${join(tmp.dir, 'slow.sock')}` });
  const c = directorClient(s.target);
  const stream = c.Watch({ interval_ms: 100 });
  stream.on('data', () => stream.pause());
  const collector = new StreamCollector(stream);
  await waitFor('the subscriber', () => h.counts().subscribers === 1);
  let ticks = 0;
  while (h.counts().subscribersClosedTooSlow === 0 && ticks < 200) {
    dp.advance(100);
    await h.tick();
    ticks += 1;
    await new Promise((r) => setImmediate(r));
  }
  assert.is(h.counts().subscribersClosedTooSlow, 1);
  assert.is(h.counts().subscribers, 0);
  const err = await collector.failed();
  assert.is(err.code, grpc.status.RESOURCE_EXHAUSTED, `${err.code} ${err.details}`);
  c.close();
  h.stop();
  await s.stop();
});

test.run();
