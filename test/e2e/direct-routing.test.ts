/**
 * Direct routing end to end: real TCP (HTTP) and UDP clients reach real servers through `xdir run`
 * with native XDP on a veth, over IPv4 and IPv6; new flows spread by weight; replies never pass the
 * director. One topology for the whole file (1 client, director, 3 real servers).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { e2eFixture } from '../lib/e2e-fixture.js';
import { DirectorProcess, writeConfig } from '../lib/director.js';
import { httpBurst, udpBurst, type BurstResult } from '../lib/traffic.js';
import { readPinnedStats } from '../lib/pinned-stats.js';
import { waitExit, waitFor } from '../lib/netns.js';

const fx = e2eFixture(test, { tmpPrefix: 'xdir-e2e-' });
const { ptest } = fx;

/** Each server's share is within `tolerance` (fraction of the expected count) of its weight share. */
function assertSpread(r: BurstResult, weights: Record<string, number>, tolerance: number, what: string): void {
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  const n = r.ok;
  for (const [name, w] of Object.entries(weights)) {
    const expected = (n * w) / total;
    const got = r.byServer[name] ?? 0;
    assert.ok(Math.abs(got - expected) <= expected * tolerance,
      `${what}: ${name} got ${got} of ${n}, expected about ${expected.toFixed(0)} (weights ${JSON.stringify(weights)}; all: ${JSON.stringify(r.byServer)})`);
  }
  for (const name of Object.keys(r.byServer)) assert.ok(name in weights, `${what}: ${name} answered but is not configured`);
}

ptest('real servers never answer ARP or NDP for the VIP (LVS-DR real-server setup)', async () => {
  const c = fx.t.clients[0]!;
  // Point the VIPs on-link for a moment: the client must then ask the segment who has them.
  await fx.t.exec(c, ['ip', 'route', 'replace', `${fx.t.vip4}/32`, 'dev', 'eth0']);
  await fx.t.exec(c, ['ip', '-6', 'route', 'replace', `${fx.t.vip6}/128`, 'dev', 'eth0']);
  try {
    await fx.t.exec(c, ['ping', '-c', '2', '-i', '0.2', '-W', '1', fx.t.vip4], { allowFail: true });
    await fx.t.exec(c, ['ping', '-6', '-c', '2', '-i', '0.2', '-W', '1', fx.t.vip6], { allowFail: true });
    const neigh = (await fx.t.exec(c, ['ip', 'neigh', 'show', 'to', fx.t.vip4])).stdout + (await fx.t.exec(c, ['ip', '-6', 'neigh', 'show', 'to', fx.t.vip6])).stdout;
    assert.not.match(neigh, /lladdr/, `a real server answered for the VIP:\n${neigh}`);
  } finally {
    await fx.t.exec(c, ['ip', 'route', 'replace', `${fx.t.vip4}/32`, 'via', fx.t.director.ipv4]);
    await fx.t.exec(c, ['ip', '-6', 'route', 'replace', `${fx.t.vip6}/128`, 'via', fx.t.director.ipv6]);
    await fx.t.exec(c, ['ip', 'neigh', 'flush', 'to', fx.t.vip4], { allowFail: true });
    await fx.t.exec(c, ['ip', '-6', 'neigh', 'flush', 'to', fx.t.vip6], { allowFail: true });
  }
});

ptest('TCP and UDP reach the VIP over IPv4 and IPv6, spread over the backends by weight', async () => {
  const config = join(fx.dir, 'xdir.yaml');
  writeConfig(config, fx.t, [{ server: 'rs1', weight: 1 }, { server: 'rs2', weight: 1 }, { server: 'rs3', weight: 2 }]);
  fx.director = await DirectorProcess.start(fx.t, { config, xdpMode: 'native' });
  const weights = { rs1: 1, rs2: 1, rs3: 2 };
  const c = fx.t.clients[0]!;
  // Fixed source ports: the hash is fixed too, so the spread is the same on every run (with
  // ephemeral ports, 200 flows land a 1-weight server outside ±40% about once in a few hundred runs).
  for (const [i, vip] of [fx.t.vip4, fx.t.vip6].entries()) {
    const http = await httpBurst(fx.t, c, vip, 200, { sourcePortBase: 23_000 + 1000 * i });
    assert.is(http.errors, 0, `HTTP to ${vip}: ${http.errorSamples.join('; ')}`);
    assertSpread(http, weights, 0.4, `HTTP to ${vip}`);
    const udp = await udpBurst(fx.t, c, vip, 200, { sourcePortBase: 25_000 + 1000 * i });
    assert.is(udp.errors, 0, `UDP to ${vip}: ${udp.errorSamples.join('; ')}`);
    assertSpread(udp, weights, 0.4, `UDP to ${vip}`);
  }
});

ptest('replies go straight from the real server to the client: none crosses the director', async () => {
  const c = fx.t.clients[0]!;
  // Capture on the director's link as the switch sees it (XDP_TX frames never reach a tap on the
  // director's own interface). Bounded by count and time. --immediate-mode: without it, frames wait
  // in the capture buffer for its timeout and a prompt SIGINT finds them uncounted.
  const filter = (dirn: 'src' | 'dst') => `${dirn} host ${fx.t.vip4} or ${dirn} host ${fx.t.vip6}`;
  // Stopped with SIGINT after the traffic (tcpdump then prints its count); -c and `timeout` bound it.
  const capture = (dirn: 'src' | 'dst') => fx.t.spawn(fx.t.switchNs, ['timeout', '60', 'tcpdump', '--immediate-mode', '-nn', '-i', fx.t.director.peer, '-c', '100000', '-w', '/dev/null', filter(dirn)]);
  const before = await readPinnedStats(fx.director.opts.pinRoot!);
  const fromVip = capture('src');
  const toVip = capture('dst');
  const stderrOf = (p: typeof fromVip) => { const o = { text: '' }; p.stderr!.on('data', (d) => { o.text += d; }); return o; };
  const [fromErr, toErr] = [stderrOf(fromVip), stderrOf(toVip)];
  await waitFor('tcpdump listening', () => /listening on/.test(fromErr.text) && /listening on/.test(toErr.text), 15_000);
  const count = (o: { text: string }) => Number(/(\d+) packets? captured/.exec(o.text)?.[1] ?? -1);
  const http = await httpBurst(fx.t, c, fx.t.vip4, 40);
  const udp = await udpBurst(fx.t, c, fx.t.vip6, 40);
  assert.is(http.errors + udp.errors, 0);
  await new Promise((r) => setTimeout(r, 300)); // let the last replies arrive
  for (const p of [fromVip, toVip]) p.kill('SIGINT');
  await Promise.all([waitExit(fromVip, 15_000), waitExit(toVip, 15_000)]);
  const [from, to] = [count(fromErr), count(toErr)];
  const after = await readPinnedStats(fx.director.opts.pinRoot!);
  assert.ok(to > 0, `capture saw no client packets to the VIP (${to}); it cannot prove anything`);
  assert.is(from, 0, `${from} packets with the VIP as source crossed the director`);
  // Every packet the program forwarded went to a configured backend, and the forwarded count grew
  // by at most what the clients sent (the capture counts each forwarded packet twice: in and out).
  const fwd = after.reasons.forwarded! - before.reasons.forwarded!;
  assert.ok(fwd > 0 && fwd <= to, `forwarded ${fwd} packets, capture saw ${to} frames to the VIP`);
  const perBackend = Object.values(after.backends).reduce((a, b) => a + b, 0);
  assert.is(perBackend, after.reasons.forwarded, 'backend counters add up to the forwarded counter');
});

ptest('SIGTERM leaves the program attached and forwarding; the next start adopts it', async () => {
  assert.is(await fx.director.stop('SIGTERM'), 0);
  const attached = await fx.t.exec(fx.t.director, ['ip', '-j', 'link', 'show', 'eth0']);
  assert.ok(JSON.parse(attached.stdout)[0].xdp, 'XDP program is still attached after SIGTERM');
  const r = await httpBurst(fx.t, fx.t.clients[0]!, fx.t.vip4, 20);
  assert.is(r.errors, 0, 'traffic keeps flowing with no director process');
  fx.director = await DirectorProcess.start(fx.t, { config: fx.director.opts.config, xdpMode: 'native' });
  assert.is((await httpBurst(fx.t, fx.t.clients[0]!, fx.t.vip6, 20)).errors, 0);
});

test.run();
