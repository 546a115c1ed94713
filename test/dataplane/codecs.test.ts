import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BACKEND_F_MAC_VALID, LAYOUT, XDIR_REASON_NAMES, decodeBackend, decodeFlowKey, decodeFlowState, decodeRing, decodeVipKey,
  decodeVipMeta, emptyBackend, encodeBackend, encodeCounter, encodeFlowKey, encodeFlowState, encodeRing, encodeU32,
  encodeVipKey, encodeVipMeta, nextVipGen, reasonNameOf, sumPerCpuCounter, sumPerCpuCounters,
} from '../../control/dataplane/xdp/codecs.js';

test('vip_key: address, port and family in network byte order', () => {
  const buf = encodeVipKey({ vip: '198.18.0.10', port: 80, protocol: 'tcp' });
  assert.is(buf.length, LAYOUT.vip_key.size);
  assert.is(buf.toString('hex'), 'c612000a' + '00'.repeat(12) + '0050' + '06' + '04');
  assert.equal(decodeVipKey(buf), { vip: '198.18.0.10', port: 80, protocol: 'tcp' });
  const v6 = encodeVipKey({ vip: 'fd00::10', port: 0, protocol: 'udp' });
  assert.is(v6.toString('hex'), 'fd00' + '00'.repeat(12) + '0010' + '0000' + '11' + '06');
  assert.equal(decodeVipKey(v6), { vip: 'fd00::10', port: 0, protocol: 'udp' });
});

test('vip_meta and u32 keys are host order', () => {
  const buf = encodeVipMeta({ vipId: 0x01020304, flags: 1, gen: 0x05060708 });
  assert.is(buf.toString('hex'), '04030201' + '01000000' + '08070605');
  assert.equal(decodeVipMeta(buf), { vipId: 0x01020304, flags: 1, gen: 0x05060708 });
  assert.equal(decodeVipMeta(encodeVipMeta({ vipId: 1, flags: 0 })), { vipId: 1, flags: 0, gen: 0 });
  assert.is(nextVipGen(0xffffffff), 0, 'the generation wraps as a u32');
  assert.is(encodeU32(7).toString('hex'), '07000000');
});

test('backend: MAC sets MAC_VALID; an unused slot decodes to null', () => {
  const buf = encodeBackend({ address: 'fd00::2', mac: 'aa:bb:cc:00:11:22' });
  assert.is(buf.length, 24);
  assert.is(buf[LAYOUT.backend.fields.flags], BACKEND_F_MAC_VALID);
  assert.is(buf[LAYOUT.backend.fields.family], 6);
  assert.equal(decodeBackend(buf), { address: 'fd00::2', mac: 'aa:bb:cc:00:11:22' });
  const noMac = encodeBackend({ address: '198.18.1.1', mac: null });
  assert.is(noMac[LAYOUT.backend.fields.flags], 0);
  assert.equal(decodeBackend(noMac), { address: '198.18.1.1', mac: null });
  assert.is(decodeBackend(emptyBackend()), null);
});

test('flow_key and flow_state round-trip', () => {
  const k = { src: '198.18.2.1', dst: '198.18.0.10', sport: 40000, dport: 443, proto: 6 };
  const kb = encodeFlowKey(k);
  assert.is(kb.length, 40);
  assert.is(kb.readUInt16BE(32), 40000);
  assert.equal(decodeFlowKey(kb), k);
  assert.throws(() => encodeFlowKey({ ...k, dst: 'fd00::1' }), /mixes address families/);
  const s = { lastSeenNs: 123456789012345n, backendId: 9, backendMac: '02:00:00:00:00:01', flags: 1 };
  assert.equal(decodeFlowState(encodeFlowState(s)), s);
});

test('per-CPU counters are summed', () => {
  const cpus = 3;
  const value = Buffer.concat([1n, 2n, 3n].map((p) => encodeCounter({ packets: p, bytes: p * 100n })));
  assert.equal(sumPerCpuCounter(value), { packets: 6n, bytes: 600n });
  const batch = { keys: Buffer.concat([encodeU32(0), encodeU32(5)]), values: Buffer.concat([value, value]), count: 2 };
  const m = sumPerCpuCounters(batch, cpus);
  assert.equal([...m.keys()], [0, 5]);
  assert.equal(m.get(5), { packets: 6n, bytes: 600n });
});

test('rings encode as host-order u32 arrays', () => {
  const ring = Uint32Array.from([0, 1, 4096, 2]);
  const buf = encodeRing(ring);
  assert.is(buf.toString('hex'), '00000000' + '01000000' + '00100000' + '02000000');
  assert.equal(Array.from(decodeRing(buf)), [0, 1, 4096, 2]);
});

test('reason names are the enumerators in kebab case', () => {
  assert.is(reasonNameOf('XDIR_R_DROP_MAC_UNRESOLVED'), 'drop-mac-unresolved');
  assert.is(reasonNameOf('XDIR_EV_FLOW_NEW'), 'flow-new');
  assert.is(XDIR_REASON_NAMES.length, 13);
  assert.is(new Set(XDIR_REASON_NAMES).size, 13);
});

test.run();
