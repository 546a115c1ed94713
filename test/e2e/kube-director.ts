/**
 * The director in Kubernetes mode, run inside a topology's director namespace by
 * test/e2e/kube-e2e.test.ts: kube source -> Reconciler -> XDP data path, wired like `xdir run`
 * (it reuses run.ts's createDataplane). The API server fixture lives in the test process; this
 * process reaches it through a unix socket, proxied from its own loopback (no network involved).
 *
 * Usage: node --import tsx test/e2e/kube-director.ts UNIX_SOCKET INTERFACE PIN_ROOT
 */
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { xdpDataplaneOptions } from '../../control/commands/run.js';
import { XdpDataplane } from '../../control/dataplane/xdp/xdp-dataplane.js';
import { logger } from '../../control/log.js';
import { Reconciler } from '../../control/reconciler.js';
import { startKubeSource } from '../../control/sources/kube/index.js';

const [socketPath, ifname, pinRoot] = process.argv.slice(2);
if (!socketPath || !ifname || !pinRoot) {
  console.error('usage: kube-director.ts UNIX_SOCKET INTERFACE PIN_ROOT');
  process.exit(2);
}
const log = logger('kube-e2e');

const proxy = createServer((client) => {
  const upstream = createConnection(socketPath);
  client.pipe(upstream).pipe(client);
  const close = () => { client.destroy(); upstream.destroy(); };
  client.on('error', close);
  upstream.on('error', close);
});
await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const server = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

const kc = new KubeConfig();
kc.loadFromOptions({
  clusters: [{ name: 'fixture', server, skipTLSVerify: true }],
  users: [{ name: 'fixture', token: 'fixture-token' }],
  contexts: [{ name: 'fixture', cluster: 'fixture', user: 'fixture' }],
  currentContext: 'fixture',
});

const dataplane = new XdpDataplane(await xdpDataplaneOptions({
  interface: ifname, xdpMode: 'native', pinRoot, ringSize: 4099, maxVips: 64, maxBackends: 256, flowTableSize: 65536,
}));
await dataplane.start();
const reconciler = new Reconciler({ dataplane, retryBaseMs: 50 });
reconciler.start();
const source = startKubeSource({
  kubeConfig: kc, identity: 'e2e-director', leaseNamespace: 'xdir-system',
  leaseDurationS: 5, leaseRetryMs: 200, backoff: { minMs: 100, maxMs: 1000 },
});
source.onState((s) => reconciler.submit(s));
await source.whenSynced();
log.info({ server }, 'kube director running');

process.once('SIGTERM', () => {
  void (async () => {
    await source.stop();
    await reconciler.stop();
    await dataplane.stop({ detach: true });
    proxy.close();
    log.info('stopped');
    process.exit(0);
  })();
});
