/**
 * Seeded malformations of valid frames, for the fuzz tests of the XDP program (test/bpf/fuzz.test.ts,
 * test/bpf/fast-path.test.ts): the edges a parser gets wrong.
 */
import { ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q } from './packets.js';

/** Offset of the IP header in a frame (after any VLAN tags). */
function l3Offset(f: Buffer): number {
  let off = 12;
  while (off + 2 <= f.length && [ETH_P_8021Q, ETH_P_8021AD].includes(f.readUInt16BE(off))) off += 4;
  return off + 2;
}

/**
 * One random malformation of a valid frame: bits flipped, a bogus IHL/version byte, a bogus IPv4
 * total length or IPv6 payload length, VLAN tags stacked, L3/L4 header bytes garbled, or truncation.
 */
export function mutate(base: Buffer, rand: () => number): Buffer {
  const int = (n: number): number => Math.floor(rand() * n);
  const f = Buffer.from(base);
  const l3 = l3Offset(f);
  switch (int(6)) {
    case 0: { // flip 1..8 random bits
      for (let i = int(8) + 1; i > 0; i--) { const at = int(f.length); f[at] = f[at]! ^ (1 << int(8)); }
      return f;
    }
    case 1: // bogus IHL/version byte
      if (l3 < f.length) f[l3] = (f[l3]! & 0xf0) | int(16);
      if (rand() < 0.3 && l3 < f.length) f[l3] = int(256);
      return f;
    case 2: { // bogus IPv4 total length / IPv6 payload length
      const v6 = l3 < f.length && f[l3]! >> 4 === 6;
      const at = v6 ? l3 + 4 : l3 + 2;
      // The length that just holds, or is one short of, a UDP (8) or TCP (20) header after the IP
      // header (the IPv4 length counts the header, IHL x 4; IPv6's payload length does not), and the
      // frame's own end, one byte either side.
      const ipHdr = v6 ? 0 : ((f[l3] ?? 0) & 0x0f) * 4;
      const frameEnd = f.length - l3 - (v6 ? 40 : 0);
      const edge = [0, 1, 19, 20, 21, 39, 40, 41, ipHdr + 7, ipHdr + 8, ipHdr + 19, ipHdr + 20,
        frameEnd - 1, frameEnd, frameEnd + 1, 0xffff, int(0x10000)].map((n) => Math.max(0, n) & 0xffff);
      if (at + 2 <= f.length) f.writeUInt16BE(edge[int(edge.length)]!, at);
      return f;
    }
    case 3: { // stack VLAN tags (0..3 more) with assorted TPIDs
      const tpids = [ETH_P_8021Q, ETH_P_8021AD, 0x9100, int(0x10000)];
      const tags = Buffer.alloc(4 * (int(3) + 1));
      for (let i = 0; i < tags.length; i += 4) { tags.writeUInt16BE(tpids[int(tpids.length)]!, i); tags.writeUInt16BE(int(4096), i + 2); }
      return Buffer.concat([f.subarray(0, 12), tags, f.subarray(12)]);
    }
    case 4: { // garble bytes in the L3/L4 headers (extension header lengths, fragment fields, ports, ICMP type)
      for (let i = int(4) + 1; i > 0; i--) {
        const at = l3 + int(Math.max(1, Math.min(120, f.length - l3)));
        if (at < f.length) f[at] = int(256);
      }
      return f;
    }
    default: // truncate somewhere
      return f.subarray(0, ETH_HLEN + int(f.length - ETH_HLEN + 1));
  }
}
