/**
 * The desired state of the director: what every source (config file, Kubernetes) produces and
 * every data path (XDP, IPVS) consumes. Pure data; no I/O anywhere in control/model/.
 */

export type Protocol = 'tcp' | 'udp';

/** IPVS scheduler names. The XDP data path always uses Maglev; `mh` is its IPVS twin and the default. */
export type Scheduler = 'mh' | 'sh' | 'rr' | 'wrr' | 'lc' | 'wlc';
export const SCHEDULERS: readonly Scheduler[] = ['mh', 'sh', 'rr', 'wrr', 'lc', 'wlc'];

/** A real server behind a virtual service. */
export interface Backend {
  /** Canonical IP text (IPv4 dotted quad, or IPv6 in RFC 5952 form), same family as the VIP. */
  readonly address: string;
  /** Relative share of new flows. 0 = draining: no new flows, existing flows stay until they end. */
  readonly weight: number;
  /** Optional static MAC (aa:bb:cc:dd:ee:ff); otherwise learned from the kernel's neighbour table. */
  readonly mac?: string;
}

/** A virtual service: {VIP, port, protocol} and its backends. */
export interface VirtualService {
  /** Canonical IP text. */
  readonly vip: string;
  /** 1..65535, or 0 for "all ports" (the fallback entry for ports without their own service). */
  readonly port: number;
  readonly protocol: Protocol;
  /** IPVS scheduler; ignored by XDP (Maglev). Default `mh`. */
  readonly scheduler: Scheduler;
  /**
   * Client affinity in seconds; 0 = off. XDP: the backend is chosen by the client address only
   * (all of a client's connections go to one backend). IPVS: the persistence timeout.
   */
  readonly persistence: number;
  readonly backends: readonly Backend[];
  /** Where this service came from, for logs and events (e.g. `file:/etc/xdir.yaml:12`, `kube:ns/name`). */
  readonly origin?: string;
}

export interface DesiredState {
  readonly services: readonly VirtualService[];
  /**
   * Optional, from incremental sources: this state's number, and how it differs from an earlier
   * one. A data path whose last successful apply was state `delta.since` may apply just
   * `delta.changes` (service key -> its new definition, or null when removed) instead of diffing
   * every service; any other data path ignores it. `services` is always complete.
   */
  readonly revision?: number;
  readonly delta?: DesiredDelta;
}

export interface DesiredDelta {
  /** The revision this state is relative to. */
  readonly since: number;
  /** Every service key whose definition differs from state `since`: the new one, or null (gone). */
  readonly changes: ReadonlyMap<string, VirtualService | null>;
}

/**
 * The delta from state `a` to state `c` when `b` (delta from `a`) is replaced by `c` (delta from
 * `b`) before anyone applied `b`: the union, later entries winning. Undefined when either lacks one.
 */
export function chainDelta(b: DesiredState, c: DesiredState): DesiredDelta | undefined {
  if (!b.delta || !c.delta || b.revision === undefined || c.delta.since !== b.revision) return undefined;
  const changes = new Map(b.delta.changes);
  for (const [k, v] of c.delta.changes) changes.set(k, v);
  return { since: b.delta.since, changes };
}

export type Family = 4 | 6;

/** Stable identity of a virtual service: `tcp/198.18.0.10:80`, `udp/[fd00::10]:53`, `tcp/198.18.0.10:*`. */
export function serviceKey(s: Pick<VirtualService, 'vip' | 'port' | 'protocol'>): string {
  const host = s.vip.includes(':') ? `[${s.vip}]` : s.vip;
  return `${s.protocol}/${host}:${s.port === 0 ? '*' : s.port}`;
}
