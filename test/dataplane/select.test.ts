/**
 * Data-path selection on the host kernel (XDP works, IPVS is absent): `auto` picks XDP; a named
 * data path that cannot start, and `auto` when neither can, fail with what is missing. The IPVS
 * side of `auto` (XDP failing, IPVS taking over) runs in the IPVS guest (test/guest/ipvs-suite.ts).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as readline from 'node:readline';
import { NoDataplaneError, createDataplane } from '../../control/dataplane/select.js';
import { deleteNamespaceSync, ipIn, run, waitExit } from '../lib/netns.js';
import { privilegedTest } from '../lib/privileged.js';
import { xdpPassObject } from '../lib/topology.js';

const NS = `xsel-${process.pid}`;
const RUN = `/run/xdir-test/xsel-${process.pid}`;
const BPFFS = join(RUN, 'bpffs');
const CHILD = fileURLToPath(new URL('./select.child.ts', import.meta.url));
const hostHasIpvs = existsSync('/proc/net/ip_vs');

let cleaned = false;
function cleanupSync(): void {
  if (cleaned) return;
  cleaned = true;
  deleteNamespaceSync(NS);
  try { execFileSync('umount', [BPFFS], { stdio: 'ignore' }); } catch { /* not mounted */ }
  rmSync(RUN, { recursive: true, force: true });
}
process.on('exit', cleanupSync);


test.before(async () => {
  if (process.getuid?.() !== 0) return;
  await run('ip', ['netns', 'add', NS]);
  await ipIn(NS, 'link', 'add', 'xs0', 'type', 'veth', 'peer', 'name', 'xs1');
  await ipIn(NS, 'link', 'set', 'xs0', 'up');
  await ipIn(NS, 'link', 'set', 'xs1', 'up');
  mkdirSync(BPFFS, { recursive: true });
  await run('mount', ['-t', 'bpf', 'bpf', BPFFS]);
});

test.after(() => {
  if (process.getuid?.() === 0) cleanupSync();
});

privilegedTest('--dataplane=auto on this kernel picks XDP and attaches it; no fallback reason', async () => {
  const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '--import', 'tsx', CHILD, 'xs0', join(BPFFS, 'xdir')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before reporting`)));
    });
    const got = JSON.parse(line) as { kind: string; fallbackReason: string | null };
    assert.equal(got, { kind: 'xdp', fallbackReason: null });
    const { stdout } = await ipIn(NS, '-d', 'link', 'show', 'dev', 'xs0');
    assert.match(stdout, /prog\/xdp id \d+/, 'the program is attached to the interface');
  } finally {
    child.stdin!.end();
    assert.is(await waitExit(child, 20_000), 0);
  }
  const { stdout } = await ipIn(NS, '-d', 'link', 'show', 'dev', 'xs0');
  assert.not.match(stdout, /prog\/xdp/, 'stop with detach removed it');
});

privilegedTest('--dataplane=auto does not fall back to IPVS while an earlier XDP program is still attached', async () => {
  // The leftover program would keep forwarding from its last maps, ahead of IPVS.
  await ipIn(NS, 'link', 'set', 'dev', 'xs0', 'xdpdrv', 'obj', await xdpPassObject(), 'sec', 'xdp');
  try {
    const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '--import', 'tsx', CHILD, 'xs0', join(BPFFS, 'xdir'), '/nonexistent/director.bpf.o'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise<string>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before reporting`)));
    });
    await waitExit(child, 20_000);
    const got = JSON.parse(line) as { error?: string };
    assert.match(String(got.error), /is still attached to xs0 from an earlier run/);
    assert.match(String(got.error), /ip link set dev xs0 xdp off/);
  } finally {
    await ipIn(NS, 'link', 'set', 'dev', 'xs0', 'xdpdrv', 'off');
  }
});

privilegedTest('--dataplane=ipvs on a kernel without IPVS fails naming CONFIG_IP_VS', async () => {
  if (hostHasIpvs) return; // this host has IPVS after all; the guest suite covers the IPVS side
  try {
    await createDataplane({ dataplane: 'ipvs', ipvs: { ownershipFile: join(RUN, 'ipvs.json') } });
    assert.unreachable('IPVS started on a kernel without IPVS');
  } catch (err) {
    assert.match((err as Error).message, /CONFIG_IP_VS/);
  }
});

privilegedTest('--dataplane=auto with XDP failing and no IPVS says what each one lacks', async () => {
  if (hostHasIpvs) return;
  try {
    await createDataplane({
      dataplane: 'auto',
      xdp: { interface: 'xdir-missing0', pinRoot: join(BPFFS, 'missing') },
      ipvs: { ownershipFile: join(RUN, 'ipvs.json') },
    });
    assert.unreachable('a data path started');
  } catch (err) {
    assert.instance(err, NoDataplaneError);
    const e = err as NoDataplaneError;
    assert.match(e.message, /no data path can start/);
    assert.match(e.reasons.xdp ?? '', /xdir-missing0/);
    assert.match(e.reasons.ipvs ?? '', /CONFIG_IP_VS/);
  }
});

privilegedTest('an unknown --dataplane value is refused with the valid ones', async () => {
  try {
    await createDataplane({ dataplane: 'dpdk' as never });
    assert.unreachable('accepted dpdk');
  } catch (err) {
    assert.match((err as Error).message, /unknown data path 'dpdk'.*auto, xdp, ipvs/);
  }
});

test.run();
