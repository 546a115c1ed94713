/**
 * The IPVS fallback data path: the same desired state as the XDP path, programmed as IPVS virtual
 * services in direct-routing mode over generic netlink. It touches only services it owns (see
 * ownership.ts), adopts them at start without flushing, and on every apply compares the desired
 * state with what the kernel holds right now, so drift (a service deleted by hand) is repaired and
 * nothing that already matches is touched.
 */
import { logger, type Logger } from '../../log.js';
import { serviceKey, type DesiredState } from '../../model/types.js';
import { formatValidationError, validateDesiredState } from '../../model/validate.js';
import type {
  ApplyResult, BackendStatus, Counter, Dataplane, ServiceStatus, StatsSample, StopOptions,
} from '../dataplane.js';
import { IpvsClient } from './client.js';
import { SVC_F_PERSISTENT, ipvsServiceKey, protocolName, type IpvsStats } from './codec.js';
import { OwnershipFile } from './ownership.js';
import { planIpvs, toIpvsSpec, type IpvsOp, type IpvsServiceSpec } from './plan.js';

export interface IpvsDataplaneOptions {
  /** Network namespace (/run/netns/NAME) whose IPVS to program; default: the process's own. */
  netns?: string;
  /** Where the list of owned services is kept (default /run/xdir/ipvs-services.json). */
  ownershipFile?: string;
  log?: Logger;
}

export class IpvsDataplane implements Dataplane {
  readonly kind = 'ipvs' as const;
  private client: IpvsClient | null = null;
  private readonly ownership: OwnershipFile;
  private owned = new Set<string>();
  /** Owned services as last read from or written to the kernel. */
  private held = new Map<string, IpvsServiceSpec>();
  private readonly log: Logger;

  constructor(private readonly opts: IpvsDataplaneOptions = {}) {
    this.ownership = new OwnershipFile(opts.ownershipFile);
    this.log = opts.log ?? logger('ipvs');
  }

  private get ipvs(): IpvsClient {
    if (!this.client) throw new Error('IPVS data path is not started; call start() first');
    return this.client;
  }

  async start(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.client) return;
    const client = IpvsClient.open({ netns: this.opts.netns });
    let info: ReturnType<IpvsClient['info']>;
    try {
      info = client.info();
      this.owned = this.ownership.load();
    } catch (err) {
      // Not half-started: a retried start() must try again from scratch.
      client.close();
      throw err;
    }
    this.client = client;
    const { current } = this.readKernel();
    const gone = [...this.owned].filter((k) => !current.has(k));
    if (gone.length) {
      // Recorded but absent: created by a run that crashed before creating it, or deleted by hand.
      for (const k of gone) this.owned.delete(k);
      this.ownership.save(this.owned);
    }
    this.held = current;
    this.log.info({ version: info.version, adopted: this.held.size, ownershipFile: this.ownership.path },
      `IPVS ${info.version}: adopted ${this.held.size} service(s) this director owns`);
  }

  /** The kernel's services now: ours (with destinations) by key, and the keys of everyone else's. */
  private readKernel(): { current: Map<string, IpvsServiceSpec>; foreign: Set<string> } {
    const current = new Map<string, IpvsServiceSpec>();
    const foreign = new Set<string>();
    for (const svc of this.ipvs.services()) {
      const key = ipvsServiceKey(svc);
      if (!this.owned.has(key)) { foreign.add(key); continue; }
      const dests = new Map(this.ipvs.dests(svc).map((d) => [d.address, d]));
      current.set(key, { key, service: svc, dests });
    }
    return { current, foreign };
  }

  async apply(desired: DesiredState): Promise<ApplyResult> {
    const { state: valid, errors } = validateDesiredState(desired);
    // A service whose new definition is rejected keeps running as it was (bad input never wipes it).
    const keep = new Set(errors.flatMap((e) => (e.key === undefined ? [] : [e.key])));
    for (const e of errors) this.log.error({ service: e.service, origin: e.origin }, formatValidationError(e));
    const want = new Map<string, IpvsServiceSpec>();
    for (const vs of valid.services) {
      const key = serviceKey(vs);
      want.set(key, toIpvsSpec(vs));
    }
    const { current, foreign } = this.readKernel();
    for (const k of [...this.owned]) if (!current.has(k) && !want.has(k)) this.owned.delete(k);
    const plan = planIpvs(want, current, foreign, keep);
    for (const key of plan.conflicts) {
      this.log.error({ service: key },
        `${key} already exists in IPVS and was not created by this director; it is left alone. ` +
        `Delete it (ipvsadm -D ...) to let the director manage it, or remove it from the config`);
    }
    if (plan.added.length) {
      // Record ownership before creating, so a crash can never leave an unowned service of ours.
      for (const k of plan.added) this.owned.add(k);
      this.ownership.save(this.owned);
    }
    const failures: string[] = [];
    const failedKeys = new Set<string>();
    for (const op of plan.ops) {
      if (failedKeys.has(op.key)) continue; // the rest of a failed service's commands would fail too
      try {
        this.execute(op);
      } catch (err) {
        // A service we failed to create is not ours, even if someone else's appears under its key.
        if (op.op === 'add-service') this.owned.delete(op.key);
        failedKeys.add(op.key);
        failures.push((err as Error).message);
        this.log.error({ service: op.key, op: op.op }, (err as Error).message);
      }
    }
    // The kernel is the truth: what we hold is what it holds now.
    const after = this.readKernel().current;
    for (const k of plan.removed) if (!after.has(k)) this.owned.delete(k);
    if (plan.added.length || plan.removed.length) this.ownership.save(this.owned);
    this.held = after;
    const result: ApplyResult = {
      servicesAdded: plan.added.filter((k) => !failedKeys.has(k)).length,
      servicesUpdated: plan.updated.filter((k) => !failedKeys.has(k)).length,
      servicesRemoved: plan.removed.filter((k) => !failedKeys.has(k)).length,
      servicesUnchanged: plan.unchanged.length,
    };
    if (plan.ops.length) this.log.info({ ...result, conflicts: plan.conflicts.length }, 'IPVS updated');
    if (failures.length) {
      throw new Error(`IPVS: ${failures.length} change(s) failed, the rest were applied: ${failures.join('; ')}`);
    }
    return result;
  }

  private execute(op: IpvsOp): void {
    switch (op.op) {
      case 'add-service': return this.ipvs.addService(op.service);
      case 'edit-service': return this.ipvs.editService(op.service);
      case 'delete-service': return this.ipvs.deleteService(op.service);
      case 'add-dest': return this.ipvs.addDest(op.service, op.dest);
      case 'edit-dest': return this.ipvs.editDest(op.service, op.dest);
      case 'delete-dest': return this.ipvs.deleteDest(op.service, op.dest);
    }
  }

  services(): ServiceStatus[] {
    return [...this.held.values()]
      .map((spec): ServiceStatus => {
        const s = spec.service;
        const backends: BackendStatus[] = [...spec.dests.values()]
          .map((d) => ({ address: d.address, weight: d.weight, state: d.weight === 0 ? 'draining' as const : 'active' as const }))
          .sort((a, b) => a.address.localeCompare(b.address));
        return {
          key: spec.key,
          vip: s.address,
          port: s.port,
          protocol: protocolName(s.protocol) ?? 'tcp',
          scheduler: s.scheduler,
          persistence: s.flags & SVC_F_PERSISTENT ? s.timeout : 0,
          backends,
        };
      })
      .sort((a, b) => a.key.localeCompare(b.key));
  }

  /**
   * IPVS counters of the owned services and their destinations. IPVS counts per direction; in DR
   * mode it only ever sees the client-to-server direction, so packets/bytes are the inbound ones
   * plus the (zero) outbound ones. IPVS has no drop reasons, so `reasons` stays empty.
   */
  async readStats(): Promise<StatsSample> {
    const takenAtMs = Date.now();
    const services = new Map<string, Counter>();
    const backends = new Map<string, Counter>();
    const count = (s: IpvsStats): Counter => ({ packets: s.inPackets + s.outPackets, bytes: s.inBytes + s.outBytes });
    for (const svc of this.ipvs.services()) {
      const key = ipvsServiceKey(svc);
      if (!this.owned.has(key)) continue;
      services.set(key, count(svc.stats));
      for (const d of this.ipvs.dests(svc)) {
        const c = count(d.stats);
        const sum = backends.get(d.address);
        backends.set(d.address, sum ? { packets: sum.packets + c.packets, bytes: sum.bytes + c.bytes } : c);
      }
    }
    return { takenAtMs, dataplane: 'ipvs', services, backends, reasons: new Map() };
  }

  async stop(opts: StopOptions = { detach: false }): Promise<void> {
    if (!this.client) return;
    try {
      if (opts.detach) {
        const { current } = this.readKernel();
        for (const [key, spec] of current) {
          this.ipvs.deleteService(spec.service);
          this.owned.delete(key);
        }
        this.ownership.save(this.owned);
        this.held.clear();
        this.log.info({ removed: current.size }, `removed ${current.size} IPVS service(s) this director owned`);
      }
    } finally {
      this.client.close();
      this.client = null;
    }
  }
}
