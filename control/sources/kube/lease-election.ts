/**
 * Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it
 * (client-node has no helper). Only the leader hands out addresses, so two director instances never
 * give one address to two Services; every instance still programs its own data path from the
 * Services' status. Expiry is judged by when *we* last saw the record change, not by the
 * timestamps in it, so clock skew between nodes does not matter. Writes carry the Lease's
 * resourceVersion: two candidates updating at once -> one gets 409 and stays a follower.
 */
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../../log.js';
import { apiErrorCode, describeApiError, type KubeApi } from './api-calls.js';

export interface LeaseElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationS: number;
  /** How often the leader renews and followers retry. */
  retryMs: number;
  onChange?: (leader: boolean) => void;
}

export class LeaseElection {
  private timer?: NodeJS.Timeout;
  private stopped = true;
  private observed?: { record: string; at: number };
  private lastRenewAt = 0;
  private leading = false;
  /** The acquire/renew round in flight, if any: stop() lets it finish before releasing. */
  private round: Promise<void> = Promise.resolve();

  constructor(private readonly api: KubeApi, private readonly opts: LeaseElectionOptions, private readonly log: Logger) {}

  /** True while we hold the lease and renewed it within its duration (minus a safety margin). */
  isLeader(): boolean {
    return this.leading && Date.now() - this.lastRenewAt < this.opts.leaseDurationS * 1000 * 0.8;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.tick();
  }

  /** Stops campaigning; a leader gives the lease up so another instance takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    // A renewal in flight would change the Lease's resourceVersion under our release (409).
    await this.round;
    if (!this.leading) return;
    this.setLeading(false);
    for (let attempt = 1; ; attempt++) {
      try {
        const lease = await this.api.getLease(this.opts.namespace, this.opts.name);
        if (lease.spec?.holderIdentity !== this.opts.identity) return;
        lease.spec = { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: new V1MicroTime() };
        await this.api.updateLease(lease);
        return;
      } catch (err) {
        if (apiErrorCode(err) === 409 && attempt < 3) continue; // changed between our read and write: read again
        this.log.warn({ err: describeApiError(err) }, 'could not release the allocation lease; another instance takes over when it expires');
        return;
      }
    }
  }

  private setLeading(v: boolean): void {
    if (v === this.leading) return;
    this.leading = v;
    this.log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity }, v ? 'became allocation leader' : 'no longer allocation leader');
    this.opts.onChange?.(v);
  }

  private tick(): Promise<void> {
    this.round = (async () => {
      try {
        await this.tryAcquireOrRenew();
      } catch (err) {
        this.log.warn({ err: describeApiError(err) }, 'allocation lease check failed');
      }
      if (this.leading && !this.isLeader()) this.setLeading(false);
      if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.opts.retryMs);
    })();
    return this.round;
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { namespace, name, identity, leaseDurationS } = this.opts;
    const now = new V1MicroTime();
    let lease: V1Lease;
    try {
      lease = await this.api.getLease(namespace, name);
    } catch (err) {
      if (apiErrorCode(err) !== 404) throw err;
      try {
        await this.api.createLease(namespace, {
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: leaseDurationS, acquireTime: now, renewTime: now, leaseTransitions: 0 },
        });
        this.lastRenewAt = Date.now();
        this.setLeading(true);
      } catch (e) {
        if (apiErrorCode(e) !== 409) throw e; // someone else created it first
      }
      return;
    }
    const spec = lease.spec ?? {};
    const record = JSON.stringify([spec.holderIdentity, String(spec.renewTime), spec.leaseDurationSeconds]);
    if (this.observed?.record !== record) this.observed = { record, at: Date.now() };
    const duration = (spec.leaseDurationSeconds ?? leaseDurationS) * 1000;
    const mine = spec.holderIdentity === identity;
    const expired = !spec.holderIdentity || Date.now() - this.observed.at > duration;
    if (!mine && !expired) {
      this.setLeading(false);
      return;
    }
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: leaseDurationS,
      renewTime: now,
      acquireTime: mine ? spec.acquireTime && new V1MicroTime(spec.acquireTime) : now,
      leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
    };
    try {
      await this.api.updateLease(lease);
      this.lastRenewAt = Date.now();
      this.setLeading(true);
    } catch (err) {
      if (apiErrorCode(err) !== 409) throw err;
      this.setLeading(false);
    }
  }
}
