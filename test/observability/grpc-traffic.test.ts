/**
 * Counters seen by a real gRPC client while real traffic crosses the namespace topology: a Watch
 * stream shows the VIP's service counter rise by exactly the number of datagrams a client sent,
 * and the backends' counters by the same number, each flow's datagrams on one backend.
 * The sender counts what it sent (no retries, which a request/response client would add).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { privilegeGap } from '../lib/privileged.js';
import { cleanupStale, Topology, waitForLines } from '../lib/topology.js';
import { waitExit } from '../lib/netns.js';
import { serviceKey, type DesiredState } from '../../control/model/types.js';
import type { StatsSnapshotMsg } from '../../control/observability/grpc/proto.js';
import { StreamCollector, directorClient, tempDir, waitFor } from './grpc-helpers.js';
import type { ChildProcess } from 'node:child_process';

const gap = privilegeGap();
const ptest = gap ? test.skip : test;
const FLOWS = 20;
const PER_FLOW = 6;
const BURST = FLOWS * PER_FLOW;

/** FLOWS UDP sockets (flows) each sending PER_FLOW datagrams to vip:53, from the client namespace. */
async function sendDatagrams(vip: string): Promise<{ sent: number; replies: number }> {
  // Sockets stay open until every reply is in: a reply to a closed socket would make the client
  // send an ICMP port-unreachable to the VIP, which the director (rightly) forwards and counts.
  const script = `
    const dgram = require('node:dgram');
    const [vip, flows, perFlow] = process.argv.slice(1);
    (async () => {
      let sent = 0, replies = 0;
      const socks = [];
      for (let f = 0; f < +flows; f++) {
        const s = dgram.createSocket(vip.includes(':') ? 'udp6' : 'udp4');
        s.on('message', () => { replies++; });
        socks.push(s);
        for (let i = 0; i < +perFlow; i++) {
          await new Promise((res, rej) => s.send(Buffer.from('xdir ' + f + ' ' + i), 53, vip, (e) => (e ? rej(e) : res())));
          sent++;
        }
      }
      for (let i = 0; i < 100 && replies < sent; i++) await new Promise((r) => setTimeout(r, 50));
      for (const s of socks) s.close();
      console.log(JSON.stringify({ sent, replies }));
    })();`;
  const { stdout } = await t.exec(t.clients[0]!, [process.execPath, '-e', script, vip, String(FLOWS), String(PER_FLOW)], { timeoutMs: 30_000 });
  return JSON.parse(stdout.trim()) as { sent: number; replies: number };
}
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
      const { sent, replies } = await sendDatagrams(vip);
      assert.is(sent, BURST);
      assert.is(replies, BURST, 'every datagram answered by a real server (direct return)');
      // Wait for a snapshot that has them all, then one more reading: the counters must not move further.
      await waitFor('a snapshot with the burst', () => total(w.got.at(-1)!, key) - total(before, key) >= BigInt(BURST));
      await w.until(w.got.length + 1);
      const after = w.got.at(-1)!;
      assert.is(total(after, key) - total(before, key), BigInt(BURST), 'service counter');
      const deltas = Object.entries(addrOf).map(([name, a]) => [name, backend(after, a) - backend(before, a)] as const);
      assert.is(deltas.reduce((sum, [, d]) => sum + d, 0n), BigInt(BURST), `backend counters ${JSON.stringify(deltas.map(([n, d]) => [n, String(d)]))}`);
      for (const [name, d] of deltas) assert.is(d % BigInt(PER_FLOW), 0n, `${name}: a flow's datagrams all go to one backend`);
      assert.ok(deltas.every(([, d]) => d > 0n), `both backends got flows: ${deltas.map(([n, d]) => `${n}=${d}`).join(' ')}`);
      assert.ok(after.services[0]!.rate !== undefined);
      assert.is(after.data_path, 'DATA_PATH_XDP');
    } finally {
      w.stream.cancel();
      client.close();
    }
  });
}

test.run();
