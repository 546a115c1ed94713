/**
 * A small packet builder for tests: Ethernet (with any number of 802.1Q/802.1ad tags), IPv4 with
 * options and fragmentation fields, IPv6 with extension headers, TCP, UDP, ICMP and ICMPv6, with
 * correct checksums. It builds the frames the XDP program is fed through BPF_PROG_TEST_RUN and
 * the packets quoted inside ICMP errors. Pure; no I/O.
 */
import { parseAddress, parseMac } from '../../control/model/address.js';

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_ARP = 0x0806;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;

export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, HOPOPTS: 0, DSTOPTS: 60, ROUTING: 43, FRAGMENT: 44 } as const;

export const TCP_FLAGS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

export const ETH_HLEN = 14;

export type L4 =
  | { kind: 'tcp'; sport: number; dport: number; flags?: number; seq?: number; payload?: Uint8Array }
  | { kind: 'udp'; sport: number; dport: number; payload?: Uint8Array }
  /** ICMP or ICMPv6 (by the IP version): `rest` is the 4 bytes after the checksum (e.g. the MTU). */
  | { kind: 'icmp'; type: number; code: number; rest?: number; payload?: Uint8Array }
  /** Any other protocol: the payload verbatim, no checksum. */
  | { kind: 'raw'; proto: number; payload: Uint8Array };

export interface Ipv4Spec {
  version: 4;
  src: string;
  dst: string;
  ttl?: number;
  id?: number;
  /** IP options, padded to a multiple of 4 bytes (IHL = 5 + length/4). */
  options?: Uint8Array;
  /** Fragment fields: offset in bytes (a multiple of 8) and the More Fragments flag. */
  fragment?: { offset: number; more: boolean };
}

/** An IPv6 extension header before the transport header. */
export type Ipv6Ext =
  | { kind: 'hopopts' | 'dstopts'; /** total length in bytes, a multiple of 8 (>= 8) */ length?: number }
  | { kind: 'routing' }
  | { kind: 'fragment'; offset: number; more: boolean; id?: number };

export interface Ipv6Spec {
  version: 6;
  src: string;
  dst: string;
  hopLimit?: number;
  ext?: Ipv6Ext[];
}

export interface FrameSpec {
  srcMac?: string;
  dstMac?: string;
  /** VLAN tags, outermost first; each is a VID, or {tpid, vid} for 802.1ad. */
  vlans?: (number | { tpid: number; vid: number })[];
  ip: Ipv4Spec | Ipv6Spec;
  l4: L4;
}

export const DEFAULT_SRC_MAC = '02:00:00:00:00:01';
export const DEFAULT_DST_MAC = '02:00:00:00:00:02';

function addr(text: string, family: 4 | 6): Uint8Array {
  const parsed = parseAddress(text);
  if (!parsed || parsed.family !== family) throw new Error(`${text} is not an IPv${family} address`);
  return parsed.bytes;
}

export function mac(text: string): Uint8Array {
  const m = parseMac(text);
  if (!m) throw new Error(`${text} is not a MAC address`);
  return m;
}

/** The Internet checksum (RFC 1071) of the concatenated parts. */
export function inetChecksum(...parts: Uint8Array[]): number {
  let sum = 0;
  let odd: number | null = null;
  for (const part of parts) {
    for (const byte of part) {
      if (odd === null) odd = byte;
      else { sum += (odd << 8) | byte; odd = null; }
    }
  }
  if (odd !== null) sum += odd << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudoHeader(src: Uint8Array, dst: Uint8Array, proto: number, length: number): Uint8Array {
  if (src.length === 4) {
    const p = Buffer.alloc(12);
    p.set(src, 0); p.set(dst, 4); p[9] = proto; p.writeUInt16BE(length, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  p.set(src, 0); p.set(dst, 16); p.writeUInt32BE(length, 32); p[39] = proto;
  return p;
}

function l4Proto(l4: L4, family: 4 | 6): number {
  switch (l4.kind) {
    case 'tcp': return IPPROTO.TCP;
    case 'udp': return IPPROTO.UDP;
    case 'icmp': return family === 4 ? IPPROTO.ICMP : IPPROTO.ICMPV6;
    case 'raw': return l4.proto;
  }
}

/** The transport header and payload with its checksum (pseudo-header from src/dst). */
export function transport(l4: L4, src: Uint8Array, dst: Uint8Array): Buffer {
  const family = src.length === 4 ? 4 : 6;
  switch (l4.kind) {
    case 'tcp': {
      const payload = l4.payload ?? new Uint8Array();
      const b = Buffer.alloc(20 + payload.length);
      b.writeUInt16BE(l4.sport, 0); b.writeUInt16BE(l4.dport, 2);
      b.writeUInt32BE(l4.seq ?? 1, 4);
      b[12] = 5 << 4;
      b[13] = l4.flags ?? TCP_FLAGS.ACK;
      b.writeUInt16BE(65535, 14);
      b.set(payload, 20);
      b.writeUInt16BE(inetChecksum(pseudoHeader(src, dst, IPPROTO.TCP, b.length), b), 16);
      return b;
    }
    case 'udp': {
      const payload = l4.payload ?? new Uint8Array();
      const b = Buffer.alloc(8 + payload.length);
      b.writeUInt16BE(l4.sport, 0); b.writeUInt16BE(l4.dport, 2); b.writeUInt16BE(b.length, 4);
      b.set(payload, 8);
      const sum = inetChecksum(pseudoHeader(src, dst, IPPROTO.UDP, b.length), b);
      b.writeUInt16BE(sum === 0 ? 0xffff : sum, 6);
      return b;
    }
    case 'icmp': {
      const payload = l4.payload ?? new Uint8Array();
      const b = Buffer.alloc(8 + payload.length);
      b[0] = l4.type; b[1] = l4.code; b.writeUInt32BE((l4.rest ?? 0) >>> 0, 4);
      b.set(payload, 8);
      const sum = family === 4
        ? inetChecksum(b)
        : inetChecksum(pseudoHeader(src, dst, IPPROTO.ICMPV6, b.length), b);
      b.writeUInt16BE(sum, 2);
      return b;
    }
    case 'raw':
      return Buffer.from(l4.payload);
  }
}

/** An IPv4 packet (header with checksum, then the transport). */
export function ipv4Packet(ip: Ipv4Spec, l4: L4): Buffer {
  const src = addr(ip.src, 4), dst = addr(ip.dst, 4);
  const options = ip.options ?? new Uint8Array();
  if (options.length % 4 !== 0 || options.length > 40) throw new Error('IPv4 options must be 0..40 bytes, a multiple of 4');
  const body = transport(l4, src, dst);
  const hlen = 20 + options.length;
  const h = Buffer.alloc(hlen);
  h[0] = 0x40 | (hlen / 4);
  h.writeUInt16BE(hlen + body.length, 2);
  h.writeUInt16BE(ip.id ?? 0x1234, 4);
  const frag = ip.fragment ? ((ip.fragment.more ? 0x2000 : 0) | (ip.fragment.offset / 8)) : 0x4000; // DF when whole
  h.writeUInt16BE(frag, 6);
  h[8] = ip.ttl ?? 64;
  h[9] = l4Proto(l4, 4);
  h.set(src, 12); h.set(dst, 16); h.set(options, 20);
  h.writeUInt16BE(inetChecksum(h), 10);
  return Buffer.concat([h, body]);
}

/** An IPv6 packet (header, extension headers, then the transport). */
export function ipv6Packet(ip: Ipv6Spec, l4: L4): Buffer {
  const src = addr(ip.src, 6), dst = addr(ip.dst, 6);
  const body = transport(l4, src, dst);
  const exts = ip.ext ?? [];
  const codes = exts.map((e) => (e.kind === 'hopopts' ? IPPROTO.HOPOPTS : e.kind === 'dstopts' ? IPPROTO.DSTOPTS
    : e.kind === 'routing' ? IPPROTO.ROUTING : IPPROTO.FRAGMENT));
  const next = [...codes.slice(1), l4Proto(l4, 6)];
  const extBytes = exts.map((e, i) => {
    if (e.kind === 'fragment') {
      const b = Buffer.alloc(8);
      b[0] = next[i]!;
      b.writeUInt16BE((e.offset & 0xfff8) | (e.more ? 1 : 0), 2);
      b.writeUInt32BE(e.id ?? 0xabcd, 4);
      return b;
    }
    const length = e.kind === 'routing' ? 8 : (e.length ?? 8);
    if (length < 8 || length % 8 !== 0) throw new Error('IPv6 option headers are a multiple of 8 bytes');
    const b = Buffer.alloc(length);
    b[0] = next[i]!;
    b[1] = length / 8 - 1;
    if (e.kind === 'routing') { b[2] = 4; b[3] = 0; } // type 4 (SRH), segments left 0
    else { b[2] = 1; b[3] = length - 4; } // one PadN option filling the header
    return b;
  });
  const payload = Buffer.concat([...extBytes, body]);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = codes[0] ?? l4Proto(l4, 6);
  h[7] = ip.hopLimit ?? 64;
  h.set(src, 8); h.set(dst, 24);
  return Buffer.concat([h, payload]);
}

export function ipPacket(ip: Ipv4Spec | Ipv6Spec, l4: L4): Buffer {
  return ip.version === 4 ? ipv4Packet(ip, l4) : ipv6Packet(ip, l4);
}

/** Ethernet header (with VLAN tags) for a payload of `ethertype`. */
export function ethernet(o: { srcMac?: string; dstMac?: string; vlans?: FrameSpec['vlans']; ethertype: number }): Buffer {
  const tags = (o.vlans ?? []).map((v) => (typeof v === 'number' ? { tpid: ETH_P_8021Q, vid: v } : v));
  const h = Buffer.alloc(ETH_HLEN + 4 * tags.length);
  h.set(mac(o.dstMac ?? DEFAULT_DST_MAC), 0);
  h.set(mac(o.srcMac ?? DEFAULT_SRC_MAC), 6);
  tags.forEach((t, i) => { h.writeUInt16BE(t.tpid, 12 + 4 * i); h.writeUInt16BE(t.vid & 0x0fff, 14 + 4 * i); });
  h.writeUInt16BE(o.ethertype, 12 + 4 * tags.length);
  return h;
}

/** A whole frame. */
export function frame(spec: FrameSpec): Buffer {
  const ethertype = spec.ip.version === 4 ? ETH_P_IP : ETH_P_IPV6;
  return Buffer.concat([ethernet({ ...spec, ethertype }), ipPacket(spec.ip, spec.l4)]);
}

/** An ARP request frame (who-has target tell sender). */
export function arpRequest(o: { senderMac?: string; senderIp: string; targetIp: string }): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); b.writeUInt16BE(ETH_P_IP, 2); b[4] = 6; b[5] = 4; b.writeUInt16BE(1, 6);
  b.set(mac(o.senderMac ?? DEFAULT_SRC_MAC), 8);
  b.set(addr(o.senderIp, 4), 14);
  b.set(addr(o.targetIp, 4), 24);
  return Buffer.concat([ethernet({ srcMac: o.senderMac, dstMac: 'ff:ff:ff:ff:ff:ff', ethertype: ETH_P_ARP }), b]);
}

/**
 * The ICMP error a router sends about `quoted` (a packet it could not forward): to the quoted
 * packet's source, quoting its IP header and the first `quoteBytes` bytes after it (RFC 792: 8;
 * RFC 1812/4443 routers quote as much as fits). ICMPv4 type 3 code 4 / ICMPv6 type 2 carry `mtu`.
 */
export function icmpError(o: {
  router: string;
  quoted: Buffer;
  type: number;
  code: number;
  mtu?: number;
  quoteBytes?: number;
  srcMac?: string;
  dstMac?: string;
  vlans?: FrameSpec['vlans'];
}): Buffer {
  const v4 = (o.quoted[0]! >> 4) === 4;
  const hlen = v4 ? (o.quoted[0]! & 0x0f) * 4 : 40;
  const quote = o.quoted.subarray(0, hlen + (o.quoteBytes ?? 8));
  const dst = v4 ? ipFromBytes(o.quoted.subarray(12, 16)) : ipFromBytes(o.quoted.subarray(8, 24));
  const l4: L4 = { kind: 'icmp', type: o.type, code: o.code, rest: o.mtu ?? 0, payload: quote };
  const ip: Ipv4Spec | Ipv6Spec = v4 ? { version: 4, src: o.router, dst } : { version: 6, src: o.router, dst };
  return frame({ srcMac: o.srcMac, dstMac: o.dstMac, vlans: o.vlans, ip, l4 });
}

function ipFromBytes(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return groups.join(':');
}

/** Destination and source MAC of a frame, as lower-case colon text. */
export function frameMacs(f: Uint8Array): { dst: string; src: string } {
  const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
  return { dst: hex(f.subarray(0, 6)), src: hex(f.subarray(6, 12)) };
}
