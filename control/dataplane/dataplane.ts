/**
 * The seam between the control plane and a data path. The XDP path (dataplane/xdp) and the IPVS
 * fallback (dataplane/ipvs) both implement it; sources, the reconcile loop and observability only
 * ever see this interface.
 */
import type { DesiredState, Protocol } from '../model/types.js';

export type DataplaneKind = 'xdp' | 'ipvs';

/** A packet and byte count, cumulative since the data path was created (survives restarts when pinned). */
export interface Counter {
  packets: bigint;
  bytes: bigint;
}

export type BackendState = 'active' | 'draining' | 'mac-unresolved';

export interface BackendStatus {
  address: string;
  weight: number;
  state: BackendState;
  /** Learned or configured MAC, when the data path knows one (XDP only). */
  mac?: string;
}

/** What the data path has programmed for one virtual service. */
export interface ServiceStatus {
  key: string; // serviceKey()
  vip: string;
  port: number;
  protocol: Protocol;
  scheduler: string;
  persistence: number;
  backends: BackendStatus[];
}

/** One reading of every counter the data path keeps; per-CPU values are already summed. */
export interface StatsSample {
  /** Date.now() when the reading was taken. */
  takenAtMs: number;
  dataplane: DataplaneKind;
  /** By serviceKey(). */
  services: Map<string, Counter>;
  /** By backend address (a backend shared by several services is counted once, over all of them). */
  backends: Map<string, Counter>;
  /** By reason name (XDP: the XDIR_R_* / XDIR_EV_* names in lower-kebab form, e.g. `drop-fragment`). */
  reasons: Map<string, Counter>;
}

export interface ApplyResult {
  servicesAdded: number;
  servicesUpdated: number;
  servicesRemoved: number;
  /** Services unchanged and left alone. */
  servicesUnchanged: number;
}

export interface StopOptions {
  /** Detach the program / delete owned services. Default false: a restart must not drop traffic. */
  detach: boolean;
}

export interface Dataplane {
  readonly kind: DataplaneKind;
  /** Load or adopt the data path (pinned maps, attached program, existing IPVS services). */
  start(signal?: AbortSignal): Promise<void>;
  /** Make the data path match `desired`, touching only what differs. Never called concurrently. */
  apply(desired: DesiredState): Promise<ApplyResult>;
  /**
   * Re-read what is programmed, so the next apply repairs drift (an entry changed or removed by
   * hand). Called by the periodic resync just before it re-applies; should cost little when
   * nothing drifted. Absent where apply() reads the kernel anyway (IPVS).
   */
  repair?(): Promise<void>;
  /** The services as programmed now. */
  services(): ServiceStatus[];
  readStats(): Promise<StatsSample>;
  stop(opts?: StopOptions): Promise<void>;
}
