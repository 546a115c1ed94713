/**
 * `xdir run`: the director process. Picks the data path (XDP, or IPVS as the fallback), feeds it
 * from one source (a watched config file, or the Kubernetes API), exposes it over gRPC and
 * Prometheus, and runs until SIGTERM/SIGINT.
 *
 *   source (FileSource | KubeController) --submit--> Reconciler --apply--> Dataplane (XDP | IPVS)
 *                                                                             \--> StatsHub --> gRPC, /metrics
 *
 * On SIGTERM/SIGINT it stops the source and the reconciler and leaves the program attached and the
 * maps pinned (a restarted director adopts them, so established flows survive the restart), unless
 * --detach-on-exit. SIGHUP re-reads the config file.
 */
import { parseArgs } from 'node:util';
import type { Dataplane } from '../dataplane/dataplane.js';
import { DATAPLANE_CHOICES, type DataplaneChoice } from '../dataplane/select.js';
import { defaultPinRoot } from '../dataplane/xdp/pin-root.js';
import { lockInstance, type InstanceLock } from '../instance-lock.js';
import type { XdpDataplaneOptions } from '../dataplane/xdp/xdp-dataplane.js';
import { logger, setLogFormat, type Logger } from '../log.js';
import type { DesiredState } from '../model/types.js';
import {
  OBSERVABILITY_FLAGS, OBSERVABILITY_USAGE, observabilityOptionsFromFlags, type Observability, type ObservabilityOptions,
} from '../observability/index.js';
import { KUBE_FLAGS, type KubeSourceOptions } from '../sources/kube/index.js';

interface FlagSpec {
  type: 'string' | 'boolean';
  default?: string;
  value?: string;
  help: string;
}

/** The director's own flags, with their defaults; parseArgs options and --help both come from here. */
export const RUN_FLAGS = {
  config: { type: 'string', value: 'FILE', help: 'YAML file of virtual services, watched for edits (file mode)' },
  interface: { type: 'string', value: 'IF', help: 'interface the XDP program is attached to and forwards on (required for xdp and auto)' },
  dataplane: { type: 'string', value: 'auto|xdp|ipvs', default: 'auto', help: 'data path; auto = XDP, falling back to IPVS when XDP cannot load or attach' },
  'xdp-mode': { type: 'string', value: 'native|generic|auto', default: 'auto', help: 'XDP attach mode; auto = native, falling back to generic' },
  'pin-root': { type: 'string', value: 'DIR', default: '/sys/fs/bpf/xdir/<interface>', help: 'bpffs directory of the pinned maps' },
  'ring-size': { type: 'string', value: 'N', default: '65537', help: 'Maglev ring slots per VIP (a prime)' },
  'max-vips': { type: 'string', value: 'N', default: '1024', help: 'capacity of the VIP table' },
  'max-backends': { type: 'string', value: 'N', default: '4096', help: 'capacity of the backend table' },
  'flow-table-size': { type: 'string', value: 'N', default: '1048576', help: 'connection-table entries (LRU)' },
  'flow-idle-timeout': { type: 'string', value: 'S', default: '300', help: 'seconds an idle flow keeps its backend' },
  'ipvs-state-file': { type: 'string', value: 'FILE', default: '/run/xdir/ipvs-services.json', help: 'IPVS data path: the list of services this director owns' },
  'detach-on-exit': { type: 'boolean', default: 'false', help: 'detach the program (or delete owned IPVS services) on exit instead of leaving it forwarding' },
  'log-format': { type: 'string', value: 'json|pretty', default: 'json', help: 'log lines as JSON or for people' },
  help: { type: 'boolean', help: 'print this help' },
} as const satisfies Record<string, FlagSpec>;

export type SourceChoice =
  | { kind: 'file'; path: string }
  | { kind: 'kube'; options: Omit<KubeSourceOptions, 'kubeConfig' | 'signal' | 'log'> };

export interface RunOptions {
  source: SourceChoice;
  dataplane: DataplaneChoice;
  /** Absent only with --dataplane ipvs. */
  interface?: string;
  xdpMode: 'native' | 'generic' | 'auto';
  pinRoot?: string;
  ringSize: number;
  maxVips: number;
  maxBackends: number;
  flowTableSize: number;
  flowIdleTimeoutS: number;
  ipvsStateFile: string;
  detachOnExit: boolean;
  logFormat: 'json' | 'pretty';
  observability: Pick<ObservabilityOptions, 'grpc' | 'metrics' | 'stats'>;
}

export class UsageError extends Error {}

export function runHelp(): string {
  const rows = Object.entries(RUN_FLAGS).map(([name, f]: [string, FlagSpec]) => {
    const left = `  --${name}${f.value ? ` ${f.value}` : ''}`;
    const dflt = 'default' in f && f.default !== undefined ? ` (default ${f.default})` : '';
    return `${left.padEnd(40)} ${f.help}${dflt}`;
  });
  const kube = KUBE_FLAGS.map((f) => `${`  ${f.flag}${f.value ? ` ${f.value}` : ''}`.padEnd(40)} ${f.help}`);
  return 'usage: xdir run (--config FILE | --kubeconfig PATH | --in-cluster) [--interface IF] [flags]\n\n' +
    `director:\n${rows.join('\n')}\n\nkubernetes source:\n${kube.join('\n')}\n\n${OBSERVABILITY_USAGE}\n\n` +
    'signals: SIGTERM/SIGINT stop (XDP stays attached unless --detach-on-exit), SIGHUP re-reads the config file';
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} ${JSON.stringify(text)} is not a positive integer`);
  return n;
}

/** parseArgs options of every flag: the director's, the Kubernetes source's and observability's. */
function parseOptions(): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const [k, f] of Object.entries(RUN_FLAGS)) options[k] = { type: f.type };
  for (const [k, f] of Object.entries(OBSERVABILITY_FLAGS)) options[k] = { type: f.type };
  for (const f of KUBE_FLAGS) {
    options[f.flag.slice(2)] = f.value ? { type: 'string', multiple: f.flag === '--ingress-nginx-vip' } : { type: 'boolean' };
  }
  return options;
}

/** The Kubernetes source's options from its flags; null when no Kubernetes flag selects it. */
function kubeOptions(values: Record<string, unknown>): SourceChoice | null {
  if (values.kubeconfig === undefined && values['in-cluster'] !== true) return null;
  const options: Record<string, unknown> = {};
  const ingress: Record<string, unknown> = {};
  for (const f of KUBE_FLAGS) {
    const v = values[f.flag.slice(2)];
    if (v === undefined || f.flag === '--in-cluster') continue;
    const [head, sub] = f.option.split('.') as [string, string | undefined];
    if (sub) ingress[sub] = v;
    else options[head] = v;
  }
  if (options.nodeAddressType !== undefined && options.nodeAddressType !== 'InternalIP' && options.nodeAddressType !== 'ExternalIP') {
    throw new UsageError(`--node-address-type ${JSON.stringify(options.nodeAddressType)} is not InternalIP or ExternalIP`);
  }
  if (Object.keys(ingress).length > 0) {
    if (!ingress.vips) throw new UsageError('the --ingress-nginx-* flags need --ingress-nginx-vip IP (the VIP that fronts the nginx nodes)');
    options.ingressNginx = ingress;
  }
  return { kind: 'kube', options: options as SourceChoice extends { kind: 'kube'; options: infer O } ? O : never };
}

/** Parses `xdir run` flags; returns null for --help. Throws UsageError with the fix on bad input. */
export function parseRunArgs(argv: string[]): RunOptions | null {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args: argv, options: parseOptions() as never, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}; see 'xdir run --help'`);
  }
  if (values.help) return null;
  const str = (k: string): string | undefined => values[k] as string | undefined;

  const kube = kubeOptions(values);
  const config = str('config');
  if (config && kube) throw new UsageError('give either --config FILE or a Kubernetes source (--kubeconfig/--in-cluster), not both');
  if (!config && !kube) {
    throw new UsageError('a source is required: --config FILE (the YAML file of virtual services) or --kubeconfig PATH / --in-cluster');
  }
  const dataplane = (str('dataplane') ?? RUN_FLAGS.dataplane.default) as DataplaneChoice;
  if (!DATAPLANE_CHOICES.includes(dataplane)) {
    throw new UsageError(`--dataplane ${JSON.stringify(dataplane)} is not ${DATAPLANE_CHOICES.join(', ')}`);
  }
  const ifname = str('interface');
  if (!ifname && dataplane !== 'ipvs') {
    throw new UsageError('--interface IF is required (the interface facing clients and real servers); only --dataplane ipvs can do without');
  }
  const xdpMode = str('xdp-mode') ?? 'auto';
  if (xdpMode !== 'native' && xdpMode !== 'generic' && xdpMode !== 'auto') {
    throw new UsageError(`--xdp-mode ${JSON.stringify(xdpMode)} is not native, generic or auto`);
  }
  const logFormat = str('log-format') ?? 'json';
  if (logFormat !== 'json' && logFormat !== 'pretty') throw new UsageError(`--log-format ${JSON.stringify(logFormat)} is not json or pretty`);
  let observability: RunOptions['observability'];
  try {
    observability = observabilityOptionsFromFlags(values as never);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const pinRoot = str('pin-root');
  const num = (k: keyof typeof RUN_FLAGS & string): number =>
    positiveInt(k, str(k) ?? (RUN_FLAGS[k] as FlagSpec).default!);
  return {
    source: config ? { kind: 'file', path: config } : kube!,
    dataplane,
    ...(ifname ? { interface: ifname } : {}),
    xdpMode,
    ...(pinRoot ? { pinRoot } : {}),
    ringSize: num('ring-size'),
    maxVips: num('max-vips'),
    maxBackends: num('max-backends'),
    flowTableSize: num('flow-table-size'),
    flowIdleTimeoutS: num('flow-idle-timeout'),
    ipvsStateFile: str('ipvs-state-file') ?? RUN_FLAGS['ipvs-state-file'].default,
    detachOnExit: values['detach-on-exit'] === true,
    logFormat,
    observability,
  };
}

/** The XDP data path's settings from the run options (also used by test drivers that run the director their own way). */
export async function xdpDataplaneOptions(opts: Pick<RunOptions, 'xdpMode' | 'pinRoot' | 'ringSize' | 'maxVips' | 'maxBackends' | 'flowTableSize'>
  & { interface: string; flowIdleTimeoutS?: number }): Promise<XdpDataplaneOptions> {
  const { NetlinkNeighbourResolver } = await import('../dataplane/xdp/neighbours-netlink.js');
  return {
    interface: opts.interface,
    xdpMode: opts.xdpMode,
    ...(opts.pinRoot ? { pinRoot: opts.pinRoot } : {}),
    ringSize: opts.ringSize,
    maxVips: opts.maxVips,
    maxBackends: opts.maxBackends,
    flowTableSize: opts.flowTableSize,
    ...(opts.flowIdleTimeoutS ? { flowIdleTimeoutS: opts.flowIdleTimeoutS } : {}),
    neighbours: new NetlinkNeighbourResolver(),
  };
}

/** A running source of desired states. */
interface RunningSource {
  /** Re-read the source now (SIGHUP); a no-op where it means nothing. */
  reload(): void;
  stop(): Promise<void>;
}

/**
 * Starts the source; resolves once its first desired state was handed to `submit` (file: the
 * file parsed and validated; Kubernetes: every informer synced). A bad config file rejects here,
 * before the data path is touched.
 */
async function startSource(
  choice: SourceChoice, submit: (s: DesiredState) => void, onRejected: () => void, signal: AbortSignal,
): Promise<RunningSource> {
  if (choice.kind === 'file') {
    const { FileSource } = await import('../sources/file/file-source.js');
    const source = new FileSource({ path: choice.path, onState: submit, onRejected });
    await source.start(signal);
    return { reload: () => source.reload(), stop: () => source.stop() };
  }
  const { startKubeSource } = await import('../sources/kube/index.js');
  const controller = startKubeSource({ ...choice.options, signal });
  controller.onState(submit);
  await Promise.race([
    controller.whenSynced(),
    new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('stopped before the Kubernetes caches synced')), { once: true })),
  ]);
  return { reload: () => controller.resync(), stop: () => controller.stop() };
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
  setLogFormat(opts.logFormat);
  const [{ createDataplane }, { Reconciler }, { startObservability }] = await Promise.all([
    import('../dataplane/select.js'), import('../reconciler.js'), import('../observability/index.js'),
  ]);
  const log: Logger = logger('run');
  const ac = new AbortController();
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => { resolve(sig); ac.abort(); });
  });

  let dataplane: Dataplane | undefined;
  let fallbackReason: string | null = null;
  const reconciler = new Reconciler({
    dataplane: { apply: (s) => dataplane!.apply(s), repair: async () => { await dataplane!.repair?.(); } },
  });
  let source: RunningSource | undefined;
  let rejectedInputs = 0;
  let observability: Observability | undefined;
  const locks: InstanceLock[] = [];
  const shutdown = async (detach: boolean): Promise<void> => {
    await source?.stop();
    await reconciler.stop();
    await observability?.stop();
    await dataplane?.stop({ detach });
    for (const l of locks) l.release();
  };
  // Installed before anything starts: Node's default for SIGHUP is to exit.
  const onHup = () => source?.reload();
  process.on('SIGHUP', onHup);
  try {
    // Before anything touches a data path: a second director on the same one must not start.
    if (opts.dataplane !== 'ipvs' && opts.interface) {
      locks.push(lockInstance('the XDP pin root', opts.pinRoot ?? defaultPinRoot(opts.interface)));
    }
    if (opts.dataplane !== 'xdp') locks.push(lockInstance('the IPVS state file', opts.ipvsStateFile));
    // Endpoints first: /healthz answers while the source syncs (a Kubernetes API server may be slow
    // or down at boot), and /readyz and grpc.health.v1 say "not ready" until the first apply lands.
    observability = await startObservability({
      dataplane: {
        get kind() { return dataplane?.kind ?? (opts!.dataplane === 'ipvs' ? 'ipvs' : 'xdp'); },
        readStats: () => dataplane!.readStats(), // polled only once the data path exists (hub.start below)
        services: () => dataplane?.services() ?? [],
      },
      ...opts.observability,
      readiness: () => reconciler.status.lastResult !== undefined,
      fallbackReason: () => fallbackReason ?? undefined,
      controlPlane: () => ({
        applies: reconciler.status.applies, applyFailures: reconciler.status.failures,
        lastAppliedAtMs: reconciler.status.lastAppliedAtMs, rejectedInputs,
      }),
      signal: ac.signal,
      poll: false,
    });
    // The source before the data path: a bad config file fails before the data path is touched (a running one keeps its state).
    source = await startSource(opts.source, (s) => reconciler.submit(s), () => { rejectedInputs++; }, ac.signal);
    if (opts.dataplane !== 'ipvs' && !opts.pinRoot) {
      // A fresh host may not have bpffs mounted yet; mount it rather than fail (needs root, else the load says how).
      const { ensureBpffs } = await import('../bpf/bpffs.js');
      try { ensureBpffs(); } catch (err) { log.warn({ err: (err as Error).message }, 'cannot mount bpffs at /sys/fs/bpf'); }
    }
    const selected = await createDataplane({
      dataplane: opts.dataplane,
      ...(opts.interface ? { xdp: await xdpDataplaneOptions({ ...opts, interface: opts.interface }) } : {}),
      ipvs: { ownershipFile: opts.ipvsStateFile },
      signal: ac.signal,
    });
    dataplane = selected.dataplane;
    fallbackReason = selected.fallbackReason;
    observability.hub.start(ac.signal);
    reconciler.start(ac.signal);
    await Promise.race([reconciler.idle(), stopped]);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.error({ err: message }, 'director failed to start');
    await shutdown(false).catch(() => undefined);
    console.error(`xdir run: ${message}`);
    return 1;
  }
  if (!ac.signal.aborted) {
    log.info({ dataplane: dataplane.kind, fallbackReason, interface: opts.interface, source: opts.source.kind,
      services: dataplane.services().length, pid: process.pid }, 'director running');
  }

  const signal = await stopped;
  log.info({ signal, detach: opts.detachOnExit }, opts.detachOnExit
    ? 'stopping; detaching the data path' : 'stopping; the data path stays in place (program attached, maps pinned)');
  process.off('SIGHUP', onHup);
  await shutdown(opts.detachOnExit);
  log.info('stopped');
  return 0;
}
