/**
 * The XDP data path: loads bpf/director.bpf.o (or adopts its pinned maps after a restart),
 * attaches it, and keeps its maps equal to the desired state with as few writes as possible.
 * What to write is decided by plan.ts (pure); this file only reads and writes maps.
 *
 * A state with a delta (DesiredState.delta, from incremental sources) whose base is the state
 * last planned is planned from its changes alone, and the backend entries from the learned MACs
 * that moved: one EndpointSlice change among 10,000 Services costs O(that change), not a pass
 * over every service and backend. Long runs of writes to one map go in batches (executeAll).
 *
 * apply() plans against what this process wrote, not against the maps (reading every ring each
 * apply would cost O(VIPs x ring size)). repair() closes the gap: it compares the maps with that
 * record cheaply (vips, backends, and each ring's inner map id) and, only when something drifted,
 * re-reads the maps so the next apply rewrites what was changed by hand.
 */
import { constants } from 'node:os';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultPinRoot } from './pin-root.js';
import { PerCpuSumMemo, sumPerCpuCountersNamed } from './per-cpu-sum.js';
import { PendingHold, addPendingFlowHits, pendingFlowCacheCounts } from './flow-cache-counts.js';
import {
  BpfError, BpfMap, BpfObject, attachXdp, detachXdp, possibleCpus, type BpfProgram,
} from '../../bpf/index.js';
import { logger } from '../../log.js';
import { checkRingSize, DEFAULT_RING_SIZE } from '../../model/maglev.js';
import { serviceKey, type DesiredState, type VirtualService } from '../../model/types.js';
import { formatValidationError, validateDesiredState, ValidationMemo } from '../../model/validate.js';
import type {
  ApplyResult, BackendStatus, Counter, Dataplane, ServiceStatus, StatsSample, StopOptions,
} from '../dataplane.js';
import {
  VIP_F_HASH_SRC_ONLY, XDIR_REASON_NAMES, decodeBackend, decodeRing, decodeU32, decodeVipKey, decodeVipMeta,
  decodeBackendPrevMac, emptyBackend, encodeBackend, encodeBackendPrevMac, encodeRing, encodeU32, encodeVipKey, encodeVipMeta, LAYOUT, nextVipGen, reasonCountersById, sumPerCpuCounters, zeroPerCpuCounter,
} from './codecs.js';
import { IdAllocator } from './ids.js';
import type { NeighbourResolver } from './neighbours.js';
import {
  commitPlan, emptyProgrammedState, planApply, type MapOp, type ProgrammedBackend, type ProgrammedState, type ProgrammedVip,
} from './plan.js';
import { RingCache } from './ring-cache.js';
import { VipFilter } from './vip-filter.js';

const log = logger('xdp');

export interface XdpDataplaneOptions {
  /** Interface the program is attached to and transmits on. */
  interface: string;
  /** Default 'auto': native, falling back to generic where the driver has no XDP support. */
  xdpMode?: 'native' | 'generic' | 'auto';
  /** bpffs directory of the pinned maps; default /sys/fs/bpf/xdir/<interface>. */
  pinRoot?: string;
  /** Default bpf/director.bpf.o of this package. */
  objectPath?: string;
  /** Name of the XDP program in the object; default: its only program. */
  programName?: string;
  ringSize?: number;
  maxVips?: number;
  maxBackends?: number;
  flowTableSize?: number;
  flowIdleTimeoutS?: number;
  flowClosingTimeoutS?: number;
  /** Learns backend MACs the configuration does not give; without it the program uses bpf_fib_lookup. */
  neighbours?: NeighbourResolver;
  /**
   * How often learned MACs are looked up again (default 5000 ms; 0 = only on apply): an unresolved
   * one until the kernel knows it, a known one to follow a change (a replaced server or NIC).
   */
  macRefreshMs?: number;
  /** Attach the program to the interface (default true). Tests set false and use BPF_PROG_TEST_RUN. */
  attach?: boolean;
  /** Called after every map write (instrumentation for tests and debugging). */
  onMapWrite?: (op: MapOp) => void;
}

/** Defaults of the settings, mirroring XDIR_DEFAULT_* in bpf/director_shared.h. */
export const XDP_DEFAULTS = {
  ringSize: DEFAULT_RING_SIZE,
  maxVips: 1024,
  maxBackends: 4096,
  flowTableSize: 1_048_576,
  flowIdleTimeoutS: 300,
  flowClosingTimeoutS: 10,
  macRefreshMs: 5000,
} as const;

/** The directory holding this package's package.json (works from control/ under tsx and from dist/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'xdp-director') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the xdp-director package root; pass objectPath explicitly');
    dir = up;
  }
}

const NS_PER_S = 1_000_000_000n;

/**
 * The u32 values of an ARRAY map by index (vip_gens, backend_gens): one batch read, made on the
 * first call. Undefined beyond the array.
 */
/** A whole-map batch read (BpfMap.lookupAll). */
type BatchRead = ReturnType<BpfMap['lookupAll']>;

function u32ArrayReader(map: BpfMap): (id: number) => number | undefined {
  let all: BatchRead | undefined;
  return (id) => {
    all ??= map.lookupAll();
    return id < all.count ? all.values.readUInt32LE(id * 4) : undefined;
  };
}

/**
 * The generation that retires a VIP id's cached flows: after the live vip_gens value, and never the
 * generation the deleted entry carried (the two differ only after a hand edit or a crash between
 * writes; moving on from the live value keeps the counter from stepping back onto an old one).
 */
function genAfter(live: number, stale: number): number {
  const g = nextVipGen(live);
  return g === stale ? nextVipGen(g) : g;
}
const NO_CHANGES: ReadonlyMap<string, VirtualService | null> = new Map();
/**
 * Runs of at least this many writes to one map go in batches. Below it, one write per entry:
 * a batch of vips entries reads the whole vips map first, which a handful of writes do not repay.
 */
const BATCH_MIN = 32;
/** Inner ring maps published per batch (each is an open fd until then). */
const RING_BATCH = 256;

/** The address of every programmed VIP (once per VIP: VipFilter counts them). */
function* vipAddresses(vips: ReadonlyMap<string, ProgrammedVip>): Iterable<string> {
  for (const v of vips.values()) yield v.vipKey.vip;
}

/** Which batch a write can join: runs of one family are consecutive in a plan (plan.ts's order). */
function batchFamily(op: MapOp): 'backends' | 'rings' | 'vips' | null {
  switch (op.kind) {
    case 'backend-stats-reset': case 'backend-set': return 'backends';
    case 'vip-stats-reset': case 'ring-set': return 'rings';
    case 'vip-set': return 'vips';
    default: return null;
  }
}

export class XdpDataplane implements Dataplane {
  readonly kind = 'xdp' as const;
  readonly pinRoot: string;
  readonly objectPath: string;
  private readonly ringSize: number;
  private readonly maxVips: number;
  private readonly maxBackends: number;
  private obj: BpfObject | null = null;
  private state: ProgrammedState;
  private lastDesired: DesiredState | null = null;
  private lastRetain: ReadonlySet<string> = new Set();
  /**
   * True while `state` is exactly what planning lastDesired gave (no failed write, no re-read
   * since): only then may the next apply plan from a delta relative to lastDesired's revision alone.
   */
  private planned = false;
  /**
   * The kernel id of the inner map in rings[vipId], by VIP id, as last written or adopted. Ids are
   * not reused, so a different id (or none) means the ring was replaced or removed by someone else.
   */
  private ringIds = new Map<number, number>();
  private warnedRingsUnreadable = false;
  /** Validation results of the services sources hand over again unchanged (the same objects). */
  private readonly validated = new ValidationMemo();
  /** Rings shared by VIPs with the same backends, across applies. */
  private readonly rings = new RingCache();
  private readonly learnedMacs = new Map<string, string | null>();
  private timer: NodeJS.Timeout | null = null;
  /** Serialises apply() and the MAC refresh: both plan from and replace `state`. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Map writes since start (every insert, update and delete). */
  writes = 0;
  /** The XDP mode in use, once attached. */
  attachedMode: 'native' | 'generic' | null = null;
  /** The last counter read per map (readStats): unchanged entries keep their Counter objects. */
  private readonly vipSums = new PerCpuSumMemo();
  private readonly backendSums = new PerCpuSumMemo();
  /** Keeps readStats monotonic while the program flushes pending counts (flow-cache-counts.ts). */
  private readonly reasonHold = new PendingHold();
  private readonly vipHold = new PendingHold();
  private readonly backendHold = new PendingHold();
  /** A write moved a vip_gens entry on or named a previous MAC; executeAll moves cache_epoch on once at its end. */
  private cacheEpochStale = false;
  /** The VIP prefilter's content as programmed (written at start, then kept in step by reconcile). */
  private vipFilter = new VipFilter();

  constructor(private readonly opts: XdpDataplaneOptions) {
    this.ringSize = opts.ringSize ?? XDP_DEFAULTS.ringSize;
    checkRingSize(this.ringSize);
    this.maxVips = opts.maxVips ?? XDP_DEFAULTS.maxVips;
    this.maxBackends = opts.maxBackends ?? XDP_DEFAULTS.maxBackends;
    this.pinRoot = opts.pinRoot ?? defaultPinRoot(opts.interface);
    this.objectPath = opts.objectPath ?? join(packageRoot(), 'bpf', 'director.bpf.o');
    this.state = emptyProgrammedState(this.maxVips, this.maxBackends);
  }

  private get object(): BpfObject {
    if (!this.obj) throw new Error('the XDP data path is not started; call start() first');
    return this.obj;
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (this.obj) return;
    signal?.throwIfAborted();
    const o = this.opts;
    this.obj = BpfObject.open({
      objectPath: this.objectPath,
      pinRoot: this.pinRoot,
      maxEntries: {
        vips: this.maxVips, vip_gens: this.maxVips, rings: this.maxVips, vip_stats: this.maxVips,
        backends: this.maxBackends, backend_stats: this.maxBackends, backend_gens: this.maxBackends, backend_prev_macs: this.maxBackends,
        flows: o.flowTableSize ?? XDP_DEFAULTS.flowTableSize,
      },
      innerValueSize: { rings: 4 * this.ringSize },
      rodata: {
        ring_size: this.ringSize,
        flow_idle_timeout_ns: BigInt(o.flowIdleTimeoutS ?? XDP_DEFAULTS.flowIdleTimeoutS) * NS_PER_S,
        flow_closing_timeout_ns: BigInt(o.flowClosingTimeoutS ?? XDP_DEFAULTS.flowClosingTimeoutS) * NS_PER_S,
      },
    });
    // A start after a stop plans every service once: the maps may have changed in between.
    this.planned = false;
    try {
      try {
        this.state = this.readProgrammedState();
      } catch (err) {
        throw new Error(`cannot read the pinned maps under ${this.pinRoot}: ${(err as Error).message}; ` +
          `if they come from an incompatible version, remove them with \`rm -r ${this.pinRoot}\` (this drops live flows)`, { cause: err });
      }
      log.info({ pinRoot: this.pinRoot, adoptedMaps: this.obj.adoptedMaps.length, vips: this.state.vips.size, backends: this.state.backends.size },
        this.obj.adoptedMaps.length ? 'adopted pinned maps' : 'created maps');
      this.publishVipFilter();
      if (o.attach !== false) {
        const { mode, fellBack } = attachXdp(o.interface, this.program(), { mode: o.xdpMode ?? 'auto' });
        this.attachedMode = mode;
        log.info({ interface: o.interface, mode, fellBack }, 'XDP program attached');
      }
    } catch (err) {
      this.obj.close();
      this.obj = null;
      throw err;
    }
    const every = o.macRefreshMs ?? XDP_DEFAULTS.macRefreshMs;
    if (o.neighbours && every > 0) {
      this.timer = setInterval(() => {
        this.serialised(() => this.refreshMacs()).catch((err: unknown) => {
          log.error({ err: (err as Error).message }, 'refreshing backend MACs failed; retrying on the next tick');
        });
      }, every);
      this.timer.unref();
    }
    // Abort ends background work only; stop() decides whether to detach, so an abort never
    // pre-empts a later stop({ detach: true }).
    signal?.addEventListener('abort', () => this.stopTimer(), { once: true });
  }

  /** The XDP program (for BPF_PROG_TEST_RUN in tests and benchmarks). */
  program(): BpfProgram {
    const names = this.object.programNames();
    const name = this.opts.programName ?? (names.length === 1 ? names[0]! : undefined);
    if (!name) throw new BpfError(`${this.objectPath} has ${names.length} programs (${names.join(', ')}); set programName`);
    return this.object.program(name);
  }

  /** A map of the loaded object, by contract name (director_shared.h). */
  map(name: string): BpfMap {
    return this.object.map(name);
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  apply(desired: DesiredState): Promise<ApplyResult> {
    return this.serialised(async () => {
      if (!this.obj) throw new Error('the XDP data path is not started; call start() before apply()');
      const { state: valid, errors } = validateDesiredState(desired, this.validated);
      // A service whose new definition is rejected keeps running as it was.
      const retain = new Set(errors.flatMap((e) => (e.key === undefined ? [] : [e.key])));
      for (const e of errors) {
        const kept = e.key !== undefined && this.state.vips.has(e.key) ? ' (its last good version stays programmed)' : '';
        log.error({ service: e.service, origin: e.origin }, formatValidationError(e) + kept);
      }
      // From the state last planned, the validated delta names every service that differs: plan
      // those alone (O(changes), not a pass over 10,000 services). Anything else plans everything.
      const since = this.lastDesired?.revision;
      const delta = this.planned && valid.delta && since !== undefined && valid.delta.since === since ? valid.delta.changes : undefined;
      const macChanges = await this.resolveMacs(valid, false, retain, delta);
      const result = this.reconcile(valid, retain, delta, this.planned ? macChanges : undefined);
      this.lastDesired = valid;
      this.lastRetain = retain;
      return result;
    });
  }

  repair(): Promise<void> {
    return this.serialised(async () => {
      if (!this.obj) throw new Error('the XDP data path is not started; call start() before repair()');
      // One read of `vips` for both: the repair changes generations only, which drift ignores.
      const vipEntries = this.object.map('vips').lookupAll();
      this.repairGenerations(vipEntries);
      const drift = this.findDrift(vipEntries);
      const filter = this.object.map('vip_filter').lookup(encodeU32(0));
      if (drift.length === 0) {
        if (!filter?.equals(this.vipFilter.value)) {
          log.warn('the VIP prefilter differs from the programmed VIPs (changed by hand, or left wide by a failed apply); rewriting it');
          this.publishVipFilter();
        }
        return;
      }
      this.planned = false; // the next apply looks at every service, so it rewrites what drifted
      log.warn({ drift: drift.slice(0, 20), drifted: drift.length },
        'the XDP maps differ from what the director wrote (changed by hand?); re-read them, the next apply repairs them');
      // Rings whose inner map is still the one written are known without opening them (which
      // needs CAP_SYS_ADMIN and costs a ring-sized read each).
      const known = new Map<number, { innerId: number; ring: Uint32Array }>();
      for (const v of this.state.vips.values()) {
        const innerId = this.ringIds.get(v.id);
        if (v.ring && innerId !== undefined) known.set(v.id, { innerId, ring: v.ring });
      }
      this.state = this.readProgrammedState(known);
      this.publishVipFilter();
    });
  }

  /**
   * A vips entry whose generation is not its id's vip_gens value still forwards, but the packets
   * its flows forward from the flow cache count for no service (docs/decisions/0005), and no plan
   * rewrites it (its id and flags are right). Only a hand edit or a crash between the two writes
   * leaves one; give the id a fresh generation and the entry that generation, in that order, then
   * move the cache epoch on so cached flows are decided again under it.
   */
  private repairGenerations(entries: BatchRead): void {
    const o = this.object;
    const vips = o.map('vips');
    const liveGen = u32ArrayReader(o.map('vip_gens'));
    const genOf = new Map<number, number>(); // generations written here
    const fixed: string[] = [];
    for (let i = 0; i < entries.count; i++) {
      const key = entries.keys.subarray(i * vips.keySize, (i + 1) * vips.keySize);
      const meta = decodeVipMeta(entries.values.subarray(i * vips.valueSize, (i + 1) * vips.valueSize));
      const live = genOf.get(meta.vipId) ?? liveGen(meta.vipId);
      if (live === undefined || live === meta.gen) continue;
      const gen = genAfter(live, meta.gen);
      o.map('vip_gens').update(encodeU32(meta.vipId), encodeU32(gen));
      vips.update(Buffer.from(key), encodeVipMeta({ ...meta, gen }));
      genOf.set(meta.vipId, gen);
      fixed.push(`${serviceKey(decodeVipKey(key))}: generation ${meta.gen}, vip_gens[${meta.vipId}] ${live} -> ${gen}`);
    }
    if (fixed.length > 0) {
      this.bumpCacheEpoch();
      log.warn({ fixed: fixed.slice(0, 20), count: fixed.length },
        'VIP generations differed from vip_gens (changed by hand?); gave those VIPs fresh ones so their cached flows count for them again');
    }
  }

  /** How the maps differ from what this process wrote or adopted (empty when they do not): entry reads, no ring reads. */
  private findDrift(vipEntries: BatchRead): string[] {
    const o = this.object;
    const drift: string[] = [];
    const vips = o.map('vips');
    const seen = new Set<string>();
    for (let i = 0; i < vipEntries.count; i++) {
      const key = serviceKey(decodeVipKey(vipEntries.keys.subarray(i * vips.keySize, (i + 1) * vips.keySize)));
      const meta = decodeVipMeta(vipEntries.values.subarray(i * vips.valueSize, (i + 1) * vips.valueSize));
      seen.add(key);
      const want = this.state.vips.get(key);
      if (!want) drift.push(`vips: unexpected entry ${key}`);
      else if (want.id !== meta.vipId || want.flags !== meta.flags) {
        drift.push(`vips: ${key} holds id ${meta.vipId} flags ${meta.flags}, not id ${want.id} flags ${want.flags}`);
      }
    }
    for (const key of this.state.vips.keys()) if (!seen.has(key)) drift.push(`vips: ${key} is missing`);

    const wantBackends = new Map<number, { address: string; mac: string | null }>();
    for (const b of this.state.backends.values()) wantBackends.set(b.id, b);
    const backends = o.map('backends');
    const backendEntries = backends.lookupAll();
    for (let i = 0; i < backendEntries.count; i++) {
      const entry = decodeBackend(backendEntries.values.subarray(i * backends.valueSize, (i + 1) * backends.valueSize));
      const id = decodeU32(backendEntries.keys, i * 4);
      const want = wantBackends.get(id);
      wantBackends.delete(id);
      if (!entry) {
        if (want) drift.push(`backends: id ${id} (${want.address}) is cleared`);
        continue;
      }
      if (!want || want.address !== entry.address || want.mac !== entry.mac) {
        drift.push(`backends: id ${id} holds ${entry.address} mac ${entry.mac ?? 'none'}` +
          (want ? `, not ${want.address} mac ${want.mac ?? 'none'}` : ', unexpected'));
      }
    }
    // An array map lists every slot; a wanted id it did not list is missing all the same.
    for (const [id, want] of wantBackends) drift.push(`backends: id ${id} (${want.address}) is missing`);

    const ringsNow = this.ringInnerIds();
    for (const [vipId, innerId] of ringsNow) {
      const want = this.ringIds.get(vipId);
      if (want === undefined) drift.push(`rings: unexpected ring for VIP id ${vipId}`);
      else if (want !== innerId) drift.push(`rings: the ring of VIP id ${vipId} was replaced (inner map ${innerId}, not ${want})`);
    }
    for (const vipId of this.ringIds.keys()) if (!ringsNow.has(vipId)) drift.push(`rings: the ring of VIP id ${vipId} is missing`);
    return drift;
  }

  /** rings as VIP id -> kernel id of its inner map (readable without CAP_SYS_ADMIN, unlike the ring itself). */
  private ringInnerIds(): Map<number, number> {
    const all = this.object.map('rings').lookupAll();
    const out = new Map<number, number>();
    for (let i = 0; i < all.count; i++) out.set(decodeU32(all.keys, i * 4), decodeU32(all.values, i * 4));
    return out;
  }

  /**
   * Only while `planned` (state is what planning lastDesired gave): `changes`, what differs from
   * lastDesired (absent: plan every service); `macChanges`, the learned MACs that moved since
   * (absent: check every backend entry).
   */
  private reconcile(desired: DesiredState, retain: ReadonlySet<string>,
    changes?: ReadonlyMap<string, VirtualService | null>, macChanges?: ReadonlySet<string>): ApplyResult {
    const plan = planApply(this.state, desired, {
      ringSize: this.ringSize, learnedMacs: this.learnedMacs, retain, ringCache: this.rings,
      ...(changes ? { changes } : {}), ...(macChanges ? { macChanges } : {}),
    });
    for (const s of plan.skipped) log.error({ service: s.service }, `${s.service} is not programmed: ${s.reason}`);
    try {
      this.widenVipFilter(plan.ops);
      this.executeAll(plan.ops);
      this.narrowVipFilter(plan.ops, plan.next.vips);
    } catch (err) {
      // Some writes happened, some did not: what the maps hold now is the only truth. (The plan's
      // id drafts are dropped unapplied; the allocators are rebuilt from the maps.) The pinned
      // filter may hold extra bits: a superset, which the next apply that deletes one narrows.
      this.planned = false;
      try {
        this.state = this.readProgrammedState();
        this.vipFilter = VipFilter.of(vipAddresses(this.state.vips));
      } catch (readErr) {
        log.error({ err: readErr }, 'cannot re-read the maps after a failed apply');
      }
      throw new Error(`applying the desired state to the XDP maps failed: ${(err as Error).message}; ` +
        'the maps were re-read and the next apply retries what is missing', { cause: err });
    }
    this.state = commitPlan(plan.next);
    // A skipped service (no free id) is not in the state: only a plan of every service retries it
    // (a delta would not name it again), so the next apply plans everything.
    this.planned = plan.skipped.length === 0;
    if (plan.ops.length) log.info({ ...plan.result, writes: plan.ops.length }, 'XDP maps updated');
    return plan.result;
  }

  /**
   * Asks the resolver for the MACs of backends without a static one (with `changes`, only those of
   * the changed services). A failing lookup counts as unresolved. With `refresh` (the periodic
   * tick), an answer of "unresolved" for a backend that has a MAC keeps that MAC: a tick moves a
   * MAC only to another one the kernel knows, so a neighbour entry the kernel garbage-collected
   * (XDP traffic does not keep it in use) or a lookup that failed once never unprograms a working
   * backend; an apply (a change, the reconciler's resync every 60 s) takes the answer as it is.
   * Returns the addresses whose learned MAC changed.
   */
  private async resolveMacs(desired: DesiredState, refresh: boolean, retain: ReadonlySet<string>,
    changes?: ReadonlyMap<string, VirtualService | null>): Promise<Set<string>> {
    const changed = new Set<string>();
    const resolver = this.opts.neighbours;
    if (!resolver) return changed;
    const wanted = new Set<string>();
    if (changes) {
      // Backends of unchanged services keep what was learned (the periodic refresh asks again);
      // entries of backends no longer used are dropped at a full apply.
      for (const s of changes.values()) if (s) for (const b of s.backends) if (b.mac === undefined) wanted.add(b.address);
    } else {
      for (const s of desired.services) for (const b of s.backends) if (b.mac === undefined) wanted.add(b.address);
      // A retained service (its new definition was rejected) keeps its backends' learned MACs too:
      // forgetting them would rewrite those backends without a MAC and drop their new flows.
      for (const key of retain) for (const a of this.state.vips.get(key)?.backendAddresses ?? []) wanted.add(a);
      for (const a of [...this.learnedMacs.keys()]) if (!wanted.has(a)) { this.learnedMacs.delete(a); changed.add(a); }
    }
    await Promise.all([...wanted].map(async (address) => {
      let mac: string | null = null;
      try {
        mac = await resolver.lookup(address, this.opts.interface);
      } catch (err) {
        log.warn({ backend: address, err: (err as Error).message }, 'neighbour lookup failed');
      }
      const before = this.learnedMacs.get(address) ?? null;
      if (refresh && mac === null && before !== null) return;
      this.learnedMacs.set(address, mac);
      if (mac === before) return;
      if (before !== null && mac !== null) log.info({ backend: address, from: before, to: mac }, 'backend MAC changed in the neighbour table; new flows use the new MAC and established ones follow');
      changed.add(address);
    }));
    return changed;
  }

  private async refreshMacs(): Promise<void> {
    if (!this.obj || !this.lastDesired) return;
    const changed = await this.resolveMacs(this.lastDesired, true, this.lastRetain);
    if (changed.size === 0) return;
    // No service changed: from the last plan, only the entries of these backends can differ.
    if (this.planned) this.reconcile(this.lastDesired, this.lastRetain, NO_CHANGES, changed);
    else this.reconcile(this.lastDesired, this.lastRetain);
  }

  /**
   * Executes a plan's writes in order. A long run of writes to one map goes in batches (one
   * syscall per map rather than per entry: 10,000 VIPs from empty were ~100,000 syscalls); the
   * order between maps, which is what keeps packets safe, is the plan's.
   */
  private executeAll(ops: readonly MapOp[]): void {
    try {
      this.executeRuns(ops);
    } finally {
      // Once per apply, also after a failed write: VIPs deleted (or ids taken) by the writes so
      // far stop their cached flows here, when the apply's writes are done.
      if (this.cacheEpochStale) this.bumpCacheEpoch();
    }
  }

  private executeRuns(ops: readonly MapOp[]): void {
    let i = 0;
    while (i < ops.length) {
      const family = batchFamily(ops[i]!);
      let j = i + 1;
      if (family) while (j < ops.length && batchFamily(ops[j]!) === family) j++;
      if (!family || j - i < BATCH_MIN) {
        for (; i < j; i++) this.execute(ops[i]!);
        continue;
      }
      const run = ops.slice(i, j);
      if (family === 'backends') this.writeBackends(run);
      else if (family === 'rings') this.writeRings(run);
      else this.writeVips(run as Extract<MapOp, { kind: 'vip-set' }>[]);
      for (const op of run) { this.writes++; this.opts.onMapWrite?.(op); }
      i = j;
    }
  }

  /** Stats resets, then previous MACs, then entries: each id's still land before its entry names it. */
  private writeBackends(run: readonly MapOp[]): void {
    const resets = run.filter((op) => op.kind === 'backend-stats-reset').map((op) => op.id);
    const sets = run.flatMap((op) => (op.kind === 'backend-set' ? [op] : []));
    this.resetStats('backend_stats', resets);
    this.writePrevMacs(sets);
    const m = this.object.map('backends');
    m.updateBatch(Buffer.concat(sets.map((op) => encodeU32(op.id))), Buffer.concat(sets.map((op) => encodeBackend(op.entry))), sets.length);
  }

  /**
   * backend_prev_macs for these backend-set ops, before their backends entries (see plan.ts): the
   * MAC their flows move from, or none. A move also moves the cache epoch on, so flows the fast
   * path serves from a copy of the old MAC take the slow path, and move, at once.
   */
  private writePrevMacs(sets: readonly Extract<MapOp, { kind: 'backend-set' }>[]): void {
    if (sets.length === 0) return;
    const m = this.object.map('backend_prev_macs');
    m.updateBatch(Buffer.concat(sets.map((op) => encodeU32(op.id))), Buffer.concat(sets.map((op) => encodeBackendPrevMac(op.entry.address, op.prevMac))), sets.length);
    if (sets.some((op) => op.prevMac !== null)) this.cacheEpochStale = true;
  }

  private resetStats(mapName: 'vip_stats' | 'backend_stats', ids: readonly number[]): void {
    if (ids.length === 0) return;
    const hold = mapName === 'vip_stats' ? this.vipHold : this.backendHold;
    for (const id of ids) hold.forget(id);
    // A backend id new to its server: first move its generation on, so counts still pending in
    // flow cache entries of the old server count for neither (flow_cache.h), then zero it. (VIP
    // ids get theirs with the vips entry, see writeVips.)
    if (mapName === 'backend_stats') {
      const gens = this.object.map('backend_gens');
      // A few ids: one lookup each; many (a load from empty): one read of the whole array.
      const genOf = ids.length < BATCH_MIN ? (id: number) => { const v = gens.lookup(encodeU32(id)); return v ? decodeU32(v) : undefined; }
        : u32ArrayReader(gens);
      gens.updateBatch(Buffer.concat(ids.map((id) => encodeU32(id))), Buffer.concat(ids.map((id) => encodeU32(nextVipGen(genOf(id) ?? 0)))), ids.length);
    }
    const m = this.object.map(mapName);
    const zero = zeroPerCpuCounter(possibleCpus());
    m.updateBatch(Buffer.concat(ids.map((id) => encodeU32(id))), Buffer.alloc(zero.length * ids.length), ids.length);
  }

  /**
   * VIP stats resets, then new rings: each built whole in its own fresh inner map, then published
   * in batches of RING_BATCH (one update of `rings` each; a VIP sees its old ring or its new one).
   */
  private writeRings(run: readonly MapOp[]): void {
    this.resetStats('vip_stats', run.flatMap((op) => (op.kind === 'vip-stats-reset' ? [op.id] : [])));
    const sets = run.flatMap((op) => (op.kind === 'ring-set' ? [op] : []));
    const rings = this.object.map('rings');
    for (let at = 0; at < sets.length; at += RING_BATCH) {
      const chunk = sets.slice(at, at + RING_BATCH);
      const inners: BpfMap[] = [];
      try {
        for (const op of chunk) {
          const inner = BpfMap.create({ type: 'array', name: 'xdir_ring', keySize: 4, valueSize: 4 * this.ringSize, maxEntries: 1 });
          inners.push(inner);
          inner.update(encodeU32(0), encodeRing(op.ring));
        }
        rings.updateBatch(Buffer.concat(chunk.map((op) => encodeU32(op.vipId))), Buffer.concat(inners.map((m) => encodeU32(m.fd))), chunk.length);
      } finally {
        for (const m of inners) m.close(); // `rings` holds its own references
      }
    }
    // The inner maps' kernel ids (for drift checks), read back in one pass.
    const innerIds = this.ringInnerIds();
    for (const op of sets) {
      const id = innerIds.get(op.vipId);
      if (id === undefined) throw new Error(`rings[${op.vipId}] is empty right after it was written (removed by someone else?)`);
      this.ringIds.set(op.vipId, id);
    }
  }

  /** vips entries with their generations (see execute's vip-set), the current ones read in one pass each. */
  private writeVips(run: readonly Extract<MapOp, { kind: 'vip-set' }>[]): void {
    const o = this.object;
    const vips = o.map('vips');
    const all = vips.lookupAll();
    const old = new Map<string, ReturnType<typeof decodeVipMeta>>();
    for (let i = 0; i < all.count; i++) {
      old.set(all.keys.toString('hex', i * vips.keySize, (i + 1) * vips.keySize),
        decodeVipMeta(all.values.subarray(i * vips.valueSize, (i + 1) * vips.valueSize)));
    }
    const liveGen = u32ArrayReader(o.map('vip_gens'));
    const written = new Map<number, number>(); // generations this run writes
    const genOf = (id: number): number | undefined => written.get(id) ?? liveGen(id);
    const genKeys: Buffer[] = [], genValues: Buffer[] = [], vipKeys: Buffer[] = [], vipValues: Buffer[] = [];
    const bumpKeys: Buffer[] = [], bumpValues: Buffer[] = [];
    /** Ids given a fresh generation in this run: already past every entry cached under their old VIP. */
    const assigned = new Set<number>();
    for (const op of run) {
      const key = encodeVipKey(op.key);
      const oldMeta = old.get(key.toString('hex'));
      let gen: number;
      if (oldMeta && oldMeta.vipId === op.vipId) {
        gen = oldMeta.gen;
      } else {
        const now = genOf(op.vipId);
        if (now === undefined) throw new Error(`vip_gens has no entry ${op.vipId}: the id is beyond max VIPs (internal error)`);
        gen = nextVipGen(now);
        written.set(op.vipId, gen);
        assigned.add(op.vipId);
        genKeys.push(encodeU32(op.vipId)); genValues.push(encodeU32(gen));
      }
      vipKeys.push(key); vipValues.push(encodeVipMeta({ vipId: op.vipId, flags: op.flags, gen }));
      if (oldMeta && oldMeta.vipId !== op.vipId && !assigned.has(oldMeta.vipId)) {
        const live = genOf(oldMeta.vipId);
        if (live !== undefined) { bumpKeys.push(encodeU32(oldMeta.vipId)); bumpValues.push(encodeU32(genAfter(live, oldMeta.gen))); }
      }
    }
    const gens = o.map('vip_gens');
    gens.updateBatch(Buffer.concat(genKeys), Buffer.concat(genValues), genKeys.length);
    vips.updateBatch(Buffer.concat(vipKeys), Buffer.concat(vipValues), vipKeys.length);
    gens.updateBatch(Buffer.concat(bumpKeys), Buffer.concat(bumpValues), bumpKeys.length);
    if (bumpKeys.length > 0) this.cacheEpochStale = true;
  }

  /**
   * Moves cache_epoch on, after vip_gens entries were moved on (VIPs deleted, ids taken from
   * services) or a backend's previous MAC was named: every cached flow then takes the slow path
   * once, so the old VIPs' stop and a moved backend's flows follow it.
   */
  private bumpCacheEpoch(): void {
    const m = this.object.map('cache_epoch');
    const now = m.lookup(encodeU32(0));
    m.update(encodeU32(0), encodeU32(((now ? decodeU32(now) : 0) + 1) >>> 0));
    this.cacheEpochStale = false;
  }

  private execute(op: MapOp): void {
    const o = this.object;
    switch (op.kind) {
      case 'backend-stats-reset':
        this.resetStats('backend_stats', [op.id]);
        break;
      case 'vip-stats-reset':
        this.resetStats('vip_stats', [op.id]);
        break;
      case 'backend-set':
        this.writePrevMacs([op]);
        o.map('backends').update(encodeU32(op.id), encodeBackend(op.entry));
        break;
      case 'backend-clear':
        o.map('backends').update(encodeU32(op.id), emptyBackend());
        break;
      case 'ring-set': {
        // A fresh inner map, filled before anyone can see it, then published with one update.
        const inner = BpfMap.create({ type: 'array', name: 'xdir_ring', keySize: 4, valueSize: 4 * this.ringSize, maxEntries: 1 });
        try {
          inner.update(encodeU32(0), encodeRing(op.ring));
          o.map('rings').update(encodeU32(op.vipId), encodeU32(inner.fd));
          this.ringIds.set(op.vipId, inner.id);
        } finally {
          inner.close(); // `rings` holds its own reference
        }
        break;
      }
      case 'ring-delete':
        o.map('rings').delete(encodeU32(op.vipId));
        this.ringIds.delete(op.vipId);
        break;
      case 'vip-set': {
        // A VIP keeps its generation while it keeps its id (a change of flags); a VIP new to
        // its id gets the next one, written to vip_gens before the vips entry can name it.
        const key = encodeVipKey(op.key);
        const old = o.map('vips').lookup(key);
        const oldMeta = old ? decodeVipMeta(old) : null;
        let gen: number;
        if (oldMeta && oldMeta.vipId === op.vipId) {
          gen = oldMeta.gen;
        } else {
          gen = nextVipGen(this.vipGen(op.vipId));
          o.map('vip_gens').update(encodeU32(op.vipId), encodeU32(gen));
        }
        o.map('vips').update(key, encodeVipMeta({ vipId: op.vipId, flags: op.flags, gen }));
        // (The planner keeps a key's id; should the key ever move to another id, the old id's flows end too.)
        if (oldMeta && oldMeta.vipId !== op.vipId) {
          o.map('vip_gens').update(encodeU32(oldMeta.vipId), encodeU32(genAfter(this.vipGen(oldMeta.vipId), oldMeta.gen)));
          this.cacheEpochStale = true;
        }
        break;
      }
      case 'vip-delete': {
        // After the entry is gone, move the id's generation on (its cached pending counts are no
        // longer the VIP's); executeAll then moves the cache epoch on once, which stops the
        // deleted VIPs' cached flows (flow_cache.h).
        const key = encodeVipKey(op.key);
        const old = o.map('vips').lookup(key);
        o.map('vips').delete(key);
        if (old) {
          const meta = decodeVipMeta(old);
          o.map('vip_gens').update(encodeU32(meta.vipId), encodeU32(genAfter(this.vipGen(meta.vipId), meta.gen)));
          this.cacheEpochStale = true;
        }
        break;
      }
    }
    this.writes++;
    this.opts.onMapWrite?.(op);
  }

  /**
   * Before the writes: the pinned prefilter gets the bit of every address a vip-set may add. Bits
   * are only added here; an address's bit goes after the deletes (narrowVipFilter), so no VIP is
   * ever filtered out while it has a `vips` entry.
   */
  private widenVipFilter(ops: readonly MapOp[]): void {
    const adds = ops.flatMap((op) => (op.kind === 'vip-set' ? [op.key.vip] : []));
    if (adds.some((a) => !this.vipFilter.has(a))) this.writeVipFilter(this.vipFilter.withExtra(adds));
  }

  /**
   * After the writes: the content follows the VIPs the plan added and deleted (looked up in the
   * state before and after: O(changes)), and is written when an address lost its last VIP.
   */
  private narrowVipFilter(ops: readonly MapOp[], next: ReadonlyMap<string, ProgrammedVip>): void {
    let removed = false;
    for (const op of ops) {
      if (op.kind === 'vip-set' && !this.state.vips.has(op.service) && next.has(op.service)) this.vipFilter.add(op.key.vip);
      if (op.kind === 'vip-delete' && this.state.vips.has(op.service) && !next.has(op.service)) {
        this.vipFilter.remove(op.key.vip);
        removed = true;
      }
    }
    if (removed) this.writeVipFilter(this.vipFilter.value);
  }

  private writeVipFilter(value: Buffer): void {
    this.object.map('vip_filter').update(encodeU32(0), value);
  }

  /**
   * At start, before the program is attached: the filter from the VIPs the maps hold. A pinned
   * filter is not trusted (an older version that does not know it may have added VIPs since it was
   * written). The bits go in first with `ready` 0, then again with `ready` 1, so that a pinned
   * filter that was not ready never turns ready with bits half copied. (A running program that
   * already reads a ready filter reads a superset of the live VIPs, as the new bits are.)
   */
  private publishVipFilter(): void {
    this.vipFilter = VipFilter.of(vipAddresses(this.state.vips));
    const open = Buffer.from(this.vipFilter.value);
    open.writeUInt32LE(0, LAYOUT.vip_filter.fields.ready);
    this.writeVipFilter(open);
    this.writeVipFilter(this.vipFilter.value);
  }

  /** vip_gens[vipId]: the id's current generation (pinned, so it carries on across restarts). */
  private vipGen(vipId: number): number {
    const v = this.object.map('vip_gens').lookup(encodeU32(vipId));
    if (!v) throw new Error(`vip_gens has no entry ${vipId}: the id is beyond max VIPs (internal error)`);
    return decodeU32(v);
  }

  /** The ring (backend ids) in the inner map with kernel id `innerId`, or null when it cannot be read. */
  private readRing(innerId: number): Uint32Array | null {
    let inner: BpfMap;
    try {
      inner = BpfMap.fromId(innerId);
    } catch (err) {
      // Opening a map by id needs CAP_SYS_ADMIN, which a director with only NET_ADMIN, BPF and
      // PERFMON lacks. The ring then counts as unknown and the first apply rewrites it: the same
      // backends give the same ring, swapped in atomically, so no flow moves.
      if (!(err instanceof BpfError) || err.errno !== constants.errno.EPERM) throw err;
      if (!this.warnedRingsUnreadable) {
        this.warnedRingsUnreadable = true;
        log.warn('cannot read the pinned Maglev rings back without CAP_SYS_ADMIN; the first apply rewrites them (same content, no flow moves)');
      }
      return null;
    }
    try {
      const value = inner.lookup(encodeU32(0));
      return value ? decodeRing(value) : null;
    } finally {
      inner.close();
    }
  }

  /** The kernel id of the inner map in rings[vipId] (changes exactly when the ring is rewritten). */
  ringMapId(vipId: number): number | null {
    const innerId = this.object.map('rings').lookup(encodeU32(vipId));
    return innerId ? decodeU32(innerId) : null;
  }

  /**
   * backend_prev_macs[id] as adopted for the backend at `address`: its MAC, or null. An entry
   * written for another server (an older version, which does not know this map, gave the id to
   * this one) or one that does not decode (a hand edit) is cleared: its flows must not move.
   */
  private adoptPrevMac(all: BatchRead, id: number, address: string): string | null {
    const size = LAYOUT.backend_prev_mac.size;
    if (id >= all.count) return null;
    let prev: { address: string; mac: string } | null = null;
    try {
      prev = decodeBackendPrevMac(all.values.subarray(id * size, (id + 1) * size));
      if (prev === null || prev.address === address) return prev?.mac ?? null;
    } catch {
      // not decodable: cleared below
    }
    log.warn({ backend: address, id, writtenFor: prev?.address ?? 'an undecodable entry' }, 'clearing a previous MAC written for the server this id named before');
    this.object.map('backend_prev_macs').update(encodeU32(id), encodeBackendPrevMac(address, null));
    return null;
  }

  /**
   * Rebuilds the programmed state from the maps: after a restart, a failed apply, and drift.
   * `known`: rings already known by VIP id, used while rings[vipId] still holds that inner map.
   */
  private readProgrammedState(known?: ReadonlyMap<number, { innerId: number; ring: Uint32Array }>): ProgrammedState {
    const o = this.object;
    const backends = new Map<string, ProgrammedBackend>();
    const byId = new Map<number, string>();
    const all = o.map('backends').lookupAll();
    const vsize = o.map('backends').valueSize;
    const prevMacs = o.map('backend_prev_macs').lookupAll(); // an array: entry i is id i
    for (let i = 0; i < all.count; i++) {
      const entry = decodeBackend(all.values.subarray(i * vsize, (i + 1) * vsize));
      if (!entry) continue;
      const id = decodeU32(all.keys, i * 4);
      if (backends.has(entry.address)) {
        log.warn({ backend: entry.address, id, kept: backends.get(entry.address)!.id }, 'backend listed under two ids; clearing the second');
        o.map('backends').update(encodeU32(id), emptyBackend());
        continue;
      }
      const prev = this.adoptPrevMac(prevMacs, id, entry.address);
      backends.set(entry.address, { id, address: entry.address, mac: entry.mac, prevMac: prev });
      byId.set(id, entry.address);
    }

    const vips = new Map<string, ProgrammedVip>();
    const innerIds = this.ringInnerIds();
    const vipEntries = o.map('vips').lookupAll();
    const ksize = o.map('vips').keySize, msize = o.map('vips').valueSize;
    for (let i = 0; i < vipEntries.count; i++) {
      const vipKey = decodeVipKey(vipEntries.keys.subarray(i * ksize, (i + 1) * ksize));
      const meta = decodeVipMeta(vipEntries.values.subarray(i * msize, (i + 1) * msize));
      const key = serviceKey(vipKey);
      const innerId = innerIds.get(meta.vipId);
      const mine = known?.get(meta.vipId);
      const ring = innerId === undefined ? null : mine && mine.innerId === innerId ? mine.ring : this.readRing(innerId);
      const members = new Set<string>();
      if (ring) for (const id of new Set(ring)) { const a = byId.get(id); if (a) members.add(a); }
      vips.set(key, {
        key, vipKey, id: meta.vipId, flags: meta.flags, ring, ringInput: null, service: null,
        backendAddresses: [...members],
      });
    }
    const vipIds = IdAllocator.adopt(this.maxVips, 'VIP', [...vips.values()].map((v) => [v.key, v.id] as [string, number]));
    const backendIds = IdAllocator.adopt(this.maxBackends, 'backend', [...backends.values()].map((b) => [b.address, b.id] as [string, number]));

    // A ring without a vips entry is left over from an apply that stopped half-way (or its vips
    // entry was deleted by hand): drop it.
    const used = new Set([...vips.values()].map((v) => v.id));
    const ringIds = new Map<number, number>();
    for (const [vipId, innerId] of innerIds) {
      if (used.has(vipId)) { ringIds.set(vipId, innerId); continue; }
      log.info({ vipId }, 'removing a ring no VIP refers to');
      o.map('rings').delete(encodeU32(vipId));
    }
    this.ringIds = ringIds;
    return { vips, backends, vipIds, backendIds };
  }

  services(): ServiceStatus[] {
    const out: ServiceStatus[] = [];
    for (const v of this.state.vips.values()) {
      const s = v.service;
      const statusOf = (address: string, weight: number): BackendStatus => {
        const mac = this.state.backends.get(address)?.mac ?? null;
        const unresolved = mac === null && this.opts.neighbours !== undefined && this.learnedMacs.get(address) === null;
        const state = weight === 0 ? 'draining' : unresolved ? 'mac-unresolved' : 'active';
        return mac === null ? { address, weight, state } : { address, weight, state, mac };
      };
      out.push({
        key: v.key,
        vip: v.vipKey.vip,
        port: v.vipKey.port,
        protocol: v.vipKey.protocol,
        // Adopted and not yet applied: the maps hold no scheduler, persistence time or weights.
        scheduler: s?.scheduler ?? 'mh',
        persistence: s?.persistence ?? ((v.flags & VIP_F_HASH_SRC_ONLY) !== 0 ? 1 : 0),
        backends: s ? s.backends.map((b) => statusOf(b.address, b.weight)) : v.backendAddresses.map((a) => statusOf(a, 1)),
      });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async readStats(): Promise<StatsSample> {
    const o = this.object;
    const cpus = possibleCpus();
    const takenAtMs = Date.now();
    // The maps first, then the flow cache's pending counts (see flow-cache-counts.ts for why).
    const reasonSums = sumPerCpuCounters(o.map('reason_stats').lookupAll(), cpus);
    const vipBatch = o.map('vip_stats').lookupAll();
    const backendBatch = o.map('backend_stats').lookupAll();
    // The generation maps are read only if some entry has pending counts (100,000 backends: 400 KB).
    const pending = pendingFlowCacheCounts(o.map('flow_cache').lookupAll(), cpus,
      { vip: u32ArrayReader(o.map('vip_gens')), backend: u32ArrayReader(o.map('backend_gens')) });

    const reasons = new Map<string, Counter>();
    addPendingFlowHits(reasonSums, pending);
    for (const [id, c] of reasonCountersById(reasonSums)) {
      const name = XDIR_REASON_NAMES[id];
      if (name !== undefined) reasons.set(name, this.reasonHold.report(id, c, true));
    }
    const services = sumPerCpuCountersNamed(vipBatch, cpus, (id) => this.state.vipIds.keyOf(id), this.vipSums,
      this.vipHold.adjuster(pending.vips));
    const backends = sumPerCpuCountersNamed(backendBatch, cpus, (id) => this.state.backendIds.keyOf(id), this.backendSums,
      this.backendHold.adjuster(pending.backends));
    this.reasonHold.endReading();
    this.vipHold.endReading();
    this.backendHold.endReading();
    return { takenAtMs, dataplane: 'xdp', services, backends, reasons };
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async stop(opts: StopOptions = { detach: false }): Promise<void> {
    this.stopTimer();
    await this.queue;
    this.obj?.close();
    this.obj = null;
    if (!opts.detach) {
      log.info({ pinRoot: this.pinRoot, attached: this.attachedMode !== null }, 'stopped; maps stay pinned (and the program attached)');
      return;
    }
    // Also after an earlier stop without detach: the attachment and pins outlive the object.
    if (this.opts.attach !== false) {
      detachXdp(this.opts.interface);
      this.attachedMode = null;
      log.info({ interface: this.opts.interface }, 'XDP program detached');
    }
    rmSync(this.pinRoot, { recursive: true, force: true });
    log.info({ pinRoot: this.pinRoot }, 'pinned maps removed');
  }
}
