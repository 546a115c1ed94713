/**
 * An in-memory data path for observability tests: services and cumulative counters the test sets
 * and advances, and a clock the test moves, so every reading is deterministic.
 */
import type {
  ApplyResult, Counter, Dataplane, DataplaneKind, ServiceStatus, StatsSample,
} from '../../control/dataplane/dataplane.js';
import { serviceKey } from '../../control/model/types.js';

export class FakeDataplane implements Dataplane {
  nowMs = 1_700_000_000_000;
  reads = 0;
  /** Make the next readStats() fail. */
  failNext = false;
  private svc: ServiceStatus[] = [];
  readonly serviceCounters = new Map<string, Counter>();
  readonly backendCounters = new Map<string, Counter>();
  readonly reasonCounters = new Map<string, Counter>();

  constructor(readonly kind: DataplaneKind = 'xdp') {
    for (const r of ['forwarded', 'pass-not-vip', 'drop-fragment', 'drop-no-backend', 'flow-new']) {
      this.reasonCounters.set(r, { packets: 0n, bytes: 0n });
    }
  }

  /** Add a service `proto/vip:port` with backends (address -> weight; 0 = draining). */
  addService(vip: string, port: number, protocol: 'tcp' | 'udp', backends: Record<string, number>, macUnresolved: string[] = []): string {
    const key = serviceKey({ vip, port, protocol });
    this.svc.push({
      key, vip, port, protocol, scheduler: 'mh', persistence: 0,
      backends: Object.entries(backends).map(([address, weight]) => ({
        address, weight,
        state: macUnresolved.includes(address) ? 'mac-unresolved' : weight === 0 ? 'draining' : 'active',
        mac: macUnresolved.includes(address) ? undefined : '02:00:00:00:00:01',
      })),
    });
    this.serviceCounters.set(key, { packets: 0n, bytes: 0n });
    for (const b of Object.keys(backends)) if (!this.backendCounters.has(b)) this.backendCounters.set(b, { packets: 0n, bytes: 0n });
    return key;
  }

  /** Count `packets` of `size` bytes to a service and one of its backends, as forwarded. */
  forward(key: string, backend: string, packets: number, size = 100): void {
    const add = (m: Map<string, Counter>, k: string): void => {
      const c = m.get(k) ?? { packets: 0n, bytes: 0n };
      m.set(k, { packets: c.packets + BigInt(packets), bytes: c.bytes + BigInt(packets * size) });
    };
    add(this.serviceCounters, key);
    add(this.backendCounters, backend);
    add(this.reasonCounters, 'forwarded');
  }

  drop(reason: string, packets: number, size = 100): void {
    const c = this.reasonCounters.get(reason) ?? { packets: 0n, bytes: 0n };
    this.reasonCounters.set(reason, { packets: c.packets + BigInt(packets), bytes: c.bytes + BigInt(packets * size) });
  }

  advance(ms: number): void { this.nowMs += ms; }

  async start(): Promise<void> {}
  async apply(): Promise<ApplyResult> {
    return { servicesAdded: 0, servicesUpdated: 0, servicesRemoved: 0, servicesUnchanged: this.svc.length };
  }
  services(): ServiceStatus[] { return this.svc; }
  async readStats(): Promise<StatsSample> {
    if (this.failNext) { this.failNext = false; throw new Error('fake read failure'); }
    this.reads += 1;
    const copy = (m: Map<string, Counter>): Map<string, Counter> => new Map([...m].map(([k, v]) => [k, { ...v }]));
    return {
      takenAtMs: this.nowMs, dataplane: this.kind,
      services: copy(this.serviceCounters), backends: copy(this.backendCounters), reasons: copy(this.reasonCounters),
    };
  }
  async stop(): Promise<void> {}
}
