/**
 * `xdir run`: the director process. Loads (or adopts) the data path on one interface, applies the
 * config file, watches it, and runs until SIGTERM/SIGINT.
 *
 *   source (FileSource) --submit--> Reconciler --apply--> Dataplane (XDP)
 *
 * On SIGTERM/SIGINT it stops the source and the reconciler and leaves the program attached and the
 * maps pinned (a restarted director adopts them, so established flows survive the restart), unless
 * --detach-on-exit. SIGHUP re-reads the config file.
 *
 * Modules that log are imported only after the flags are parsed, because the log format is fixed
 * when control/log.ts is first loaded.
 */
import { parseArgs } from 'node:util';
import type { Dataplane } from '../dataplane/dataplane.js';
import type { Logger } from '../log.js';

interface FlagSpec {
  type: 'string' | 'boolean';
  default?: string;
  value?: string;
  help: string;
}

/** Every flag of `xdir run`, with its default; parseArgs options and --help both come from here. */
export const RUN_FLAGS = {
  config: { type: 'string', value: 'FILE', help: 'YAML file of virtual services, watched for edits (required)' },
  interface: { type: 'string', value: 'IF', help: 'interface the XDP program is attached to and forwards on (required)' },
  'xdp-mode': { type: 'string', value: 'native|generic|auto', default: 'auto', help: 'XDP attach mode; auto = native, falling back to generic' },
  'pin-root': { type: 'string', value: 'DIR', default: '/sys/fs/bpf/xdir/<interface>', help: 'bpffs directory of the pinned maps' },
  'ring-size': { type: 'string', value: 'N', default: '65537', help: 'Maglev ring slots per VIP (a prime)' },
  'max-vips': { type: 'string', value: 'N', default: '1024', help: 'capacity of the VIP table' },
  'max-backends': { type: 'string', value: 'N', default: '4096', help: 'capacity of the backend table' },
  'flow-table-size': { type: 'string', value: 'N', default: '1048576', help: 'connection-table entries (LRU)' },
  'detach-on-exit': { type: 'boolean', default: 'false', help: 'detach the program on exit instead of leaving it forwarding' },
  'log-format': { type: 'string', value: 'json|pretty', default: 'json', help: 'log lines as JSON or for people' },
  help: { type: 'boolean', help: 'print this help' },
} as const satisfies Record<string, FlagSpec>;

export interface RunOptions {
  config: string;
  interface: string;
  xdpMode: 'native' | 'generic' | 'auto';
  pinRoot?: string;
  ringSize: number;
  maxVips: number;
  maxBackends: number;
  flowTableSize: number;
  detachOnExit: boolean;
  logFormat: 'json' | 'pretty';
}

export class UsageError extends Error {}

export function runHelp(): string {
  const rows = Object.entries(RUN_FLAGS).map(([name, f]: [string, FlagSpec]) => {
    const left = `  --${name}${f.value ? ` ${f.value}` : ''}`;
    const dflt = 'default' in f && f.default !== undefined ? ` (default ${f.default})` : '';
    return `${left.padEnd(40)} ${f.help}${dflt}`;
  });
  return `usage: xdir run --config FILE --interface IF [flags]\n\nflags:\n${rows.join('\n')}\n\n` +
    'signals: SIGTERM/SIGINT stop (XDP stays attached unless --detach-on-exit), SIGHUP re-reads the config';
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} ${JSON.stringify(text)} is not a positive integer`);
  return n;
}

/** Parses `xdir run` flags; returns null for --help. Throws UsageError with the fix on bad input. */
export function parseRunArgs(argv: string[]): RunOptions | null {
  const options = Object.fromEntries(Object.entries(RUN_FLAGS).map(([k, f]) => [k, { type: f.type }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: options as never, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}; see 'xdir run --help'`);
  }
  if (values.help) return null;
  const str = (k: keyof typeof RUN_FLAGS): string | undefined => values[k] as string | undefined;
  const config = str('config');
  const ifname = str('interface');
  if (!config) throw new UsageError('--config FILE is required (the YAML file of virtual services)');
  if (!ifname) throw new UsageError('--interface IF is required (the interface facing clients and real servers)');
  const xdpMode = str('xdp-mode') ?? 'auto';
  if (xdpMode !== 'native' && xdpMode !== 'generic' && xdpMode !== 'auto') {
    throw new UsageError(`--xdp-mode ${JSON.stringify(xdpMode)} is not native, generic or auto`);
  }
  const logFormat = str('log-format') ?? 'json';
  if (logFormat !== 'json' && logFormat !== 'pretty') throw new UsageError(`--log-format ${JSON.stringify(logFormat)} is not json or pretty`);
  const pinRoot = str('pin-root');
  return {
    config, interface: ifname, xdpMode,
    ...(pinRoot ? { pinRoot } : {}),
    ringSize: positiveInt('ring-size', str('ring-size') ?? RUN_FLAGS['ring-size'].default),
    maxVips: positiveInt('max-vips', str('max-vips') ?? RUN_FLAGS['max-vips'].default),
    maxBackends: positiveInt('max-backends', str('max-backends') ?? RUN_FLAGS['max-backends'].default),
    flowTableSize: positiveInt('flow-table-size', str('flow-table-size') ?? RUN_FLAGS['flow-table-size'].default),
    detachOnExit: values['detach-on-exit'] === true,
    logFormat,
  };
}

/**
 * INTEGRATION POINT (data path): builds the data path from the options. The lead adds
 * `--dataplane auto|xdp|ipvs` here (IPVS fallback); everything else only sees `Dataplane`.
 */
export async function createDataplane(opts: RunOptions): Promise<Dataplane> {
  const [{ XdpDataplane }, { NetlinkNeighbourResolver }] = await Promise.all([
    import('../dataplane/xdp/xdp-dataplane.js'),
    import('../dataplane/xdp/neighbours-netlink.js'),
  ]);
  return new XdpDataplane({
    interface: opts.interface,
    xdpMode: opts.xdpMode,
    ...(opts.pinRoot ? { pinRoot: opts.pinRoot } : {}),
    ringSize: opts.ringSize,
    maxVips: opts.maxVips,
    maxBackends: opts.maxBackends,
    flowTableSize: opts.flowTableSize,
    neighbours: new NetlinkNeighbourResolver(),
  });
}

/** Something running beside the director that must be stopped with it. */
export interface Stoppable {
  stop(): Promise<void>;
}

/**
 * INTEGRATION POINT (observability): starts what exposes the running director (gRPC
 * `--grpc-listen`, Prometheus `--metrics-listen`). The lead wires these; none yet.
 */
export async function startObservability(_ctx: { opts: RunOptions; dataplane: Dataplane; log: Logger }): Promise<Stoppable[]> {
  return [];
}

export async function main(argv: string[]): Promise<number> {
  let opts: RunOptions | null;
  try {
    opts = parseRunArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`xdir run: ${err.message}`);
    return 2;
  }
  if (!opts) {
    console.log(runHelp());
    return 0;
  }
  process.env.XDIR_LOG_FORMAT = opts.logFormat;
  const [{ logger }, { FileSource }, { Reconciler }] = await Promise.all([
    import('../log.js'), import('../sources/file/file-source.js'), import('../reconciler.js'),
  ]);
  const log = logger('run');
  const ac = new AbortController();
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => { resolve(sig); ac.abort(); });
  });

  const dataplane = await createDataplane(opts);
  const reconciler = new Reconciler({ dataplane });
  const source = new FileSource({ path: opts.config, onState: (s) => reconciler.submit(s) });
  const onHup = () => source.reload();
  let extras: Stoppable[] = [];
  let dataplaneStarted = false;
  try {
    // The config first: a bad file fails before the data path is touched (a running one keeps its state).
    await source.start(ac.signal);
    await dataplane.start(ac.signal);
    dataplaneStarted = true;
    reconciler.start(ac.signal);
    await Promise.race([reconciler.idle(), stopped]);
    extras = await startObservability({ opts, dataplane, log });
  } catch (err) {
    log.error({ err: err instanceof Error ? err.message : String(err) }, 'director failed to start');
    await source.stop();
    await reconciler.stop();
    if (dataplaneStarted) await dataplane.stop({ detach: false }).catch(() => undefined);
    console.error(`xdir run: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  process.on('SIGHUP', onHup);
  if (!ac.signal.aborted) {
    log.info({ interface: opts.interface, config: opts.config, services: reconciler.status.lastResult
      ? reconciler.status.lastResult.servicesAdded + reconciler.status.lastResult.servicesUpdated + reconciler.status.lastResult.servicesUnchanged
      : 0, pid: process.pid }, 'director running');
  }

  const signal = await stopped;
  log.info({ signal, detach: opts.detachOnExit }, opts.detachOnExit
    ? 'stopping; detaching the program' : 'stopping; the program stays attached and the maps pinned');
  process.off('SIGHUP', onHup);
  await source.stop();
  await reconciler.stop();
  for (const e of extras) await e.stop();
  await dataplane.stop({ detach: opts.detachOnExit });
  log.info('stopped');
  return 0;
}
