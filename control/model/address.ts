/**
 * IP address text <-> bytes, and the one canonical text form every part of the director uses as
 * an address's identity (service keys, backend ids, Maglev ordering): IPv4 dotted quad without
 * leading zeros, IPv6 in RFC 5952 form (lower case, no leading zeros, the longest run of two or
 * more zero groups shortened to `::`, the first run on a tie; IPv4-mapped addresses end in a dotted
 * quad, RFC 5952 §5). Pure; no I/O.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Family } from './types.js';

export interface ParsedAddress {
  family: Family;
  /** 4 bytes (IPv4) or 16 bytes (IPv6), network byte order. */
  bytes: Uint8Array;
}

function parseV4(text: string): Uint8Array | null {
  // node:net rejects leading zeros, which some resolvers would read as octal.
  if (!isIPv4(text)) return null;
  return Uint8Array.from(text.split('.').map(Number));
}

function parseV6(text: string): Uint8Array | null {
  // A zone (fe80::1%eth0) names a link, not an address; a VIP or backend never has one.
  if (text.includes('%') || !isIPv6(text)) return null;
  let head = text;
  const tailV4: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) !== -1) {
    const v4 = parseV4(text.slice(lastColon + 1));
    if (!v4) return null;
    tailV4.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    head = text.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const want = 8 - tailV4.length;
  let groups: number[];
  const gap = head.indexOf('::');
  const toGroups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  if (gap === -1) {
    groups = toGroups(head);
  } else {
    const left = toGroups(head.slice(0, gap));
    const right = toGroups(head.slice(gap + 2));
    groups = [...left, ...new Array<number>(want - left.length - right.length).fill(0), ...right];
  }
  groups.push(...tailV4);
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return null;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => { bytes[2 * i] = g >> 8; bytes[2 * i + 1] = g & 0xff; });
  return bytes;
}

/** Parses IPv4 or IPv6 text (no brackets, no zone, no prefix length); null when it is not one. */
export function parseAddress(text: string): ParsedAddress | null {
  if (typeof text !== 'string') return null;
  const v4 = parseV4(text);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseV6(text);
  if (v6) return { family: 6, bytes: v6 };
  return null;
}

/** Canonical text of 4 or 16 address bytes (network byte order). */
export function formatAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new Error(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  // IPv4-mapped ::ffff:a.b.c.d keeps its dotted tail (RFC 5952 §5).
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${Array.from(bytes.subarray(12)).join('.')}`;
  }
  let bestStart = -1, bestLen = 1; // a single zero group is never shortened (RFC 5952 §4.2.2)
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Canonical text of an address, or null when the text is not an IP address. */
export function canonicalAddress(text: string): string | null {
  // node:net's IPv4 form (no leading zeros) is already canonical: skip the bytes round trip, which
  // was a visible share of parsing 100,000 endpoint addresses.
  if (typeof text === 'string' && isIPv4(text)) return text;
  const parsed = parseAddress(text);
  return parsed ? formatAddress(parsed.bytes) : null;
}

/** Parses MAC text (aa:bb:cc:dd:ee:ff, also with `-`); null when it is not one. */
export function parseMac(text: string): Uint8Array | null {
  if (typeof text !== 'string' || !/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(text)) return null;
  return Uint8Array.from(text.split(/[:-]/).map((b) => parseInt(b, 16)));
}

/** MAC text in lower-case colon form. */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}
