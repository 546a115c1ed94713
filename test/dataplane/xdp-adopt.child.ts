/**
 * Child of xdp-dataplane.test.ts, run without CAP_SYS_ADMIN (capsh --drop) the way the DaemonSet
 * runs the director: adopts the pinned maps at PIN_ROOT, applies the desired state given as JSON,
 * prints {result, error} as one JSON line, and stops leaving everything in place.
 * Usage: xdp-adopt.child.ts PIN_ROOT RING_SIZE DESIRED_JSON
 */
import { XdpDataplane } from '../../control/dataplane/xdp/xdp-dataplane.js';

const [pinRoot, ring, desired] = process.argv.slice(2) as [string, string, string];
const dp = new XdpDataplane({
  interface: 'lo', attach: false, pinRoot, ringSize: Number(ring), maxVips: 16, maxBackends: 64, flowTableSize: 4096,
});
try {
  await dp.start();
  const result = await dp.apply(JSON.parse(desired));
  process.stdout.write(`${JSON.stringify({ result })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
} finally {
  await dp.stop();
}
