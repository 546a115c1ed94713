/**
 * The fast path's own parse (bpf/fast_path.h) against the full parse: a frame the fast path
 * forwards from the flow cache must be one the full parse and the slow path would have forwarded
 * the same way. Differential: two loads of the director, one with the flow cache and one without
 * (flow_cache_off = 1, every packet parsed in full), get the same established flows and then the
 * same seeded stream of valid and malformed frames of those flows; every frame must get the same
 * action and the same output bytes from both, the connection tables the same CLOSING marks, and
 * the counters must agree. The test also shows that the fast path is really exercised: each
 * common-form flow, and some malformed-but-same-flow frames of it, are served from the cache
 * (its entry's pending count moves), and flows in other forms never are.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { privilegedTest } from '../lib/privileged.js';
import { ETH_P_8021AD, TCP_FLAGS, frame, type FrameSpec } from '../lib/packets.js';
import { mutate } from '../lib/frame-mutations.js';
import { mulberry32 } from '../lib/prng.js';
import { TestDirector } from './director-harness.js';
import type { FlowKey } from '../../control/dataplane/xdp/codecs.js';

const SEED = Number(process.env.XDIR_FUZZ_SEED ?? 0xfa57) >>> 0;
const MUTATIONS_PER_FLOW = 600;

const eth = { srcMac: '02:c1:00:00:00:01', dstMac: '02:d1:00:00:00:01' };

function setUp(d: TestDirector): void {
  d.setBackend(0, '198.18.2.1', '02:be:00:00:00:00');
  d.setBackend(1, '198.18.2.2', '02:be:00:00:00:01');
  d.setBackend(2, 'fd00:2::1', '02:be:00:00:00:02');
  d.setBackend(3, 'fd00:2::2', '02:be:00:00:00:03');
  d.addVip({ vip: '198.18.0.10', port: 80, protocol: 'tcp' }, 0);
  d.addVip({ vip: '198.18.0.10', port: 53, protocol: 'udp' }, 1);
  d.addVip({ vip: 'fd00::10', port: 443, protocol: 'tcp' }, 2);
  d.addVip({ vip: 'fd00::10', port: 0, protocol: 'udp' }, 3);
  const two = (a: number, b: number) => Uint32Array.from({ length: d.ringSize }, (_, i) => (i % 2 ? a : b));
  d.setRing(0, two(0, 1));
  d.setRing(1, two(1, 0));
  d.setRing(2, two(2, 3));
  d.setRing(3, two(3, 2));
}

/** Established flows in the forms the fast path serves (fast: true), and forms it leaves to the full parse. */
const FLOWS: { spec: FrameSpec; fast: boolean }[] = [
  { fast: true, spec: { ...eth, ip: { version: 4, src: '198.18.1.1', dst: '198.18.0.10' }, l4: { kind: 'tcp', sport: 40000, dport: 80, flags: TCP_FLAGS.ACK, payload: Buffer.alloc(20) } } },
  { fast: true, spec: { ...eth, ip: { version: 4, src: '198.18.1.2', dst: '198.18.0.10' }, l4: { kind: 'udp', sport: 5353, dport: 53, payload: Buffer.alloc(12) } } },
  { fast: true, spec: { ...eth, vlans: [100], ip: { version: 4, src: '198.18.1.3', dst: '198.18.0.10' }, l4: { kind: 'tcp', sport: 40001, dport: 80, flags: TCP_FLAGS.ACK | TCP_FLAGS.PSH } } },
  { fast: false, spec: { ...eth, ip: { version: 4, src: '198.18.1.4', dst: '198.18.0.10', options: new Uint8Array(8).fill(1) }, l4: { kind: 'tcp', sport: 40002, dport: 80, flags: TCP_FLAGS.ACK } } },
  { fast: true, spec: { ...eth, ip: { version: 6, src: 'fd00:1::1', dst: 'fd00::10' }, l4: { kind: 'tcp', sport: 40000, dport: 443, flags: TCP_FLAGS.ACK, payload: Buffer.alloc(20) } } },
  { fast: true, spec: { ...eth, vlans: [{ tpid: ETH_P_8021AD, vid: 7 }], ip: { version: 6, src: 'fd00:1::2', dst: 'fd00::10' }, l4: { kind: 'udp', sport: 1000, dport: 5000, payload: Buffer.alloc(8) } } },
  { fast: false, spec: { ...eth, ip: { version: 6, src: 'fd00:1::3', dst: 'fd00::10', ext: [{ kind: 'dstopts' }] }, l4: { kind: 'udp', sport: 1001, dport: 5000 } } },
];

function keyOf(spec: FrameSpec): FlowKey {
  const l4 = spec.l4 as { kind: 'tcp' | 'udp'; sport: number; dport: number };
  return { src: spec.ip.src, dst: spec.ip.dst, sport: l4.sport, dport: l4.dport, proto: l4.kind === 'tcp' ? 6 : 17 };
}

function withFlags(spec: FrameSpec, flags: number): FrameSpec {
  return spec.l4.kind === 'tcp' ? { ...spec, l4: { ...spec.l4, flags } } : spec;
}

privilegedTest(`fast path and full parse agree on every frame of a cached flow, valid or malformed (seed ${SEED})`, () => {
  const cached = TestDirector.open({ ringSize: 1031 });
  const uncached = TestDirector.open({ ringSize: 1031, flowCache: false });
  /** Runs a frame through both loads, which must agree; true if the fast path served it as a packet of `key`. */
  const both = (input: Buffer, how: string, key: FlowKey): boolean => {
    const before = cached.cachedPackets(key);
    const a = cached.run(input);
    const fastHit = cached.cachedPackets(key) === before + 1n;
    const b = uncached.run(input);
    const where = `seed ${SEED}, ${how}, frame ${input.toString('hex')}`;
    assert.is(a.action, b.action, `action with the flow cache ${a.action}, without ${b.action} (${where})`);
    assert.ok(a.data.equals(b.data), `output differs with and without the flow cache (${where})`);
    return fastHit;
  };
  /** The connection-table state that the slow path keeps (CLOSING mark, backend) is the same in both. */
  const sameFlows = (when: string) => {
    for (const { spec } of FLOWS) {
      const [a, b] = [cached.flow(keyOf(spec)), uncached.flow(keyOf(spec))];
      assert.equal(a && { backendId: a.backendId, flags: a.flags }, b && { backendId: b.backendId, flags: b.flags },
        `flow ${spec.ip.src} -> ${spec.ip.dst} ${when}`);
    }
  };
  try {
    for (const d of [cached, uncached]) setUp(d);
    FLOWS.forEach(({ spec }, f) => {
      // Each flow's first packet creates it (a SYN for TCP; UDP's first datagram is enough).
      both(frame(withFlags(spec, TCP_FLAGS.SYN)), `flow ${f} first packet`, keyOf(spec));
      assert.ok(cached.flow(keyOf(spec)), `flow ${f} is established`);
    });

    // Which flows the fast path serves. Bounded retries: a miss (the entry's window ran out while
    // this process was preempted) refills the entry, so the next packet is within its window.
    FLOWS.forEach(({ spec, fast }, f) => {
      let hits = 0;
      for (let i = 0; i < 5 && (hits === 0 || !fast); i++) hits += both(frame(spec), `flow ${f} valid`, keyOf(spec)) ? 1 : 0;
      assert.is(hits > 0, fast, `flow ${f} is ${fast ? '' : 'not '}served by the fast path`);
    });

    // FIN and RST must reach the slow path, which marks the flow CLOSING: a fast path that let them
    // through would forward them alike but leave the connection table behind.
    both(frame(withFlags(FLOWS[0]!.spec, TCP_FLAGS.FIN | TCP_FLAGS.ACK)), 'flow 0 FIN', keyOf(FLOWS[0]!.spec));
    both(frame(withFlags(FLOWS[2]!.spec, TCP_FLAGS.RST)), 'flow 2 RST', keyOf(FLOWS[2]!.spec));
    both(frame(withFlags(FLOWS[4]!.spec, TCP_FLAGS.FIN | TCP_FLAGS.ACK)), 'flow 4 FIN', keyOf(FLOWS[4]!.spec));
    sameFlows('after FIN/RST');

    const rand = mulberry32(SEED);
    FLOWS.forEach(({ spec, fast }, f) => {
      const base = frame(spec);
      const key = keyOf(spec);
      both(Buffer.concat([base, Buffer.alloc(16, 0xee)]), `flow ${f} with Ethernet padding`, key);
      let mutatedHits = 0;
      for (let i = 0; i < MUTATIONS_PER_FLOW; i++) {
        if (both(mutate(base, rand), `flow ${f} mutation ${i}`, key)) mutatedHits++;
        // The valid frame between mutations: the flow stays cached, so the next mutation meets the fast path.
        both(base, `flow ${f}, again after mutation ${i}`, key);
      }
      if (fast) assert.ok(mutatedHits > 0, `flow ${f}: some mutated frames of the flow were served by the fast path`);
    });
    sameFlows('after the mutations');

    const [ra, rb] = [cached.reasons(), uncached.reasons()];
    for (const [name, c] of ra) assert.equal(c, rb.get(name), `counter ${name} with and without the flow cache`);
    for (let id = 0; id < 4; id++) {
      assert.equal(cached.vipCounter(id), uncached.vipCounter(id), `vip ${id} counter`);
      assert.equal(cached.backendCounter(id), uncached.backendCounter(id), `backend ${id} counter`);
    }
  } finally {
    cached.close();
    uncached.close();
  }
});

test.run();
