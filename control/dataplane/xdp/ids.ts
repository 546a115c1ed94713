/**
 * Stable small-integer ids for VIPs (index of `rings` and `vip_stats`) and backends (the value in
 * ring slots, index of `backends` and `backend_stats`). An id stays with its key (serviceKey or
 * backend address) for as long as the key exists, so unchanged rings never need rewriting.
 *
 * Freed ids go to the back of a FIFO queue and the front is handed out first: the id of a backend
 * removed a moment ago is the last to be reused, so packets of its lingering flows (whose
 * flow_state still names the old id) are not counted against a new backend straight away.
 *
 * At restart the allocator is rebuilt from the maps (`adopt`); the free queue then holds the
 * unused ids in ascending order (the order of earlier frees is not stored anywhere).
 */
export class IdAllocator {
  private readonly byKey = new Map<string, number>();
  private readonly keyById: (string | undefined)[];
  /** Ring buffer of free ids: `free[head .. head+freeCount)` modulo capacity. */
  private readonly free: Uint32Array;
  private head = 0;
  private freeCount = 0;

  /** @param what names the id space in errors (`VIP`, `backend`). */
  constructor(readonly capacity: number, private readonly what: string) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`${what} id capacity must be a positive integer, got ${capacity}`);
    this.keyById = new Array(capacity);
    this.free = new Uint32Array(capacity);
    for (let id = 0; id < capacity; id++) this.pushFree(id);
  }

  private pushFree(id: number): void {
    this.free[(this.head + this.freeCount) % this.capacity] = id;
    this.freeCount++;
  }

  private popFree(): number {
    const id = this.free[this.head]!;
    this.head = (this.head + 1) % this.capacity;
    this.freeCount--;
    return id;
  }

  /** Rebuilds the allocator from ids found in the maps. Throws on a duplicate key or id. */
  static adopt(capacity: number, what: string, used: Iterable<[key: string, id: number]>): IdAllocator {
    const a = new IdAllocator(capacity, what);
    a.head = 0;
    a.freeCount = 0;
    for (const [key, id] of used) {
      if (!Number.isInteger(id) || id < 0 || id >= capacity) throw new RangeError(`${what} ${key} has id ${id}, outside 0..${capacity - 1}`);
      if (a.byKey.has(key)) throw new Error(`${what} ${key} holds two ids (${a.byKey.get(key)} and ${id})`);
      if (a.keyById[id] !== undefined) throw new Error(`${what} id ${id} is held by both ${a.keyById[id]} and ${key}`);
      a.byKey.set(key, id);
      a.keyById[id] = key;
    }
    for (let id = 0; id < capacity; id++) if (a.keyById[id] === undefined) a.pushFree(id);
    return a;
  }

  clone(): IdAllocator {
    const c = new IdAllocator(this.capacity, this.what);
    c.byKey.clear();
    for (const [k, v] of this.byKey) c.byKey.set(k, v);
    for (let i = 0; i < this.capacity; i++) c.keyById[i] = this.keyById[i];
    c.free.set(this.free);
    c.head = this.head;
    c.freeCount = this.freeCount;
    return c;
  }

  get(key: string): number | undefined {
    return this.byKey.get(key);
  }

  keyOf(id: number): string | undefined {
    return this.keyById[id];
  }

  get size(): number {
    return this.byKey.size;
  }

  get available(): number {
    return this.freeCount;
  }

  /** The key's id, allocating one if it has none; null when every id is taken. */
  allocate(key: string): number | null {
    const have = this.byKey.get(key);
    if (have !== undefined) return have;
    if (this.freeCount === 0) return null;
    const id = this.popFree();
    this.byKey.set(key, id);
    this.keyById[id] = key;
    return id;
  }

  /** Frees the key's id (to the back of the queue). Returns the id, or undefined if it had none. */
  release(key: string): number | undefined {
    const id = this.byKey.get(key);
    if (id === undefined) return undefined;
    this.byKey.delete(key);
    this.keyById[id] = undefined;
    this.pushFree(id);
    return id;
  }

  /** [key, id] pairs, ascending by id. */
  entries(): [string, number][] {
    const out: [string, number][] = [];
    this.keyById.forEach((k, id) => { if (k !== undefined) out.push([k, id]); });
    return out;
  }
}
