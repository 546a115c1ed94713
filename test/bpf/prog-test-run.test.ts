/**
 * The director's XDP program, loaded through the real verifier and run on real frames with
 * BPF_PROG_TEST_RUN: forwarding (IPv4/IPv6, TCP/UDP, VLAN, IP options), what passes to the
 * kernel, fragments, ICMP errors (PMTU), flow stickiness across ring swaps, TCP teardown,
 * Maglev weights, unresolved MACs and exact counters.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { privilegedTest } from '../lib/privileged.js';
import {
  TCP_FLAGS, arpRequest, frame, frameMacs, icmpError, ipPacket, type FrameSpec, type L4,
} from '../lib/packets.js';
import { TestDirector, VERDICT_NAMES, XDP, reasonDelta } from './director-harness.js';
import { buildMaglevRing } from '../../control/model/maglev.js';
import { FLOW_F_CLOSING, VIP_F_HASH_SRC_ONLY, encodeVipFilter, vipFilterBit, vipFilterHas, type FlowKey } from '../../control/dataplane/xdp/codecs.js';

const DIRECTOR_MAC = '02:d1:00:00:00:01'; // our interface: the frames' destination
const ROUTER_MAC = '02:c1:00:00:00:01'; // the upstream router: the frames' source

const VIP4 = '198.18.0.10';
const VIP4_ALL_PORTS = '198.18.0.11';
const VIP4_NO_RING = '198.18.0.12';
const VIP4_NO_MAC = '198.18.0.13';
const VIP4_STICKY = '198.18.0.14';
const VIP6 = 'fd00::10';
const CLIENT4 = '198.18.1.1';
const CLIENT6 = 'fd00:1::1';
const ROUTER4 = '198.18.3.1';
const ROUTER6 = 'fd00:3::1';

const BACKENDS = [
  { id: 0, address: '198.18.2.1', mac: '02:be:00:00:00:00' },
  { id: 1, address: '198.18.2.2', mac: '02:be:00:00:00:01' },
  { id: 2, address: 'fd00:2::1', mac: '02:be:00:00:00:02' },
  { id: 3, address: 'fd00:2::2', mac: '02:be:00:00:00:03' },
  { id: 4, address: '198.18.2.5', mac: null }, // MAC unknown, no neighbour either
] as const;
const macOf = (id: number): string => BACKENDS[id]!.mac!;

const VIPS = {
  tcp4: 0, udp4: 1, tcp6: 2, udp6: 3, all4: 4, noRing: 5, noMac: 6, sticky: 7,
} as const;

/** Loads a director with the standard services: each VIP's ring starts with one backend. */
function standardDirector(o: Parameters<typeof TestDirector.open>[0] = {}): TestDirector {
  const d = TestDirector.open(o);
  try {
    for (const b of BACKENDS) d.setBackend(b.id, b.address, b.mac);
    d.addVip({ vip: VIP4, port: 80, protocol: 'tcp' }, VIPS.tcp4);
    d.addVip({ vip: VIP4, port: 53, protocol: 'udp' }, VIPS.udp4);
    d.addVip({ vip: VIP6, port: 443, protocol: 'tcp' }, VIPS.tcp6);
    d.addVip({ vip: VIP6, port: 53, protocol: 'udp' }, VIPS.udp6);
    d.addVip({ vip: VIP4_ALL_PORTS, port: 0, protocol: 'tcp' }, VIPS.all4);
    d.addVip({ vip: VIP4_NO_RING, port: 80, protocol: 'tcp' }, VIPS.noRing);
    d.addVip({ vip: VIP4_NO_MAC, port: 80, protocol: 'tcp' }, VIPS.noMac);
    d.addVip({ vip: VIP4_STICKY, port: 80, protocol: 'tcp' }, VIPS.sticky, VIP_F_HASH_SRC_ONLY);
    d.setRing(VIPS.tcp4, 0);
    d.setRing(VIPS.udp4, 1);
    d.setRing(VIPS.tcp6, 2);
    d.setRing(VIPS.udp6, 3);
    d.setRing(VIPS.all4, 1);
    d.setRing(VIPS.noMac, 4);
    return d;
  } catch (err) {
    d.close();
    throw err;
  }
}

function tcp4(o: { src?: string; dst?: string; sport?: number; dport?: number; flags?: number; vlans?: FrameSpec['vlans']; options?: Uint8Array } = {}): Buffer {
  return frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC, vlans: o.vlans,
    ip: { version: 4, src: o.src ?? CLIENT4, dst: o.dst ?? VIP4, options: o.options },
    l4: { kind: 'tcp', sport: o.sport ?? 40000, dport: o.dport ?? 80, flags: o.flags ?? TCP_FLAGS.ACK, payload: Buffer.from('hello') },
  });
}

function flowKey4(sport: number, dst = VIP4, dport = 80, src = CLIENT4): FlowKey {
  return { src, dst, sport, dport, proto: 6 };
}

/** Asserts XDP_TX to `backendMac` with nothing but the MACs changed. */
function assertForwarded(d: TestDirector, input: Buffer, backendMac: string, what: string): void {
  const out = d.run(input);
  assert.is(out.action, XDP.TX, `${what}: XDP_TX`);
  assert.equal(frameMacs(out.data), { dst: backendMac, src: DIRECTOR_MAC }, `${what}: MACs`);
  assert.ok(out.data.subarray(12).equals(input.subarray(12)), `${what}: the rest of the frame is unchanged`);
}

function assertPassedUnchanged(d: TestDirector, input: Buffer, what: string): void {
  const out = d.run(input);
  assert.is(out.action, XDP.PASS, `${what}: XDP_PASS`);
  assert.ok(out.data.equals(input), `${what}: bytes unchanged`);
}

let d: TestDirector;

privilegedTest('setup: the director program loads through the verifier', () => {
  d = standardDirector();
});

privilegedTest('IPv4 and IPv6, TCP and UDP to a VIP are sent to the backend (XDP_TX, MACs swapped)', () => {
  const before = d.reasons();
  assertForwarded(d, tcp4(), macOf(0), 'tcp4');
  assertForwarded(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: CLIENT4, dst: VIP4 }, l4: { kind: 'udp', sport: 5353, dport: 53, payload: Buffer.from('q') },
  }), macOf(1), 'udp4');
  assertForwarded(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6 }, l4: { kind: 'tcp', sport: 40000, dport: 443, flags: TCP_FLAGS.SYN },
  }), macOf(2), 'tcp6');
  assertForwarded(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6 }, l4: { kind: 'udp', sport: 5353, dport: 53 },
  }), macOf(3), 'udp6');
  assert.equal(reasonDelta(before, d.reasons()), { forwarded: 4, 'flow-new': 4 });
});

privilegedTest('an all-ports service (port 0) matches any port', () => {
  assertForwarded(d, tcp4({ dst: VIP4_ALL_PORTS, dport: 8443 }), macOf(1), 'all-ports 8443');
  assertForwarded(d, tcp4({ dst: VIP4_ALL_PORTS, dport: 22 }), macOf(1), 'all-ports 22');
});

privilegedTest('802.1Q and 802.1ad tagged frames are forwarded with their tag kept', () => {
  assertForwarded(d, tcp4({ vlans: [100] }), macOf(0), '802.1Q');
  assertForwarded(d, tcp4({ vlans: [{ tpid: 0x88a8, vid: 7 }] }), macOf(0), '802.1ad');
  const before = d.reasons();
  assertPassedUnchanged(d, tcp4({ vlans: [{ tpid: 0x88a8, vid: 7 }, 100] }), 'stacked tags (QinQ) go to the kernel');
  assert.equal(reasonDelta(before, d.reasons()), { 'pass-not-ip': 1 });
});

privilegedTest('IPv4 with options (IHL 6, 10 and 15) is forwarded', () => {
  for (const len of [4, 20, 40]) {
    const options = new Uint8Array(len).fill(1); // NOPs
    assertForwarded(d, tcp4({ options, sport: 41000 + len }), macOf(0), `IHL ${5 + len / 4}`);
  }
});

privilegedTest('IPv6 hop-by-hop and destination options are stepped over; a routing header goes to the kernel', () => {
  assertForwarded(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6, ext: [{ kind: 'hopopts' }, { kind: 'dstopts', length: 24 }] },
    l4: { kind: 'tcp', sport: 40001, dport: 443 },
  }), macOf(2), 'HBH + DST');
  assertForwarded(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6, ext: [{ kind: 'fragment', offset: 0, more: false }] },
    l4: { kind: 'tcp', sport: 40002, dport: 443 },
  }), macOf(2), 'atomic fragment');
  const before = d.reasons();
  assertPassedUnchanged(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6, ext: [{ kind: 'routing' }] },
    l4: { kind: 'tcp', sport: 40003, dport: 443 },
  }), 'routing header');
  assertPassedUnchanged(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6, ext: Array.from({ length: 5 }, () => ({ kind: 'dstopts' as const })) },
    l4: { kind: 'tcp', sport: 40004, dport: 443 },
  }), 'more extension headers than the parser walks');
  assert.equal(reasonDelta(before, d.reasons()), { 'pass-not-vip': 2 });
});

privilegedTest('traffic that is not for a VIP service passes to the kernel unchanged', () => {
  const before = d.reasons();
  assertPassedUnchanged(d, tcp4({ dst: '198.18.0.99' }), 'other address');
  assertPassedUnchanged(d, tcp4({ dport: 81 }), 'other port on a VIP');
  assertPassedUnchanged(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: CLIENT4, dst: VIP4 }, l4: { kind: 'udp', sport: 1, dport: 80 },
  }), 'UDP to a TCP-only service');
  assertPassedUnchanged(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: CLIENT4, dst: VIP4 }, l4: { kind: 'raw', proto: 47, payload: Buffer.alloc(24) },
  }), 'GRE to a VIP');
  assertPassedUnchanged(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: 'fd00::99' }, l4: { kind: 'tcp', sport: 1, dport: 443 },
  }), 'other IPv6 address');
  assert.equal(reasonDelta(before, d.reasons()), { 'pass-not-vip': 5 });
  const arp = d.reasons();
  assertPassedUnchanged(d, arpRequest({ senderIp: CLIENT4, targetIp: VIP4 }), 'ARP');
  assert.equal(reasonDelta(arp, d.reasons()), { 'pass-not-ip': 1 });
});

privilegedTest('the VIP address prefilter: only a set bit leads to the lookups; an unwritten filter lets every address through', () => {
  const filter = d.vipFilter();
  try {
    // Another address sharing a VIP's bit: looked up, found to be no VIP, passed all the same.
    const vipBit = vipFilterBit(VIP4);
    let twin = '';
    for (let i = 0; i < 1 << 20 && !twin; i++) {
      const a = `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
      if (a !== VIP4 && vipFilterBit(a) === vipBit) twin = a;
    }
    assert.ok(twin, 'an address sharing the VIP\'s bit');
    const before = d.reasons();
    assertPassedUnchanged(d, tcp4({ dst: twin }), `${twin}, sharing ${VIP4}'s bit`);
    assert.ok(!vipFilterHas(filter, '198.18.0.99'), 'a test address without a bit');
    assertPassedUnchanged(d, tcp4({ dst: '198.18.0.99' }), 'an address whose bit is clear');
    assert.equal(reasonDelta(before, d.reasons()), { 'pass-not-vip': 2 });
    // The filter decides: a written filter without the VIP's bit sends its traffic to the kernel...
    d.obj.map('vip_filter').update(Buffer.alloc(4), encodeVipFilter([VIP6]));
    assertPassedUnchanged(d, tcp4({ sport: 46000 }), 'a VIP whose bit is clear');
    assertForwarded(d, frame({ srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC, ip: { version: 6, src: CLIENT6, dst: VIP6 }, l4: { kind: 'tcp', sport: 46000, dport: 443 } }), macOf(2), 'IPv6 VIP, bit set');
    // ...and a filter user space has not written yet (an older pin root's fresh map) filters nothing.
    d.obj.map('vip_filter').update(Buffer.alloc(4), Buffer.alloc(filter.length));
    assertForwarded(d, tcp4({ sport: 46001 }), macOf(0), 'unwritten filter');
  } finally {
    d.obj.map('vip_filter').update(Buffer.alloc(4), filter);
  }
});

privilegedTest('Ethernet padding after a short IP packet is not mistaken for headers', () => {
  const f = tcp4({ sport: 42000 });
  const padded = Buffer.concat([f, Buffer.alloc(8)]);
  assertForwarded(d, padded, macOf(0), 'padded frame');
});

privilegedTest('malformed IP headers are dropped as parse errors', () => {
  const before = d.reasons();
  const good = tcp4({ sport: 42001 });
  const ihl4 = Buffer.from(good); ihl4[14] = 0x44;
  const tooLong = Buffer.from(good); tooLong.writeUInt16BE(1500, 16);
  const shortTotal = Buffer.from(good); shortTotal.writeUInt16BE(19, 16);
  const v6InV4 = Buffer.from(good); v6InV4[14] = 0x65;
  const truncatedTcp = good.subarray(0, 14 + 20 + 10);
  truncatedTcp.writeUInt16BE(30, 16);
  for (const [what, f] of Object.entries({ ihl4, tooLong, shortTotal, v6InV4, truncatedTcp })) {
    assert.is(d.run(f).action, XDP.DROP, what);
  }
  assert.equal(reasonDelta(before, d.reasons()), { 'drop-parse': 5 });
});

privilegedTest('fragments addressed to a VIP are dropped and counted; others pass', () => {
  const first4 = frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: CLIENT4, dst: VIP4, fragment: { offset: 0, more: true } },
    l4: { kind: 'tcp', sport: 43000, dport: 80, payload: Buffer.alloc(64) },
  });
  const later4AllPorts = frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: CLIENT4, dst: VIP4_ALL_PORTS, fragment: { offset: 1480, more: false } },
    l4: { kind: 'raw', proto: 6, payload: Buffer.alloc(100) },
  });
  const first6 = frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6, ext: [{ kind: 'fragment', offset: 0, more: true }] },
    l4: { kind: 'udp', sport: 43000, dport: 53, payload: Buffer.alloc(64) },
  });
  const later6 = frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: 'fd00::99', ext: [{ kind: 'fragment', offset: 1232, more: false }] },
    l4: { kind: 'raw', proto: 17, payload: Buffer.alloc(100) },
  });
  const notVip4 = frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: CLIENT4, dst: '198.18.0.99', fragment: { offset: 0, more: true } },
    l4: { kind: 'tcp', sport: 43000, dport: 80, payload: Buffer.alloc(64) },
  });
  // A later fragment has no ports: it matches only an all-ports service. For a port-specific
  // service it reaches the kernel, which can never reassemble it (the first fragment was dropped).
  const later4PortSpecific = frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: CLIENT4, dst: VIP4, fragment: { offset: 1480, more: false } },
    l4: { kind: 'raw', proto: 6, payload: Buffer.alloc(100) },
  });
  const before = d.reasons();
  assertPassedUnchanged(d, later4PortSpecific, 'IPv4 later fragment to a port-specific VIP');
  assert.is(d.run(first4).action, XDP.DROP, 'IPv4 first fragment to VIP:80');
  assert.is(d.run(later4AllPorts).action, XDP.DROP, 'IPv4 later fragment to an all-ports VIP');
  assert.is(d.run(first6).action, XDP.DROP, 'IPv6 first fragment to VIP:53');
  assertPassedUnchanged(d, later6, 'IPv6 later fragment to a non-VIP address');
  assertPassedUnchanged(d, notVip4, 'IPv4 fragment to a non-VIP address');
  assert.equal(reasonDelta(before, d.reasons()), { 'drop-fragment': 3, 'pass-not-vip': 3 });
});

/** The reply a real server sends from VIP:port to the client (what routers quote in ICMP errors). */
function serverReply(family: 4 | 6, sport: number, clientPort: number, l4kind: 'tcp' | 'udp' = 'tcp'): Buffer {
  const l4: L4 = { kind: l4kind, sport, dport: clientPort, payload: Buffer.alloc(1400) };
  return family === 4
    ? ipPacket({ version: 4, src: VIP4, dst: CLIENT4 }, l4)
    : ipPacket({ version: 6, src: VIP6, dst: CLIENT6 }, l4);
}

privilegedTest('ICMP fragmentation-needed and ICMPv6 packet-too-big about a VIP flow go to that flow\'s backend', () => {
  // Establish flows on backends 0 (v4) and 2 (v6), then move the rings elsewhere: the errors
  // must follow the flow table, not the new ring.
  assertForwarded(d, tcp4({ sport: 44000 }), macOf(0), 'v4 flow');
  assertForwarded(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6 }, l4: { kind: 'tcp', sport: 44000, dport: 443 },
  }), macOf(2), 'v6 flow');
  d.setRing(VIPS.tcp4, 1);
  d.setRing(VIPS.tcp6, 3);
  try {
    const before = d.reasons();
    const frag4 = icmpError({ router: ROUTER4, quoted: serverReply(4, 80, 44000), type: 3, code: 4, mtu: 1400, srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC });
    assertForwarded(d, frag4, macOf(0), 'ICMP frag-needed');
    const ptb6 = icmpError({ router: ROUTER6, quoted: serverReply(6, 443, 44000), type: 2, code: 0, mtu: 1280, srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC });
    assertForwarded(d, ptb6, macOf(2), 'ICMPv6 packet-too-big');
    // A flow this director never saw (another director behind ECMP had it): the ring's choice.
    const unseen = icmpError({ router: ROUTER4, quoted: serverReply(4, 80, 44999), type: 3, code: 4, mtu: 1400, srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC });
    assertForwarded(d, unseen, macOf(1), 'ICMP about an unseen flow');
    const timeExceeded = icmpError({ router: ROUTER4, quoted: serverReply(4, 80, 44000), type: 11, code: 0, srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC });
    assertForwarded(d, timeExceeded, macOf(0), 'ICMP time exceeded');
    assert.equal(reasonDelta(before, d.reasons()), { 'icmp-forwarded': 4 });
    assert.is(d.flow(flowKey4(44999)), null, 'an ICMP error never creates a flow');
  } finally {
    d.setRing(VIPS.tcp4, 0);
    d.setRing(VIPS.tcp6, 2);
  }
});

privilegedTest('an ICMP error about an unseen flow picks the backend the flow itself would get (ECMP peers agree)', () => {
  const ring = new Uint32Array(d.ringSize);
  for (let i = 0; i < ring.length; i++) ring[i] = i % 2;
  d.setRing(VIPS.tcp4, ring);
  try {
    const chosen = new Set<string>();
    for (let port = 50000; port < 50032; port++) {
      const err = icmpError({ router: ROUTER4, quoted: serverReply(4, 80, port), type: 3, code: 4, mtu: 1400, srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC });
      const viaIcmp = d.run(err);
      assert.is(viaIcmp.action, XDP.TX, `ICMP about port ${port}`);
      const icmpMac = frameMacs(viaIcmp.data).dst;
      chosen.add(icmpMac);
      assertForwarded(d, tcp4({ sport: port, flags: TCP_FLAGS.SYN }), icmpMac, `the flow of port ${port}`);
    }
    assert.is(chosen.size, 2, 'the ring really has two backends to choose from');
  } finally {
    d.setRing(VIPS.tcp4, 0);
  }
});

privilegedTest('other ICMP passes to the kernel: echo, errors about non-VIP traffic, neighbour discovery', () => {
  const before = d.reasons();
  assertPassedUnchanged(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 4, src: CLIENT4, dst: VIP4 }, l4: { kind: 'icmp', type: 8, code: 0, rest: 0x00010001, payload: Buffer.alloc(32) },
  }), 'echo request to a VIP');
  assertPassedUnchanged(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6 }, l4: { kind: 'icmp', type: 128, code: 0, payload: Buffer.alloc(32) },
  }), 'ICMPv6 echo request to a VIP');
  assertPassedUnchanged(d, frame({
    srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC,
    ip: { version: 6, src: CLIENT6, dst: VIP6 }, l4: { kind: 'icmp', type: 135, code: 0, payload: Buffer.alloc(20) },
  }), 'neighbour solicitation');
  const otherPort = ipPacket({ version: 4, src: VIP4, dst: CLIENT4 }, { kind: 'tcp', sport: 81, dport: 44000 });
  assertPassedUnchanged(d, icmpError({ router: ROUTER4, quoted: otherPort, type: 3, code: 4, mtu: 1400, srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC }),
    'error about a non-service port');
  const notFromVip = ipPacket({ version: 4, src: '198.18.0.99', dst: CLIENT4 }, { kind: 'tcp', sport: 80, dport: 44000 });
  assertPassedUnchanged(d, icmpError({ router: ROUTER4, quoted: notFromVip, type: 3, code: 4, mtu: 1400, srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC }),
    'error about a non-VIP address');
  assert.equal(reasonDelta(before, d.reasons()), { 'pass-icmp': 5 });
});

privilegedTest('flow stickiness: after a ring swap an existing flow keeps its backend, a new flow follows the ring', () => {
  assertForwarded(d, tcp4({ sport: 45000, flags: TCP_FLAGS.SYN }), macOf(0), 'flow before the swap');
  d.setRing(VIPS.tcp4, 1);
  try {
    const before = d.reasons();
    assertForwarded(d, tcp4({ sport: 45000 }), macOf(0), 'same flow after the swap');
    assertForwarded(d, tcp4({ sport: 45001, flags: TCP_FLAGS.SYN }), macOf(1), 'new flow after the swap');
    assert.equal(reasonDelta(before, d.reasons()), { forwarded: 2, 'flow-hit': 1, 'flow-new': 1 });
    const state = d.flow(flowKey4(45000));
    assert.ok(state, 'the flow is in the connection table');
    assert.is(state!.backendMac, macOf(0));
    assert.is(state!.backendId, 0);
  } finally {
    d.setRing(VIPS.tcp4, 0);
  }
});

privilegedTest('deleting a VIP stops its established flows at once (flow cache too); a reused VIP id inherits none of them', () => {
  const vipA = '198.18.0.20', vipB = '198.18.0.21', id = 8;
  d.addVip({ vip: vipA, port: 80, protocol: 'tcp' }, id);
  d.setRing(id, 2);
  try {
    assertForwarded(d, tcp4({ dst: vipA, sport: 48000, flags: TCP_FLAGS.SYN }), macOf(2), 'SYN');
    let before = d.reasons();
    for (let i = 0; i < 3; i++) assertForwarded(d, tcp4({ dst: vipA, sport: 48000 }), macOf(2), `established ${i}`);
    assert.equal(reasonDelta(before, d.reasons()), { forwarded: 3, 'flow-hit': 3 });

    d.removeVip({ vip: vipA, port: 80, protocol: 'tcp' });
    before = d.reasons();
    assertPassedUnchanged(d, tcp4({ dst: vipA, sport: 48000 }), 'after the VIP is deleted');
    assert.equal(reasonDelta(before, d.reasons()), { 'pass-not-vip': 1 });

    // The id goes to another service: the old VIP's flow is still no VIP flow, the new one works.
    d.addVip({ vip: vipB, port: 80, protocol: 'tcp' }, id);
    d.setRing(id, 3);
    assertPassedUnchanged(d, tcp4({ dst: vipA, sport: 48000 }), 'old VIP, id reused');
    assertForwarded(d, tcp4({ dst: vipB, sport: 48000, flags: TCP_FLAGS.SYN }), macOf(3), 'new VIP on the reused id');
    assertForwarded(d, tcp4({ dst: vipB, sport: 48000 }), macOf(3), 'new VIP, established');
    // The old VIP's SYN went straight into vip_stats (the harness, unlike the control plane, does
    // not reset it on reuse); its 3 cached packets were pending in the flow cache and died with
    // the VIP's generation: the new service on the id counts none of them.
    assert.is(d.vipCounter(id).packets, 1n + 2n, 'vip_stats[id]: the old SYN + the new service\'s 2 packets');
    assert.is(d.backendCounter(2).packets >= 4n, true, 'the old VIP\'s packets still count for their backend');
  } finally {
    d.removeVip({ vip: vipB, port: 80, protocol: 'tcp' });
  }
});

privilegedTest('a backend id given to another server starts from zero: packets the old one forwarded from the flow cache are not its', () => {
  assertForwarded(d, tcp4({ sport: 49000, flags: TCP_FLAGS.SYN }), macOf(0), 'SYN');
  for (let i = 0; i < 3; i++) assertForwarded(d, tcp4({ sport: 49000 }), macOf(0), `established ${i}`);
  assert.ok(d.pending().backends.get(0)!.packets >= 3n, 'the cache hits are pending in the flow cache');
  d.reuseBackendId(0); // as the control plane does: backend_gens[0] moves on, backend_stats[0] zeroed
  assert.equal(d.backendCounter(0), { packets: 0n, bytes: 0n }, 'the reused id shows nothing of the old server');
  // The next packet refills the slot (the epoch moved on): the old pending counts leave the entry
  // and, being of another generation, go to no backend; the packet itself counts.
  d.bumpCacheEpoch();
  const ack = tcp4({ sport: 49000 });
  assertForwarded(d, ack, macOf(0), 'after the reuse');
  assert.equal(d.backendCounter(0), { packets: 1n, bytes: BigInt(ack.length) }, 'only what came after the reuse');
});

privilegedTest('a backend\'s MAC change moves its flows still on the previous MAC (cached ones too); other flows of the id stay', () => {
  const [a, b, c] = ['02:be:00:00:00:00', '02:be:00:00:07:0b', '02:be:00:00:07:0c'];
  const moved = tcp4({ sport: 47000 });
  assertForwarded(d, tcp4({ sport: 47000, flags: TCP_FLAGS.SYN }), a, 'new flow on backend 0');
  assertForwarded(d, moved, a, 'established, cached');
  try {
    // A change whose previous MAC is not this flow's (another server the id named before): it stays.
    d.setBackend(0, BACKENDS[0].address, b, c);
    assertForwarded(d, moved, a, 'a flow holding another MAC of the id stays');
    assertForwarded(d, tcp4({ sport: 47001, flags: TCP_FLAGS.SYN }), b, 'a new flow takes the new MAC');
    // The same server's MAC changed from the flow's: it follows, in `flows` as well.
    d.setBackend(0, BACKENDS[0].address, b, a);
    assertForwarded(d, moved, b, 'the flow follows its server to the new MAC');
    assert.is(d.flow(flowKey4(47000))!.backendMac, b, 'the connection table holds the new MAC');
    // No MAC now (lost): nothing moves, nothing is sent to a MAC nobody has.
    d.setBackend(0, BACKENDS[0].address, null, b);
    assertForwarded(d, moved, b, 'no current MAC: the flow keeps its MAC');
  } finally {
    d.setBackend(0, BACKENDS[0].address, a);
  }
});

privilegedTest('HASH_SRC_ONLY sends all of a client\'s flows to one backend', () => {
  const ring = new Uint32Array(d.ringSize);
  for (let i = 0; i < ring.length; i++) ring[i] = i % 2;
  d.setRing(VIPS.sticky, ring);
  for (const client of ['198.18.1.10', '198.18.1.11', '198.18.1.12']) {
    const seen = new Set<string>();
    for (let port = 1000; port < 1064; port++) {
      const out = d.run(tcp4({ src: client, dst: VIP4_STICKY, sport: port, flags: TCP_FLAGS.SYN }));
      assert.is(out.action, XDP.TX);
      seen.add(frameMacs(out.data).dst);
    }
    assert.is(seen.size, 1, `client ${client} uses one backend, got ${[...seen].join(', ')}`);
  }
});

privilegedTest('TCP FIN and RST mark the flow closing and still reach its backend; a SYN on a closing flow picks again', () => {
  assertForwarded(d, tcp4({ sport: 46000, flags: TCP_FLAGS.SYN }), macOf(0), 'FIN flow');
  assertForwarded(d, tcp4({ sport: 46001, flags: TCP_FLAGS.SYN }), macOf(0), 'RST flow');
  d.setRing(VIPS.tcp4, 1);
  try {
    const before = d.reasons();
    assertForwarded(d, tcp4({ sport: 46000, flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK }), macOf(0), 'FIN');
    assertForwarded(d, tcp4({ sport: 46001, flags: TCP_FLAGS.RST }), macOf(0), 'RST');
    assert.equal(reasonDelta(before, d.reasons()), { forwarded: 2, 'flow-hit': 2, 'tcp-closing': 2 });
    assert.is(d.flow(flowKey4(46000))!.flags & FLOW_F_CLOSING, FLOW_F_CLOSING, 'FIN: closing');
    assert.is(d.flow(flowKey4(46001))!.flags & FLOW_F_CLOSING, FLOW_F_CLOSING, 'RST: closing');
    // The last ACK of the teardown (within the closing timeout) still goes to the same server.
    assertForwarded(d, tcp4({ sport: 46000, flags: TCP_FLAGS.ACK }), macOf(0), 'last ACK');
    // A new connection on the same port: the entry is replaced by the ring's choice.
    assertForwarded(d, tcp4({ sport: 46000, flags: TCP_FLAGS.SYN }), macOf(1), 'SYN reusing the port');
    const state = d.flow(flowKey4(46000))!;
    assert.is(state.backendMac, macOf(1));
    assert.is(state.flags & FLOW_F_CLOSING, 0, 'the new connection is not closing');
  } finally {
    d.setRing(VIPS.tcp4, 0);
  }
});

privilegedTest('a FIN on a new flow records it closing', () => {
  assertForwarded(d, tcp4({ sport: 46500, flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK }), macOf(0), 'FIN first');
  assert.is(d.flow(flowKey4(46500))!.flags & FLOW_F_CLOSING, FLOW_F_CLOSING);
});

privilegedTest('expired flows (closing and idle timeouts, set tiny through .rodata) pick again', () => {
  const closing = standardDirector({ flowClosingTimeoutNs: 1n });
  try {
    assertForwarded(closing, tcp4({ sport: 47000, flags: TCP_FLAGS.SYN }), macOf(0), 'open');
    assertForwarded(closing, tcp4({ sport: 47000, flags: TCP_FLAGS.ACK }), macOf(0), 'established');
    assertForwarded(closing, tcp4({ sport: 47000, flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK }), macOf(0), 'FIN');
    closing.setRing(VIPS.tcp4, 1);
    assertForwarded(closing, tcp4({ sport: 47000, flags: TCP_FLAGS.ACK }), macOf(1), 'after the closing timeout');
  } finally {
    closing.close();
  }
  const idle = standardDirector({ flowIdleTimeoutNs: 1n });
  try {
    assertForwarded(idle, tcp4({ sport: 47001, flags: TCP_FLAGS.SYN }), macOf(0), 'open');
    idle.setRing(VIPS.tcp4, 1);
    const before = idle.reasons();
    assertForwarded(idle, tcp4({ sport: 47001, flags: TCP_FLAGS.SYN }), macOf(1), 'SYN after the idle timeout');
    assert.equal(reasonDelta(before, idle.reasons()), { forwarded: 1, 'flow-new': 1 });
  } finally {
    idle.close();
  }
});

privilegedTest('weights: a 3:1 Maglev ring splits 4000 distinct flows about 3:1', () => {
  const ring = buildMaglevRing([{ address: BACKENDS[0].address, weight: 3 }, { address: BACKENDS[1].address, weight: 1 }], d.ringSize)!;
  const ids = ring.slots.map((i) => (ring.backends[i]!.address === BACKENDS[0].address ? 0 : 1));
  const share0 = ids.filter((x) => x === 0).length / ids.length;
  assert.ok(Math.abs(share0 - 0.75) < 0.01, `ring share of backend 0 is ${share0}`);
  d.setRing(VIPS.all4, ids);
  try {
    const counts = new Map<string, number>();
    for (let i = 0; i < 4000; i++) {
      const src = `198.18.${16 + (i >> 8)}.${i & 0xff}`;
      const out = d.run(tcp4({ src, dst: VIP4_ALL_PORTS, sport: 10000 + ((i * 7919) % 50000), dport: 8080, flags: TCP_FLAGS.SYN }));
      assert.is(out.action, XDP.TX);
      const mac = frameMacs(out.data).dst;
      counts.set(mac, (counts.get(mac) ?? 0) + 1);
    }
    const a = counts.get(macOf(0)) ?? 0, b = counts.get(macOf(1)) ?? 0;
    assert.is(a + b, 4000, `only the ring's backends: ${JSON.stringify([...counts])}`);
    const share = a / 4000;
    // Binomial(4000, 0.75): sd 0.7 %; 0.72..0.78 is more than 4 sd either side.
    assert.ok(share > 0.72 && share < 0.78, `backend 0 got ${(share * 100).toFixed(1)} % of new flows, want ~75 %`);
  } finally {
    d.setRing(VIPS.all4, 1);
  }
});

privilegedTest('no ring, or a backend MAC nobody knows: dropped, counted, no flow recorded', () => {
  const before = d.reasons();
  assert.is(d.run(tcp4({ dst: VIP4_NO_RING, sport: 48000 })).action, XDP.DROP, 'no ring');
  assert.is(d.run(tcp4({ dst: VIP4_NO_MAC, sport: 48000 })).action, XDP.DROP, 'no MAC');
  assert.equal(reasonDelta(before, d.reasons()), { 'drop-no-backend': 1, 'drop-mac-unresolved': 1 });
  assert.is(d.flow(flowKey4(48000, VIP4_NO_MAC)), null, 'no flow for an unresolved MAC');
  // Once the control plane learns the MAC, the client's retransmission gets through.
  d.setBackend(4, BACKENDS[4].address, '02:be:00:00:00:04');
  try {
    assertForwarded(d, tcp4({ dst: VIP4_NO_MAC, sport: 48000 }), '02:be:00:00:00:04', 'retransmission');
  } finally {
    d.setBackend(4, BACKENDS[4].address, null);
  }
});

privilegedTest('without a MAC from the control plane, bpf_fib_lookup finds on-link neighbours (in a private netns)', () => {
  // The child builds a veth link with static neighbours in an anonymous network namespace of its
  // own (gone when it exits) and runs frames with that link as the ingress interface.
  const child = fileURLToPath(new URL('./fib-netns-child.ts', import.meta.url));
  const r = spawnSync('unshare', ['--net', process.execPath, '--import', 'tsx', child], { encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, `child failed: ${r.stderr}`);
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, { action: number; dst: string } & Record<string, number>>;
  assert.equal(res.v4, { action: XDP.TX, dst: '02:be:00:00:00:07' }, 'IPv4 neighbour');
  assert.equal(res.v6Backend, { action: XDP.TX, dst: '02:be:00:00:00:08' }, 'IPv6 neighbour');
  assert.is(res.noNeighbour!.action, XDP.DROP, 'on-link, neighbour unknown');
  assert.is(res.viaGateway!.action, XDP.DROP, 'behind a gateway: the gateway\'s MAC is not the backend\'s');
  assert.equal(res.reasons, { forwarded: 2, 'flow-new': 2, 'fib-lookup': 2, 'drop-mac-unresolved': 2 });
  assert.is(res.flowMac as unknown, '02:be:00:00:00:07', 'the flow keeps the MAC it was sent to');
  // The kernel answers FIB lookups only for interfaces that forward.
  assert.is(res.forwardingOff!.action, XDP.DROP, 'forwarding disabled on the interface');
  assert.equal(res.forwardingOffReasons, { 'drop-mac-unresolved': 1 });
});

privilegedTest('counters: every packet is counted under exactly one verdict; service and backend counters are exact', () => {
  const c = standardDirector();
  try {
    const sent: { frame: Buffer; expect: string; vip?: number; backend?: number }[] = [];
    for (let i = 0; i < 50; i++) sent.push({ frame: tcp4({ sport: 30000 + i }), expect: 'forwarded', vip: VIPS.tcp4, backend: 0 });
    for (let i = 0; i < 20; i++) {
      sent.push({
        frame: frame({ srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC, ip: { version: 6, src: CLIENT6, dst: VIP6 }, l4: { kind: 'udp', sport: 30000 + i, dport: 53, payload: Buffer.alloc(i) } }),
        expect: 'forwarded', vip: VIPS.udp6, backend: 3,
      });
    }
    for (let i = 0; i < 7; i++) sent.push({ frame: tcp4({ dst: '198.18.0.99', sport: i + 1 }), expect: 'pass-not-vip' });
    for (let i = 0; i < 3; i++) sent.push({ frame: arpRequest({ senderIp: CLIENT4, targetIp: VIP4 }), expect: 'pass-not-ip' });
    for (let i = 0; i < 4; i++) sent.push({ frame: tcp4({ dst: VIP4_NO_RING, sport: i + 1 }), expect: 'drop-no-backend' });
    sent.push({
      frame: icmpError({ router: ROUTER4, quoted: serverReply(4, 80, 30000), type: 3, code: 4, mtu: 1400, srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC }),
      expect: 'icmp-forwarded', vip: VIPS.tcp4, backend: 0,
    });
    for (const s of sent) c.run(s.frame);

    const reasons = c.reasons();
    const want = new Map<string, { packets: bigint; bytes: bigint }>();
    for (const s of sent) {
      const w = want.get(s.expect) ?? { packets: 0n, bytes: 0n };
      w.packets += 1n; w.bytes += BigInt(s.frame.length);
      want.set(s.expect, w);
    }
    for (const name of VERDICT_NAMES) {
      assert.equal(reasons.get(name), want.get(name) ?? { packets: 0n, bytes: 0n }, `reason ${name}`);
    }
    const total = VERDICT_NAMES.reduce((n, name) => n + reasons.get(name)!.packets, 0n);
    assert.is(total, BigInt(sent.length), 'verdicts sum to the packets sent');
    for (const [vip, backend] of [[VIPS.tcp4, 0], [VIPS.udp6, 3]] as const) {
      const mine = sent.filter((s) => s.vip === vip);
      const bytes = mine.reduce((n, s) => n + BigInt(s.frame.length), 0n);
      assert.equal(c.vipCounter(vip), { packets: BigInt(mine.length), bytes }, `vip_stats[${vip}]`);
      assert.equal(c.backendCounter(backend), { packets: BigInt(mine.length), bytes }, `backend_stats[${backend}]`);
    }
    assert.equal(c.vipCounter(VIPS.noRing), { packets: 0n, bytes: 0n }, 'dropped packets are not service traffic');
    assert.is(reasons.get('flow-new')!.packets, 70n);
  } finally {
    c.close();
  }
});

privilegedTest('the default ring size (65537 slots) verifies and forwards', () => {
  const big = TestDirector.open({ ringSize: 65537 });
  try {
    big.setBackend(0, BACKENDS[0].address, BACKENDS[0].mac);
    big.addVip({ vip: VIP4, port: 80, protocol: 'tcp' }, 0);
    big.setRing(0, 0);
    assertForwarded(big, tcp4({ sport: 49000 }), macOf(0), 'ring of 65537');
  } finally {
    big.close();
  }
});

privilegedTest('teardown', () => {
  d?.close();
});

test.run();
