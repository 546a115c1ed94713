/**
 * Picks and starts the data path for `--dataplane=auto|xdp|ipvs`. `auto` prefers XDP and falls
 * back to IPVS when the XDP program cannot be loaded or attached; the reason is logged and kept
 * in `fallbackReason` for the gRPC API and the metrics. When no data path can start, the error
 * says what each one lacks.
 *
 * Each data path's modules are imported only when that data path is tried: the XDP side loads
 * libbpf (libbpf1) when imported, and a host that runs on IPVS alone need not have it.
 */
import { logger, type Logger } from '../log.js';
import type { Dataplane, DataplaneKind } from './dataplane.js';
import type { IpvsDataplaneOptions } from './ipvs/ipvs-dataplane.js';
import type { XdpDataplaneOptions } from './xdp/xdp-dataplane.js';

export type DataplaneChoice = 'auto' | DataplaneKind;
export const DATAPLANE_CHOICES: readonly DataplaneChoice[] = ['auto', 'xdp', 'ipvs'];

export interface CreateDataplaneOptions {
  dataplane: DataplaneChoice;
  /** Needed for 'xdp' and 'auto'. */
  xdp?: XdpDataplaneOptions;
  ipvs?: IpvsDataplaneOptions;
  signal?: AbortSignal;
  log?: Logger;
}

export interface SelectedDataplane {
  /** Started and ready for apply(). */
  readonly dataplane: Dataplane;
  readonly requested: DataplaneChoice;
  /** Why 'auto' did not use XDP; null when it did, or when a data path was named explicitly. */
  readonly fallbackReason: string | null;
}

/** No data path could start; `reasons` holds each one's failure by kind. */
export class NoDataplaneError extends Error {
  constructor(message: string, readonly reasons: Partial<Record<DataplaneKind, string>>) {
    super(message);
    this.name = 'NoDataplaneError';
  }
}

/** One line for the API: the first line of `text`, without a trailing "...:" that introduces what follows. */
function firstLine(text: string): string {
  const lines = text.split('\n');
  let line = lines[0]!;
  if (lines.length > 1) line = `${line.replace(/;[^;]*:\s*$/, '')} (details in the log)`;
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/** The XDP program on `ifname`, if any; an interface that cannot be queried (e.g. absent), or a host without libbpf, has none. */
async function attachedXdp(ifname: string): Promise<{ progId: number; mode: string } | null> {
  try {
    const { queryXdp } = await import('../bpf/xdp.js');
    return queryXdp(ifname);
  } catch {
    return null;
  }
}

/** The XDP data path's module; it loads libbpf as it is imported, which is where a missing libbpf1 shows. */
async function importXdp(): Promise<typeof import('./xdp/xdp-dataplane.js')> {
  try {
    return await import('./xdp/xdp-dataplane.js');
  } catch (err) {
    throw new Error(`cannot load libbpf for the XDP data path (${why(err)}); install libbpf1 (Debian: apt-get install libbpf1), ` +
      'or run on IPVS with --dataplane=ipvs');
  }
}

function why(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export async function createDataplane(opts: CreateDataplaneOptions): Promise<SelectedDataplane> {
  const log = opts.log ?? logger('dataplane');
  const xdpOptions = (): XdpDataplaneOptions => {
    if (!opts.xdp?.interface) throw new Error('the XDP data path needs an interface (--interface)');
    return opts.xdp;
  };
  const startOne = async (kind: DataplaneKind): Promise<Dataplane> => {
    const dp: Dataplane = kind === 'xdp'
      ? new (await importXdp()).XdpDataplane(xdpOptions())
      : new (await import('./ipvs/ipvs-dataplane.js')).IpvsDataplane(opts.ipvs);
    await dp.start(opts.signal);
    return dp;
  };

  if (!DATAPLANE_CHOICES.includes(opts.dataplane)) {
    throw new Error(`unknown data path '${String(opts.dataplane)}': use one of ${DATAPLANE_CHOICES.join(', ')}`);
  }
  if (opts.dataplane !== 'auto') {
    const dataplane = await startOne(opts.dataplane);
    log.info({ dataplane: opts.dataplane }, `data path: ${opts.dataplane} (as requested)`);
    return { dataplane, requested: opts.dataplane, fallbackReason: null };
  }

  let xdpFailure: string;
  try {
    const dataplane = await startOne('xdp');
    log.info({ dataplane: 'xdp' }, 'data path: xdp (auto)');
    return { dataplane, requested: 'auto', fallbackReason: null };
  } catch (err) {
    opts.signal?.throwIfAborted();
    xdpFailure = why(err);
  }
  // An XDP program left attached by an earlier run keeps forwarding from its last maps, ahead of
  // IPVS: falling back would leave config edits without effect, so say what to do instead.
  const ifname = opts.xdp?.interface;
  const leftover = ifname ? await attachedXdp(ifname) : null;
  if (leftover) {
    throw new NoDataplaneError(
      `XDP could not start (${firstLine(xdpFailure)}), and XDP program id ${leftover.progId} (${leftover.mode}) is still ` +
      `attached to ${ifname} from an earlier run: it keeps forwarding with its last maps and would bypass IPVS, so the ` +
      `director does not fall back. Fix the XDP error, or detach it (\`ip link set dev ${ifname} xdp off\`) to run on IPVS`,
      { xdp: xdpFailure },
    );
  }
  // The API and the metric get the first line; the log gets everything (e.g. the verifier's log).
  const fallbackReason = `XDP could not start: ${firstLine(xdpFailure)}`;
  log.warn({ dataplane: 'ipvs', fallbackReason, error: xdpFailure }, `falling back to IPVS because ${fallbackReason}`);
  try {
    const dataplane = await startOne('ipvs');
    log.warn({ dataplane: 'ipvs', fallbackReason }, 'data path: ipvs (auto fallback)');
    return { dataplane, requested: 'auto', fallbackReason };
  } catch (err) {
    const ipvsFailure = why(err);
    throw new NoDataplaneError(
      `no data path can start. XDP: ${xdpFailure}. IPVS: ${ipvsFailure}. ` +
      'The director needs either XDP (a kernel with BPF and CAP_BPF/CAP_NET_ADMIN, an interface that exists) ' +
      'or IPVS (a kernel with CONFIG_IP_VS and CAP_NET_ADMIN)',
      { xdp: xdpFailure, ipvs: ipvsFailure },
    );
  }
}
