/**
 * The fast path's own parse (bpf/fast_path.h) against the full parse: a frame the fast path
 * forwards from the flow cache must be one the full parse and the slow path would have forwarded
 * the same way. Differential: two loads of the director, one with the flow cache and one without
 * (flow_cache_off = 1, every packet parsed in full), get the same established flows and then the
 * same seeded stream of valid and malformed frames of those flows; every frame must get the same
 * action and the same output bytes from both, and the counters must agree.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { privilegedTest } from '../lib/privileged.js';
import { ETH_P_8021AD, TCP_FLAGS, frame, type FrameSpec } from '../lib/packets.js';
import { mutate } from '../lib/frame-mutations.js';
import { mulberry32 } from '../lib/prng.js';
import { TestDirector, XDP } from './director-harness.js';

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

/** Established flows in the forms the fast path serves, and forms it leaves to the full parse. */
const FLOWS: FrameSpec[] = [
  { ...eth, ip: { version: 4, src: '198.18.1.1', dst: '198.18.0.10' }, l4: { kind: 'tcp', sport: 40000, dport: 80, flags: TCP_FLAGS.ACK, payload: Buffer.alloc(20) } },
  { ...eth, ip: { version: 4, src: '198.18.1.2', dst: '198.18.0.10' }, l4: { kind: 'udp', sport: 5353, dport: 53, payload: Buffer.alloc(12) } },
  { ...eth, vlans: [100], ip: { version: 4, src: '198.18.1.3', dst: '198.18.0.10' }, l4: { kind: 'tcp', sport: 40001, dport: 80, flags: TCP_FLAGS.ACK | TCP_FLAGS.PSH } },
  { ...eth, ip: { version: 4, src: '198.18.1.4', dst: '198.18.0.10', options: new Uint8Array(8).fill(1) }, l4: { kind: 'tcp', sport: 40002, dport: 80, flags: TCP_FLAGS.ACK } },
  { ...eth, ip: { version: 6, src: 'fd00:1::1', dst: 'fd00::10' }, l4: { kind: 'tcp', sport: 40000, dport: 443, flags: TCP_FLAGS.ACK, payload: Buffer.alloc(20) } },
  { ...eth, vlans: [{ tpid: ETH_P_8021AD, vid: 7 }], ip: { version: 6, src: 'fd00:1::2', dst: 'fd00::10' }, l4: { kind: 'udp', sport: 1000, dport: 5000, payload: Buffer.alloc(8) } },
  { ...eth, ip: { version: 6, src: 'fd00:1::3', dst: 'fd00::10', ext: [{ kind: 'dstopts' }] }, l4: { kind: 'udp', sport: 1001, dport: 5000 } },
];

/** The frames of the flows: each valid one, padded to a minimum Ethernet frame, and mutations. */
function stream(rand: () => number): { frame: Buffer; how: string }[] {
  const out: { frame: Buffer; how: string }[] = [];
  FLOWS.forEach((spec, f) => {
    const base = frame(spec);
    out.push({ frame: base, how: `flow ${f}` });
    out.push({ frame: Buffer.concat([base, Buffer.alloc(16, 0xee)]), how: `flow ${f} with Ethernet padding` });
    for (let i = 0; i < MUTATIONS_PER_FLOW; i++) {
      out.push({ frame: mutate(base, rand), how: `flow ${f} mutation ${i}` });
      // The valid frame between mutations: the flow stays cached, so the next mutation meets the fast path.
      out.push({ frame: base, how: `flow ${f}, again after mutation ${i}` });
    }
  });
  return out;
}

privilegedTest(`fast path and full parse agree on every frame of a cached flow, valid or malformed (seed ${SEED})`, () => {
  const cached = TestDirector.open({ ringSize: 1031 });
  const uncached = TestDirector.open({ ringSize: 1031, flowCache: false });
  try {
    for (const d of [cached, uncached]) {
      setUp(d);
      // Each flow's first packet creates it (a SYN for TCP; UDP's first datagram is enough).
      for (const spec of FLOWS) {
        const first = spec.l4.kind === 'tcp' ? { ...spec, l4: { ...spec.l4, flags: TCP_FLAGS.SYN } } : spec;
        assert.is(d.run(frame(first)).action, XDP.TX, 'a flow is established');
      }
    }
    const frames = stream(mulberry32(SEED));
    for (const { frame: input, how } of frames) {
      const a = cached.run(input);
      const b = uncached.run(input);
      const where = `seed ${SEED}, ${how}, frame ${input.toString('hex')}`;
      assert.is(a.action, b.action, `action with the flow cache ${a.action}, without ${b.action} (${where})`);
      assert.ok(a.data.equals(b.data), `output differs with and without the flow cache (${where})`);
    }
    assert.ok(cached.pending().flowHit.packets > 0n, 'the fast path served packets');
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
