/**
 * Netlink against the real kernel, in namespaces of our own: a veth pair between `a` and `b`,
 * 198.18.0.1/24 + fd00:18::1/64 on a, .2 / ::2 on b. Sockets are opened inside `a` (setns for
 * the socket() call only), so the test process itself never leaves its namespace.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { NetlinkNeighbourResolver } from '../../control/dataplane/xdp/neighbours-netlink.js';
import { FamilyNotFoundError, GenlSocket } from '../../control/netlink/genl.js';
import { linkByName } from '../../control/netlink/link.js';
import { dumpNeighbours, triggerResolution } from '../../control/netlink/neighbour.js';
import { NETLINK_ROUTE, NetlinkError, NetlinkSocket } from '../../control/netlink/socket.js';
import { deleteNamespaceSync, ipIn, run, waitFor } from '../lib/netns.js';
import { privilegedTest } from '../lib/privileged.js';

const A = `xnl-${process.pid}-a`;
const B = `xnl-${process.pid}-b`;
let sock: NetlinkSocket | undefined;
let tornDown = false;

function teardown(): void {
  if (tornDown) return;
  tornDown = true;
  sock?.close();
  deleteNamespaceSync(A);
  deleteNamespaceSync(B);
}
process.on('exit', teardown);

async function macOf(ns: string, ifname: string): Promise<string> {
  const { stdout } = await ipIn(ns, '-j', 'link', 'show', 'dev', ifname);
  return (JSON.parse(stdout) as { address: string }[])[0]!.address;
}

test.before(async () => {
  if (process.getuid?.() !== 0) return;
  await run('ip', ['netns', 'add', A]);
  await run('ip', ['netns', 'add', B]);
  await run('ip', ['link', 'add', 'xnl0', 'netns', A, 'type', 'veth', 'peer', 'name', 'xnl1', 'netns', B]);
  await ipIn(A, 'addr', 'add', '198.18.0.1/24', 'dev', 'xnl0');
  await ipIn(B, 'addr', 'add', '198.18.0.2/24', 'dev', 'xnl1');
  await ipIn(A, 'addr', 'add', 'fd00:18::1/64', 'dev', 'xnl0', 'nodad');
  await ipIn(B, 'addr', 'add', 'fd00:18::2/64', 'dev', 'xnl1', 'nodad');
  await ipIn(A, 'link', 'set', 'xnl0', 'up');
  await ipIn(B, 'link', 'set', 'xnl1', 'up');
  sock = NetlinkSocket.open(NETLINK_ROUTE, { netns: A });
});
test.after(teardown);

privilegedTest('a socket opened in a namespace sees that namespace\'s interfaces, not ours', async () => {
  const link = linkByName(sock!, 'xnl0');
  assert.ok(link.index > 0);
  const { stdout } = await ipIn(A, '-j', 'link', 'show', 'dev', 'xnl0');
  assert.is(link.index, (JSON.parse(stdout) as { ifindex: number }[])[0]!.ifindex);
  // The test process itself stayed in its own namespace.
  assert.throws(() => linkByName(NetlinkSocket.open(NETLINK_ROUTE), 'xnl0'), /no interface named 'xnl0'/);
});

privilegedTest('a kernel error carries the errno and what we were doing', () => {
  try {
    linkByName(sock!, 'xnl-none');
    assert.unreachable('an interface that does not exist was found');
  } catch (err) {
    assert.instance(err, NetlinkError);
    assert.is((err as NetlinkError).errno, 19);
    assert.match((err as Error).message, /no interface named 'xnl-none'.*ip link show/);
  }
});

privilegedTest('NTF_USE makes the kernel resolve a neighbour: the peer sees our ARP request and we learn its MAC', async () => {
  const ifindex = linkByName(sock!, 'xnl0').index;
  assert.equal(dumpNeighbours(sock!, ifindex, 4), [], 'no neighbour before we ask');
  const peerTableBefore = (await ipIn(B, 'neigh', 'show', 'dev', 'xnl1')).stdout;
  assert.not.match(peerTableBefore, /198\.18\.0\.1 /);

  triggerResolution(sock!, '198.18.0.2', ifindex);

  const peerMac = await macOf(B, 'xnl1');
  const entry = await waitFor('the neighbour entry of 198.18.0.2', () =>
    dumpNeighbours(sock!, ifindex, 4).find((n) => n.address === '198.18.0.2' && n.mac !== null), 5000, 20);
  assert.is(entry.mac, peerMac);
  // The peer learnt our address from the ARP request the kernel sent on our behalf.
  const peerTable = (await ipIn(B, 'neigh', 'show', 'dev', 'xnl1')).stdout;
  assert.match(peerTable, /198\.18\.0\.1 lladdr/);
});

privilegedTest('NTF_USE for an address nobody answers leaves an incomplete entry, and no MAC', () => {
  const ifindex = linkByName(sock!, 'xnl0').index;
  triggerResolution(sock!, '198.18.0.77', ifindex);
  const entry = dumpNeighbours(sock!, ifindex, 4).find((n) => n.address === '198.18.0.77');
  assert.ok(entry, 'the kernel created an entry for the address');
  assert.is(entry!.mac, null);
  assert.ok(['incomplete', 'failed'].includes(entry!.state), `state ${entry!.state}`);
});

privilegedTest('resolver: IPv4 and IPv6 peers resolve to the peer\'s MAC; an absent address gives null', async () => {
  const resolver = new NetlinkNeighbourResolver({ netns: A, waitMs: 3000 });
  try {
    const peerMac = await macOf(B, 'xnl1');
    assert.is(await resolver.lookup('198.18.0.2', 'xnl0'), peerMac);
    assert.is(await resolver.lookup('fd00:18:0:0::2', 'xnl0'), peerMac, 'non-canonical IPv6 text is accepted');
    const quick = new NetlinkNeighbourResolver({ netns: A, waitMs: 0 });
    assert.is(await quick.lookup('198.18.0.99', 'xnl0'), null);
    quick.close();
    const missing = await resolver.lookup('198.18.0.2', 'xnl-none').then(() => null, (err: Error) => err);
    assert.match(String(missing?.message), /no interface named 'xnl-none'/);
  } finally {
    resolver.close();
  }
});

privilegedTest('resolver: a stale entry is answered at once and re-checked, so a MAC that changed without a gratuitous ARP is learned', async () => {
  // Short probe timers on our namespace's interface, so the re-check takes about a second.
  await run('ip', ['netns', 'exec', A, 'sysctl', '-qw', 'net.ipv4.neigh.xnl0.delay_first_probe_time=1', 'net.ipv4.neigh.xnl0.retrans_time_ms=100']);
  // The kernel's entry holds an old MAC, stale: nothing sent through the kernel uses it, so
  // nothing would ever re-check it.
  await ipIn(A, 'neigh', 'replace', '198.18.0.2', 'lladdr', '02:00:00:00:0b:0b', 'dev', 'xnl0', 'nud', 'stale');
  const resolver = new NetlinkNeighbourResolver({ netns: A, waitMs: 0, pollMs: 1 });
  try {
    assert.is(await resolver.lookup('198.18.0.2', 'xnl0'), '02:00:00:00:0b:0b', 'the stale MAC, at once');
    const peerMac = await macOf(B, 'xnl1');
    await waitFor('the re-checked MAC', async () => (await resolver.lookup('198.18.0.2', 'xnl0')) === peerMac, 20_000, 200);
  } finally {
    resolver.close();
  }
});

privilegedTest('a dump larger than one datagram comes back whole (multipart, NLMSG_DONE)', async () => {
  const ifindex = linkByName(sock!, 'xnl0').index;
  const lines: string[] = [];
  for (let i = 0; i < 1200; i++) {
    lines.push(`neigh add 198.18.${4 + (i >> 8)}.${i & 0xff} lladdr 02:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')} dev xnl0 nud permanent`);
  }
  await run('ip', ['-n', A, '-batch', '-'], { input: `${lines.join('\n')}\n` });
  const got = dumpNeighbours(sock!, ifindex, 4).filter((n) => n.state === 'permanent');
  assert.is(got.length, 1200);
  assert.ok(got.some((n) => n.address === '198.18.8.175' && n.mac === '02:00:00:00:04:af'));
});

privilegedTest('generic netlink: nlctrl resolves to its fixed id; IPVS is reported missing with a next step', () => {
  const ctrl = GenlSocket.open('nlctrl', { netns: A });
  assert.is(ctrl.family.id, 0x10);
  ctrl.close();
  if (existsSync('/proc/net/ip_vs')) {
    const ipvs = GenlSocket.open('IPVS');
    assert.ok(ipvs.family.id > 0x10);
    ipvs.close();
    return;
  }
  try {
    GenlSocket.open('IPVS');
    assert.unreachable('IPVS resolved on a kernel without /proc/net/ip_vs');
  } catch (err) {
    assert.instance(err, FamilyNotFoundError);
    assert.match((err as Error).message, /family 'IPVS' not found.*CONFIG_IP_VS/);
  }
});

test.run();
