import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  AttrWriter, Attrs, NLMSG_ERROR, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_MULTI, NLA_F_NESTED,
  encodeMessage, parseError, parseMessages,
} from '../../control/netlink/message.js';

test('a message is its header plus payload, padded to 4 bytes, with the length excluding the padding', () => {
  const m = encodeMessage({ type: 30, flags: 0x301, seq: 7, pid: 0 }, Buffer.from([1, 2, 3, 4, 5]));
  assert.is(m.length, 24);
  assert.is(m.readUInt32LE(0), 21);
  assert.is(m.readUInt16LE(4), 30);
  assert.is(m.readUInt16LE(6), 0x301);
  assert.is(m.readUInt32LE(8), 7);
  assert.equal([...m.subarray(16)], [1, 2, 3, 4, 5, 0, 0, 0]);
});

test('several messages in one datagram parse back in order, padding skipped', () => {
  const a = encodeMessage({ type: 16, flags: NLM_F_MULTI, seq: 1, pid: 0 }, Buffer.from('abc'));
  const b = encodeMessage({ type: 3, flags: NLM_F_MULTI, seq: 1, pid: 0 }, Buffer.alloc(4));
  const msgs = parseMessages(Buffer.concat([a, b]));
  assert.equal(msgs.map((m) => m.type), [16, 3]);
  assert.is(msgs[0]!.payload.toString(), 'abc');
});

test('a length that runs past the datagram is an error, not a silent stop', () => {
  const m = encodeMessage({ type: 16, flags: 0, seq: 1, pid: 0 }, Buffer.alloc(8));
  m.writeUInt32LE(200, 0);
  assert.throws(() => parseMessages(m), /malformed netlink message/);
});

test('attributes round-trip: integers, strings, network-order ports, nested attributes', () => {
  const buf = new AttrWriter()
    .u8(1, 7).u16(2, 0xbeef).u32(3, 0xdeadbeef).u64(4, 1n << 40n).string(5, 'IPVS').u16be(6, 443)
    .nested(7, (w) => w.u32(1, 42).nested(2, (x) => x.string(1, 'inner')))
    .toBuffer();
  assert.is(buf.length % 4, 0);
  const a = Attrs.parse(buf);
  assert.is(a.u8(1), 7);
  assert.is(a.u16(2), 0xbeef);
  assert.is(a.u32(3), 0xdeadbeef);
  assert.is(a.u64(4), 1n << 40n);
  assert.is(a.string(5), 'IPVS');
  assert.is(a.u16be(6), 443);
  assert.equal([...a.bytes(6)!], [0x01, 0xbb]);
  const n = a.nested(7)!;
  assert.is(n.u32(1), 42);
  assert.is(n.nested(2)!.string(1), 'inner');
  // The nested flag is on the wire and masked off when reading.
  const seven = buf.indexOf(Buffer.from([7, 0x80]));
  assert.ok(seven > 0);
  assert.is(buf.readUInt16LE(seven) & NLA_F_NESTED, NLA_F_NESTED);
});

test('a string attribute carries its NUL and is padded', () => {
  const buf = new AttrWriter().string(2, 'nlctrl').toBuffer();
  assert.is(buf.readUInt16LE(0), 4 + 7);
  assert.is(buf.length, 12);
});

test('NLMSG_ERROR: errno 0 is an ACK; a negative errno becomes positive with the request header', () => {
  const req = encodeMessage({ type: 28, flags: 5, seq: 99, pid: 1234 }, Buffer.alloc(12));
  const body = Buffer.alloc(4);
  body.writeInt32LE(-17);
  const err = parseMessages(encodeMessage({ type: NLMSG_ERROR, flags: 0, seq: 99, pid: 0 }, Buffer.concat([body, req])))[0]!;
  const e = parseError(err);
  assert.is(e.errno, 17);
  assert.is(e.request.type, 28);
  assert.is(e.request.seq, 99);
  assert.is(e.kernelMessage, undefined);
});

test('NLMSG_ERROR with extended ACK: the kernel text is read after the capped request header', () => {
  const req = encodeMessage({ type: 28, flags: 5, seq: 3, pid: 0 }, Buffer.alloc(0));
  const body = Buffer.alloc(4);
  body.writeInt32LE(-22);
  const tlvs = new AttrWriter().string(1, 'Invalid NUD state').toBuffer();
  const wire = encodeMessage({ type: NLMSG_ERROR, flags: NLM_F_CAPPED | NLM_F_ACK_TLVS, seq: 3, pid: 0 },
    Buffer.concat([body, req.subarray(0, 16), tlvs]));
  const e = parseError(parseMessages(wire)[0]!);
  assert.is(e.errno, 22);
  assert.is(e.kernelMessage, 'Invalid NUD state');
});

test.run();
