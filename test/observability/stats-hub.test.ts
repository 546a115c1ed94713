import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StatsHub } from '../../control/observability/stats-hub.js';
import type { StatsSnapshotMsg } from '../../control/observability/grpc/proto.js';
import { FakeDataplane } from './fake-dataplane.js';

function setup(opts: { maxPending?: number; maxConsecutiveDrops?: number } = {}) {
  const dp = new FakeDataplane();
  const web = dp.addService('198.18.0.10', 80, 'tcp', { '198.18.1.1': 1, '198.18.1.2': 0 });
  const dns = dp.addService('fd00::10', 53, 'udp', { 'fd00::1:1': 1 });
  const hub = new StatsHub({ dataplane: dp, baseIntervalMs: 1000, minIntervalMs: 100, ...opts });
  /** One hub period: the clock moves 100 ms, then one reading. */
  const tick = async (ms = 100) => { dp.advance(ms); await hub.tick(); };
  return { dp, hub, web, dns, tick };
}

function drain(take: () => StatsSnapshotMsg | undefined): StatsSnapshotMsg[] {
  const out: StatsSnapshotMsg[] = [];
  for (let s = take(); s; s = take()) out.push(s);
  return out;
}

test('the data path is read once per tick whatever the number of subscribers', async () => {
  const { dp, hub, tick } = setup();
  const subs = Array.from({ length: 100 }, () => hub.subscribe({ intervalMs: 100 }));
  for (let i = 0; i < 10; i++) {
    await tick();
    for (const s of subs) drain(() => s.take());
  }
  assert.is(dp.reads, 10);
  assert.is(hub.counts().reads, 10);
  assert.is(hub.counts().subscribers, 100);
});

test('concurrent ticks share one reading', async () => {
  const { dp, hub } = setup();
  await Promise.all([hub.tick(), hub.tick(), hub.tick()]);
  assert.is(dp.reads, 1);
});

test('the hub reads at the finest interval and each subscriber receives at its own', async () => {
  const { hub, tick } = setup();
  assert.is(hub.periodMs(), 1000, 'no subscriber: base interval');
  const fast = hub.subscribe({ intervalMs: 100 });
  const slow = hub.subscribe({ intervalMs: 1000 });
  const mid = hub.subscribe({ intervalMs: 300 });
  const tiny = hub.subscribe({ intervalMs: 5 });
  assert.is(tiny.intervalMs, 100, 'raised to the minimum');
  assert.is(hub.periodMs(), 100);
  let got = { fast: 0, slow: 0, mid: 0 };
  for (let i = 0; i < 30; i++) {
    await tick();
    got = {
      fast: got.fast + drain(() => fast.take()).length,
      slow: got.slow + drain(() => slow.take()).length,
      mid: got.mid + drain(() => mid.take()).length,
    };
    drain(() => tiny.take());
  }
  // The first reading goes to everyone (no earlier snapshot), then one per elapsed interval.
  assert.equal(got, { fast: 30, slow: 3, mid: 10 });
  fast.close(); tiny.close(); mid.close();
  assert.is(hub.periodMs(), 1000, 'only the slow subscriber left');
});

test('counters are cumulative and rates are over the subscriber\'s own interval', async () => {
  const { dp, hub, web, tick } = setup();
  const sub = hub.subscribe({ intervalMs: 1000 });
  hub.subscribe({ intervalMs: 100 }); // so the hub reads every 100 ms
  await tick(); // first reading: delivered with no rates yet
  const first = drain(() => sub.take());
  assert.is(first.length, 1);
  assert.is(first[0]!.rate_interval_ms, 0);
  for (let i = 0; i < 10; i++) {
    dp.forward(web, '198.18.1.1', 50, 100); // 500 packets over 1 s
    await tick();
  }
  const [snap, ...rest] = drain(() => sub.take());
  assert.is(rest.length, 0);
  assert.is(snap!.sequence, '2');
  assert.is(snap!.rate_interval_ms, 1000);
  const svc = snap!.services.find((s) => s.key === web)!;
  assert.equal(svc.total, { packets: '500', bytes: '50000' });
  assert.is(svc.rate.packets_per_second, 500);
  assert.is(svc.rate.bytes_per_second, 50000);
  assert.is(svc.protocol, 'PROTOCOL_TCP');
  assert.is(svc.port, 80);
  const be = snap!.backends.find((b) => b.address === '198.18.1.1')!;
  assert.equal(be.total, { packets: '500', bytes: '50000' });
  assert.equal(snap!.reasons.find((r) => r.reason === 'forwarded')!.total.packets, '500');
  assert.is(snap!.data_path, 'DATA_PATH_XDP');
});

test('changes-only subscribers get a complete first snapshot, then only what changed', async () => {
  const { dp, hub, web, tick } = setup();
  const sub = hub.subscribe({ intervalMs: 100, changesOnly: true });
  await tick();
  const [first] = drain(() => sub.take());
  assert.is(first!.services.length, 2, 'complete');
  assert.is(first!.changes_only, false);
  dp.forward(web, '198.18.1.1', 5);
  await tick();
  const [second] = drain(() => sub.take());
  assert.is(second!.changes_only, true);
  assert.equal(second!.services.map((s) => s.key), [web]);
  assert.equal(second!.backends.map((b) => b.address), ['198.18.1.1']);
  assert.is(second!.reasons.length, 5, 'reasons stay complete');
  await tick();
  const [third] = drain(() => sub.take());
  assert.equal([third!.services.length, third!.backends.length], [0, 0]);
});

test('a VIP filter selects services by address or key, and only their backends', async () => {
  const { hub, tick, dns } = setup();
  await tick();
  const byAddr = hub.snapshot(['FD00::10'])!;
  assert.equal(byAddr.services.map((s) => s.key), [dns]);
  assert.equal(byAddr.backends.map((b) => b.address), ['fd00::1:1']);
  const byKey = hub.snapshot(['tcp/198.18.0.10:80'])!;
  assert.equal(byKey.services.map((s) => s.vip), ['198.18.0.10']);
  assert.equal(byKey.backends.map((b) => b.address), ['198.18.1.1', '198.18.1.2']);
  assert.is(hub.snapshot([])!.services.length, 2);
});

test('a subscriber that does not take gets at most maxPending snapshots; the oldest are dropped and counted', async () => {
  const { hub, tick } = setup({ maxPending: 4, maxConsecutiveDrops: 0 });
  const stuck = hub.subscribe({ intervalMs: 100 });
  const ok = hub.subscribe({ intervalMs: 100 });
  let okGot = 0;
  for (let i = 0; i < 50; i++) {
    await tick();
    assert.ok(stuck.pending() <= 4);
    okGot += drain(() => ok.take()).length;
  }
  assert.is(okGot, 50);
  assert.is(stuck.pending(), 4);
  assert.is(stuck.dropped(), 46n);
  assert.is(hub.counts().snapshotsDropped, 46n);
  // What it finally reads is the newest four, and it is told how many it missed.
  const late = drain(() => stuck.take());
  assert.equal(late.map((s) => s.taken_at_ms), [47, 48, 49, 50].map((i) => String(1_700_000_000_000 + i * 100)));
  assert.is(late[0]!.dropped_snapshots, '46');
});

test('a subscriber stuck for maxConsecutiveDrops readings is closed as too slow', async () => {
  const { hub, tick } = setup({ maxPending: 2, maxConsecutiveDrops: 3 });
  const stuck = hub.subscribe({ intervalMs: 100 });
  let closed: string | undefined;
  stuck.onClose = (r) => { closed = r; };
  for (let i = 0; i < 4; i++) await tick();
  assert.is(closed, undefined, 'two queued, two dropped: still open');
  await tick();
  assert.is(closed, 'too-slow');
  assert.is(stuck.pending(), 0, 'its queue is freed');
  assert.is(hub.counts().subscribers, 0);
  assert.is(hub.counts().subscribersClosedTooSlow, 1);
});

test('a failed reading keeps the last one and is counted', async () => {
  const { dp, hub, tick } = setup();
  await tick();
  const before = hub.latest();
  dp.failNext = true;
  await tick();
  assert.is(hub.latest(), before);
  assert.is(hub.counts().readErrors, 1);
});

test('a new subscriber gets the latest reading at once', async () => {
  const { hub, tick } = setup();
  await tick();
  await tick();
  const sub = hub.subscribe({ intervalMs: 1000 });
  const got = drain(() => sub.take());
  assert.is(got.length, 1);
  assert.is(got[0]!.rate_interval_ms, 100, 'rates over the hub\'s last period');
});

test.run();
