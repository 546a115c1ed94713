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
 */
import type { Dataplane, StatsSample } from '../dataplane/dataplane.js';
import { logger } from '../log.js';
import type { StatsSnapshotMsg } from './grpc/proto.js';
import { ServiceIndex, buildSnapshot } from './snapshot.js';

const log = logger('stats-hub');

/**
 * On a snapshot handed out by Subscription.take(): the body shared by every subscriber of the same
 * reading, so the transport can encode that body once per reading instead of once per subscriber.
 */
export const SHARED_BODY: unique symbol = Symbol('xdir.sharedSnapshotBody');

export type HubDataplane = Pick<Dataplane, 'kind' | 'readStats' | 'services'>;

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

  constructor(
    readonly id: number,
    readonly intervalMs: number,
    readonly vips: readonly string[],
    readonly changesOnly: boolean,
    private readonly hub: StatsHub,
  ) {}

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
  private firstIndex: ServiceIndex | undefined;
  private readonly sampleListeners = new Set<(s: StatsSample) => void>();

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

  subscribe(opts: { intervalMs: number; vips?: readonly string[]; changesOnly?: boolean }): Subscription {
    const sub = new Subscriber(this.nextId++, this.clampInterval(opts.intervalMs), [...(opts.vips ?? [])], opts.changesOnly === true, this);
    this.subscribers.add(sub);
    // A first snapshot right away (complete, rates over the hub's last period), so a viewer has
    // something to show. Subscribers arriving in the same period share it.
    if (this.current) {
      sub.lastSent = this.current;
      const key = `first|${sub.vips.join(',')}`;
      let snap = this.firstSnapshots.get(key);
      if (!snap) {
        this.firstIndex ??= new ServiceIndex(this.dataplane.services());
        snap = buildSnapshot({ current: this.current, baseline: this.prior, services: this.firstIndex, vips: sub.vips });
        this.firstSnapshots.set(key, snap);
      }
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
      void this.tick().finally(() => this.schedule(this.periodMs()));
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
    this.firstIndex = undefined;
    for (const fn of this.sampleListeners) fn(sample);
    this.deliver(sample);
    return sample;
  }

  private deliver(sample: StatsSample): void {
    if (this.subscribers.size === 0) return;
    const slack = this.periodMs() / 2;
    const services = new ServiceIndex(this.dataplane.services());
    // Subscribers with the same interval, filter and baseline get the same snapshot body: build it once.
    const built = new Map<string, StatsSnapshotMsg>();
    for (const sub of [...this.subscribers]) {
      const last = sub.lastSent;
      if (last && sample.takenAtMs - last.takenAtMs < sub.intervalMs - slack) continue;
      const groupKey = `${last?.takenAtMs ?? 'none'}|${sub.changesOnly}|${sub.vips.join(',')}`;
      let snap = built.get(groupKey);
      if (!snap) {
        snap = buildSnapshot({ current: sample, baseline: last, services, vips: sub.vips, changesOnly: sub.changesOnly });
        built.set(groupKey, snap);
      }
      sub.lastSent = sample;
      this.enqueue(sub, snap);
    }
  }

  private enqueue(sub: Subscriber, snap: StatsSnapshotMsg): void {
    if (sub.closed) return;
    if (sub.queue.length >= this.maxPending) {
      sub.queue.shift();
      sub.droppedCount += 1n;
      sub.dropsInARow += 1;
      this.counters.snapshotsDropped += 1n;
      if (this.maxConsecutiveDrops > 0 && sub.dropsInARow >= this.maxConsecutiveDrops) {
        log.info({ subscriber: sub.id, dropped: sub.droppedCount.toString() },
          'closing a Watch stream whose client stopped reading');
        this.closeSubscriber(sub, 'too-slow');
        return;
      }
    }
    sub.queue.push(snap);
    sub.onReady?.();
  }
}
