/**
 * The stats hub: the one reader of the data path's counters. It reads once per period whatever the
 * number of subscribers, keeps the latest reading for /metrics and GetSnapshot, and fans snapshots
 * out to Watch subscribers.
 *
 * Intervals: the hub reads at the finest interval any subscriber asks for, never faster than
 * `minIntervalMs` and never slower than `baseIntervalMs` (so /metrics stays fresh with no
 * subscriber). A subscriber receives a snapshot when its own interval has elapsed since its last
 * one (within half a period, so a 1 s subscriber on a 100 ms hub gets every 10th reading), with
 * rates over its own interval.
 *
 * Slow consumers: each subscriber has a bounded queue (`maxPending`). When it is full the oldest
 * snapshot is dropped and counted; after `maxConsecutiveDrops` drops without the consumer taking
 * anything the subscriber is closed as too slow (counted). Nothing else is ever buffered for it.
 * A changes-only stream that lost a snapshot that way gets a complete one next, so its client
 * does not keep a stale value; a compact stream whose dropped snapshot carried the name table
 * gets the table again.
 *
 * Cost: one reading per period; one snapshot body per distinct (baseline, filter, form, names
 * owed) per reading, shared by every subscriber of that group (the transport encodes each body
 * once and writes the same Buffer to every stream: grpc/watch-writer.ts).
 */
import type { Dataplane, StatsSample } from '../dataplane/dataplane.js';
import { logger } from '../log.js';
import type { StatsSnapshotMsg } from './grpc/proto.js';
import { ServiceIndex, buildSnapshot, nameTable, type NameTable } from './snapshot.js';

const log = logger('stats-hub');

/**
 * On a snapshot handed out by Subscription.take(): the body shared by every subscriber of the same
 * reading, so the transport can encode that body once per reading instead of once per subscriber.
 */
export const SHARED_BODY: unique symbol = Symbol('xdir.sharedSnapshotBody');

export type HubDataplane = Pick<Dataplane, 'kind' | 'readStats' | 'services'>;

/** How long the hub reuses its index of programmed services while readings show no change. */
const INDEX_MAX_AGE_MS = 5000;

function sameKeys(a: ReadonlyMap<string, unknown>, b: ReadonlyMap<string, unknown>): boolean {
  if (a.size !== b.size) return false;
  const ib = b.keys();
  for (const k of a.keys()) if (k !== ib.next().value) return false;
  return true;
}

/** Two readings of the same services and backends, in the same order. */
const sameEntries = (a: StatsSample, b: StatsSample): boolean => sameKeys(a.services, b.services) && sameKeys(a.backends, b.backends);

export interface StatsHubOptions {
  dataplane: HubDataplane;
  /** Reading period when no subscriber asks for a finer one. Default 1000 ms. */
  baseIntervalMs?: number;
  /** Finest reading period and finest subscriber interval. Default 100 ms. */
  minIntervalMs?: number;
  /** Snapshots queued per subscriber before the oldest is dropped. Default 4. */
  maxPending?: number;
  /** Drops in a row (consumer took nothing) before a subscriber is closed as too slow; 0 = never. Default 30. */
  maxConsecutiveDrops?: number;
}

export type CloseReason = 'unsubscribed' | 'too-slow' | 'hub-stopped';

export interface Subscription {
  readonly id: number;
  readonly intervalMs: number;
  readonly vips: readonly string[];
  readonly changesOnly: boolean;
  readonly compact: boolean;
  /** The oldest queued snapshot with this stream's sequence and drop count, or undefined. */
  take(): StatsSnapshotMsg | undefined;
  /** Snapshots queued now (never more than maxPending). */
  pending(): number;
  /** Snapshots dropped for this subscriber so far. */
  dropped(): bigint;
  /** Set by the consumer: called when a snapshot was queued. */
  onReady: (() => void) | undefined;
  /** Set by the consumer: called once when the hub closes the subscription. */
  onClose: ((reason: CloseReason) => void) | undefined;
  /** Unsubscribe (idempotent). */
  close(): void;
}

export interface HubCounters {
  subscribers: number;
  reads: number;
  readErrors: number;
  snapshotsSent: bigint;
  snapshotsDropped: bigint;
  subscribersClosedTooSlow: number;
  lastReadDurationMs: number;
  periodMs: number;
}

class Subscriber implements Subscription {
  onReady: (() => void) | undefined;
  onClose: ((reason: CloseReason) => void) | undefined;
  readonly queue: StatsSnapshotMsg[] = [];
  lastSent: StatsSample | undefined;
  sequence = 0n;
  droppedCount = 0n;
  dropsInARow = 0;
  closed = false;
  /** The name table version this stream's client has (compact form); -1 = none yet. */
  namesVersion = -1;
  /** A changes-only snapshot was dropped: the next one must be complete. */
  resync = false;
  /** The filter as a map key (the VIPs joined), computed once: snapshots and name tables are grouped by it. */
  readonly filterKey: string;

  constructor(
    readonly id: number,
    readonly intervalMs: number,
    readonly vips: readonly string[],
    readonly changesOnly: boolean,
    readonly compact: boolean,
    private readonly hub: StatsHub,
  ) {
    this.filterKey = vips.join(',');
  }

  take(): StatsSnapshotMsg | undefined {
    const snap = this.queue.shift();
    if (!snap) return undefined;
    this.dropsInARow = 0;
    this.sequence += 1n;
    this.hub.countSent();
    // Shallow copy: the body is shared by every subscriber of the same group.
    const out = { ...snap, sequence: this.sequence.toString(), dropped_snapshots: this.droppedCount.toString() };
    Object.defineProperty(out, SHARED_BODY, { value: snap, enumerable: false });
    return out;
  }

  pending(): number { return this.queue.length; }
  dropped(): bigint { return this.droppedCount; }
  close(): void { this.hub.closeSubscriber(this, 'unsubscribed'); }
}

export class StatsHub {
  private readonly dataplane: HubDataplane;
  readonly baseIntervalMs: number;
  readonly minIntervalMs: number;
  readonly maxPending: number;
  readonly maxConsecutiveDrops: number;

  private readonly subscribers = new Set<Subscriber>();
  private nextId = 1;
  private current: StatsSample | undefined;
  private prior: StatsSample | undefined;
  private inflight: Promise<StatsSample | undefined> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private nextTickAt = 0;
  private running = false;
  private readonly counters: HubCounters;
  /** First snapshots of new subscribers, by filter, for the current reading. */
  private readonly firstSnapshots = new Map<string, StatsSnapshotMsg>();
  private indexCache: { index: ServiceIndex; sample: StatsSample; builtAtMs: number } | undefined;
  private readonly sampleListeners = new Set<(s: StatsSample) => void>();
  /** Name tables of the compact form, by filter, for the current reading. */
  private readonly names = new Map<string, NameTable>();
  private namesVersion = 0;
  private namesOf: StatsSample | undefined;

  constructor(opts: StatsHubOptions) {
    this.dataplane = opts.dataplane;
    this.minIntervalMs = Math.max(1, opts.minIntervalMs ?? 100);
    this.baseIntervalMs = Math.max(this.minIntervalMs, opts.baseIntervalMs ?? 1000);
    this.maxPending = Math.max(1, opts.maxPending ?? 4);
    this.maxConsecutiveDrops = Math.max(0, opts.maxConsecutiveDrops ?? 30);
    this.counters = {
      subscribers: 0, reads: 0, readErrors: 0, snapshotsSent: 0n, snapshotsDropped: 0n,
      subscribersClosedTooSlow: 0, lastReadDurationMs: 0, periodMs: this.baseIntervalMs,
    };
  }

  /** The latest reading, if any (what /metrics exports). */
  latest(): StatsSample | undefined { return this.current; }

  /** The reading before the latest (the baseline of GetSnapshot's rates). */
  previous(): StatsSample | undefined { return this.prior; }

  counts(): HubCounters {
    return { ...this.counters, subscribers: this.subscribers.size, periodMs: this.periodMs() };
  }

  /** Per-subscriber queue state (for tests and debugging). */
  subscriberStates(): { id: number; intervalMs: number; pending: number; dropped: bigint; sent: bigint }[] {
    return [...this.subscribers].map((s) => ({
      id: s.id, intervalMs: s.intervalMs, pending: s.queue.length, dropped: s.droppedCount, sent: s.sequence,
    }));
  }

  /** Called after every successful reading (for metrics that want to observe, not to read). */
  onSample(fn: (s: StatsSample) => void): () => void {
    this.sampleListeners.add(fn);
    return () => this.sampleListeners.delete(fn);
  }

  /** Snapshot of the latest reading with rates over the hub's last period (GetSnapshot). */
  snapshot(vips: readonly string[]): StatsSnapshotMsg | undefined {
    if (!this.current) return undefined;
    const snap = buildSnapshot({
      current: this.current, baseline: this.prior, services: this.dataplane.services(), vips,
    });
    snap.sequence = String(this.counters.reads);
    return snap;
  }

  /** A subscriber's interval as the hub will honour it. */
  clampInterval(intervalMs: number): number {
    const ms = intervalMs > 0 ? intervalMs : this.baseIntervalMs;
    return Math.min(3_600_000, Math.max(this.minIntervalMs, Math.round(ms)));
  }

  subscribe(opts: { intervalMs: number; vips?: readonly string[]; changesOnly?: boolean; compact?: boolean }): Subscription {
    const sub = new Subscriber(this.nextId++, this.clampInterval(opts.intervalMs), [...(opts.vips ?? [])],
      opts.changesOnly === true, opts.compact === true, this);
    this.subscribers.add(sub);
    // A first snapshot right away (complete, rates over the hub's last period), so a viewer has
    // something to show. Subscribers arriving in the same period share it.
    if (this.current) {
      sub.lastSent = this.current;
      const key = `first|${sub.compact}|${sub.filterKey}`;
      let snap = this.firstSnapshots.get(key);
      if (!snap) {
        const current = this.current;
        const index = (): ServiceIndex => this.serviceIndex(current);
        snap = buildSnapshot({
          current, baseline: this.prior, services: sub.compact ? [] : index(), vips: sub.vips,
          table: sub.compact || sub.vips.length ? undefined : this.nameTableFor([], '', index, current),
          compact: sub.compact ? { names: this.nameTableFor(sub.vips, sub.filterKey, index, current), withNames: true } : undefined,
        });
        this.firstSnapshots.set(key, snap);
      }
      if (sub.compact) sub.namesVersion = Number(snap.names_version);
      this.enqueue(sub, snap);
    }
    this.reschedule();
    return sub;
  }

  /** The reading period now: the finest subscriber interval, within [min, base]. */
  periodMs(): number {
    let p = this.baseIntervalMs;
    for (const s of this.subscribers) p = Math.min(p, s.intervalMs);
    return Math.max(this.minIntervalMs, p);
  }

  /**
   * Read the counters once and deliver to the subscribers that are due. Concurrent calls share one
   * reading. Tests drive the hub with this instead of start().
   */
  tick(): Promise<StatsSample | undefined> {
    this.inflight ??= this.readAndDeliver().finally(() => { this.inflight = undefined; });
    return this.inflight;
  }

  /** Poll on a timer until stop() or the signal aborts. */
  start(signal?: AbortSignal): void {
    if (this.running) return;
    this.running = true;
    signal?.addEventListener('abort', () => this.stop(), { once: true });
    this.schedule(0);
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const s of [...this.subscribers]) this.closeSubscriber(s, 'hub-stopped');
  }

  /** @internal */
  countSent(): void { this.counters.snapshotsSent += 1n; }

  /** @internal */
  closeSubscriber(sub: Subscriber, reason: CloseReason): void {
    if (sub.closed) return;
    sub.closed = true;
    sub.queue.length = 0;
    this.subscribers.delete(sub);
    if (reason === 'too-slow') this.counters.subscribersClosedTooSlow += 1;
    const cb = sub.onClose;
    sub.onClose = undefined;
    sub.onReady = undefined;
    cb?.(reason);
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.nextTickAt = Date.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // Period from start to start, so a 1 s subscriber gets one snapshot a second and not one per
      // (1 s + reading time); but always some idle time, so a reading slower than the period
      // cannot turn into back-to-back readings that hold the event loop.
      const started = performance.now();
      void this.tick().finally(() => {
        const p = this.periodMs();
        this.schedule(Math.max(p - (performance.now() - started), p / 4));
      });
    }, delayMs);
  }

  /** A finer subscriber arrived: bring the next reading forward if it is further than one new period. */
  private reschedule(): void {
    if (!this.running || !this.timer) return;
    const p = this.periodMs();
    if (this.nextTickAt - Date.now() > p) this.schedule(p);
  }

  private async readAndDeliver(): Promise<StatsSample | undefined> {
    const started = performance.now();
    let sample: StatsSample;
    try {
      sample = await this.dataplane.readStats();
    } catch (err) {
      this.counters.readErrors += 1;
      // Once per 60 failures is enough to say the data path is unreadable without flooding the log.
      if (this.counters.readErrors % 60 === 1) {
        log.warn({ err: String(err), failures: this.counters.readErrors },
          'cannot read data-path counters; keeping the last reading (check that the data path is loaded)');
      }
      return undefined;
    }
    this.counters.lastReadDurationMs = performance.now() - started;
    this.counters.reads += 1;
    this.prior = this.current;
    this.current = sample;
    this.firstSnapshots.clear();
    for (const fn of this.sampleListeners) fn(sample);
    this.deliver(sample);
    return sample;
  }

  /**
   * The programmed services, indexed, for plain and filtered snapshots. Listing them costs about as
   * much as a reading (XDP, 10,000 VIPs: ~100 ms), so the index is kept while readings hold the
   * same services and backends in the same order, for at most INDEX_MAX_AGE_MS: a change of
   * membership that adds or removes nothing (a backend moved between two services) shows in
   * filtered snapshots within that time.
   */
  private serviceIndex(sample: StatsSample): ServiceIndex {
    const c = this.indexCache;
    if (c && (c.sample === sample || (performance.now() - c.builtAtMs < INDEX_MAX_AGE_MS && sameEntries(c.sample, sample)))) {
      c.sample = sample;
      return c.index;
    }
    const index = new ServiceIndex(this.dataplane.services());
    this.indexCache = { index, sample, builtAtMs: performance.now() };
    return index;
  }

  /** The name table of a filter (`key`: the VIPs joined) for `sample` (computed once per filter per reading). */
  private nameTableFor(vips: readonly string[], key: string, index: () => ServiceIndex, sample: StatsSample): NameTable {
    if (this.namesOf !== sample) {
      // Keep the previous tables to compare against, but forget filters nobody uses any more.
      // (The unfiltered table stays: plain snapshots are built from it too.)
      const used = new Set(['', ...[...this.subscribers].filter((s) => s.compact).map((s) => s.filterKey)]);
      for (const k of [...this.names.keys()]) if (!used.has(k)) this.names.delete(k);
      this.namesOf = sample;
      this.fresh.clear();
    }
    if (this.fresh.has(key)) return this.names.get(key)!;
    const table = nameTable(index, vips, sample, this.names.get(key), this.namesVersion + 1);
    if (table.version > this.namesVersion) this.namesVersion = table.version;
    this.names.set(key, table);
    this.fresh.add(key);
    return table;
  }

  private readonly fresh = new Set<string>();

  private deliver(sample: StatsSample): void {
    if (this.subscribers.size === 0) return;
    const slack = this.periodMs() / 2;
    // Listing the programmed services costs as much as the snapshot of an unfiltered compact
    // stream: only when a plain or filtered snapshot needs them.
    const services = (): ServiceIndex => this.serviceIndex(sample);
    // Subscribers with the same interval, filter and baseline get the same snapshot body: build it once.
    const built = new Map<string, StatsSnapshotMsg>();
    for (const sub of [...this.subscribers]) {
      const last = sub.lastSent;
      if (last && sample.takenAtMs - last.takenAtMs < sub.intervalMs - slack) continue;
      // Make room first: what the drop loses decides what this snapshot must carry.
      if (sub.queue.length >= this.maxPending && !this.dropOldest(sub)) continue;
      const changesOnly = sub.changesOnly && !sub.resync;
      const names = sub.compact ? this.nameTableFor(sub.vips, sub.filterKey, services, sample) : undefined;
      const withNames = names !== undefined && names.version !== sub.namesVersion;
      const groupKey = `${last?.takenAtMs ?? 'none'}|${changesOnly}|${sub.compact}|${withNames}|${sub.filterKey}`;
      let snap = built.get(groupKey);
      if (!snap) {
        snap = buildSnapshot({
          current: sample, baseline: last, services: names ? [] : services(), vips: sub.vips, changesOnly,
          table: names || sub.vips.length ? undefined : this.nameTableFor([], '', services, sample),
          compact: names ? { names, withNames } : undefined,
        });
        built.set(groupKey, snap);
      }
      sub.lastSent = sample;
      sub.resync = false;
      if (names) sub.namesVersion = names.version;
      this.enqueue(sub, snap);
    }
  }

  /** Drops a subscriber's oldest snapshot (counted); false when that closed it as too slow. */
  private dropOldest(sub: Subscriber): boolean {
    const lost = sub.queue.shift()!;
    sub.droppedCount += 1n;
    sub.dropsInARow += 1;
    this.counters.snapshotsDropped += 1n;
    if (this.maxConsecutiveDrops > 0 && sub.dropsInARow >= this.maxConsecutiveDrops) {
      log.info({ subscriber: sub.id, dropped: sub.droppedCount.toString() },
        'closing a Watch stream whose client stopped reading');
      this.closeSubscriber(sub, 'too-slow');
      return false;
    }
    // What the lost snapshot told the client must reach it another way.
    // (Even a lost complete one: the diffs queued behind it assume the client saw it.)
    if (sub.changesOnly) sub.resync = true;
    if (lost.service_keys?.length || lost.backend_addresses?.length) {
      const head = sub.queue[0];
      if (head && head.names_version === lost.names_version && !head.service_keys?.length && !head.backend_addresses?.length) {
        sub.queue[0] = { ...head, service_keys: lost.service_keys!, backend_addresses: lost.backend_addresses! };
      } else if (!head) {
        sub.namesVersion = -1;
      }
    }
    return true;
  }

  private enqueue(sub: Subscriber, snap: StatsSnapshotMsg): void {
    if (sub.closed) return;
    if (sub.queue.length >= this.maxPending && !this.dropOldest(sub)) return;
    sub.queue.push(snap);
    sub.onReady?.();
  }
}
