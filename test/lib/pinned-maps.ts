/**
 * A byte-level picture of the director's pinned forwarding maps, read with the loader straight from
 * bpffs (no director process needed), so a test can prove a restart adopted the maps without
 * rewriting them: entries compared byte for byte, and each VIP's Maglev ring by the kernel id of its
 * inner map (a rewritten ring is always a fresh inner map, so an unchanged id means untouched).
 */
import { join } from 'node:path';
import { BpfMap } from '../../control/bpf/index.js';
import { decodeU32 } from '../../control/dataplane/xdp/codecs.js';

export interface PinnedMapsSnapshot {
  /** vips entries: key hex -> value hex. */
  vips: Map<string, string>;
  /** backends entries (every slot of the array, empty ones too): id -> value hex. */
  backends: Map<number, string>;
  /** rings: vip id -> kernel id of the inner map holding the ring. */
  rings: Map<number, number>;
  /** Keys (hex) of the connection table. */
  flows: Set<string>;
}

/** Runs `fn` with the pinned map `name` under `pinRoot` open, and closes it. */
export function withPinned<T>(pinRoot: string, name: string, fn: (m: BpfMap) => T): T {
  const m = BpfMap.fromPin(join(pinRoot, name));
  try {
    return fn(m);
  } finally {
    m.close();
  }
}

function entries(m: BpfMap): [Buffer, Buffer][] {
  const all = m.lookupAll();
  const out: [Buffer, Buffer][] = [];
  for (let i = 0; i < all.count; i++) {
    out.push([all.keys.subarray(i * m.keySize, (i + 1) * m.keySize), all.values.subarray(i * m.userValueSize, (i + 1) * m.userValueSize)]);
  }
  return out;
}

export function snapshotPinnedMaps(pinRoot: string): PinnedMapsSnapshot {
  return {
    vips: withPinned(pinRoot, 'vips', (m) => new Map(entries(m).map(([k, v]) => [k.toString('hex'), v.toString('hex')]))),
    backends: withPinned(pinRoot, 'backends', (m) => new Map(entries(m).map(([k, v]) => [decodeU32(k), v.toString('hex')]))),
    rings: withPinned(pinRoot, 'rings', (m) => new Map(m.keys().flatMap((k) => {
      const inner = m.lookup(k);
      return inner ? [[decodeU32(k), decodeU32(inner)] as [number, number]] : [];
    }))),
    flows: withPinned(pinRoot, 'flows', (m) => new Set(m.keys().map((k) => k.toString('hex')))),
  };
}

/** Differences between two snapshots' vips, backends and rings (flows are left to the caller: traffic changes them). */
export function forwardingMapDiff(before: PinnedMapsSnapshot, after: PinnedMapsSnapshot): string[] {
  const out: string[] = [];
  const compare = <K>(name: string, a: Map<K, unknown>, b: Map<K, unknown>) => {
    for (const [k, v] of a) {
      if (!b.has(k)) out.push(`${name}[${String(k)}] removed`);
      else if (b.get(k) !== v) out.push(`${name}[${String(k)}] changed: ${String(v)} -> ${String(b.get(k))}`);
    }
    for (const k of b.keys()) if (!a.has(k)) out.push(`${name}[${String(k)}] added`);
  };
  compare('vips', before.vips, after.vips);
  compare('backends', before.backends, after.backends);
  compare('rings (inner map id)', before.rings, after.rings);
  return out;
}
