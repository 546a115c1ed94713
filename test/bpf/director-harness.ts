/**
 * The real director program (bpf/director.bpf.o) loaded through the real loader into its own
 * pin root, with helpers to fill its maps the way the control plane does and to run frames
 * through it with BPF_PROG_TEST_RUN. Shared by the tests in test/bpf/ and the guest's xdp-suite.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BpfMap, BpfObject, possibleCpus } from '../../control/bpf/object.js';
import {
  LAYOUT, XDIR_REASON_NAMES, decodeFlowState, decodeU32, decodeVipKey, decodeVipMeta, encodeBackend, encodeBackendPrevMac, encodeFlowKey, encodeRing, encodeU32, encodeVipFilter,
  encodeVipKey, encodeVipMeta, nextVipGen, perCpuStride, reasonCountersById, sumPerCpuCounter, zeroPerCpuCounter, type FlowKey, type FlowState, type ReasonName, type VipKey,
} from '../../control/dataplane/xdp/codecs.js';
import type { Counter } from '../../control/dataplane/dataplane.js';
import { addPendingFlowHits, pendingFlowCacheCounts, withPending, type PendingCounts } from '../../control/dataplane/xdp/flow-cache-counts.js';

export const OBJECT_PATH = fileURLToPath(new URL('../../bpf/director.bpf.o', import.meta.url));

export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;

export interface DirectorOptions {
  /** A prime; small rings keep the test fast. */
  ringSize?: number;
  flowIdleTimeoutNs?: bigint;
  flowClosingTimeoutNs?: bigint;
  /** false: load with flow_cache_off, every packet takes the slow path. */
  flowCache?: boolean;
  /** Another build of the program (default bpf/director.bpf.o). */
  objectPath?: string;
}

/** The key words' multipliers of xdir_flow_cache_slot_of() in bpf/flow_cache.h. */
const SLOT_MULTIPLIERS = [0x9e3779b97f4a7c15n, 0xc2b2ae3d27d4eb4fn, 0x165667b19e3779f9n, 0xd6e8feb86659fd93n, 0xff51afd7ed558ccdn];
const FLOW_CACHE_BITS = 12n;

/**
 * The flow cache slot of an encoded flow key, computed as bpf/flow_cache.h does. Test-only: a drift
 * from the C shows as fast-path.test.ts's "is served by the fast path" checks failing.
 */
export function flowCacheSlot(key: Buffer): number {
  let h = 0n;
  for (let i = 0; i < 5; i++) h += key.readBigUInt64LE(8 * i) * SLOT_MULTIPLIERS[i]!;
  return Number(BigInt.asUintN(64, h) >> (64n - FLOW_CACHE_BITS));
}

export class TestDirector {
  readonly obj: BpfObject;
  readonly ringSize: number;
  readonly cpus = possibleCpus();

  private constructor(readonly pinRoot: string, o: DirectorOptions) {
    this.ringSize = o.ringSize ?? 1031;
    const rodata: Record<string, number | bigint> = { ring_size: this.ringSize };
    if (o.flowIdleTimeoutNs !== undefined) rodata.flow_idle_timeout_ns = o.flowIdleTimeoutNs;
    if (o.flowClosingTimeoutNs !== undefined) rodata.flow_closing_timeout_ns = o.flowClosingTimeoutNs;
    if (o.flowCache === false) rodata.flow_cache_off = 1;
    this.obj = BpfObject.open({
      objectPath: o.objectPath ?? OBJECT_PATH,
      pinRoot,
      maxEntries: { vips: 64, vip_gens: 64, rings: 64, backends: 64, vip_stats: 64, backend_stats: 64, backend_gens: 64, backend_prev_macs: 64, flows: 65536 },
      innerValueSize: { rings: 4 * this.ringSize },
      rodata,
    });
  }

  /** Loads the program into a fresh pin root under /sys/fs/bpf (removed by close()). */
  static open(o: DirectorOptions = {}): TestDirector {
    const pinRoot = `/sys/fs/bpf/xdir-test-${randomBytes(6).toString('hex')}`;
    try {
      return new TestDirector(pinRoot, o);
    } catch (err) {
      rmSync(pinRoot, { recursive: true, force: true });
      throw err;
    }
  }

  close(): void {
    this.obj.close();
    rmSync(this.pinRoot, { recursive: true, force: true });
  }

  /**
   * Writes the VIP as the control plane does: its address's bit into the prefilter and, for a VIP
   * new to its id, vip_gens[id] on, before the entry.
   */
  addVip(key: VipKey, vipId: number, flags = 0): void {
    const f = this.obj.map('vip_filter');
    f.update(encodeU32(0), encodeVipFilter([key.vip], f.lookup(encodeU32(0))!));
    const k = encodeVipKey(key);
    const old = this.obj.map('vips').lookup(k);
    const oldMeta = old ? decodeVipMeta(old) : null;
    let gen = oldMeta?.gen ?? 0;
    if (!oldMeta || oldMeta.vipId !== vipId) {
      gen = nextVipGen(this.vipGen(vipId));
      this.obj.map('vip_gens').update(encodeU32(vipId), encodeU32(gen));
    }
    this.obj.map('vips').update(k, encodeVipMeta({ vipId, flags, gen }));
    if (oldMeta && oldMeta.vipId !== vipId) {
      this.obj.map('vip_gens').update(encodeU32(oldMeta.vipId), encodeU32(nextVipGen(this.vipGen(oldMeta.vipId))));
      this.bumpCacheEpoch();
    }
  }

  /** cache_epoch[0] + 1, as the control plane does after it deletes a VIP or takes an id from one. */
  bumpCacheEpoch(): void {
    const m = this.obj.map('cache_epoch');
    m.update(encodeU32(0), encodeU32((decodeU32(m.lookup(encodeU32(0))!) + 1) >>> 0));
  }

  /**
   * Deletes the VIP as the control plane does: the entry, then its id's generation and the cache
   * epoch move on, then the prefilter is rewritten from the VIPs left.
   */
  removeVip(key: VipKey): void {
    const k = encodeVipKey(key);
    const old = this.obj.map('vips').lookup(k);
    this.obj.map('vips').delete(k);
    if (old) {
      const meta = decodeVipMeta(old);
      this.obj.map('vip_gens').update(encodeU32(meta.vipId), encodeU32(nextVipGen(meta.gen)));
      this.bumpCacheEpoch();
    }
    this.obj.map('vip_filter').update(encodeU32(0), encodeVipFilter(this.obj.map('vips').keys().map((x) => decodeVipKey(x).vip)));
  }

  /** vip_filter's value (struct vip_filter). */
  vipFilter(): Buffer {
    return this.obj.map('vip_filter').lookup(encodeU32(0))!;
  }

  vipGen(vipId: number): number {
    return decodeU32(this.obj.map('vip_gens').lookup(encodeU32(vipId))!);
  }

  /** Gives backend id `id` to another server as the control plane does: generation on, then stats zeroed. */
  reuseBackendId(id: number): void {
    const m = this.obj.map('backend_gens');
    m.update(encodeU32(id), encodeU32(nextVipGen(decodeU32(m.lookup(encodeU32(id))!))));
    this.obj.map('backend_stats').update(encodeU32(id), zeroPerCpuCounter(this.cpus));
  }

  /**
   * Writes backend `id` as the control plane does: first the MAC its flows move from (`prevMac`,
   * a change of the same server's MAC; none for a new server), then the entry.
   */
  setBackend(id: number, address: string, mac: string | null, prevMac: string | null = null): void {
    this.obj.map('backend_prev_macs').update(encodeU32(id), encodeBackendPrevMac(address, prevMac));
    this.obj.map('backends').update(encodeU32(id), encodeBackend({ address, mac }));
    if (prevMac !== null) this.bumpCacheEpoch();
  }

  /** Publishes a whole new ring for `vipId`, as the control plane does: a fresh inner map, swapped in. */
  setRing(vipId: number, slots: Uint32Array | number): void {
    const ids = typeof slots === 'number' ? new Uint32Array(this.ringSize).fill(slots) : slots;
    if (ids.length !== this.ringSize) throw new Error(`ring of ${ids.length} slots, want ${this.ringSize}`);
    const inner = BpfMap.create({ type: 'array', name: `ring${vipId}`, keySize: 4, valueSize: 4 * this.ringSize, maxEntries: 1 });
    try {
      inner.update(encodeU32(0), encodeRing(ids));
      this.obj.map('rings').update(encodeU32(vipId), encodeU32(inner.fd));
    } finally {
      inner.close(); // the outer map holds its own reference
    }
  }

  run(data: Buffer): { action: number; data: Buffer } {
    const r = this.obj.program('xdir_director').testRun({ data });
    return { action: r.retval, data: r.data };
  }

  flow(key: FlowKey): FlowState | null {
    const v = this.obj.map('flows').lookup(encodeFlowKey(key));
    return v ? decodeFlowState(v) : null;
  }

  /**
   * The fast path's pending packets of this flow, summed over the CPUs' cache entries for it. A
   * fast-path hit adds exactly 1; a miss adds nothing (a refill empties the entry first).
   */
  cachedPackets(key: FlowKey): bigint {
    const k = encodeFlowKey(key);
    const v = this.obj.map('flow_cache').lookup(encodeU32(flowCacheSlot(k)))!;
    const E = LAYOUT.flow_cache_entry.fields, stride = perCpuStride(LAYOUT.flow_cache_entry.size);
    let packets = 0n;
    for (let cpu = 0; cpu < this.cpus; cpu++) {
      const at = cpu * stride;
      if (v.subarray(at + E.key, at + E.key + k.length).equals(k)) packets += v.readBigUInt64LE(at + E.packets);
    }
    return packets;
  }

  /** A stats map's own counter, without the flow cache's pending counts. */
  mapCounter(map: 'reason_stats' | 'vip_stats' | 'backend_stats', id: number): Counter {
    const v = this.obj.map(map).lookup(encodeU32(id));
    if (!v) throw new Error(`${map}[${id}] is missing`);
    return sumPerCpuCounter(v, 0, this.cpus);
  }

  /** The flow cache's pending counts, which user space adds to the maps (flow-cache-counts.ts). */
  pending(): PendingCounts {
    const gen = (map: string) => (id: number) => {
      const v = this.obj.map(map).lookup(encodeU32(id));
      return v ? decodeU32(v) : undefined;
    };
    return pendingFlowCacheCounts(this.obj.map('flow_cache').lookupAll(), this.cpus, { vip: gen('vip_gens'), backend: gen('backend_gens') });
  }

  /** As user space shows them: `forwarded` derived (reasonCountersById), pending flow hits added. */
  reasons(): Map<ReasonName, Counter> {
    const raw = new Map(XDIR_REASON_NAMES.map((_, i) => [i, this.mapCounter('reason_stats', i)]));
    addPendingFlowHits(raw, this.pending());
    const byId = reasonCountersById(raw);
    return new Map(XDIR_REASON_NAMES.map((name, i) => [name, byId.get(i)!]));
  }

  vipCounter(vipId: number): Counter {
    return withPending(this.mapCounter('vip_stats', vipId), this.pending().vips.get(vipId));
  }

  backendCounter(backendId: number): Counter {
    return withPending(this.mapCounter('backend_stats', backendId), this.pending().backends.get(backendId));
  }
}

/** Packets counted per reason between two readings (only reasons that changed). */
export function reasonDelta(before: Map<ReasonName, Counter>, after: Map<ReasonName, Counter>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, c] of after) {
    const d = Number(c.packets - (before.get(name)?.packets ?? 0n));
    if (d !== 0) out[name] = d;
  }
  return out;
}

/** The XDIR_R_* verdict names (one per packet), as opposed to XDIR_EV_* events. */
export const VERDICT_NAMES: readonly ReasonName[] = XDIR_REASON_NAMES.slice(0, XDIR_REASON_NAMES.indexOf('flow-new'));
