/**
 * The test topology on its own, with the kernel's forwarding instead of the director (the
 * benchmark's baseline path): if this fails, the e2e failures elsewhere are about the harness,
 * not the director. Also checks that teardown leaves nothing behind.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { privilegeGap } from '../lib/privileged.js';
import { cleanupStale, Topology } from '../lib/topology.js';
import { listNamespacesSync } from '../lib/netns.js';
import { httpBurst, udpBurst } from '../lib/traffic.js';

const gap = privilegeGap();
const ptest = gap ? test.skip : test;

ptest('clients reach every real server through kernel forwarding over IPv4 and IPv6; teardown removes everything', async () => {
  cleanupStale();
  const t = await Topology.create({ clients: 1, servers: 3 });
  let bpffs = '';
  try {
    bpffs = t.bpffs();
    await t.startServers();
    await t.enableKernelForwarding();
    const c = t.clients[0]!;
    for (const vip of [t.vip4, t.vip6]) {
      const http = await httpBurst(t, c, vip, 60);
      assert.is(http.errors, 0, `HTTP ${vip}: ${http.errorSamples.join('; ')}`);
      assert.equal(Object.keys(http.byServer).sort(), ['rs1', 'rs2', 'rs3'], `ECMP spreads HTTP to ${vip}`);
      const udp = await udpBurst(t, c, vip, 60);
      assert.is(udp.errors, 0, `UDP ${vip}: ${udp.errorSamples.join('; ')}`);
      assert.equal(Object.keys(udp.byServer).sort(), ['rs1', 'rs2', 'rs3'], `ECMP spreads UDP to ${vip}`);
    }
  } finally {
    await t.destroy();
  }
  assert.equal(listNamespacesSync().filter((n) => n.startsWith(t.prefix)), [], 'namespaces removed');
  assert.not.ok(existsSync(bpffs), 'private bpffs unmounted and removed');
});

test.run();
