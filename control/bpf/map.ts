/**
 * BpfMap: one BPF map, addressed by fd. Keys and values are raw Buffers in the kernel's layout
 * (codecs live with the data path). Per-CPU maps hold, from user space, one value per possible CPU,
 * each rounded up to 8 bytes; map-in-map values are an inner map fd on update and its id on lookup.
 */
import { constants } from 'node:os';
import { BpfError, ENOTSUPP, check, fromErrno } from './errors.js';
import { OPTS, libbpf, libcFns, opts } from './libbpf.js';

export const BPF_MAP_TYPE = {
  hash: 1, array: 2, percpu_hash: 5, percpu_array: 6, lru_hash: 9, lru_percpu_hash: 10,
  array_of_maps: 12, hash_of_maps: 13,
} as const;
const PER_CPU_TYPES = new Set<number>([BPF_MAP_TYPE.percpu_hash, BPF_MAP_TYPE.percpu_array, BPF_MAP_TYPE.lru_percpu_hash, 21]);

export type MapUpdateFlag = 'any' | 'noexist' | 'exist';
const UPDATE_FLAGS: Record<MapUpdateFlag, number> = { any: 0, noexist: 1, exist: 2 };

const { ENOENT, EINVAL, EOPNOTSUPP, ENOSPC } = constants.errno;
/** Batch commands a kernel or map type does not implement answer with one of these. */
function batchUnsupported(ret: number): boolean {
  return ret === -EINVAL || ret === -ENOTSUPP || ret === -EOPNOTSUPP;
}

let cpus: number | undefined;
/** Number of possible CPUs: the number of values a per-CPU map holds per key. */
export function possibleCpus(): number {
  if (cpus === undefined) cpus = check('libbpf_num_possible_cpus', libbpf.libbpf_num_possible_cpus() as number);
  return cpus;
}

export interface MapInfo {
  id: number; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number; name: string;
}

/** Kernel-side facts about the map behind `fd` (BPF_OBJ_GET_INFO_BY_FD). */
export function mapInfoByFd(fd: number, what: string): MapInfo {
  const o = OPTS.mapInfo;
  const info = Buffer.alloc(o.size);
  const len = new Uint32Array([o.size]);
  check(`reading info of ${what}`, libbpf.bpf_obj_get_info_by_fd(fd, info, len) as number);
  const nameEnd = info.indexOf(0, o.name);
  return {
    type: info.readUInt32LE(o.type),
    id: info.readUInt32LE(o.id),
    keySize: info.readUInt32LE(o.keySize),
    valueSize: info.readUInt32LE(o.valueSize),
    maxEntries: info.readUInt32LE(o.maxEntries),
    flags: info.readUInt32LE(o.mapFlags),
    name: info.toString('utf8', o.name, nameEnd < 0 || nameEnd > o.name + 16 ? o.name + 16 : nameEnd),
  };
}

export class BpfMap {
  readonly perCpu: boolean;
  /** Bytes of one value as user space reads and writes it (per-CPU: all CPUs together). */
  readonly userValueSize: number;
  private closed = false;

  /** @param ownsFd false for maps of a BpfObject: the object closes their fds. */
  constructor(
    readonly name: string,
    readonly fd: number,
    readonly type: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
    private readonly ownsFd: boolean,
    readonly flags = 0,
  ) {
    this.perCpu = PER_CPU_TYPES.has(type);
    this.userValueSize = this.perCpu ? Math.ceil(valueSize / 8) * 8 * possibleCpus() : valueSize;
  }

  /** The kernel's id of this map (stable across fds, pins and processes). */
  get id(): number {
    return mapInfoByFd(this.fd, this.what()).id;
  }

  private what(): string {
    return `map '${this.name}'`;
  }

  private checkKey(key: Buffer): void {
    if (key.length !== this.keySize) {
      throw new BpfError(`${this.what()}: key is ${key.length} bytes, the map's key size is ${this.keySize}`);
    }
  }

  private checkValue(value: Buffer): void {
    if (value.length !== this.userValueSize) {
      throw new BpfError(
        `${this.what()}: value is ${value.length} bytes, the map expects ${this.userValueSize}` +
          (this.perCpu ? ` (${possibleCpus()} CPUs x ${Math.ceil(this.valueSize / 8) * 8})` : ''),
      );
    }
  }

  lookup(key: Buffer): Buffer | null {
    this.checkKey(key);
    const value = Buffer.alloc(this.userValueSize);
    const ret = libbpf.bpf_map_lookup_elem(this.fd, key, value) as number;
    if (ret === -ENOENT) return null;
    check(`lookup in ${this.what()}`, ret);
    return value;
  }

  update(key: Buffer, value: Buffer, flag: MapUpdateFlag = 'any'): void {
    this.checkKey(key);
    this.checkValue(value);
    const ret = libbpf.bpf_map_update_elem(this.fd, key, value, UPDATE_FLAGS[flag]) as number;
    if (ret < 0) {
      const hint =
        ret === -constants.errno.E2BIG ? `the map is full (max_entries ${this.maxEntries}); raise its size` :
        ret === -constants.errno.EEXIST ? 'the key exists and the update asked for noexist' :
        ret === -ENOENT ? 'the key does not exist and the update asked for exist' : undefined;
      throw fromErrno(`update of ${this.what()}`, ret, hint);
    }
  }

  /** Deletes `key`; false when it was not there. */
  delete(key: Buffer): boolean {
    this.checkKey(key);
    const ret = libbpf.bpf_map_delete_elem(this.fd, key) as number;
    if (ret === -ENOENT) return false;
    check(`delete from ${this.what()}`, ret);
    return true;
  }

  /** All keys, by BPF_MAP_GET_NEXT_KEY. Bounded by max_entries, so a map changing under the walk
   * cannot keep it going forever. */
  keys(): Buffer[] {
    const out: Buffer[] = [];
    let prev: Buffer | null = null;
    while (out.length < this.maxEntries) {
      const next = Buffer.alloc(this.keySize);
      const ret = libbpf.bpf_map_get_next_key(this.fd, prev, next) as number;
      if (ret === -ENOENT) break;
      check(`walking keys of ${this.what()}`, ret);
      out.push(next);
      prev = next;
    }
    return out;
  }

  /** Every entry: keys and values packed back to back. One BPF_MAP_LOOKUP_BATCH per chunk, or a
   * key walk plus lookups where the kernel or map type has no batch support. */
  lookupAll(): { keys: Buffer; values: Buffer; count: number } {
    let chunk = Math.max(1, Math.min(this.maxEntries, 4096));
    const token = Math.max(this.keySize, 8);
    let inBatch: Buffer | null = null;
    const outBatch = Buffer.alloc(token);
    const keyParts: Buffer[] = [];
    const valueParts: Buffer[] = [];
    let total = 0;
    const batchOpts = opts(OPTS.mapBatch.size);
    for (;;) {
      const keys = Buffer.alloc(chunk * this.keySize);
      const values = Buffer.alloc(chunk * this.userValueSize);
      const count = new Uint32Array([chunk]);
      const ret = libbpf.bpf_map_lookup_batch(this.fd, inBatch, outBatch, keys, values, count, batchOpts) as number;
      if (ret < 0 && ret !== -ENOENT) {
        if (total === 0 && batchUnsupported(ret)) return this.lookupAllByWalk();
        // A hash bucket larger than the chunk: retry the same position with room for it.
        if (ret === -ENOSPC && chunk < this.maxEntries) { chunk = Math.min(this.maxEntries, chunk * 4); continue; }
        throw fromErrno(`batch lookup in ${this.what()}`, ret);
      }
      const n = count[0];
      keyParts.push(keys.subarray(0, n * this.keySize));
      valueParts.push(values.subarray(0, n * this.userValueSize));
      total += n;
      if (ret === -ENOENT) break;
      inBatch = Buffer.from(outBatch);
    }
    return { keys: Buffer.concat(keyParts), values: Buffer.concat(valueParts), count: total };
  }

  private lookupAllByWalk(): { keys: Buffer; values: Buffer; count: number } {
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v === null) continue; // deleted during the walk
      keys.push(k);
      values.push(v);
    }
    return { keys: Buffer.concat(keys), values: Buffer.concat(values), count: keys.length };
  }

  /** Writes `count` entries (keys and values packed back to back) in one BPF_MAP_UPDATE_BATCH. */
  updateBatch(keys: Buffer, values: Buffer, count: number): void {
    this.checkBatch(keys, count, values);
    if (count === 0) return;
    const n = new Uint32Array([count]);
    const ret = libbpf.bpf_map_update_batch(this.fd, keys, values, n, opts(OPTS.mapBatch.size)) as number;
    if (ret === 0) return;
    if (batchUnsupported(ret) && n[0] === 0) {
      // Unsupported, or one bad entry: the per-entry path either works or names the failing entry.
      for (let i = 0; i < count; i++) {
        this.update(keys.subarray(i * this.keySize, (i + 1) * this.keySize),
          values.subarray(i * this.userValueSize, (i + 1) * this.userValueSize));
      }
      return;
    }
    throw fromErrno(`batch update of ${this.what()} (${n[0]} of ${count} entries written)`, ret);
  }

  /** Deletes `count` keys (packed back to back); keys that are absent are skipped, not errors. */
  deleteBatch(keys: Buffer, count: number): void {
    this.checkBatch(keys, count);
    let done = 0;
    while (done < count) {
      const n = new Uint32Array([count - done]);
      const ret = libbpf.bpf_map_delete_batch(this.fd, keys.subarray(done * this.keySize), n, opts(OPTS.mapBatch.size)) as number;
      if (ret === 0) return;
      if (ret === -ENOENT) { done += n[0] + 1; continue; } // the kernel stops at the first absent key
      if (batchUnsupported(ret) && n[0] === 0) {
        for (let i = done; i < count; i++) this.delete(keys.subarray(i * this.keySize, (i + 1) * this.keySize));
        return;
      }
      throw fromErrno(`batch delete from ${this.what()}`, ret);
    }
  }

  private checkBatch(keys: Buffer, count: number, values?: Buffer): void {
    if (keys.length < count * this.keySize || (values && values.length < count * this.userValueSize)) {
      throw new BpfError(
        `${this.what()}: batch of ${count} needs ${count * this.keySize} key bytes` +
          (values ? ` and ${count * this.userValueSize} value bytes` : '') +
          `, got ${keys.length}${values ? ` and ${values.length}` : ''}`,
      );
    }
  }

  /** Creates a map outside any object, e.g. an inner map for a map-in-map (`flags`: BPF_F_*). */
  static create(o: {
    type: 'array' | 'hash'; name: string; keySize: number; valueSize: number; maxEntries: number; flags?: number;
  }): BpfMap {
    const createOpts = opts(OPTS.mapCreate.size);
    createOpts.writeUInt32LE(o.flags ?? 0, OPTS.mapCreate.mapFlags);
    const type = BPF_MAP_TYPE[o.type];
    const fd = libbpf.bpf_map_create(type, o.name.slice(0, 15), o.keySize, o.valueSize, o.maxEntries, createOpts) as number;
    check(`creating ${o.type} map '${o.name}' (key ${o.keySize} B, value ${o.valueSize} B, ${o.maxEntries} entries)`, fd);
    return new BpfMap(o.name, fd, type, o.keySize, o.valueSize, o.maxEntries, true, o.flags ?? 0);
  }

  /** Opens a map by kernel id, e.g. an inner map id read from a map-in-map. */
  static fromId(id: number): BpfMap {
    const fd = check(`opening map id ${id}`, libbpf.bpf_map_get_fd_by_id(id) as number,
      'the map may have been freed (an inner map replaced and released)');
    return BpfMap.fromOwnedFd(fd, `map id ${id}`);
  }

  /** Opens a pinned map by its bpffs path (no object load needed, e.g. for `xdir status`). */
  static fromPin(path: string): BpfMap {
    const fd = check(`opening pinned map ${path}`, libbpf.bpf_obj_get(path) as number,
      'is the director running (or did it run) with this pin root?');
    return BpfMap.fromOwnedFd(fd, path);
  }

  private static fromOwnedFd(fd: number, what: string): BpfMap {
    try {
      const i = mapInfoByFd(fd, what);
      return new BpfMap(i.name, fd, i.type, i.keySize, i.valueSize, i.maxEntries, true, i.flags);
    } catch (err) {
      libcFns.close(fd);
      throw err;
    }
  }

  /** Closes the fd if this map owns it; maps of a BpfObject are closed by the object. */
  close(): void {
    if (this.closed || !this.ownsFd) return;
    this.closed = true;
    libcFns.close(this.fd);
  }
}
