/**
 * Counters seen by a real gRPC client while real traffic crosses the namespace topology: a Watch
 * stream shows the VIP's service counter and each backend's counter rise by exactly the number of
 * datagrams sent (UDP, one datagram per flow, answered straight by the real server).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { privilegeGap } from '../lib/privileged.js';
import { cleanupStale, Topology, waitForLines } from '../lib/topology.js';
import { udpBurst } from '../lib/traffic.js';
import { waitExit } from '../lib/netns.js';
import { serviceKey, type DesiredState } from '../../control/model/types.js';
import type { StatsSnapshotMsg } from '../../control/observability/grpc/proto.js';
import { StreamCollector, directorClient, tempDir, waitFor } from './grpc-helpers.js';
import type { ChildProcess } from 'node:child_process';

const gap = privilegeGap();
const ptest = gap ? test.skip : test;
const BURST = 120;
let t: Topology;
let child: ChildProcess | undefined;
const tmp = tempDir('xdir-grpc-traffic-');
const socket = join(tmp.dir, 'xdir.sock');

test.before(async () => {
  if (gap) return;
  cleanupStale();
  t = await Topology.create({ clients: 1, servers: 2 });
  await t.startServers({ udp: 53 });
  const [rs1, rs2] = t.servers as [typeof t.servers[0], typeof t.servers[0]];
  const desired: DesiredState = {
    services: [4, 6].map((fam) => ({
      vip: fam === 4 ? t.vip4 : t.vip6, port: 53, protocol: 'udp' as const, scheduler: 'mh' as const, persistence: 0,
      backends: [rs1, rs2].map((s) => ({ address: fam === 4 ? s.ipv4 : s.ipv6, weight: 1, mac: s.mac })),
    })),
  };
  const cfg = { interface: t.director.ifname, pinRoot: join(t.bpffs(), 'xdir'), socket, desired };
  const script = new URL('./api-director.child.ts', import.meta.url).pathname;
  child = t.spawn(t.director, [process.execPath, '--import', 'tsx', script, JSON.stringify(cfg)], {
    env: { ...process.env, XDIR_LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  await waitForLines(child, 1, 'the director with its API').catch((err: Error) => {
    throw new Error(`${err.message}\n${stderr}`);
  });
});

test.after(async () => {
  if (gap) return;
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await waitExit(child, 10_000).catch(() => child!.kill('SIGKILL'));
  }
  await t?.destroy();
  tmp.cleanup();
});

const total = (s: StatsSnapshotMsg, key: string): bigint => BigInt(s.services.find((x) => x.key === key)?.total.packets ?? '0');
const backend = (s: StatsSnapshotMsg, addr: string): bigint => BigInt(s.backends.find((x) => x.address === addr)?.total.packets ?? '0');

for (const fam of [4, 6] as const) {
  ptest(`IPv${fam}: a Watch stream sees the VIP and each backend rise by exactly the datagrams sent`, async () => {
    const vip = fam === 4 ? t.vip4 : t.vip6;
    const key = serviceKey({ vip, port: 53, protocol: 'udp' });
    const addrOf = Object.fromEntries(t.servers.map((s) => [s.name, fam === 4 ? s.ipv4 : s.ipv6]));
    const client = directorClient(`unix:${socket}`);
    const w = new StreamCollector(client.Watch({ interval_ms: 100, vips: [vip] }));
    try {
      await w.until(1);
      const before = w.got.at(-1)!;
      assert.equal(before.services.map((s) => s.key), [key], 'the filter selects this VIP only');
      const sent = await udpBurst(t, t.clients[0]!, vip, BURST, { concurrency: 4 });
      assert.is(sent.errors, 0, sent.errorSamples.join('; '));
      assert.is(sent.ok, BURST);
      // Wait for a snapshot taken after the burst; every datagram was answered, so all are counted.
      await waitFor('a snapshot with the burst', () => total(w.got.at(-1)!, key) - total(before, key) >= BigInt(BURST));
      const n = w.got.length;
      await w.until(n + 1); // one more reading: the counters must not move any further
      const after = w.got.at(-1)!;
      assert.is(total(after, key) - total(before, key), BigInt(BURST), 'service counter');
      for (const [name, replies] of Object.entries(sent.byServer)) {
        assert.is(backend(after, addrOf[name]!) - backend(before, addrOf[name]!), BigInt(replies), `backend ${name} (${addrOf[name]})`);
      }
      assert.ok(Object.keys(sent.byServer).length === 2, `both backends served: ${JSON.stringify(sent.byServer)}`);
      assert.ok(after.services[0]!.rate !== undefined);
      assert.is(after.data_path, 'DATA_PATH_XDP');
    } finally {
      w.stream.cancel();
      client.close();
    }
  });
}

test.run();
