/**
 * Child process of the bpf_fib_lookup test in prog-test-run.test.ts. It must run in a fresh,
 * anonymous network namespace (`unshare --net`), which it refuses to leave unchecked: it builds a
 * veth link with static neighbours there, runs frames through the director with that link as
 * ingress interface, and prints one JSON line of results. The namespace dies with the process.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { TCP_FLAGS, frame, frameMacs } from '../lib/packets.js';
import { TestDirector, reasonDelta } from './director-harness.js';

const LINK = 'xdirfib0';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

// Network safety: only ever touch a namespace that has nothing but the loopback device.
const devices = readdirSync('/proc/sys/net/ipv4/conf').filter((n) => !['all', 'default', 'lo'].includes(n));
if (devices.length > 0) {
  console.error(`refusing to run: this network namespace has interfaces (${devices.join(', ')}); run under unshare --net`);
  process.exit(2);
}

ip('link', 'add', LINK, 'type', 'veth', 'peer', 'name', `${LINK}p`);
ip('link', 'set', LINK, 'up');
ip('link', 'set', `${LINK}p`, 'up');
ip('addr', 'add', '198.18.2.254/24', 'dev', LINK);
ip('-6', 'addr', 'add', 'fd00:2::fe/64', 'dev', LINK, 'nodad');
ip('neigh', 'add', '198.18.2.7', 'lladdr', '02:be:00:00:00:07', 'dev', LINK, 'nud', 'permanent');
ip('-6', 'neigh', 'add', 'fd00:2::7', 'lladdr', '02:be:00:00:00:08', 'dev', LINK, 'nud', 'permanent');
ip('neigh', 'add', '198.18.2.1', 'lladdr', '02:99:00:00:00:01', 'dev', LINK, 'nud', 'permanent'); // the gateway: resolvable
ip('route', 'add', '198.18.9.0/24', 'via', '198.18.2.1');
// Not /sys/class/net: without a remount, /sys still describes the parent namespace.
const ifindex = (JSON.parse(execFileSync('ip', ['-j', 'link', 'show', LINK], { encoding: 'utf8' })) as { ifindex: number }[])[0]!.ifindex;

function setForwarding(on: boolean): void {
  writeFileSync(`/proc/sys/net/ipv4/conf/${LINK}/forwarding`, on ? '1' : '0');
  writeFileSync(`/proc/sys/net/ipv6/conf/${LINK}/forwarding`, on ? '1' : '0');
}

const d = TestDirector.open();
const results: Record<string, unknown> = {};
try {
  // Backends without a MAC from the control plane: the program must ask the FIB.
  d.setBackend(0, '198.18.2.7', null); // on-link, neighbour known
  d.setBackend(1, 'fd00:2::7', null); // on-link, neighbour known
  d.setBackend(2, '198.18.2.8', null); // on-link, no neighbour
  d.setBackend(3, '198.18.9.5', null); // behind a gateway: not reachable by direct routing
  const vips = ['198.18.0.20', '198.18.0.21', '198.18.0.22', '198.18.0.23'];
  vips.forEach((vip, i) => { d.addVip({ vip, port: 80, protocol: 'tcp' }, i); d.setRing(i, i); });
  const tcp = (dst: string, sport: number): Buffer => frame({
    srcMac: '02:c1:00:00:00:01', dstMac: '02:d1:00:00:00:01',
    ip: { version: 4, src: '198.18.1.1', dst }, l4: { kind: 'tcp', sport, dport: 80, flags: TCP_FLAGS.SYN },
  });
  const run = (f: Buffer): { action: number; dst: string } => {
    const r = d.obj.program('xdir_director').testRun({ data: f, ingressIfindex: ifindex });
    return { action: r.retval, dst: frameMacs(r.data).dst };
  };

  setForwarding(false);
  let before = d.reasons();
  results.forwardingOff = run(tcp(vips[0]!, 1000));
  results.forwardingOffReasons = reasonDelta(before, d.reasons());

  setForwarding(true);
  before = d.reasons();
  results.v4 = run(tcp(vips[0]!, 1001));
  results.v6Backend = run(tcp(vips[1]!, 1002));
  results.noNeighbour = run(tcp(vips[2]!, 1003));
  results.viaGateway = run(tcp(vips[3]!, 1004));
  results.reasons = reasonDelta(before, d.reasons());
  results.flowMac = d.flow({ src: '198.18.1.1', dst: vips[0]!, sport: 1001, dport: 80, proto: 6 })?.backendMac ?? null;
} finally {
  d.close();
}
console.log(JSON.stringify(results));
