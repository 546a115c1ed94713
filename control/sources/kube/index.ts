/**
 * The Kubernetes source for `xdir run --kubeconfig PATH` (or in-cluster): a KubeController that
 * emits desired states. KUBE_FLAGS lists the command-line flags and the option each one sets.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import { logger, type Logger } from '../../log.js';
import { canonicalAddress } from '../../model/address.js';
import { DEFAULT_LOAD_BALANCER_CLASS, type IngressNginxOptions } from '../../model/kube-desired.js';
import { CONTROLLER_DEFAULTS, KubeController, type KubeControllerOptions } from './controller.js';

export { API_CALLS } from './api-calls.js';
export { KubeController, type PoolUsageReport } from './controller.js';

export interface KubeSourceOptions {
  /** Path of a kubeconfig. Absent: the in-cluster service account when running in a pod, else $KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string;
  /** A ready KubeConfig (tests); wins over `kubeconfig`. */
  kubeConfig?: KubeConfig;
  /** spec.loadBalancerClass of the Services we serve (default xdir.io/director). */
  loadBalancerClass?: string;
  /** Also serve LoadBalancer Services that name no class. */
  classlessServices?: boolean;
  /** Which node address is the real server for node backends (default InternalIP). */
  nodeAddressType?: 'InternalIP' | 'ExternalIP';
  /** Serve ingress-nginx's tcp/udp-services ConfigMaps on these VIPs (none: off). */
  ingressNginx?: Partial<IngressNginxOptions> & { vips: string[] };
  /** Name in the allocation Lease and Events (default: hostname). */
  identity?: string;
  /** Namespace of the allocation Lease (default: the pod's namespace in-cluster, else xdir-system). */
  leaseNamespace?: string;
  /** Test knobs. */
  leaseDurationS?: number;
  leaseRetryMs?: number;
  resyncMs?: number;
  backoff?: KubeControllerOptions['backoff'];
  queue?: KubeControllerOptions['queue'];
  signal?: AbortSignal;
  log?: Logger;
}

/** Flags for control/commands/run.ts: `flag` -> the KubeSourceOptions field it sets. */
export const KUBE_FLAGS = [
  { flag: '--kubeconfig', value: 'PATH', option: 'kubeconfig', help: 'kubeconfig to use; without it: in-cluster service account, else $KUBECONFIG' },
  { flag: '--in-cluster', value: '', option: 'kubeconfig', help: 'use the pod service account (the default when KUBERNETES_SERVICE_HOST is set)' },
  { flag: '--lb-class', value: 'CLASS', option: 'loadBalancerClass', help: `spec.loadBalancerClass to serve (default ${DEFAULT_LOAD_BALANCER_CLASS})` },
  { flag: '--classless-services', value: '', option: 'classlessServices', help: 'also serve LoadBalancer Services without a loadBalancerClass' },
  { flag: '--node-address-type', value: 'InternalIP|ExternalIP', option: 'nodeAddressType', help: 'node address used as real server (default InternalIP)' },
  { flag: '--ingress-nginx-vip', value: 'IP', option: 'ingressNginx.vips', help: 'VIP fronting hostNetwork ingress-nginx (repeatable); enables the tcp/udp ConfigMaps' },
  { flag: '--ingress-nginx-namespace', value: 'NS', option: 'ingressNginx.namespace', help: 'default ingress-nginx' },
  { flag: '--ingress-nginx-tcp-configmap', value: 'NAME', option: 'ingressNginx.tcpConfigMap', help: 'default tcp-services' },
  { flag: '--ingress-nginx-udp-configmap', value: 'NAME', option: 'ingressNginx.udpConfigMap', help: 'default udp-services' },
  { flag: '--ingress-nginx-service', value: 'NAME', option: 'ingressNginx.controllerService', help: 'the controller Service whose endpoints name the nginx nodes (default ingress-nginx-controller)' },
  { flag: '--identity', value: 'NAME', option: 'identity', help: 'instance name for the allocation Lease and Events (default hostname; set from spec.nodeName in the DaemonSet)' },
  { flag: '--lease-namespace', value: 'NS', option: 'leaseNamespace', help: 'namespace of the allocation Lease (default: own namespace, else xdir-system)' },
] as const;

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (err) {
    throw new Error(`cannot load Kubernetes configuration from ${path ?? 'the environment'}: ${(err as Error).message}; pass --kubeconfig PATH or run in a pod with a service account`);
  }
  if (!kc.getCurrentCluster()) {
    throw new Error(`Kubernetes configuration ${path ?? '(default)'} names no current cluster; set current-context or pass --kubeconfig`);
  }
  return kc;
}

function ownNamespace(): string | undefined {
  try { return readFileSync(SA_NAMESPACE_FILE, 'utf8').trim() || undefined; } catch { return undefined; }
}

/** Resolves options to the controller's, checking what a user could get wrong. */
export function controllerOptions(opts: KubeSourceOptions): KubeControllerOptions {
  let ingressNginx: IngressNginxOptions | undefined;
  if (opts.ingressNginx && opts.ingressNginx.vips.length > 0) {
    const vips = opts.ingressNginx.vips.map((v) => {
      const c = canonicalAddress(v);
      if (!c) throw new Error(`--ingress-nginx-vip ${v} is not an IP address`);
      return c;
    });
    ingressNginx = {
      namespace: opts.ingressNginx.namespace ?? 'ingress-nginx',
      tcpConfigMap: opts.ingressNginx.tcpConfigMap ?? 'tcp-services',
      udpConfigMap: opts.ingressNginx.udpConfigMap ?? 'udp-services',
      controllerService: opts.ingressNginx.controllerService ?? 'ingress-nginx-controller',
      vips,
    };
  }
  const nodeAddressType = opts.nodeAddressType ?? CONTROLLER_DEFAULTS.nodeAddressType;
  if (nodeAddressType !== 'InternalIP' && nodeAddressType !== 'ExternalIP') {
    throw new Error(`--node-address-type ${String(nodeAddressType)} must be InternalIP or ExternalIP`);
  }
  return {
    loadBalancerClass: opts.loadBalancerClass ?? CONTROLLER_DEFAULTS.loadBalancerClass,
    classlessIsOurs: opts.classlessServices ?? CONTROLLER_DEFAULTS.classlessIsOurs,
    nodeAddressType,
    ingressNginx,
    identity: opts.identity ?? hostname(),
    leaseNamespace: opts.leaseNamespace ?? ownNamespace() ?? 'xdir-system',
    leaseName: CONTROLLER_DEFAULTS.leaseName,
    leaseDurationS: opts.leaseDurationS ?? CONTROLLER_DEFAULTS.leaseDurationS,
    leaseRetryMs: opts.leaseRetryMs ?? CONTROLLER_DEFAULTS.leaseRetryMs,
    resyncMs: opts.resyncMs ?? CONTROLLER_DEFAULTS.resyncMs,
    backoff: opts.backoff ?? CONTROLLER_DEFAULTS.backoff,
    queue: opts.queue ?? CONTROLLER_DEFAULTS.queue,
  };
}

/**
 * Starts watching the cluster. Use `onState()` for desired states (the first one only after every
 * informer synced), `whenSynced()`, `poolUsage()`, and `stop()` (or abort `signal`).
 */
export function startKubeSource(opts: KubeSourceOptions = {}): KubeController {
  const kc = opts.kubeConfig ?? loadKubeConfig(opts.kubeconfig);
  const controller = new KubeController(kc, controllerOptions(opts), opts.log ?? logger('kube'));
  controller.start(opts.signal);
  return controller;
}
