/**
 * The flow cache (bpf/flow_cache.h) trusts an entry for XDIR_FLOW_CACHE_JIFFIES, which is 0.5 s on
 * an HZ = 100 kernel, and cache hits never refresh the connection table's last_seen_ns. An active
 * flow must still never look idle to `flows`: if it did, the slow path would re-pick it through
 * the current ring, and after a ring change the connection would move to another real server.
 * This runs the worst case on any kernel: a build whose window is 0.5 s at this kernel's HZ (as on
 * HZ = 100), the shortest idle timeout the cache runs with (2 s), a ring swap, then a packet every
 * 5 ms for 3 s: every one of them must reach the flow's first backend.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { privilegedTest } from '../lib/privileged.js';
import { TCP_FLAGS, frame, frameMacs } from '../lib/packets.js';
import { TestDirector, XDP, reasonDelta } from './director-harness.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIRECTOR_MAC = '02:d1:00:00:00:01';
const VIP = '198.18.0.10';
const BACKENDS = [{ address: '198.18.2.1', mac: '02:be:00:00:00:00' }, { address: '198.18.2.2', mac: '02:be:00:00:00:01' }];
const dir = mkdtempSync(join(tmpdir(), 'xdir-cache-window-'));

/** CONFIG_HZ of the running kernel, from its config (/proc/config.gz or /boot/config-*). */
function kernelHz(): number {
  let text = '';
  if (existsSync('/proc/config.gz')) text = gunzipSync(readFileSync('/proc/config.gz')).toString('latin1');
  else if (existsSync(`/boot/config-${release()}`)) text = readFileSync(`/boot/config-${release()}`, 'latin1');
  const m = /^CONFIG_HZ=(\d+)$/m.exec(text);
  if (!m) throw new Error('cannot read CONFIG_HZ (no /proc/config.gz or /boot/config-$(uname -r)); the test needs it to size the window');
  return Number(m[1]);
}

/** bpf/director.bpf.c built with a cache window of 0.5 s at this kernel's HZ. */
function buildHalfSecondWindow(): string {
  const out = join(dir, 'director-window.bpf.o');
  execFileSync(process.env.CLANG ?? 'clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86',
    `-DXDIR_FLOW_CACHE_JIFFIES=${Math.round(kernelHz() / 2)}`, '-I', join(ROOT, 'bpf'), '-I', '/usr/include/x86_64-linux-gnu',
    '-c', join(ROOT, 'bpf/director.bpf.c'), '-o', out]);
  return out;
}

function ack(sport: number, flags: number = TCP_FLAGS.ACK): Buffer {
  return frame({
    srcMac: '02:c1:00:00:00:01', dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: '198.18.1.1', dst: VIP },
    l4: { kind: 'tcp', sport, dport: 80, flags, payload: Buffer.from('x') },
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

privilegedTest('with a 0.5 s cache window and a 2 s idle timeout, an active flow keeps its backend across a ring swap', async () => {
  // One CPU: the cache is per CPU, and a thread that moved between CPUs would visit the slow path
  // (and refresh last_seen) whenever either CPU's entry aged out, which hides the worst case.
  execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const d = TestDirector.open({ objectPath: buildHalfSecondWindow(), flowIdleTimeoutNs: 2_000_000_000n });
  try {
    BACKENDS.forEach((b, id) => d.setBackend(id, b.address, b.mac));
    d.addVip({ vip: VIP, port: 80, protocol: 'tcp' }, 0);
    d.setRing(0, 0);
    const syn = d.run(ack(47000, TCP_FLAGS.SYN));
    assert.is(syn.action, XDP.TX);
    assert.is(frameMacs(syn.data).dst, BACKENDS[0]!.mac);
    d.setRing(0, 1); // every new pick now lands on backend 1
    const before = d.reasons();
    const moved: number[] = [];
    const started = Date.now();
    let sent = 0;
    // Bounded: 600 packets at most, over about 3 s (the timers only add to the spacing).
    while (sent < 600 && Date.now() - started < 3_000) {
      const out = d.run(ack(47000));
      if (out.action !== XDP.TX || frameMacs(out.data).dst !== BACKENDS[0]!.mac) moved.push(Date.now() - started);
      sent++;
      await sleep(5);
    }
    assert.ok(sent > 100, `only ${sent} packets were sent`);
    assert.equal(moved, [], `packets left the flow's backend at these ms after the swap: ${moved.slice(0, 10).join(', ')}`);
    assert.is(reasonDelta(before, d.reasons())['flow-new'] ?? 0, 0, 'the flow was never picked again');

    // Counters: cache hits are pending in the flow cache entry and move into the stats maps at
    // each refill (every 0.5 s here). Maps + pending are exact; the maps alone hold what the
    // refills moved (all but the packets since the last one).
    const all = BigInt(sent + 1);
    assert.is(d.vipCounter(0).packets, all, 'the service counted every packet');
    assert.is(d.backendCounter(0).packets, all, 'the backend counted every packet');
    const inMaps = d.mapCounter('vip_stats', 0).packets;
    assert.ok(inMaps > 1n && inMaps <= all, `refills moved pending counts into vip_stats (${inMaps} of ${all})`);
    assert.is(d.mapCounter('backend_stats', 0).packets, inMaps, 'and into backend_stats alike');
  } finally {
    d.close();
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
