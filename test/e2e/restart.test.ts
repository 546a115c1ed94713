/**
 * A director crash and restart under real traffic: `xdir run` is killed with SIGKILL (no shutdown
 * code runs), the attached program keeps forwarding new and established connections with no
 * director process, and the restarted director adopts the pinned maps without a single write:
 * its first apply changes nothing, every vips/backends entry is byte-identical, every VIP's ring is
 * the same inner map, and the connection table is kept. Long-lived connections (IPv4 and IPv6)
 * keep their real server throughout. One topology (1 client, 3 real servers).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { e2eFixture } from '../lib/e2e-fixture.js';
import { DirectorProcess, writeConfig } from '../lib/director.js';
import { heldProblems, HeldConnections, httpBurst, udpBurst, type HeldConnection } from '../lib/traffic.js';
import { forwardingMapDiff, snapshotPinnedMaps } from '../lib/pinned-maps.js';
import { sleep } from '../lib/netns.js';

const fx = e2eFixture(test, { tmpPrefix: 'xdir-e2e-restart-' });
const { ptest } = fx;

/** Connection id -> the one real server that answered it. */
const serverOf = (conns: HeldConnection[]) => Object.fromEntries(conns.map((c) => [c.id, c.servers.join('+')]));

ptest('after SIGKILL the data path keeps forwarding, and the restart adopts every map without a write', async () => {
  const c = fx.t.clients[0]!;
  const config = join(fx.dir, 'xdir.yaml');
  // IPv4 and IPv6, TCP/80 and UDP/53 each, over three backends.
  writeConfig(config, fx.t, [{ server: 'rs1' }, { server: 'rs2' }, { server: 'rs3', weight: 2 }]);
  fx.director = await DirectorProcess.start(fx.t, { config, xdpMode: 'native' });
  const pinRoot = fx.director.opts.pinRoot!;

  const held4 = await HeldConnections.open(fx.t, c, fx.t.vip4, 3);
  const held6 = await HeldConnections.open(fx.t, c, fx.t.vip6, 3);
  const first = [serverOf(await held4.report()), serverOf(await held6.report())];
  const udp = await udpBurst(fx.t, c, fx.t.vip4, 20, { sourcePortBase: 21_000 });
  assert.is(udp.errors, 0, `UDP before the crash: ${udp.errorSamples.join('; ')}`);

  const before = snapshotPinnedMaps(pinRoot);
  assert.is(before.vips.size, 4, 'four services programmed (TCP and UDP, IPv4 and IPv6)');
  assert.is(new Set(before.rings.values()).size, 4, 'one ring (its own inner map) per service');
  assert.is([...before.backends.values()].filter((v) => /[^0]/.test(v)).length, 6, 'three backends per family');
  assert.ok(before.flows.size >= 6 + 20, `the connection table holds the held connections and UDP flows (${before.flows.size})`);

  // A crash: no shutdown code runs at all.
  assert.is(await fx.director.stop('SIGKILL'), 'SIGKILL');
  fx.director = undefined;
  const link = JSON.parse((await fx.t.exec(fx.t.director, ['ip', '-j', 'link', 'show', 'eth0'])).stdout) as { xdp?: unknown }[];
  assert.ok(link[0]?.xdp, 'the XDP program is still attached after the director was killed');
  const orphanHttp = await httpBurst(fx.t, c, fx.t.vip6, 20);
  assert.is(orphanHttp.errors, 0, `new TCP connections with no director process: ${orphanHttp.errorSamples.join('; ')}`);
  const orphanUdp = await udpBurst(fx.t, c, fx.t.vip4, 20, { sourcePortBase: 22_000 });
  assert.is(orphanUdp.errors, 0, `new UDP flows with no director process: ${orphanUdp.errorSamples.join('; ')}`);
  const orphaned = [await held4.report(), await held6.report()];
  assert.equal(orphaned.flatMap(heldProblems), [], 'held connections stay healthy with no director process');
  await sleep(300); // the held connections keep exchanging requests with nobody managing the maps

  fx.director = await DirectorProcess.start(fx.t, { config, xdpMode: 'native' });
  const adopted = await fx.director.waitForLog(/adopted pinned maps/);
  assert.is(adopted.vips, 4, fx.director.output());
  assert.is(adopted.backends, 6, fx.director.output());
  const applied = await fx.director.waitForLog(/desired state applied/);
  assert.equal(
    { added: applied.servicesAdded, updated: applied.servicesUpdated, removed: applied.servicesRemoved, unchanged: applied.servicesUnchanged },
    { added: 0, updated: 0, removed: 0, unchanged: 4 },
    `the first apply after the restart changes nothing:\n${fx.director.output()}`,
  );
  assert.not.ok(fx.director.logs.find((l) => /XDP maps updated/.test(l.msg)), `the restart wrote to the maps:\n${fx.director.output()}`);

  const after = snapshotPinnedMaps(pinRoot);
  assert.equal(forwardingMapDiff(before, after), [], 'vips and backends byte-identical, every ring the same inner map');
  const lost = [...before.flows].filter((k) => !after.flows.has(k));
  assert.is(lost.length, 0, `${lost.length} of ${before.flows.size} connection-table entries were lost across the restart`);

  const served = await httpBurst(fx.t, c, fx.t.vip4, 20);
  assert.is(served.errors, 0, 'the restarted director serves new connections');
  const final = [await held4.close(), await held6.close()];
  assert.equal(final.flatMap(heldProblems), [], 'no held connection broke or changed server');
  assert.equal(final.map(serverOf), first, 'every held connection kept the real server it started on');
  assert.ok(final.flat().every((h) => h.requests > 10), 'the held connections kept exchanging requests');
});

test.run();
