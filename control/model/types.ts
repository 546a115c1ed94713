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
}

export type Family = 4 | 6;

/** Stable identity of a virtual service: `tcp/198.18.0.10:80`, `udp/[fd00::10]:53`, `tcp/198.18.0.10:*`. */
export function serviceKey(s: Pick<VirtualService, 'vip' | 'port' | 'protocol'>): string {
  const host = s.vip.includes(':') ? `[${s.vip}]` : s.vip;
  return `${s.protocol}/${host}:${s.port === 0 ? '*' : s.port}`;
}
