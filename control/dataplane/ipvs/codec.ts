/**
 * The kernel's IPVS generic netlink family (include/uapi/linux/ip_vs.h): commands, attribute
 * layouts, and the translation between our service / destination records and nested attributes.
 * Pure: builds AttrWriters and reads Attrs; the socket lives in client.ts.
 */
import { formatAddress, parseAddress } from '../../model/address.js';
import { serviceKey, type Family } from '../../model/types.js';
import { AttrWriter, type Attrs } from '../../netlink/message.js';

export const IPVS_GENL_NAME = 'IPVS';

export const IPVS_CMD = {
  NEW_SERVICE: 1,
  SET_SERVICE: 2,
  DEL_SERVICE: 3,
  GET_SERVICE: 4,
  NEW_DEST: 5,
  SET_DEST: 6,
  DEL_DEST: 7,
  GET_DEST: 8,
  GET_INFO: 15,
  FLUSH: 17,
} as const;

const CMD_ATTR_SERVICE = 1;
const CMD_ATTR_DEST = 2;

const SVC_AF = 1;
const SVC_PROTOCOL = 2;
const SVC_ADDR = 3;
const SVC_PORT = 4;
const SVC_FWMARK = 5;
const SVC_SCHED_NAME = 6;
const SVC_FLAGS = 7;
const SVC_TIMEOUT = 8;
const SVC_NETMASK = 9;
const SVC_STATS = 10;
const SVC_PE_NAME = 11;
const SVC_STATS64 = 12;

const DEST_ADDR = 1;
const DEST_PORT = 2;
const DEST_FWD_METHOD = 3;
const DEST_WEIGHT = 4;
const DEST_U_THRESH = 5;
const DEST_L_THRESH = 6;
const DEST_ACTIVE_CONNS = 7;
const DEST_INACT_CONNS = 8;
const DEST_STATS = 10;
const DEST_ADDR_FAMILY = 11;
const DEST_STATS64 = 12;

const STATS_CONNS = 1;
const STATS_INPKTS = 2;
const STATS_OUTPKTS = 3;
const STATS_INBYTES = 4;
const STATS_OUTBYTES = 5;

const INFO_VERSION = 1;
const INFO_CONN_TAB_SIZE = 2;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** IP_VS_SVC_F_*: service flags. */
export const SVC_F_PERSISTENT = 0x0001;
export const SVC_F_HASHED = 0x0002; // set by the kernel, never by us
/** IP_VS_SVC_F_SCHED2 read by the mh scheduler: hash the source port along with the source address. */
export const SVC_F_SCHED_MH_PORT = 0x0010;
/** IP_VS_CONN_F_*: forwarding method of a destination. */
export const CONN_F_FWD_MASK = 0x0007;
export const CONN_F_MASQ = 0x0000;
export const CONN_F_LOCALNODE = 0x0001;
export const CONN_F_TUNNEL = 0x0002;
export const CONN_F_DROUTE = 0x0003;

/** The identity of an IPVS virtual service (fwmark services are identified by their mark). */
export interface IpvsServiceId {
  family: Family;
  /** IPPROTO_TCP / IPPROTO_UDP (or another protocol number for services we did not create). */
  protocol: number;
  address: string;
  port: number;
  /** Non-zero for a firewall-mark service (address and port are then unset). */
  fwmark: number;
}

export interface IpvsService extends IpvsServiceId {
  scheduler: string;
  /** IP_VS_SVC_F_* as the kernel reports them (HASHED included). */
  flags: number;
  /** Persistence timeout in seconds (meaningful with SVC_F_PERSISTENT). */
  timeout: number;
  /** Persistence granularity: an IPv4 netmask as a 32-bit number, or an IPv6 prefix length. */
  netmask: number;
  peName?: string;
}

export interface IpvsDest {
  address: string;
  family: Family;
  port: number;
  /** CONN_F_* forwarding method. */
  forward: number;
  weight: number;
  upperThreshold: number;
  lowerThreshold: number;
}

export interface IpvsStats {
  conns: bigint;
  inPackets: bigint;
  outPackets: bigint;
  inBytes: bigint;
  outBytes: bigint;
}

export interface IpvsInfo {
  /** e.g. `1.2.1` */
  version: string;
  connTableSize: number;
}

export function protocolNumber(p: 'tcp' | 'udp'): number {
  return p === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP;
}

export function protocolName(n: number): 'tcp' | 'udp' | null {
  return n === IPPROTO_TCP ? 'tcp' : n === IPPROTO_UDP ? 'udp' : null;
}

/** The kernel's union nf_inet_addr: 16 bytes, an IPv4 address in the first 4. */
function inetAddr(address: string): Buffer {
  const parsed = parseAddress(address);
  if (!parsed) throw new Error(`IPVS: '${address}' is not an IP address`);
  const out = Buffer.alloc(16);
  out.set(parsed.bytes, 0);
  return out;
}

function readInetAddr(b: Buffer | undefined, family: Family): string {
  if (!b) return family === 4 ? '0.0.0.0' : '::';
  return formatAddress(b.subarray(0, family === 4 ? 4 : 16));
}

function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

function familyOf(af: number | undefined): Family {
  return af === AF_INET6 ? 6 : 4;
}

function writeServiceId(w: AttrWriter, id: IpvsServiceId): void {
  w.u16(SVC_AF, afOf(id.family));
  if (id.fwmark) {
    w.u32(SVC_FWMARK, id.fwmark);
    return;
  }
  w.u16(SVC_PROTOCOL, id.protocol);
  w.bytes(SVC_ADDR, inetAddr(id.address));
  w.u16be(SVC_PORT, id.port);
}

/** Attributes naming a service (DEL_SERVICE, GET_DEST, and the service part of dest commands). */
export function serviceIdAttrs(id: IpvsServiceId): AttrWriter {
  return new AttrWriter().nested(CMD_ATTR_SERVICE, (w) => writeServiceId(w, id));
}

/** A full service entry (NEW_SERVICE / SET_SERVICE need every field). */
export function serviceAttrs(s: IpvsService): AttrWriter {
  return new AttrWriter().nested(CMD_ATTR_SERVICE, (w) => {
    writeServiceId(w, s);
    w.string(SVC_SCHED_NAME, s.scheduler);
    if (s.peName) w.string(SVC_PE_NAME, s.peName);
    // struct ip_vs_flags {flags; mask}: the mask says which bits we set; HASHED is the kernel's.
    const flags = Buffer.alloc(8);
    flags.writeUInt32LE((s.flags & ~SVC_F_HASHED) >>> 0, 0);
    flags.writeUInt32LE(~SVC_F_HASHED >>> 0, 4);
    w.bytes(SVC_FLAGS, flags);
    w.u32(SVC_TIMEOUT, s.timeout);
    w.u32(SVC_NETMASK, s.netmask);
  });
}

/** A full destination entry of a service (NEW_DEST / SET_DEST); DEL_DEST needs only address and port. */
export function destAttrs(svc: IpvsServiceId, d: IpvsDest, full = true): AttrWriter {
  return serviceIdAttrs(svc).nested(CMD_ATTR_DEST, (w) => {
    w.bytes(DEST_ADDR, inetAddr(d.address));
    w.u16be(DEST_PORT, d.port);
    w.u16(DEST_ADDR_FAMILY, afOf(d.family));
    if (!full) return;
    w.u32(DEST_FWD_METHOD, d.forward);
    w.u32(DEST_WEIGHT, d.weight);
    w.u32(DEST_U_THRESH, d.upperThreshold);
    w.u32(DEST_L_THRESH, d.lowerThreshold);
  });
}

function readStats(a: Attrs, stats64: number, stats32: number): IpvsStats {
  const s64 = a.nested(stats64);
  if (s64) {
    return {
      conns: s64.u64(STATS_CONNS) ?? 0n,
      inPackets: s64.u64(STATS_INPKTS) ?? 0n,
      outPackets: s64.u64(STATS_OUTPKTS) ?? 0n,
      inBytes: s64.u64(STATS_INBYTES) ?? 0n,
      outBytes: s64.u64(STATS_OUTBYTES) ?? 0n,
    };
  }
  // Kernels before 4.1 only have the 32-bit packet counters (bytes were always 64-bit).
  const s = a.nested(stats32);
  const n = (t: number): bigint => BigInt(s?.u32(t) ?? 0);
  return {
    conns: n(STATS_CONNS),
    inPackets: n(STATS_INPKTS),
    outPackets: n(STATS_OUTPKTS),
    inBytes: s?.u64(STATS_INBYTES) ?? 0n,
    outBytes: s?.u64(STATS_OUTBYTES) ?? 0n,
  };
}

/** One GET_SERVICE reply (the attributes of the genl message). */
export function decodeService(msg: Attrs): IpvsService & { stats: IpvsStats } {
  const a = msg.nested(CMD_ATTR_SERVICE);
  if (!a) throw new Error('IPVS: service reply without a service attribute');
  const family = familyOf(a.u16(SVC_AF));
  const flags = a.bytes(SVC_FLAGS);
  return {
    family,
    protocol: a.u16(SVC_PROTOCOL) ?? 0,
    address: readInetAddr(a.bytes(SVC_ADDR), family),
    port: a.u16be(SVC_PORT) ?? 0,
    fwmark: a.u32(SVC_FWMARK) ?? 0,
    scheduler: a.string(SVC_SCHED_NAME) ?? '',
    flags: flags ? flags.readUInt32LE(0) : 0,
    timeout: a.u32(SVC_TIMEOUT) ?? 0,
    netmask: a.u32(SVC_NETMASK) ?? 0,
    peName: a.string(SVC_PE_NAME),
    stats: readStats(a, SVC_STATS64, SVC_STATS),
  };
}

/** One GET_DEST reply. */
export function decodeDest(msg: Attrs, serviceFamily: Family): IpvsDest & { stats: IpvsStats; activeConns: number; inactiveConns: number } {
  const a = msg.nested(CMD_ATTR_DEST);
  if (!a) throw new Error('IPVS: destination reply without a destination attribute');
  const family = a.has(DEST_ADDR_FAMILY) ? familyOf(a.u16(DEST_ADDR_FAMILY)) : serviceFamily;
  return {
    address: readInetAddr(a.bytes(DEST_ADDR), family),
    family,
    port: a.u16be(DEST_PORT) ?? 0,
    forward: (a.u32(DEST_FWD_METHOD) ?? 0) & CONN_F_FWD_MASK,
    weight: a.u32(DEST_WEIGHT) ?? 0,
    upperThreshold: a.u32(DEST_U_THRESH) ?? 0,
    lowerThreshold: a.u32(DEST_L_THRESH) ?? 0,
    activeConns: a.u32(DEST_ACTIVE_CONNS) ?? 0,
    inactiveConns: a.u32(DEST_INACT_CONNS) ?? 0,
    stats: readStats(a, DEST_STATS64, DEST_STATS),
  };
}

export function decodeInfo(a: Attrs): IpvsInfo {
  const v = a.u32(INFO_VERSION) ?? 0;
  return { version: `${v >>> 16}.${(v >>> 8) & 0xff}.${v & 0xff}`, connTableSize: a.u32(INFO_CONN_TAB_SIZE) ?? 0 };
}

/** A stable text identity of an IPVS service, equal to serviceKey() for TCP/UDP address services. */
export function ipvsServiceKey(id: IpvsServiceId): string {
  if (id.fwmark) return `fwmark${id.family === 6 ? '6' : ''}/${id.fwmark}`;
  const proto = protocolName(id.protocol);
  if (proto) return serviceKey({ vip: id.address, port: id.port, protocol: proto });
  const host = id.family === 6 ? `[${id.address}]` : id.address;
  return `proto${id.protocol}/${host}:${id.port === 0 ? '*' : id.port}`;
}
