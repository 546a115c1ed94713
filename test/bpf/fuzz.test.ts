/**
 * Seeded fuzz of the director's XDP program through BPF_PROG_TEST_RUN: random frames and valid
 * frames mutated (truncated at every length, bits flipped, IHL and length fields made bogus,
 * VLAN tags stacked, IPv6 extension headers garbled). Whatever the input, the program must
 * pass it unchanged, drop it, or send it to a configured backend with only its MACs changed,
 * and count it under exactly one verdict.
 *
 * Reproduce a failure with XDIR_FUZZ_SEED=<seed printed in the failure> node --import tsx test/bpf/fuzz.test.ts
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { privilegedTest } from '../lib/privileged.js';
import {
  ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, TCP_FLAGS, arpRequest, frame, frameMacs, icmpError, ipPacket,
  type FrameSpec,
} from '../lib/packets.js';
import { mutate } from '../lib/frame-mutations.js';
import { TestDirector, VERDICT_NAMES, XDP } from './director-harness.js';
import { mulberry32 } from '../lib/prng.js';

const SEED = Number(process.env.XDIR_FUZZ_SEED ?? 0x5eed1234) >>> 0;
const RANDOM_FRAMES = 3500;
const MUTATIONS_PER_BASE = 450;


const DIRECTOR_MAC = '02:d1:00:00:00:01';
const ROUTER_MAC = '02:c1:00:00:00:01';
const BACKEND_MACS = ['02:be:00:00:00:00', '02:be:00:00:00:01', '02:be:00:00:00:02'];

function setUp(d: TestDirector): void {
  d.setBackend(0, '198.18.2.1', BACKEND_MACS[0]!);
  d.setBackend(1, '198.18.2.2', BACKEND_MACS[1]!);
  d.setBackend(2, 'fd00:2::1', BACKEND_MACS[2]!);
  d.setBackend(3, '198.18.2.9', null); // unresolvable: exercises the FIB fallback
  d.addVip({ vip: '198.18.0.10', port: 80, protocol: 'tcp' }, 0);
  d.addVip({ vip: '198.18.0.10', port: 53, protocol: 'udp' }, 1);
  d.addVip({ vip: '198.18.0.11', port: 0, protocol: 'tcp' }, 2);
  d.addVip({ vip: 'fd00::10', port: 443, protocol: 'tcp' }, 3);
  d.addVip({ vip: 'fd00::10', port: 0, protocol: 'udp' }, 4);
  d.addVip({ vip: '198.18.0.12', port: 80, protocol: 'tcp' }, 5); // no ring
  const mixed = new Uint32Array(d.ringSize);
  for (let i = 0; i < mixed.length; i++) mixed[i] = i % 4; // includes the MAC-less backend 3
  d.setRing(0, mixed);
  d.setRing(1, 1);
  d.setRing(2, mixed);
  d.setRing(3, 2);
  d.setRing(4, 2);
}

/** Valid frames reaching every path of the program: the material the mutations start from. */
function baseFrames(): Buffer[] {
  const eth = { srcMac: ROUTER_MAC, dstMac: DIRECTOR_MAC };
  const specs: FrameSpec[] = [
    { ...eth, ip: { version: 4, src: '198.18.1.1', dst: '198.18.0.10' }, l4: { kind: 'tcp', sport: 40000, dport: 80, flags: TCP_FLAGS.SYN } },
    { ...eth, vlans: [100], ip: { version: 4, src: '198.18.1.1', dst: '198.18.0.10', options: new Uint8Array(12).fill(1) }, l4: { kind: 'tcp', sport: 40001, dport: 80, flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK, payload: Buffer.alloc(30) } },
    { ...eth, ip: { version: 4, src: '198.18.1.2', dst: '198.18.0.10' }, l4: { kind: 'udp', sport: 5353, dport: 53, payload: Buffer.alloc(12) } },
    { ...eth, ip: { version: 4, src: '198.18.1.3', dst: '198.18.0.11' }, l4: { kind: 'tcp', sport: 1, dport: 9999, flags: TCP_FLAGS.RST } },
    { ...eth, ip: { version: 4, src: '198.18.1.3', dst: '198.18.0.10', fragment: { offset: 0, more: true } }, l4: { kind: 'tcp', sport: 2, dport: 80, payload: Buffer.alloc(40) } },
    { ...eth, ip: { version: 6, src: 'fd00:1::1', dst: 'fd00::10' }, l4: { kind: 'tcp', sport: 40000, dport: 443, flags: TCP_FLAGS.SYN } },
    { ...eth, vlans: [{ tpid: ETH_P_8021AD, vid: 5 }], ip: { version: 6, src: 'fd00:1::1', dst: 'fd00::10', ext: [{ kind: 'hopopts' }, { kind: 'dstopts', length: 16 }] }, l4: { kind: 'udp', sport: 1, dport: 5000, payload: Buffer.alloc(20) } },
    { ...eth, ip: { version: 6, src: 'fd00:1::1', dst: 'fd00::10', ext: [{ kind: 'fragment', offset: 0, more: true }] }, l4: { kind: 'udp', sport: 1, dport: 53, payload: Buffer.alloc(20) } },
    { ...eth, ip: { version: 4, src: '198.18.1.4', dst: '198.18.0.12' }, l4: { kind: 'tcp', sport: 3, dport: 80 } },
    { ...eth, ip: { version: 4, src: '198.18.1.5', dst: '198.18.0.10' }, l4: { kind: 'icmp', type: 8, code: 0, payload: Buffer.alloc(16) } },
  ];
  const frames = specs.map(frame);
  const reply4 = ipPacket({ version: 4, src: '198.18.0.10', dst: '198.18.1.1', options: new Uint8Array(4).fill(1) }, { kind: 'tcp', sport: 80, dport: 40000, payload: Buffer.alloc(100) });
  const reply6 = ipPacket({ version: 6, src: 'fd00::10', dst: 'fd00:1::1' }, { kind: 'tcp', sport: 443, dport: 40000, payload: Buffer.alloc(100) });
  frames.push(icmpError({ router: '198.18.3.1', quoted: reply4, type: 3, code: 4, mtu: 1400, ...eth }));
  frames.push(icmpError({ router: 'fd00:3::1', quoted: reply6, type: 2, code: 0, mtu: 1280, quoteBytes: 64, ...eth }));
  frames.push(arpRequest({ senderIp: '198.18.1.1', targetIp: '198.18.0.10' }));
  return frames;
}

function randomFrame(rand: () => number): Buffer {
  const int = (n: number): number => Math.floor(rand() * n);
  const f = Buffer.alloc(ETH_HLEN + int(300));
  for (let i = 0; i < f.length; i++) f[i] = int(256);
  // Half of them claim to be IP (possibly behind a tag), so the parser gets past Ethernet.
  const r = rand();
  if (r < 0.25) f.writeUInt16BE(0x0800, 12);
  else if (r < 0.5) f.writeUInt16BE(0x86dd, 12);
  else if (r < 0.6 && f.length >= 18) { f.writeUInt16BE(ETH_P_8021Q, 12); f.writeUInt16BE(rand() < 0.5 ? 0x0800 : 0x86dd, 16); }
  if (r < 0.25 && f.length > 14) f[14] = 0x40 | (f[14]! & 0x0f);
  if (r >= 0.25 && r < 0.5 && f.length > 14) f[14] = 0x60 | (f[14]! & 0x0f);
  return f;
}

privilegedTest(`fuzz: >= 10,000 frames, every verdict is pass-unchanged, drop or TX to a backend (seed ${SEED})`, () => {
  const d = TestDirector.open({ ringSize: 1031 });
  try {
    setUp(d);
    const rand = mulberry32(SEED);
    const frames: { frame: Buffer; how: string }[] = [];
    const bases = baseFrames();
    bases.forEach((base, b) => {
      for (let len = ETH_HLEN; len <= base.length; len++) frames.push({ frame: base.subarray(0, len), how: `base ${b} truncated to ${len}` });
      for (let i = 0; i < MUTATIONS_PER_BASE; i++) frames.push({ frame: mutate(base, rand), how: `base ${b} mutation ${i}` });
    });
    for (let i = 0; i < RANDOM_FRAMES; i++) frames.push({ frame: randomFrame(rand), how: `random ${i}` });
    assert.ok(frames.length >= 10_000, `${frames.length} frames`);

    const actions = new Map<number, number>();
    let bytes = 0n;
    for (const { frame: input, how } of frames) {
      const where = `seed ${SEED}, ${how}, frame ${input.toString('hex')}`;
      const out = d.run(input);
      bytes += BigInt(input.length);
      actions.set(out.action, (actions.get(out.action) ?? 0) + 1);
      if (out.action === XDP.PASS) {
        assert.ok(out.data.equals(input), `XDP_PASS changed the frame (${where})`);
      } else if (out.action === XDP.TX) {
        const macs = frameMacs(out.data);
        assert.ok(BACKEND_MACS.includes(macs.dst), `XDP_TX to ${macs.dst}, not a backend (${where})`);
        assert.is(macs.src, frameMacs(input).dst, `XDP_TX source MAC is not the frame's destination (${where})`);
        assert.ok(out.data.subarray(12).equals(input.subarray(12)), `XDP_TX changed more than the MACs (${where})`);
      } else {
        assert.is(out.action, XDP.DROP, `action ${out.action} (${where})`);
      }
    }
    // Each path was exercised, and every frame was counted under exactly one verdict.
    for (const a of [XDP.PASS, XDP.DROP, XDP.TX]) assert.ok((actions.get(a) ?? 0) > 100, `action ${a} seen ${actions.get(a) ?? 0} times (seed ${SEED})`);
    const reasons = d.reasons();
    const packets = VERDICT_NAMES.reduce((n, name) => n + reasons.get(name)!.packets, 0n);
    const counted = VERDICT_NAMES.reduce((n, name) => n + reasons.get(name)!.bytes, 0n);
    assert.is(packets, BigInt(frames.length), `verdicts counted (seed ${SEED})`);
    assert.is(counted, bytes, `bytes counted (seed ${SEED})`);
    for (const name of VERDICT_NAMES) assert.ok(reasons.get(name)!.packets > 0n, `verdict ${name} never reached (seed ${SEED})`);
  } finally {
    d.close();
  }
});

test.run();
