/** `xdir status` and `xdir top` against a director API serving a fake data path. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { main as status } from '../../control/commands/status.js';
import { main as top } from '../../control/commands/top.js';
import { startGrpcServer, type RunningGrpcServer } from '../../control/observability/grpc/server.js';
import { StatsHub } from '../../control/observability/stats-hub.js';
import { FakeDataplane } from './fake-dataplane.js';
import { tempDir, waitFor } from './grpc-helpers.js';

const tmp = tempDir('xdir-status-');
const dp = new FakeDataplane();
const web = dp.addService('198.18.0.10', 80, 'tcp', { '198.18.1.1': 3, '198.18.1.2': 0 });
dp.addService('fd00::10', 53, 'udp', { 'fd00::1:1': 1 }, ['fd00::1:1']);
const hub = new StatsHub({ dataplane: dp, minIntervalMs: 100 });
let server: RunningGrpcServer;
const sock = `unix:${join(tmp.dir, 'xdir.sock')}`;

test.before(async () => { server = await startGrpcServer({ hub, dataplane: dp }, { address: sock }); });
test.after(async () => { hub.stop(); await server.stop(); tmp.cleanup(); });

function capture(): { out: () => string; stream: { write(s: string): boolean } } {
  let text = '';
  return { out: () => text, stream: { write: (s: string) => { text += s; return true; } } };
}

test('xdir status prints services, backends with weight and state, counters and drops', async () => {
  dp.forward(web, '198.18.1.1', 1234, 100);
  dp.drop('drop-fragment', 5);
  dp.advance(1000);
  await hub.tick();
  const out = capture();
  const err = capture();
  const code = await status(['--grpc', sock], { stdout: out.stream as never, stderr: err.stream as never });
  assert.is(code, 0, err.out());
  const text = out.out();
  assert.match(text, /^data path: xdp\n/);
  const line = (start: string): string => text.split('\n').find((l) => l.trimStart().startsWith(start)) ?? '';
  assert.match(line('tcp/198.18.0.10:80'), /mh\s+2 backends\s+1234\s+123kB$/);
  assert.match(line('198.18.1.1'), /\s3\s+active\s+1234\s+123kB$/);
  assert.match(line('198.18.1.2'), /\s0\s+draining\s+0\s+0B$/);
  assert.match(line('udp/[fd00::10]:53'), /1 backend\s/);
  assert.match(line('fd00::1:1'), /mac-unresolved/);
  assert.match(text, /\ndrops: 5 packets \(drop-fragment 5\)\n/);
  assert.match(line('forwarded'), /1234\s+123kB$/);
});

test('xdir status --vip filters, --json gives the raw answers', async () => {
  const out = capture();
  const code = await status(['--grpc', sock, '--vip', 'fd00::10', '--json'], { stdout: out.stream as never, stderr: out.stream as never });
  assert.is(code, 0, out.out());
  const j = JSON.parse(out.out());
  assert.equal(j.services.services.map((s: { key: string }) => s.key), ['udp/[fd00::10]:53']);
  assert.equal(j.snapshot.services.map((s: { key: string }) => s.key), ['udp/[fd00::10]:53']);
});

test('xdir status without a director says what to do', async () => {
  const err = capture();
  const code = await status(['--grpc', `unix:${join(tmp.dir, 'none.sock')}`], { stdout: err.stream as never, stderr: err.stream as never });
  assert.is(code, 1);
  assert.match(err.out(), /cannot reach the director at unix:.*none\.sock.*Is 'xdir run' running\?/);
});

test('xdir top prints frames with rates when stdout is not a terminal', async () => {
  const out = capture();
  const err = capture();
  const stdin = new PassThrough();
  const done = top(['--grpc', sock, '--interval-ms', '100', '--frames', '3'], {
    stdout: out.stream as never, stderr: err.stream as never, stdin: stdin as never,
  });
  // The first frame comes at once (the latest reading); then one per reading.
  await waitFor('the top subscriber', () => hub.counts().subscribers === 1);
  for (let i = 0; i < 2; i++) {
    dp.forward(web, '198.18.1.1', 50, 125);
    dp.advance(100);
    await hub.tick();
    await waitFor('the frame', () => out.out().split('xdir top —').length - 1 >= i + 2);
  }
  assert.is(await done, 0, err.out());
  const frames = out.out().split('xdir top —').slice(1);
  assert.is(frames.length, 3);
  assert.not.match(out.out(), /\x1b\[/, 'no escape codes off a terminal');
  const last = frames[2]!;
  assert.match(last, /tcp\/198\.18\.0\.10:80\s+500pps\s+500kbps\s+1334/);
  assert.match(last, /198\.18\.1\.1\s+active w3\s+500pps/);
  assert.match(last, /drop-fragment\s+0pps\s+5/);
  await waitFor('top to unsubscribe', () => hub.counts().subscribers === 0);
});

test.run();
