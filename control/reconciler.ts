/**
 * The loop between sources and a data path: sources `submit()` desired states whenever they like;
 * one worker applies them to the Dataplane, one at a time.
 *
 * - Coalescing: a burst of states (an editor saving ten times, an informer relist) applies only the
 *   newest; intermediate states are skipped, never queued. Their deltas (DesiredState.delta, from
 *   incremental sources) are merged, so the applied state's delta still starts at the last one
 *   handed to the data path.
 * - Serialised: Dataplane.apply is never called concurrently (the interface forbids it).
 * - Retries: a failed apply is retried with capped exponential backoff, or at once when a newer
 *   state arrives (it may be the fix). The data path keeps whatever it had meanwhile.
 * - Resync: the last desired state is re-applied periodically; apply() touches only what differs,
 *   so this is cheap. It also repairs drift (an entry changed or removed by hand) on both data
 *   paths: IPVS re-reads the kernel on every apply; XDP plans from what it wrote, so the resync
 *   first calls Dataplane.repair(), which re-reads the maps when they differ from that.
 * Knows nothing of Kubernetes or files; both sources use it.
 */
import type { ApplyResult, Dataplane } from './dataplane/dataplane.js';
import { logger, type Logger } from './log.js';
import { chainDelta, type DesiredState } from './model/types.js';

export interface ReconcilerOptions {
  dataplane: Pick<Dataplane, 'apply' | 'repair'>;
  log?: Logger;
  /** Re-apply the last desired state this often (default 60 s; 0 = never). */
  resyncMs?: number;
  /** First retry delay after a failed apply (default 500 ms), doubled each failure... */
  retryBaseMs?: number;
  /** ...up to this (default 30 s). */
  retryMaxMs?: number;
  /** Called after every successful apply (observability hooks in here). */
  onApplied?: (result: ApplyResult, state: DesiredState) => void;
  /** Called after every failed apply, with the delay before the next try. */
  onApplyError?: (err: unknown, retryInMs: number) => void;
}

export interface ReconcilerStatus {
  applies: number;
  failures: number;
  /** Desired states submitted but never applied because a newer one replaced them. */
  coalesced: number;
  lastResult?: ApplyResult;
  lastError?: string;
  lastAppliedAtMs?: number;
}

export class Reconciler {
  readonly status: ReconcilerStatus = { applies: 0, failures: 0, coalesced: 0 };
  private readonly log: Logger;
  private pending: DesiredState | null = null;
  /** The newest state applied successfully (what a resync re-applies). */
  private applied: DesiredState | null = null;
  private applying = false;
  private failures = 0;
  private stopped = false;
  private worker: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: ReconcilerOptions) {
    this.log = opts.log ?? logger('reconciler');
  }

  /** Starts the worker. Stops (after the apply in flight) when `signal` aborts or stop() is called. */
  start(signal?: AbortSignal): void {
    if (this.worker) return;
    signal?.addEventListener('abort', () => { void this.stop(); }, { once: true });
    this.worker = this.loop();
  }

  /** Hands over a new desired state; replaces any state not yet applied. */
  submit(state: DesiredState): void {
    if (this.stopped) return;
    if (this.pending) {
      this.status.coalesced++;
      // The skipped state's delta folds into this one's, so the delta still starts where the
      // data path last was; without a chain it is dropped (the data path then diffs everything).
      if (state.delta) {
        const delta = chainDelta(this.pending, state);
        state = delta ? { ...state, delta } : { services: state.services, revision: state.revision };
      }
    }
    this.pending = state;
    this.failures = 0;
    this.wake?.();
  }

  /** Resolves when every submitted state has been applied (or the reconciler stopped). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.worker;
    this.notifyIdle(true);
  }

  private isIdle(): boolean {
    return this.stopped || (this.pending === null && !this.applying);
  }

  private notifyIdle(force = false): void {
    if (!force && !this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    waiters.forEach((w) => w());
  }

  /** Sleeps until woken (submit/stop) or `ms` passes (null = no timeout). */
  private sleep(ms: number | null): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === null ? null : setTimeout(() => done(), ms);
      const done = () => { if (timer) clearTimeout(timer); this.wake = null; resolve(); };
      this.wake = done;
    });
  }

  private async loop(): Promise<void> {
    const resyncMs = this.opts.resyncMs ?? 60_000;
    while (!this.stopped) {
      let resync = false;
      if (this.pending === null) {
        this.notifyIdle();
        await this.sleep(resyncMs > 0 && this.applied ? resyncMs : null);
        if (this.stopped) break;
        if (this.pending === null && this.applied) { this.pending = this.applied; resync = true; } // periodic resync
        if (this.pending === null) continue;
      }
      const state = this.pending;
      this.pending = null;
      this.applying = true;
      if (resync) await this.repair();
      try {
        const result = await this.opts.dataplane.apply(state);
        this.applied = state;
        this.failures = 0;
        this.status.applies++;
        this.status.lastResult = result;
        this.status.lastAppliedAtMs = Date.now();
        delete this.status.lastError;
        const changed = result.servicesAdded + result.servicesUpdated + result.servicesRemoved > 0;
        this.log[changed ? 'info' : 'debug']({ ...result, services: state.services.length }, 'desired state applied');
        this.opts.onApplied?.(result, state);
      } catch (err) {
        this.failures++;
        this.status.failures++;
        this.status.lastError = err instanceof Error ? err.message : String(err);
        const base = this.opts.retryBaseMs ?? 500;
        const delay = Math.min(this.opts.retryMaxMs ?? 30_000, base * 2 ** Math.min(this.failures - 1, 20));
        this.log.error({ err: this.status.lastError, attempt: this.failures, retryInMs: delay },
          'applying the desired state failed; the data path keeps its previous state, retrying');
        this.opts.onApplyError?.(err, delay);
        if (this.pending === null) this.pending = state; // retry it unless something newer came in
        this.applying = false;
        // A newer submit() wakes the sleep: the new state may be the fix.
        await this.sleep(delay);
        continue;
      } finally {
        this.applying = false;
      }
    }
  }

  /** Lets the data path re-read what drifted before a resync. A failure costs only the repair: the apply still runs. */
  private async repair(): Promise<void> {
    const { dataplane } = this.opts;
    if (!dataplane.repair) return;
    try {
      await dataplane.repair();
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) },
        'checking the data path for drift failed; re-applying the desired state anyway');
    }
  }
}
