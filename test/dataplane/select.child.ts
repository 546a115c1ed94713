/**
 * Child of select.test.ts, run with `ip netns exec NS` so that XDP attaches to an interface of a
 * namespace the test created. Starts `--dataplane=auto`, prints one JSON line {kind, fallbackReason}
 * (or {error} when no data path starts), waits for stdin to close, then stops with detach.
 * Usage: select.child.ts IFNAME PIN_ROOT [OBJECT_PATH]
 */
import { createDataplane } from '../../control/dataplane/select.js';

const [ifname, pinRoot, objectPath] = process.argv.slice(2) as [string, string, string | undefined];
let selected;
try {
  selected = await createDataplane({
    dataplane: 'auto', xdp: { interface: ifname, pinRoot, xdpMode: 'native', ...(objectPath ? { objectPath } : {}) },
  });
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
  process.exit(0);
}
process.stdout.write(`${JSON.stringify({ kind: selected.dataplane.kind, fallbackReason: selected.fallbackReason })}\n`);
process.stdin.resume();
await new Promise((resolve) => process.stdin.once('end', resolve));
await selected.dataplane.stop({ detach: true });
