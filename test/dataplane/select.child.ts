/**
 * Child of select.test.ts, run with `ip netns exec NS` so that XDP attaches to an interface of a
 * namespace the test created. Starts `--dataplane=auto`, prints one JSON line {kind, fallbackReason},
 * waits for stdin to close, then stops with detach.
 * Usage: select.child.ts IFNAME PIN_ROOT
 */
import { createDataplane } from '../../control/dataplane/select.js';

const [ifname, pinRoot] = process.argv.slice(2) as [string, string];
const selected = await createDataplane({ dataplane: 'auto', xdp: { interface: ifname, pinRoot, xdpMode: 'native' } });
process.stdout.write(`${JSON.stringify({ kind: selected.dataplane.kind, fallbackReason: selected.fallbackReason })}\n`);
process.stdin.resume();
await new Promise((resolve) => process.stdin.once('end', resolve));
await selected.dataplane.stop({ detach: true });
