/**
 * A director with its observability API, run inside a topology's director namespace by
 * grpc-traffic.test.ts: the real XDP data path attached to eth0, the services of argv[2] (JSON)
 * applied, and startObservability() serving gRPC on a unix socket (reachable from the test's
 * namespace, as a socket is a file). Prints `ready` once serving; SIGTERM stops and detaches.
 */
import { XdpDataplane } from '../../control/dataplane/xdp/xdp-dataplane.js';
import type { DesiredState } from '../../control/model/types.js';
import { startObservability } from '../../control/observability/index.js';

interface ChildConfig {
  interface: string;
  pinRoot: string;
  socket: string;
  desired: DesiredState;
}

const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
const dataplane = new XdpDataplane({
  interface: cfg.interface, pinRoot: cfg.pinRoot, xdpMode: 'native', ringSize: 4099, flowTableSize: 65536, macRefreshMs: 0,
});
await dataplane.start();
await dataplane.apply(cfg.desired);
const obs = await startObservability({
  dataplane, readiness: () => true, grpc: { address: `unix:${cfg.socket}` }, metrics: false,
  stats: { minIntervalMs: 100, baseIntervalMs: 1000 },
});
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void obs.stop().then(() => dataplane.stop({ detach: true })).then(() => process.exit(0));
});
