/**
 * Byte layouts of the map keys and values in bpf/director_shared.h, and their encoders and
 * decoders. LAYOUT is the single TypeScript statement of those layouts: every codec reads its
 * offsets from it, and test/dataplane/btf-layout.test.ts checks it against the BTF of the compiled
 * object, so the C and TypeScript sides cannot drift apart unnoticed.
 *
 * Fields the C declares __be* are network byte order; the other integers are host order (what
 * the kernel stores for a __u32 key or value).
 */
import { endianness } from 'node:os';
import { formatAddress, formatMac, parseAddress, parseMac } from '../../model/address.js';
import type { Family, Protocol } from '../../model/types.js';
import type { Counter } from '../dataplane.js';

export const LAYOUT = {
  vip_key: { size: 20, fields: { addr: 0, port: 16, proto: 18, family: 19 } },
  vip_meta: { size: 12, fields: { vip_id: 0, flags: 4, gen: 8 } },
  backend: { size: 24, fields: { addr: 0, mac: 16, family: 22, flags: 23 } },
  flow_key: { size: 40, fields: { src: 0, dst: 16, sport: 32, dport: 34, proto: 36, family: 37, pad: 38 } },
  flow_state: { size: 24, fields: { last_seen_ns: 0, backend_id: 8, backend_mac: 12, flags: 18, pad: 19 } },
  flow_cache_entry: {
    size: 96,
    fields: {
      key: 0, checked: 40, packets: 48, bytes: 56, vip_id: 64, vip_gen: 68, backend_id: 72, backend_gen: 76, epoch: 80, backend_mac: 84, pad: 90,
    },
  },
  counter: { size: 16, fields: { packets: 0, bytes: 8 } },
  vip_filter: { size: 8 + 8 * 1024, fields: { ready: 0, pad: 4, bits: 8 } },
  backend_prev_mac: { size: 24, fields: { addr: 0, mac: 16, valid: 22, family: 23 } },
} as const;

export type StructName = keyof typeof LAYOUT;

export const FAMILY_V4 = 4;
export const FAMILY_V6 = 6;
export const VIP_F_HASH_SRC_ONLY = 1 << 0;
export const BACKEND_F_MAC_VALID = 1 << 0;
export const FLOW_F_CLOSING = 1 << 0;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/**
 * enum xdir_reason in order, as lower-kebab names: XDIR_R_* verdicts without their prefix
 * (`drop-fragment`), then XDIR_EV_* events without theirs (`flow-new`).
 */
export const XDIR_REASON_NAMES = [
  'forwarded',
  'icmp-forwarded',
  'pass-not-ip',
  'pass-not-vip',
  'pass-icmp',
  'drop-parse',
  'drop-fragment',
  'drop-no-backend',
  'drop-mac-unresolved',
  'flow-new',
  'flow-hit',
  'tcp-closing',
  'fib-lookup',
] as const;
export type ReasonName = (typeof XDIR_REASON_NAMES)[number];
/** Index of each reason in reason_stats (its enum xdir_reason value). */
export const REASON_ID = Object.fromEntries(XDIR_REASON_NAMES.map((n, i) => [n, i])) as Record<ReasonName, number>;
/** XDIR_REASON_MAX: the number of reasons, max_entries of reason_stats. */
export const XDIR_REASON_MAX = XDIR_REASON_NAMES.length;

/** The kebab name of a C enumerator name (XDIR_R_DROP_FRAGMENT -> drop-fragment). */
export function reasonNameOf(enumerator: string): string {
  return enumerator.replace(/^XDIR_(R|EV)_/, '').toLowerCase().replaceAll('_', '-');
}

const LE = endianness() === 'LE';

function writeU32(buf: Buffer, value: number, offset: number): void {
  if (LE) buf.writeUInt32LE(value >>> 0, offset); else buf.writeUInt32BE(value >>> 0, offset);
}
function readU32(buf: Buffer, offset: number): number {
  return LE ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset);
}
function writeU64(buf: Buffer, value: bigint, offset: number): void {
  if (LE) buf.writeBigUInt64LE(value, offset); else buf.writeBigUInt64BE(value, offset);
}
function readU64(buf: Buffer, offset: number): bigint {
  return LE ? buf.readBigUInt64LE(offset) : buf.readBigUInt64BE(offset);
}

function checkSize(buf: Buffer, name: StructName): void {
  if (buf.length < LAYOUT[name].size) {
    throw new Error(`struct ${name} needs ${LAYOUT[name].size} bytes, got ${buf.length}`);
  }
}

/** Host-order u32 key (vip_id, backend_id, reason): the key of every ARRAY and of `rings`. */
export function encodeU32(value: number): Buffer {
  const buf = Buffer.alloc(4);
  writeU32(buf, value, 0);
  return buf;
}
export function decodeU32(buf: Buffer, offset = 0): number {
  return readU32(buf, offset);
}

/** Writes an address into a 16-byte addr[4] field (IPv4 in the first 4 bytes, the rest zero). */
function writeAddr(buf: Buffer, address: string, offset: number): Family {
  const parsed = parseAddress(address);
  if (!parsed) throw new Error(`${JSON.stringify(address)} is not an IP address`);
  buf.fill(0, offset, offset + 16);
  buf.set(parsed.bytes, offset);
  return parsed.family;
}
function readAddr(buf: Buffer, offset: number, family: number): string {
  if (family === FAMILY_V4) return formatAddress(buf.subarray(offset, offset + 4));
  if (family === FAMILY_V6) return formatAddress(buf.subarray(offset, offset + 16));
  throw new Error(`address family ${family} is neither ${FAMILY_V4} nor ${FAMILY_V6}`);
}

function protoNumber(p: Protocol): number {
  return p === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP;
}
function protoName(n: number): Protocol {
  if (n === IPPROTO_TCP) return 'tcp';
  if (n === IPPROTO_UDP) return 'udp';
  throw new Error(`IP protocol ${n} is neither TCP nor UDP`);
}

// ---- vip_key ----
export interface VipKey {
  vip: string;
  /** 0 = all ports. */
  port: number;
  protocol: Protocol;
}
export function encodeVipKey(k: VipKey): Buffer {
  const L = LAYOUT.vip_key, buf = Buffer.alloc(L.size);
  const family = writeAddr(buf, k.vip, L.fields.addr);
  buf.writeUInt16BE(k.port, L.fields.port);
  buf.writeUInt8(protoNumber(k.protocol), L.fields.proto);
  buf.writeUInt8(family, L.fields.family);
  return buf;
}
export function decodeVipKey(buf: Buffer): VipKey {
  checkSize(buf, 'vip_key');
  const F = LAYOUT.vip_key.fields;
  return {
    vip: readAddr(buf, F.addr, buf.readUInt8(F.family)),
    port: buf.readUInt16BE(F.port),
    protocol: protoName(buf.readUInt8(F.proto)),
  };
}

// ---- vip_meta ----
export interface VipMeta {
  vipId: number;
  flags: number;
  /** The VIP lives while vip_gens[vipId] equals this (see vip_gens in director_shared.h). Default 0. */
  gen?: number;
}
export function encodeVipMeta(m: VipMeta): Buffer {
  const L = LAYOUT.vip_meta, buf = Buffer.alloc(L.size);
  writeU32(buf, m.vipId, L.fields.vip_id);
  writeU32(buf, m.flags, L.fields.flags);
  writeU32(buf, m.gen ?? 0, L.fields.gen);
  return buf;
}
export function decodeVipMeta(buf: Buffer): Required<VipMeta> {
  checkSize(buf, 'vip_meta');
  const F = LAYOUT.vip_meta.fields;
  return { vipId: readU32(buf, F.vip_id), flags: readU32(buf, F.flags), gen: readU32(buf, F.gen) };
}

/** The generation after `gen` (u32, wrapping): what vip_gens[id] becomes on each change of owner or deletion. */
export function nextVipGen(gen: number): number {
  return (gen + 1) >>> 0;
}

// ---- backend ----
export interface BackendEntry {
  address: string;
  /** Lower-case colon MAC; null when the control plane knows none (MAC_VALID unset). */
  mac: string | null;
}
export function encodeBackend(b: BackendEntry): Buffer {
  const L = LAYOUT.backend, buf = Buffer.alloc(L.size);
  const family = writeAddr(buf, b.address, L.fields.addr);
  buf.writeUInt8(family, L.fields.family);
  if (b.mac !== null) {
    const mac = parseMac(b.mac);
    if (!mac) throw new Error(`backend ${b.address}: ${JSON.stringify(b.mac)} is not a MAC address`);
    buf.set(mac, L.fields.mac);
    buf.writeUInt8(BACKEND_F_MAC_VALID, L.fields.flags);
  }
  return buf;
}
/** A backend_prev_macs value: the MAC the flows of the backend at `address` move from, or none (null: all zero). */
export function encodeBackendPrevMac(address: string, mac: string | null): Buffer {
  const L = LAYOUT.backend_prev_mac, buf = Buffer.alloc(L.size);
  if (mac !== null) {
    const bytes = parseMac(mac);
    if (!bytes) throw new Error(`${JSON.stringify(mac)} is not a MAC address`);
    buf.writeUInt8(writeAddr(buf, address, L.fields.addr), L.fields.family);
    buf.set(bytes, L.fields.mac);
    buf.writeUInt8(1, L.fields.valid);
  }
  return buf;
}
/** The server and MAC of a backend_prev_macs value, or null for none. */
export function decodeBackendPrevMac(buf: Buffer): { address: string; mac: string } | null {
  checkSize(buf, 'backend_prev_mac');
  const F = LAYOUT.backend_prev_mac.fields;
  if (!buf.readUInt8(F.valid)) return null;
  return { address: readAddr(buf, F.addr, buf.readUInt8(F.family)), mac: formatMac(buf.subarray(F.mac, F.mac + 6)) };
}
/** The all-zero entry of an unused backend id (family 0). */
export function emptyBackend(): Buffer {
  return Buffer.alloc(LAYOUT.backend.size);
}
/** Decodes a backend slot; null for an unused one (family 0). */
export function decodeBackend(buf: Buffer): BackendEntry | null {
  checkSize(buf, 'backend');
  const F = LAYOUT.backend.fields;
  const family = buf.readUInt8(F.family);
  if (family === 0) return null;
  const valid = (buf.readUInt8(F.flags) & BACKEND_F_MAC_VALID) !== 0;
  return {
    address: readAddr(buf, F.addr, family),
    mac: valid ? formatMac(buf.subarray(F.mac, F.mac + 6)) : null,
  };
}

// ---- flow_key ----
export interface FlowKey {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** IP protocol number. */
  proto: number;
}
export function encodeFlowKey(k: FlowKey): Buffer {
  const L = LAYOUT.flow_key, buf = Buffer.alloc(L.size);
  const family = writeAddr(buf, k.src, L.fields.src);
  if (writeAddr(buf, k.dst, L.fields.dst) !== family) throw new Error(`flow ${k.src} -> ${k.dst} mixes address families`);
  buf.writeUInt16BE(k.sport, L.fields.sport);
  buf.writeUInt16BE(k.dport, L.fields.dport);
  buf.writeUInt8(k.proto, L.fields.proto);
  buf.writeUInt8(family, L.fields.family);
  return buf;
}
export function decodeFlowKey(buf: Buffer): FlowKey {
  checkSize(buf, 'flow_key');
  const F = LAYOUT.flow_key.fields;
  const family = buf.readUInt8(F.family);
  return {
    src: readAddr(buf, F.src, family),
    dst: readAddr(buf, F.dst, family),
    sport: buf.readUInt16BE(F.sport),
    dport: buf.readUInt16BE(F.dport),
    proto: buf.readUInt8(F.proto),
  };
}

// ---- flow_state ----
export interface FlowState {
  lastSeenNs: bigint;
  backendId: number;
  backendMac: string;
  flags: number;
}
export function encodeFlowState(s: FlowState): Buffer {
  const L = LAYOUT.flow_state, buf = Buffer.alloc(L.size);
  writeU64(buf, s.lastSeenNs, L.fields.last_seen_ns);
  writeU32(buf, s.backendId, L.fields.backend_id);
  const mac = parseMac(s.backendMac);
  if (!mac) throw new Error(`${JSON.stringify(s.backendMac)} is not a MAC address`);
  buf.set(mac, L.fields.backend_mac);
  buf.writeUInt8(s.flags, L.fields.flags);
  return buf;
}
export function decodeFlowState(buf: Buffer): FlowState {
  checkSize(buf, 'flow_state');
  const F = LAYOUT.flow_state.fields;
  return {
    lastSeenNs: readU64(buf, F.last_seen_ns),
    backendId: readU32(buf, F.backend_id),
    backendMac: formatMac(buf.subarray(F.backend_mac, F.backend_mac + 6)),
    flags: buf.readUInt8(F.flags),
  };
}

// ---- counter ----
export function encodeCounter(c: Counter): Buffer {
  const L = LAYOUT.counter, buf = Buffer.alloc(L.size);
  writeU64(buf, c.packets, L.fields.packets);
  writeU64(buf, c.bytes, L.fields.bytes);
  return buf;
}
export function decodeCounter(buf: Buffer, offset = 0): Counter {
  const F = LAYOUT.counter.fields;
  if (buf.length < offset + LAYOUT.counter.size) throw new Error(`struct counter needs ${LAYOUT.counter.size} bytes at ${offset}`);
  return { packets: readU64(buf, offset + F.packets), bytes: readU64(buf, offset + F.bytes) };
}

/** XDIR_VIP_FILTER_BITS and the multipliers of xdir_vip_filter_bit() (bpf/director_shared.h, flow.h). */
const VIP_FILTER_BITS = 16n;
const VIP_FILTER_MUL = [0x9e3779b97f4a7c15n, 0xc2b2ae3d27d4eb4fn] as const;

/** The VIP prefilter's bit for an address, as the program computes it for a destination. */
export function vipFilterBit(address: string): number {
  const a = Buffer.alloc(16);
  writeAddr(a, address, 0);
  const h = a.readBigUInt64LE(0) * VIP_FILTER_MUL[0] + a.readBigUInt64LE(8) * VIP_FILTER_MUL[1];
  return Number(BigInt.asUintN(64, h) >> (64n - VIP_FILTER_BITS));
}

/**
 * A struct vip_filter value: `ready`, and the bits of these VIP addresses set (added to `base`,
 * a value written before, when given).
 */
export function encodeVipFilter(addresses: Iterable<string>, base?: Buffer): Buffer {
  const L = LAYOUT.vip_filter;
  const buf = base ? Buffer.from(base) : Buffer.alloc(L.size);
  buf.writeUInt32LE(1, L.fields.ready);
  for (const a of addresses) {
    const bit = vipFilterBit(a);
    buf[L.fields.bits + (bit >> 3)]! |= 1 << (bit & 7);
  }
  return buf;
}

/** Whether a struct vip_filter value has the address's bit set. */
export function vipFilterHas(value: Buffer, address: string): boolean {
  const bit = vipFilterBit(address);
  return (value[LAYOUT.vip_filter.fields.bits + (bit >> 3)]! & (1 << (bit & 7))) !== 0;
}

/** Bytes one CPU's value takes in a per-CPU map value (the kernel rounds each up to 8). */
export function perCpuStride(valueSize: number): number {
  return Math.ceil(valueSize / 8) * 8;
}

/** Sums a per-CPU counter value (one struct counter per possible CPU) into one counter. */
export function sumPerCpuCounter(buf: Buffer, offset = 0, cpus = (buf.length - offset) / perCpuStride(LAYOUT.counter.size)): Counter {
  const stride = perCpuStride(LAYOUT.counter.size);
  let packets = 0n, bytes = 0n;
  for (let cpu = 0; cpu < cpus; cpu++) {
    const c = decodeCounter(buf, offset + cpu * stride);
    packets += c.packets;
    bytes += c.bytes;
  }
  return { packets, bytes };
}

/** A zeroed per-CPU counter value for `cpus` CPUs (resets an id's counters when it is reused). */
export function zeroPerCpuCounter(cpus: number): Buffer {
  return Buffer.alloc(cpus * perCpuStride(LAYOUT.counter.size));
}

/**
 * Sums every entry of a per-CPU counter ARRAY read in one batch (BpfMap.lookupAll): keys are u32
 * ids, values are `cpus` counters each. Returns id -> summed counter.
 */
export function sumPerCpuCounters(batch: { keys: Buffer; values: Buffer; count: number }, cpus: number): Map<number, Counter> {
  const out = new Map<number, Counter>();
  const valueBytes = cpus * perCpuStride(LAYOUT.counter.size);
  for (let i = 0; i < batch.count; i++) {
    out.set(decodeU32(batch.keys, i * 4), sumPerCpuCounter(batch.values, i * valueBytes, cpus));
  }
  return out;
}

/**
 * reason_stats by id as user space shows it. The program does not count XDIR_R_FORWARDED (one
 * per-CPU counter update less per packet on the established-flow fast path): every forwarded
 * TCP/UDP packet is either a flow hit or a new flow, so forwarded = flow-hit + flow-new, exactly
 * (docs/decisions/0005). flow-hit includes the flow cache's pending counts, which one reading can
 * miss (docs/decisions/0006); readStats then holds flow-hit and forwarded at their earlier values
 * separately, so for that reading forwarded may differ from flow-hit + flow-new.
 */
export function reasonCountersById(raw: ReadonlyMap<number, Counter>): Map<number, Counter> {
  const out = new Map(raw);
  const hit = raw.get(REASON_ID['flow-hit']) ?? { packets: 0n, bytes: 0n };
  const fresh = raw.get(REASON_ID['flow-new']) ?? { packets: 0n, bytes: 0n };
  out.set(REASON_ID.forwarded, { packets: hit.packets + fresh.packets, bytes: hit.bytes + fresh.bytes });
  return out;
}

// ---- rings ----
/**
 * The value of a ring's inner map (key 0): ring_size host-order u32 backend ids. On a little-endian host (the kernel's byte order is the host's) this is a
 * view of the ring's own memory, not a copy: a 65,537-slot ring is 256 KiB, and writing 1,000 of
 * them copied 256 MB for nothing. Rings are never modified once built, so the view stays valid.
 */
export function encodeRing(backendIds: Uint32Array): Buffer {
  if (LE) return Buffer.from(backendIds.buffer, backendIds.byteOffset, backendIds.byteLength);
  const buf = Buffer.alloc(backendIds.length * 4);
  backendIds.forEach((id, i) => buf.writeUInt32BE(id, i * 4));
  return buf;
}
export function decodeRing(buf: Buffer): Uint32Array {
  const out = new Uint32Array(buf.length >> 2);
  if (LE) new Uint8Array(out.buffer).set(buf.subarray(0, out.length * 4)); // a copy: `buf` may be reused
  else for (let i = 0; i < out.length; i++) out[i] = readU32(buf, i * 4);
  return out;
}
