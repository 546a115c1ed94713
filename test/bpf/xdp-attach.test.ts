/**
 * XDP attach/replace/detach on a veth pair and the loopback device of a fresh network namespace.
 * The loader runs in child processes under `ip netns exec` (its koffi calls act on the calling
 * process's namespace); `ip -j link` is the independent witness of what is attached.
 */
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { privilegedTest } from '../lib/privileged.js';
import { buildFixture, removeFixtures } from './fixture-build.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const child = fileURLToPath(new URL('./xdp-attach-child.ts', import.meta.url));
const ns = `xdirt-bpf-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });

type Result = { ok?: unknown; error?: string };

/** Runs steps in one child process in the namespace; one result per step. */
function steps(...s: object[]): Result[] {
  const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', child, 'steps',
    buildFixture('loader_fixture'), JSON.stringify(s)], { cwd: root, encoding: 'utf8' });
  return out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Result);
}

function ok<T>(r: Result): T {
  if (r.error !== undefined) assert.unreachable(`step failed: ${r.error}`);
  return r.ok as T;
}

/** What the kernel reports for `dev`, read with iproute2 (not with our code). */
function xdpOf(dev: string): { mode: number; id: number } | null {
  const [link] = JSON.parse(ip('-n', ns, '-j', '-d', 'link', 'show', 'dev', dev)) as { xdp?: { mode: number; prog?: { id: number } } }[];
  return link.xdp ? { mode: link.xdp.mode, id: link.xdp.prog?.id ?? 0 } : null;
}
const IP_XDP_MODE = { native: 1, generic: 2 };

test.before(() => {
  if (process.getuid?.() !== 0) return;
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'add', 'xv0', 'type', 'veth', 'peer', 'name', 'xv1');
    for (const dev of ['xv0', 'xv1', 'lo']) ip('-n', ns, 'link', 'set', dev, 'up');
  } catch (err) {
    ip('netns', 'del', ns);
    throw err;
  }
});

test.after(() => {
  removeFixtures();
  if (process.getuid?.() !== 0) return;
  const existing = ip('netns', 'list');
  if (existing.split('\n').some((l) => l.split(' ')[0] === ns)) ip('netns', 'del', ns);
});

privilegedTest('native attach, query, atomic replace, and the program stays after the process exits', () => {
  const [ids, attached, queried, replaced, after] = steps(
    { op: 'ids' },
    { op: 'attach', ifname: 'xv0', prog: 'A', mode: 'native' },
    { op: 'query', ifname: 'xv0' },
    { op: 'attach', ifname: 'xv0', prog: 'B', mode: 'native' },
    { op: 'query', ifname: 'xv0' },
  );
  const { A, B } = ok<{ A: number; B: number }>(ids);
  assert.is.not(A, B);
  assert.equal(ok(attached), { mode: 'native', fellBack: false });
  assert.equal(ok(queried), { progId: A, mode: 'native' });
  assert.equal(ok(replaced), { mode: 'native', fellBack: false });
  assert.equal(ok(after), { progId: B, mode: 'native' });
  // The child has exited: the kernel still runs B on xv0.
  assert.equal(xdpOf('xv0'), { mode: IP_XDP_MODE.native, id: B });
});

privilegedTest('replacing a running program never leaves the interface without one', async () => {
  steps({ op: 'attach', ifname: 'xv0', prog: 'A', mode: 'native' });
  const poller = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', child, 'poll', 'xv0'],
    { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise<void>((resolve) => poller.stdout.on('data', (d) => {
    out += d;
    if (out.includes('ready')) resolve();
  }));
  const exited = new Promise<void>((resolve) => poller.on('close', () => resolve()));
  try {
    await ready;
    const [flipped] = steps({ op: 'flip', ifname: 'xv0', times: 40 });
    assert.ok(ok<{ progId: number } | null>(flipped));
  } finally {
    poller.stdin.end();
    await exited;
  }
  const report = JSON.parse(out.trim().split('\n').pop()!) as { queries: number; gaps: number; ids: number[] };
  assert.ok(report.queries > 0 && report.ids.length >= 1, JSON.stringify(report));
  if (process.env.XDIR_TEST_VERBOSE) console.error('poller', report);
  assert.is(report.gaps, 0, `the poller saw no program ${report.gaps} times in ${report.queries} queries`);
});

privilegedTest('generic mode, mode conflicts, auto fallback, detach', () => {
  const r = steps(
    { op: 'attach', ifname: 'xv1', prog: 'A', mode: 'generic' },
    { op: 'query', ifname: 'xv1' },
    { op: 'attach', ifname: 'xv1', prog: 'B', mode: 'generic' }, // replace in generic mode
    { op: 'attach', ifname: 'xv1', prog: 'B', mode: 'native' },  // conflicts with generic
    { op: 'attach', ifname: 'xv1', prog: 'A', mode: 'auto' },    // stays generic
    { op: 'ids' },
  );
  const { A, B } = ok<{ A: number; B: number }>(r[5]);
  assert.equal(ok(r[0]), { mode: 'generic', fellBack: false });
  assert.equal(ok(r[1]), { progId: A, mode: 'generic' });
  assert.equal(ok(r[2]), { mode: 'generic', fellBack: false });
  assert.match(r[3].error ?? '', /xv1.*attached in generic mode/);
  assert.match(r[3].error ?? '', /--xdp-mode=generic/);
  assert.equal(ok(r[4]), { mode: 'generic', fellBack: true });
  assert.equal(xdpOf('xv1'), { mode: IP_XDP_MODE.generic, id: A });
  assert.is.not(A, B);

  const d = steps({ op: 'detach', ifname: 'xv1' }, { op: 'query', ifname: 'xv1' }, { op: 'detach', ifname: 'xv1' });
  assert.ok(ok(d[0]));
  assert.is(ok(d[1]), null);
  assert.ok(ok(d[2]), 'detaching nothing is not an error');
  assert.is(xdpOf('xv1'), null);
});

privilegedTest('a device without native XDP (the namespace\'s lo): clear error in native mode, fallback in auto', () => {
  const r = steps(
    { op: 'attach', ifname: 'lo', prog: 'A', mode: 'native' },
    { op: 'attach', ifname: 'lo', prog: 'A', mode: 'auto' },
    { op: 'query', ifname: 'lo' },
    { op: 'attach', ifname: 'nosuchdev0', prog: 'A', mode: 'auto' },
    { op: 'detach', ifname: 'lo' },
  );
  assert.match(r[0].error ?? '', 'cannot attach XDP to lo: driver lacks native XDP');
  assert.match(r[0].error ?? '', 'retry with --xdp-mode=generic');
  assert.equal(ok(r[1]), { mode: 'generic', fellBack: true });
  assert.is(ok<{ mode: string }>(r[2]).mode, 'generic');
  assert.match(r[3].error ?? '', 'no interface named nosuchdev0');
  assert.is(xdpOf('lo'), null);
});

test.run();
