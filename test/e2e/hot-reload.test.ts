/**
 * Reconfiguration and restarts under real traffic: long-lived TCP connections keep their real
 * server while backends are added, drained and removed, through 100 config edits, a malformed
 * edit, and a restart of the director process. One topology for the file (1 client, 3 servers).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { e2eFixture } from '../lib/e2e-fixture.js';
import { DirectorProcess, writeConfig } from '../lib/director.js';
import { heldProblems, HeldConnections, httpBurst, udpBurst } from '../lib/traffic.js';
import { sleep } from '../lib/netns.js';

const fx = e2eFixture(test, { tmpPrefix: 'xdir-e2e-' });
const { ptest } = fx;
let config: string;

type Backends = { server: string; weight?: number }[];

/** Writes the config and waits until the director has applied it. */
async function reconfigure(backends: Backends): Promise<void> {
  const from = fx.director.logs.length;
  writeConfig(config, fx.t, backends);
  const changed = await fx.director.waitForLog(/config changed/, 10_000, from);
  await fx.director.waitForLog(/desired state applied/, 10_000, fx.director.logs.indexOf(changed));
}

fx.before(async () => {
  config = join(fx.dir, 'xdir.yaml');
  writeConfig(config, fx.t, [{ server: 'rs1' }, { server: 'rs2' }]);
  fx.director = await DirectorProcess.start(fx.t, { config, xdpMode: 'native' });
});

ptest('long-lived connections keep their backend while backends are added, drained and removed', async () => {
  const c = fx.t.clients[0]!;
  const held = await HeldConnections.open(fx.t, c, fx.t.vip4, 6);
  const onOld = (await held.report()).filter((h) => h.servers[0] === 'rs1' || h.servers[0] === 'rs2');
  assert.is(onOld.length, 6, 'every held connection starts on rs1 or rs2');

  await reconfigure([{ server: 'rs1' }, { server: 'rs2' }, { server: 'rs3' }]);
  const added = await httpBurst(fx.t, c, fx.t.vip4, 60);
  assert.is(added.errors, 0);
  assert.ok((added.byServer.rs3 ?? 0) > 0, `new backend rs3 gets new connections: ${JSON.stringify(added.byServer)}`);

  await reconfigure([{ server: 'rs1', weight: 0 }, { server: 'rs2' }, { server: 'rs3' }]);
  const drained = await httpBurst(fx.t, c, fx.t.vip4, 60);
  assert.is(drained.errors, 0);
  assert.is(drained.byServer.rs1 ?? 0, 0, `new connections avoid drained rs1: ${JSON.stringify(drained.byServer)}`);
  const drainedUdp = await udpBurst(fx.t, c, fx.t.vip4, 60, { sourcePortBase: 20_000 });
  assert.is(drainedUdp.errors, 0);
  assert.is(drainedUdp.byServer.rs1 ?? 0, 0, `new UDP flows avoid drained rs1: ${JSON.stringify(drainedUdp.byServer)}`);

  await reconfigure([{ server: 'rs1', weight: 0 }, { server: 'rs3' }]);
  const removed = await httpBurst(fx.t, c, fx.t.vip4, 40);
  assert.is(removed.errors, 0);
  assert.equal(Object.keys(removed.byServer), ['rs3'], `only rs3 takes new connections: ${JSON.stringify(removed.byServer)}`);

  const final = await held.close();
  assert.equal(heldProblems(final), []);
  assert.ok(final.every((h) => h.requests > 5), 'held connections kept exchanging requests');
  await reconfigure([{ server: 'rs1' }, { server: 'rs2' }, { server: 'rs3' }]);
});

ptest('100 config edits under traffic lose no established connection', async () => {
  const c = fx.t.clients[0]!;
  const held4 = await HeldConnections.open(fx.t, c, fx.t.vip4, 4, { intervalMs: 50 });
  const held6 = await HeldConnections.open(fx.t, c, fx.t.vip6, 4, { intervalMs: 50 });
  const variants: Backends[] = [
    [{ server: 'rs1' }, { server: 'rs2' }, { server: 'rs3' }],
    [{ server: 'rs1', weight: 3 }, { server: 'rs2' }],
    [{ server: 'rs1', weight: 0 }, { server: 'rs2', weight: 2 }, { server: 'rs3' }],
    [{ server: 'rs2' }, { server: 'rs3', weight: 5 }],
    [{ server: 'rs1' }, { server: 'rs3', weight: 0 }],
  ];
  const from = fx.director.logs.length;
  const burst = httpBurst(fx.t, c, fx.t.vip4, 600, { concurrency: 4 });
  for (let i = 0; i < 100; i++) {
    writeConfig(config, fx.t, variants[i % variants.length]!);
    // Spaced just past the source's 100 ms debounce, so most edits are applied one by one.
    await sleep(150);
  }
  const newConns = await burst;
  await sleep(500);
  await fx.director.waitForLog(/desired state applied/, 10_000, fx.director.logs.length - 1).catch(() => undefined);
  const applied = fx.director.logs.slice(from).filter((l) => /config changed/.test(l.msg)).length;
  const problems = [...heldProblems(await held4.close()), ...heldProblems(await held6.close())];
  assert.equal(problems, []);
  assert.is(newConns.errors, 0, `new connections during the edits: ${newConns.errorSamples.join('; ')}`);
  assert.ok(applied >= 50, `the director applied ${applied} of the 100 edits (some may coalesce, most must land)`);
  const errors = fx.director.logs.slice(from).filter((l) => l.level >= 50);
  assert.equal(errors.map((l) => l.msg), [], 'no errors logged during the edits');
});

ptest('a malformed edit is reported with its line and changes nothing', async () => {
  const c = fx.t.clients[0]!;
  await reconfigure([{ server: 'rs1' }, { server: 'rs2' }]);
  const from = fx.director.logs.length;
  writeFileSync(config, `services:
  - vip: ${fx.t.vip4}
    port: 80
    protocol: tcp
    backends:
      - address: 198.18.0.299
`);
  await fx.director.waitForLog(/config edit rejected/, 10_000, from);
  const located = fx.director.logs.slice(from).find((l) => /xdir\.yaml:2: .*198\.18\.0\.299/.test(l.msg));
  assert.ok(located, `the error names the file, line and value:\n${fx.director.output()}`);
  const r = await httpBurst(fx.t, c, fx.t.vip4, 40);
  assert.is(r.errors, 0);
  assert.equal(Object.keys(r.byServer).sort(), ['rs1', 'rs2'], 'the last good state (rs1, rs2) still serves');
  const r6 = await httpBurst(fx.t, c, fx.t.vip6, 10);
  assert.is(r6.errors, 0, 'services missing from the bad edit were not removed');
});

ptest('restarting the director under traffic loses no established connection', async () => {
  const c = fx.t.clients[0]!;
  await reconfigure([{ server: 'rs1' }, { server: 'rs2' }, { server: 'rs3' }]);
  const held4 = await HeldConnections.open(fx.t, c, fx.t.vip4, 4, { intervalMs: 50 });
  const held6 = await HeldConnections.open(fx.t, c, fx.t.vip6, 4, { intervalMs: 50 });
  assert.is(await fx.director.stop('SIGTERM'), 0);
  await sleep(300); // traffic flows with no director process at all
  fx.director = await DirectorProcess.start(fx.t, { config, xdpMode: 'native' });
  const r = await httpBurst(fx.t, c, fx.t.vip4, 30);
  assert.is(r.errors, 0);
  await sleep(300);
  const problems = [...heldProblems(await held4.close()), ...heldProblems(await held6.close())];
  assert.equal(problems, []);
});

test.run();
