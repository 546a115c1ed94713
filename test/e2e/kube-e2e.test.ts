/**
 * End to end in Kubernetes mode on the namespace topology: the controller allocates the VIP from an
 * IPPool and writes it to the Service's status; real TCP from a client namespace reaches the real
 * servers named by the EndpointSlices through XDP direct routing, and follows the slices as they
 * change (including a draining endpoint, which takes no new connections).
 *
 * The real servers play pods on a flat L2 pod network (`xdir.io/backend-mode: endpoints`); the
 * second part uses node backends (externalTrafficPolicy: Local), where the real servers play nodes.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as readline from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import * as assert from 'uvu/assert';
import { test } from 'uvu';
import { e2eFixture } from '../lib/e2e-fixture.js';
import type { Topology } from '../lib/topology.js';
import { waitFor, waitExit } from '../lib/netns.js';
import { FakeKubeApiServer } from '../lib/kube-apiserver.js';
import { endpointSlice, ipPool, lbService, node, startCluster, statusIPs } from '../sources/kube-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLIENT = join(ROOT, 'test', 'lib', 'servers', 'client.mjs');
const DIRECTOR = join(ROOT, 'test', 'e2e', 'kube-director.ts');

const fx = e2eFixture(test, { tmpPrefix: 'xdir-kube-e2e-', serverProcesses: { http: [80], udp: 0 } });

interface Burst { ok: number; errors: number; byServer: Record<string, number>; errorSamples: string[] }

async function burst(t: Topology, count = 30): Promise<Burst> {
  const { stdout } = await t.exec(t.clients[0]!, [process.execPath, CLIENT, 'http-burst', t.vip4, '80', String(count), '4'], { timeoutMs: 20_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Burst;
}

function startDirector(t: Topology, socket: string): { child: ChildProcess; lines: string[]; ready: Promise<void> } {
  const child = t.spawn(t.director, [process.execPath, '--import', 'tsx', DIRECTOR, socket, t.director.ifname, join(t.bpffs(), 'xdir')], {
    cwd: ROOT, env: { ...process.env, XDIR_LOG_LEVEL: 'info' },
  });
  const lines: string[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    for (const s of [child.stdout!, child.stderr!]) {
      readline.createInterface({ input: s }).on('line', (l) => {
        lines.push(l);
        if (l.includes('kube director running')) resolve();
      });
    }
    child.once('exit', (code) => reject(new Error(`kube director exited (${code}):\n${lines.join('\n')}`)));
  });
  return { child, lines, ready };
}

fx.ptest('a VIP the controller allocated carries real TCP to the endpoints, following EndpointSlices', async () => {
  const { t } = fx;
  let server: FakeKubeApiServer | undefined;
  let director: ReturnType<typeof startDirector> | undefined;
  try {
    server = await startCluster();
    const socket = join(fx.dir, 'apiserver.sock');
    await server.listenUnix(socket);
    const [rs1, rs2, rs3] = t.servers as [typeof t.servers[0], typeof t.servers[0], typeof t.servers[0]];
    for (const rs of t.servers) server.apply(node(rs.name, rs.ipv4));
    // The pool holds exactly the VIP the real servers accept on lo (see test/lib/topology.ts).
    server.apply(ipPool('e2e', { addresses: [`${t.vip4}/32`] }));
    server.apply(lbService('shop', 'web', { annotations: { 'xdir.io/backend-mode': 'endpoints' } }));
    server.apply(endpointSlice('shop', 'web', [{ ip: rs1.ipv4, node: rs1.name }, { ip: rs2.ipv4, node: rs2.name }]));

    director = startDirector(t, socket);
    await director.ready;
    await waitFor('the VIP in the Service status', () => statusIPs(server!, 'shop', 'web')[0] === t.vip4, 15_000);

    const first = await waitFor('traffic over rs1 and rs2', async () => {
      const b = await burst(t);
      return b.errors === 0 && b.ok === 30 && Object.keys(b.byServer).sort().join() === 'rs1,rs2' ? b : null;
    }, 20_000, 200);
    assert.ok(first.byServer.rs1! > 0 && first.byServer.rs2! > 0);

    // Scale: rs3 joins, rs1 terminates (drains: no new connections), then leaves.
    server.apply(endpointSlice('shop', 'web', [
      { ip: rs1.ipv4, node: rs1.name, ready: false, serving: true, terminating: true },
      { ip: rs2.ipv4, node: rs2.name }, { ip: rs3.ipv4, node: rs3.name },
    ]));
    const scaled = await waitFor('new connections only to rs2 and rs3', async () => {
      const b = await burst(t);
      return b.errors === 0 && Object.keys(b.byServer).sort().join() === 'rs2,rs3' ? b : null;
    }, 20_000, 200);
    assert.is(scaled.ok, 30);

    server.apply(endpointSlice('shop', 'web', [{ ip: rs3.ipv4, node: rs3.name }]));
    const moved = await waitFor('traffic only to rs3', async () => {
      const b = await burst(t);
      return b.errors === 0 && Object.keys(b.byServer).join() === 'rs3' ? b : null;
    }, 20_000, 200);
    assert.is(moved.ok, 30);

    // Node backends: externalTrafficPolicy Local sends to the nodes running ready endpoints.
    server.apply(lbService('shop', 'web', { local: true }));
    server.apply(endpointSlice('shop', 'web', [{ ip: '10.244.0.5', node: rs2.name }]));
    const nodes = await waitFor('traffic to the node running the pod', async () => {
      const b = await burst(t);
      return b.errors === 0 && Object.keys(b.byServer).join() === 'rs2' ? b : null;
    }, 20_000, 200);
    assert.is(nodes.ok, 30);
    assert.equal(statusIPs(server, 'shop', 'web'), [t.vip4], 'the VIP stayed through every change');
  } finally {
    if (director && director.child.exitCode === null) {
      director.child.kill('SIGTERM');
      await waitExit(director.child, 15_000).catch(() => director!.child.kill('SIGKILL'));
    }
    await server?.close();
  }
});

test.run();
