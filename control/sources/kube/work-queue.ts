/**
 * A work queue in the manner of client-go's: a key queued many times is processed once (bursts
 * coalesce); a key is never processed by two workers at once (added while in flight -> processed
 * again afterwards); failures retry with per-key exponential backoff; forget() on success.
 */
export interface WorkQueueOptions {
  concurrency: number;
  retryBaseMs: number;
  retryMaxMs: number;
}

export const DEFAULT_QUEUE: WorkQueueOptions = { concurrency: 4, retryBaseMs: 50, retryMaxMs: 60_000 };

export class WorkQueue<K> {
  private readonly queue: K[] = [];
  private readonly queued = new Set<K>();
  private readonly inFlight = new Set<K>();
  private readonly dirtyWhileInFlight = new Set<K>();
  private readonly failures = new Map<K, number>();
  private readonly delayed = new Map<K, NodeJS.Timeout>();
  private readonly idleWaiters: (() => void)[] = [];
  private closed = false;
  private scheduled = false;

  constructor(
    private readonly process: (key: K) => Promise<void>,
    private readonly onError: (key: K, err: unknown, retryInMs: number) => void,
    private readonly opts: WorkQueueOptions = DEFAULT_QUEUE,
  ) {}

  add(key: K): void {
    if (this.closed) return;
    const timer = this.delayed.get(key);
    if (timer) { clearTimeout(timer); this.delayed.delete(key); }
    if (this.inFlight.has(key)) { this.dirtyWhileInFlight.add(key); return; }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Re-adds after the key's backoff (doubling per consecutive failure). */
  addRateLimited(key: K): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** n);
    if (!this.closed && !this.delayed.has(key)) {
      this.delayed.set(key, setTimeout(() => { this.delayed.delete(key); this.add(key); }, delay));
    }
    return delay;
  }

  forget(key: K): void {
    this.failures.delete(key);
  }

  get length(): number {
    return this.queue.length + this.inFlight.size + this.delayed.size;
  }

  /** Resolves when nothing is queued, in flight or waiting to retry. */
  idle(): Promise<void> {
    if (this.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  shutdown(): void {
    this.closed = true;
    for (const t of this.delayed.values()) clearTimeout(t);
    this.delayed.clear();
    this.queue.length = 0;
    this.queued.clear();
  }

  private pump(): void {
    // Defer to the next turn so that a burst of add() calls in one tick becomes one pass.
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => { this.scheduled = false; this.run(); });
  }

  private run(): void {
    while (!this.closed && this.inFlight.size < this.opts.concurrency && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      this.inFlight.add(key);
      void this.process(key).then(
        () => this.forget(key),
        (err) => this.onError(key, err, this.addRateLimited(key)),
      ).finally(() => {
        this.inFlight.delete(key);
        if (this.dirtyWhileInFlight.delete(key)) this.add(key);
        if (this.queue.length > 0) this.run();
        if (this.length === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
    }
  }
}
