/**
 * One informer (client-node `makeInformer`) that keeps itself running. The real informer relists
 * by itself after a 410 and reconnects after a clean close, but any other list or watch error
 * stops it for good (see /work/shared/notes/kubernetes-client.md): here it is started again with
 * exponential backoff. The cache is never cleared on errors: while the API server is unreachable
 * the last known state stands, and a relist removes only what the cluster says is gone.
 */
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../log.js';
import { describeApiError } from './api-calls.js';
import { trimObject } from './raw-get.js';

export interface Backoff {
  minMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { minMs: 500, maxMs: 30_000 };

export class WatchedCollection<T extends KubernetesObject> {
  private readonly informer;
  private stopped = true;
  private starting = false;
  private failedWhileStarting = false;
  private retryTimer?: NodeJS.Timeout;
  private delayMs: number;
  /** True once the first list has landed; stays true through outages (the cache is kept). */
  synced = false;
  /** Restarts after errors, for tests and metrics. */
  restarts = 0;

  constructor(
    readonly name: string,
    config: KubeConfig,
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    /** Called per object event (`obj` set) and once after each successful (re)start (`obj` absent). */
    private readonly onChange: (what: string, verb: 'add' | 'update' | 'delete' | 'synced', obj?: T) => void,
    private readonly log: Logger,
    private readonly backoff: Backoff = DEFAULT_BACKOFF,
  ) {
    this.delayMs = backoff.minMs;
    // makeInformer's ListWatch, with its Watch wrapped so that watched objects are trimmed like
    // listed ones (raw-get.ts) before the cache keeps them.
    const watch = new Watch(config);
    const trimming = {
      watch: (p: string, params: Record<string, string | number | boolean | undefined>, cb: (phase: string, obj: unknown, raw: unknown) => void, done: (err: unknown) => void) =>
        watch.watch(p, params, (phase, obj, raw) => cb(phase, trimObject(obj), raw), done),
    } as unknown as Watch;
    this.informer = new ListWatch<T>(path, trimming, list, false);
    this.informer.on('add', (o) => this.onChange(this.name, 'add', o));
    this.informer.on('update', (o) => this.onChange(this.name, 'update', o));
    this.informer.on('delete', (o) => this.onChange(this.name, 'delete', o));
    this.informer.on('error', (err) => this.failed(err));
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.attempt();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.informer.stop();
  }

  list(): readonly T[] {
    return this.informer.list();
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    this.starting = true;
    this.failedWhileStarting = false;
    try {
      await this.informer.start();
    } catch (err) {
      this.failedWhileStarting = true;
      this.log.warn({ informer: this.name, err: describeApiError(err) }, 'informer start threw');
    }
    this.starting = false;
    if (this.stopped || this.failedWhileStarting) return;
    if (!this.synced) this.log.debug({ informer: this.name }, 'informer synced');
    this.synced = true;
    this.delayMs = this.backoff.minMs;
    this.onChange(this.name, 'synced');
  }

  private failed(err: unknown): void {
    if (this.stopped) return; // stop() reports an AbortError through the same callback
    if (this.starting) this.failedWhileStarting = true;
    clearTimeout(this.retryTimer);
    const delay = this.delayMs;
    this.delayMs = Math.min(this.backoff.maxMs, this.delayMs * 2);
    this.log.warn({ informer: this.name, err: describeApiError(err), retryInMs: delay },
      `watch of ${this.name} failed; keeping the last known state and retrying`);
    this.retryTimer = setTimeout(() => { this.restarts++; void this.attempt(); }, delay);
  }
}
