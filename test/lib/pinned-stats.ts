/**
 * Reads the director's counters straight from its pinned maps with bpftool (the BTF in the object
 * makes bpftool print structs by field), so the demo and tests see what the XDP program counted
 * without going through the director process.
 */
import { join } from 'node:path';
import { LAYOUT, XDIR_REASON_NAMES } from '../../control/dataplane/xdp/codecs.js';
import { formatAddress } from '../../control/model/address.js';
import { run } from './netns.js';

/** bpftool -j prints raw bytes as hex strings; decoding them needs no BTF. */
type Hex = string[];
interface RawEntry { key: Hex; value?: Hex; values?: { cpu: number; value: Hex }[] }

const bytes = (h: Hex): Buffer => Buffer.from(h.map((x) => parseInt(x, 16)));

async function dump(pinRoot: string, map: string): Promise<RawEntry[]> {
  const { stdout } = await run('bpftool', ['-j', 'map', 'dump', 'pinned', join(pinRoot, map)]);
  return JSON.parse(stdout) as RawEntry[];
}

/** Packets of a per-CPU struct counter, summed over CPUs (packets is the first u64). */
function packets(e: RawEntry): number {
  return (e.values ?? []).reduce((a, v) => a + Number(bytes(v.value).readBigUInt64LE(0)), 0);
}

/** struct backend: addr[16] (network order), mac[6], family, flags. */
function backendAddress(value: Buffer): string | null {
  const family = value[22];
  if (family === 4) return formatAddress(value.subarray(0, 4));
  if (family === 6) return formatAddress(value.subarray(0, 16));
  return null;
}

export interface PinnedStats {
  /** Packets by reason name (`forwarded`, `drop-no-backend`, ...). */
  reasons: Record<string, number>;
  /** Forwarded packets by backend address (backends currently in the table). */
  backends: Record<string, number>;
}

export async function readPinnedStats(pinRoot: string): Promise<PinnedStats> {
  // The maps, then the flow cache (its entries hold the fast path's pending counts; see
  // control/dataplane/xdp/flow-cache-counts.ts).
  const [reasons, backendStats, backends] = await Promise.all([
    dump(pinRoot, 'reason_stats'), dump(pinRoot, 'backend_stats'), dump(pinRoot, 'backends'),
  ]);
  const [cache, backendGens] = await Promise.all([dump(pinRoot, 'flow_cache'), dump(pinRoot, 'backend_gens')]);
  const genOf = new Map(backendGens.map((e) => [bytes(e.key).readUInt32LE(0), e.value ? bytes(e.value).readUInt32LE(0) : undefined]));
  const out: PinnedStats = { reasons: {}, backends: {} };
  for (const e of reasons) {
    const id = bytes(e.key).readUInt32LE(0);
    out.reasons[XDIR_REASON_NAMES[id] ?? `reason-${id}`] = packets(e);
  }
  const byId = new Map(backendStats.map((e) => [bytes(e.key).readUInt32LE(0), packets(e)]));
  const E = LAYOUT.flow_cache_entry.fields;
  for (const v of cache.flatMap((e) => e.values ?? [])) {
    const entry = bytes(v.value);
    const n = Number(entry.readBigUInt64LE(E.packets));
    if (n === 0) continue;
    out.reasons['flow-hit'] = (out.reasons['flow-hit'] ?? 0) + n;
    const id = entry.readUInt32LE(E.backend_id);
    if (genOf.get(id) === entry.readUInt32LE(E.backend_gen)) byId.set(id, (byId.get(id) ?? 0) + n);
  }
  // The program does not count `forwarded`; it is flow-hit + flow-new (codecs.ts reasonCountersById).
  out.reasons.forwarded = (out.reasons['flow-hit'] ?? 0) + (out.reasons['flow-new'] ?? 0);
  for (const b of backends) {
    const a = b.value ? backendAddress(bytes(b.value)) : null;
    if (a === null) continue;
    out.backends[a] = (out.backends[a] ?? 0) + (byId.get(bytes(b.key).readUInt32LE(0)) ?? 0);
  }
  return out;
}
