import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StatsHub } from '../../control/observability/stats-hub.js';
import type { StatsSnapshotMsg } from '../../control/observability/grpc/proto.js';
import { FakeDataplane } from './fake-dataplane.js';
import { CompactView } from '../../control/observability/grpc/compact-view.js';
import { ServiceIndex, buildSnapshot, nameTable } from '../../control/observability/snapshot.js';

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

test('a changes-only subscriber that lost a snapshot gets a complete one next, so no change is lost', async () => {
  const { dp, hub, web, tick } = setup({ maxPending: 1, maxConsecutiveDrops: 0 });
  const sub = hub.subscribe({ intervalMs: 100, changesOnly: true });
  await tick();
  drain(() => sub.take());
  dp.forward(web, '198.18.1.1', 7);
  await tick(); // queued: the change
  await tick(); // drops it (queue of one): nothing changed since, but the client never saw the 7
  const [next] = drain(() => sub.take());
  assert.is(next!.changes_only, false, 'complete after a drop');
  assert.is(next!.services.find((s) => s.key === web)!.total.packets, '7');
  assert.is(next!.dropped_snapshots, '1');
  await tick();
  assert.is(drain(() => sub.take())[0]!.changes_only, true, 'then changes only again');
});

test('compact changes-only streams carry the name table once and expand to the plain form', async () => {
  const { dp, hub, web, dns, tick } = setup();
  const plain = hub.subscribe({ intervalMs: 100 });
  const compact = hub.subscribe({ intervalMs: 100, changesOnly: true, compact: true });
  const view = new CompactView();
  const expand = (s: StatsSnapshotMsg) => view.apply(JSON.parse(JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? String(v) : v))) as StatsSnapshotMsg);
  await tick();
  const [c1] = drain(() => compact.take());
  assert.equal(c1!.service_keys, [web, dns].sort());
  assert.equal(c1!.backend_addresses!.length, 3);
  assert.is(expand(c1!)!.services.length, 2);
  drain(() => plain.take());
  for (let i = 0; i < 3; i++) {
    dp.forward(web, '198.18.1.1', 5 + i);
    dp.forward(dns, 'fd00::1:1', 1);
    if (i === 1) dp.forward(dns, 'fd00::1:1', 10);
    await tick();
    const [c] = drain(() => compact.take());
    const [p] = drain(() => plain.take());
    assert.equal(c!.service_keys, [], 'the table is sent once');
    assert.equal(c!.services, []);
    const e = expand(c!)!;
    const byKey = <T extends { total: unknown; rate: unknown }>(xs: T[], k: (x: T) => string) => Object.fromEntries(xs.map((x) => [k(x), [x.total, x.rate]]));
    assert.equal(byKey(e.services, (x) => x.key), byKey(p!.services, (x) => x.key));
    assert.equal(byKey(e.backends, (x) => x.address), byKey(p!.backends, (x) => x.address));
  }
  await tick();
  const [idle] = drain(() => compact.take());
  assert.equal(idle!.compact_backends!.id_deltas, [], 'nothing changed: nothing listed');
  assert.ok(expand(idle!)!.backends.every((b) => b.rate.packets_per_second === 0));
});

test('a compact stream gets the name table again when services change', async () => {
  const { dp, hub, tick } = setup();
  const sub = hub.subscribe({ intervalMs: 100, changesOnly: true, compact: true });
  await tick();
  const [first] = drain(() => sub.take());
  const added = dp.addService('198.18.0.11', 443, 'tcp', { '198.18.1.9': 1 });
  await tick();
  const [next] = drain(() => sub.take());
  assert.ok(next!.names_version !== first!.names_version);
  assert.ok(next!.service_keys!.includes(added));
  assert.ok(next!.backend_addresses!.includes('198.18.1.9'));
});

test('a plain snapshot built from the name table columns equals the one built by name', async () => {
  const { dp, web, dns } = setup();
  const a = await dp.readStats();
  dp.advance(1000);
  dp.forward(web, '198.18.1.2', 3);
  dp.forward(dns, 'fd00::1:1', 2);
  const b = await dp.readStats();
  const index = new ServiceIndex(dp.services());
  const table = nameTable(() => index, [], b, undefined, 1);
  for (const changesOnly of [false, true]) {
    const byName = buildSnapshot({ current: b, baseline: a, services: index, vips: [], changesOnly });
    const byColumns = buildSnapshot({ current: b, baseline: a, services: index, vips: [], changesOnly, table });
    assert.equal(byColumns, byName);
  }
  assert.equal(buildSnapshot({ current: b, services: index, vips: [], table }), buildSnapshot({ current: b, services: index, vips: [] }));
});

test.run();
