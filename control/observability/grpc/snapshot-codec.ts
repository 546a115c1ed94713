/**
 * A hand-written protobuf encoder for StatsSnapshot, the one message that gets big (10,000 VIPs and
 * 100,000 backends make ~5 MB). protobufjs's generic path (fromObject, then Long for every uint64)
 * takes about a second for such a snapshot; this takes a few tens of milliseconds. Field numbers
 * and types mirror proto/xdir/v1/director.proto; test/observability/snapshot-codec.test.ts checks
 * the bytes decode, through proto-loader, to the same message.
 */
import type { CompactCountersMsg, CounterMsg, RateMsg, StatsSnapshotMsg } from './proto.js';

const DATA_PATH = { DATA_PATH_UNSPECIFIED: 0, DATA_PATH_XDP: 1, DATA_PATH_IPVS: 2 } as const;
const PROTOCOL = { PROTOCOL_UNSPECIFIED: 0, PROTOCOL_TCP: 1, PROTOCOL_UDP: 2 } as const;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const tag = (field: number, wire: number): number => (field << 3) | wire;

/** A uint64 as a number when exact (below 2^53, the common case), else as a bigint. */
type U64Value = number | bigint;

function parseU64(text: string): U64Value {
  return text.length <= 15 ? Number(text) : BigInt(text);
}

/** A column value as the server builds it (number or bigint) or as proto-loader decodes it (string). */
const u64Of = (v: string | number | bigint): U64Value => (typeof v === 'string' ? parseU64(v) : v);

function varintSize(v: U64Value): number {
  let n = 1;
  if (typeof v === 'number') {
    while (v >= 128) { v = Math.floor(v / 128); n++; }
    return n;
  }
  while (v >= 0x80n) { v >>= 7n; n++; }
  return n;
}

function smallVarintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size: number) { this.buf = Buffer.allocUnsafe(size); }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  small(v: number): void {
    this.ensure(5);
    while (v >= 0x80) { this.buf[this.pos++] = (v & 0x7f) | 0x80; v >>>= 7; }
    this.buf[this.pos++] = v;
  }

  big(v: U64Value): void {
    if (typeof v === 'number') {
      if (v < 0x80000000) { this.small(v); return; }
      this.ensure(10);
      while (v >= 128) { this.buf[this.pos++] = (v % 128) | 0x80; v = Math.floor(v / 128); }
      this.buf[this.pos++] = v;
      return;
    }
    if (v < 0x80000000n) { this.small(Number(v)); return; }
    this.ensure(10);
    while (v >= 0x80n) { this.buf[this.pos++] = Number(v & 0x7fn) | 0x80; v >>= 7n; }
    this.buf[this.pos++] = Number(v);
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  string(field: number, s: string, len: number): void {
    this.small(tag(field, WIRE_LEN));
    this.small(len);
    this.ensure(len);
    this.buf.write(s, this.pos, len, 'utf8');
    this.pos += len;
  }
}

interface CounterParts { p: U64Value; b: U64Value; size: number }

function counterParts(c: CounterMsg): CounterParts {
  const p = parseU64(c.packets);
  const b = parseU64(c.bytes);
  return { p, b, size: (p ? 1 + varintSize(p) : 0) + (b ? 1 + varintSize(b) : 0) };
}

function rateSize(r: RateMsg): number {
  return (r.packets_per_second ? 9 : 0) + (r.bytes_per_second ? 9 : 0);
}

function writeCounter(w: Writer, field: number, c: CounterParts): void {
  w.small(tag(field, WIRE_LEN));
  w.small(c.size);
  if (c.p) { w.small(tag(1, WIRE_VARINT)); w.big(c.p); }
  if (c.b) { w.small(tag(2, WIRE_VARINT)); w.big(c.b); }
}

function writeRate(w: Writer, field: number, r: RateMsg, size: number): void {
  w.small(tag(field, WIRE_LEN));
  w.small(size);
  if (r.packets_per_second) { w.small(tag(1, WIRE_FIXED64)); w.double(r.packets_per_second); }
  if (r.bytes_per_second) { w.small(tag(2, WIRE_FIXED64)); w.double(r.bytes_per_second); }
}

/** Length of a length-delimited field holding `n` bytes, tag included. */
const lenField = (n: number): number => 1 + smallVarintSize(n) + n;

/** One named entry (BackendStats or ReasonStats: name = field 1, total = 2, rate = 3). */
function writeNamed(w: Writer, field: number, name: string, total: CounterMsg, rate: RateMsg): void {
  const nameLen = Buffer.byteLength(name, 'utf8');
  const c = counterParts(total);
  const rs = rateSize(rate);
  const size = (nameLen ? lenField(nameLen) : 0) + lenField(c.size) + lenField(rs);
  w.small(tag(field, WIRE_LEN));
  w.small(size);
  if (nameLen) w.string(1, name, nameLen);
  writeCounter(w, 2, c);
  writeRate(w, 3, rate, rs);
}

export function encodeStatsSnapshot(m: StatsSnapshotMsg): Buffer {
  const compactEntries = (m.compact_services?.id_deltas.length ?? 0) + (m.compact_backends?.id_deltas.length ?? 0);
  const nameCount = (m.service_keys?.length ?? 0) + (m.backend_addresses?.length ?? 0);
  const w = new Writer(64 + 80 * (m.services.length + m.backends.length + m.reasons.length) + 24 * compactEntries + 40 * nameCount);
  const taken = parseU64(m.taken_at_ms);
  if (taken) { w.small(tag(1, WIRE_VARINT)); w.big(taken); }
  const dp = DATA_PATH[m.data_path] ?? 0;
  if (dp) { w.small(tag(2, WIRE_VARINT)); w.small(dp); }
  if (m.rate_interval_ms) { w.small(tag(3, WIRE_VARINT)); w.small(m.rate_interval_ms); }
  const seq = parseU64(m.sequence);
  if (seq) { w.small(tag(4, WIRE_VARINT)); w.big(seq); }
  const dropped = parseU64(m.dropped_snapshots);
  if (dropped) { w.small(tag(5, WIRE_VARINT)); w.big(dropped); }
  for (const s of m.services) {
    const keyLen = Buffer.byteLength(s.key, 'utf8');
    const vipLen = Buffer.byteLength(s.vip, 'utf8');
    const proto = PROTOCOL[s.protocol] ?? 0;
    const c = counterParts(s.total);
    const rs = rateSize(s.rate);
    const size = (keyLen ? lenField(keyLen) : 0) + (vipLen ? lenField(vipLen) : 0)
      + (s.port ? 1 + smallVarintSize(s.port) : 0) + (proto ? 2 : 0) + lenField(c.size) + lenField(rs);
    w.small(tag(6, WIRE_LEN));
    w.small(size);
    if (keyLen) w.string(1, s.key, keyLen);
    if (vipLen) w.string(2, s.vip, vipLen);
    if (s.port) { w.small(tag(3, WIRE_VARINT)); w.small(s.port); }
    if (proto) { w.small(tag(4, WIRE_VARINT)); w.small(proto); }
    writeCounter(w, 5, c);
    writeRate(w, 6, s.rate, rs);
  }
  for (const b of m.backends) writeNamed(w, 7, b.address, b.total, b.rate);
  for (const r of m.reasons) writeNamed(w, 8, r.reason, r.total, r.rate);
  if (m.changes_only) { w.small(tag(9, WIRE_VARINT)); w.small(1); }
  const names = parseU64(m.names_version ?? '0');
  if (names) { w.small(tag(10, WIRE_VARINT)); w.big(names); }
  for (const k of m.service_keys ?? []) w.string(11, k, Buffer.byteLength(k, 'utf8'));
  for (const a of m.backend_addresses ?? []) w.string(12, a, Buffer.byteLength(a, 'utf8'));
  if (m.compact_services) writeCompact(w, 13, m.compact_services);
  if (m.compact_backends) writeCompact(w, 14, m.compact_backends);
  return w.buf.subarray(0, w.pos);
}

/** A packed repeated varint field (nothing when empty, as proto3 does). */
function packedSize(values: readonly (string | number | bigint)[]): number {
  let n = 0;
  for (const v of values) n += varintSize(u64Of(v));
  return n;
}

function writeCompact(w: Writer, field: number, c: CompactCountersMsg): void {
  const columns = [c.id_deltas, c.packets, c.bytes, c.packets_delta, c.bytes_delta] as const;
  const sizes = columns.map(packedSize);
  let size = 0;
  for (const s of sizes) if (s) size += lenField(s);
  w.small(tag(field, WIRE_LEN));
  w.small(size);
  columns.forEach((col, i) => {
    if (!sizes[i]) return;
    w.small(tag(i + 1, WIRE_LEN));
    w.small(sizes[i]!);
    w.ensure(sizes[i]!);
    for (const v of col) w.big(u64Of(v));
  });
}
