/**
 * The director's XDP program on the guest's older kernel (Debian's 6.1; the host runs a newer
 * one): its verifier must accept the program, and the program must forward there, through the
 * slow path (new flow) and the fast path (a cached flow, with its unaligned 64-bit packet loads).
 * Runs INSIDE the guest VM, started by test/dataplane/ipvs-guest.test.ts after the IPVS suite.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { run } from '../lib/netns.js';
import { TCP_FLAGS, frame, frameMacs, type FrameSpec } from '../lib/packets.js';
import { TestDirector, XDP } from '../bpf/director-harness.js';

if (!process.env.XDIR_IN_GUEST) throw new Error('this suite runs inside the guest (test/guest/run-in-guest.sh)');

const eth = { srcMac: '02:c1:00:00:00:01', dstMac: '02:d1:00:00:00:01' };
const FLOWS: { spec: FrameSpec; mac: string }[] = [
  { spec: { ...eth, ip: { version: 4, src: '198.18.1.1', dst: '198.18.0.10' }, l4: { kind: 'tcp', sport: 40000, dport: 80 } }, mac: '02:be:00:00:00:00' },
  { spec: { ...eth, ip: { version: 6, src: 'fd00:1::1', dst: 'fd00::10' }, l4: { kind: 'udp', sport: 40000, dport: 53 } }, mac: '02:be:00:00:00:01' },
];

test(`the XDP program passes this kernel's verifier (${release()}) and forwards new and cached flows`, async () => {
  if (!readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/sys/fs/bpf')) {
    await run('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
  }
  assert.ok(existsSync('/sys/fs/bpf'), 'bpffs is mounted');
  const d = TestDirector.open({ ringSize: 1031 }); // load = the verifier's verdict
  try {
    d.setBackend(0, '198.18.2.1', FLOWS[0]!.mac);
    d.setBackend(1, 'fd00:2::1', FLOWS[1]!.mac);
    d.addVip({ vip: '198.18.0.10', port: 80, protocol: 'tcp' }, 0);
    d.addVip({ vip: 'fd00::10', port: 53, protocol: 'udp' }, 1);
    d.setRing(0, 0);
    d.setRing(1, 1);
    for (const { spec, mac } of FLOWS) {
      const first = spec.l4.kind === 'tcp' ? { ...spec, l4: { ...spec.l4, flags: TCP_FLAGS.SYN } } : spec;
      const established = spec.l4.kind === 'tcp' ? { ...spec, l4: { ...spec.l4, flags: TCP_FLAGS.ACK } } : spec;
      const out = d.run(frame(first));
      assert.is(out.action, XDP.TX, `new flow: XDP_TX (${spec.ip.dst})`);
      assert.is(frameMacs(out.data).dst, mac);
      // The first established packet fills this CPU's cache entry; the next ones hit it. Bounded:
      // under emulation an entry's 0.5 s window can run out between two runs, so try a few times.
      const before = d.pending().flowHit.packets;
      for (let i = 0; i < 20 && d.pending().flowHit.packets === before; i++) {
        const hit = d.run(frame(established));
        assert.is(hit.action, XDP.TX, `established flow: XDP_TX (${spec.ip.dst})`);
        assert.is(frameMacs(hit.data).dst, mac);
      }
      assert.ok(d.pending().flowHit.packets > before, `the fast path forwarded a packet of the flow to ${spec.ip.dst}`);
    }
  } finally {
    d.close();
  }
});

test.run();
