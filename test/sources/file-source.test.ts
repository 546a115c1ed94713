import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../../control/sources/file/parse.js';
import { ConfigFileError, FileSource } from '../../control/sources/file/file-source.js';
import type { DesiredState } from '../../control/model/types.js';
import { sleep, waitFor } from '../lib/netns.js';

const GOOD = `
defaults:
  weight: 2
services:
  - vip: 198.19.0.10
    port: 80
    protocol: tcp
    backends:
      - address: 198.18.0.21
        weight: 3
        mac: "02:00:00:00:00:21"
      - address: 198.18.0.22
        drain: true
      - 198.18.0.23
  - vip: FD00:19:0::10
    port: "*"
    protocol: udp
    persistence: 60
    backends: []
`;

test('a valid file becomes a canonical DesiredState with defaults, drain, all-ports and origins', () => {
  const r = parseConfig(GOOD, '/etc/xdir.yaml');
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  const [web, dns] = r.state.services;
  assert.equal(web!.backends, [
    { address: '198.18.0.21', weight: 3, mac: '02:00:00:00:00:21' },
    { address: '198.18.0.22', weight: 0 },
    { address: '198.18.0.23', weight: 2 },
  ]);
  assert.is(web!.scheduler, 'mh');
  assert.is(web!.origin, 'file:/etc/xdir.yaml:5');
  assert.is(dns!.vip, 'fd00:19::10');
  assert.is(dns!.port, 0);
  assert.is(dns!.protocol, 'udp');
  assert.is(dns!.persistence, 60);
  assert.equal(dns!.backends, []);
});

function errorsOf(text: string): string[] {
  const r = parseConfig(text, 'x.yaml');
  assert.not.ok(r.ok, 'expected the file to be rejected');
  return r.ok ? [] : r.errors.map((e) => `${e.line}: ${e.message}`);
}

test('YAML syntax errors carry their line', () => {
  const errs = errorsOf('services:\n  - vip: 198.19.0.10\n    port: [80\n');
  assert.ok(errs.length > 0);
  assert.match(errs[0]!, /^\d+: YAML syntax/);
});

test('structure errors name the line and the key', () => {
  const errs = errorsOf(`services:
  - vip: 198.19.0.10
    port: 80
    protocl: tcp
    backends:
      - address: 198.18.0.21
        wieght: 1
`);
  assert.ok(errs.some((e) => /^4: unknown key `protocl`/.test(e)), errs.join('\n'));
  assert.ok(errs.some((e) => /^7: unknown key `wieght`/.test(e)), errs.join('\n'));
});

test('value errors are reported at their service line with the reason, and reject the whole file', () => {
  const errs = errorsOf(`services:
  - vip: 198.19.0.10
    port: 80
    backends: [198.18.0.21]
  - vip: 198.19.0.300
    port: 80
    backends: [198.18.0.21]
  - vip: 198.19.0.11
    port: 70000
    backends: [fd00:18::21]
`);
  assert.is(errs.length, 2, errs.join('\n'));
  assert.match(errs[0]!, /^5: .*198\.19\.0\.300.* not an IPv4 or IPv6 address/);
  assert.match(errs[1]!, /^8: .*port 70000/);
  assert.match(errs[1]!, /IPv6 but the VIP is IPv4/);
});

test('an empty file or a missing services list is rejected; `services: []` is an explicit empty state', () => {
  assert.match(errorsOf('')[0]!, /empty; write `services: \[\]`/);
  assert.match(errorsOf('defaults: {weight: 1}\n')[0]!, /no `services:` list/);
  const r = parseConfig('services: []\n', 'x.yaml');
  assert.ok(r.ok && r.state.services.length === 0);
});

test('duplicate services and duplicate keys are errors', () => {
  assert.ok(errorsOf(`services:
  - {vip: 198.19.0.10, port: 80, backends: []}
  - {vip: 198.19.0.10, port: 80, backends: []}
`).some((e) => /^3: .*duplicate service tcp\/198\.19\.0\.10:80/.test(e)));
  assert.ok(errorsOf('services: []\nservices: []\n').some((e) => /^2: YAML syntax: Map keys must be unique/.test(e)));
});

// ---- the watcher -----------------------------------------------------------------------------

const quiet = pino({ level: 'silent' });

function configWith(backends: string[]): string {
  return `services:\n  - vip: 198.19.0.10\n    port: 80\n    backends: [${backends.join(', ')}]\n`;
}

function backendsOf(s: DesiredState | undefined): string[] {
  return s?.services[0]?.backends.map((b) => b.address) ?? [];
}

async function withSource(fn: (ctx: { path: string; dir: string; states: DesiredState[]; rejected: number[] }) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'xdir-file-source-'));
  const path = join(dir, 'xdir.yaml');
  writeFileSync(path, configWith(['198.18.0.21']));
  const states: DesiredState[] = [];
  const rejected: number[] = [];
  const source = new FileSource({
    path, log: quiet, debounceMs: 30, pollMs: 0,
    onState: (s) => states.push(s), onRejected: (e) => rejected.push(e.length),
  });
  const ac = new AbortController();
  try {
    await source.start(ac.signal);
    await fn({ path, dir, states, rejected });
  } finally {
    ac.abort();
    await source.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('start emits the file, an in-place write and an editor-style rename are both picked up', async () => {
  await withSource(async ({ path, dir, states }) => {
    assert.equal(backendsOf(states[0]), ['198.18.0.21']);
    writeFileSync(path, configWith(['198.18.0.21', '198.18.0.22']));
    await waitFor('in-place edit', () => states.length === 2);
    assert.equal(backendsOf(states[1]), ['198.18.0.21', '198.18.0.22']);
    const tmp = join(dir, '.xdir.yaml.swp');
    writeFileSync(tmp, configWith(['198.18.0.23']));
    renameSync(tmp, path);
    await waitFor('renamed-over edit', () => states.length === 3);
    assert.equal(backendsOf(states[2]), ['198.18.0.23']);
  });
});

test('an invalid edit is rejected and keeps the last good state; fixing it applies the fix', async () => {
  await withSource(async ({ path, states, rejected }) => {
    writeFileSync(path, configWith(['198.18.0.999']));
    await waitFor('rejection', () => rejected.length === 1);
    assert.is(states.length, 1, 'an invalid edit must not emit a state');
    writeFileSync(path, configWith(['198.18.0.22']));
    await waitFor('fixed edit', () => states.length === 2);
    assert.equal(backendsOf(states[1]), ['198.18.0.22']);
  });
});

test('a burst of writes is debounced and ends at the last content; rewriting the same content emits nothing', async () => {
  await withSource(async ({ path, states }) => {
    for (let i = 1; i <= 20; i++) writeFileSync(path, configWith([`198.18.0.${100 + i}`]));
    await waitFor('final content', () => backendsOf(states.at(-1)).includes('198.18.0.120'));
    assert.ok(states.length < 21, `expected coalescing, got ${states.length} states`);
    const before = states.length;
    writeFileSync(path, configWith(['198.18.0.120']));
    await sleep(200);
    assert.is(states.length, before);
  });
});

test('a file caught half-written in place is judged by its final content, not reported', async () => {
  await withSource(async ({ path, states, rejected }) => {
    const full = configWith(['198.18.0.31', '198.18.0.32']);
    writeFileSync(path, full.slice(0, full.indexOf('port:') + 3)); // cut mid-key: invalid on its own
    await sleep(10);
    writeFileSync(path, full);
    await waitFor('the complete edit', () => backendsOf(states.at(-1)).includes('198.18.0.32'));
    assert.is(rejected.length, 0, 'the half-written moment is not reported as an invalid edit');
  });
});

test('start fails on an invalid file with every problem listed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xdir-file-source-'));
  const path = join(dir, 'bad.yaml');
  writeFileSync(path, 'services:\n  - vip: nope\n    port: 80\n    backends: []\n');
  const source = new FileSource({ path, log: quiet, onState: () => assert.unreachable('no state from a bad file') });
  try {
    await source.start();
    assert.unreachable('start should throw');
  } catch (err) {
    assert.instance(err, ConfigFileError);
    assert.match((err as Error).message, /bad\.yaml:2: .*"nope" is not an IPv4 or IPv6 address/);
  } finally {
    await source.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
