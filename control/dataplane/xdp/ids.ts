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
 *
 * An apply works on a draft (`draft()`): a transaction that sees the allocator plus its own
 * allocations and releases, costs O(changes) rather than a copy of the whole id space, and
 * changes the allocator only on commit(). Discarding a draft is the abort.
 */

/** An id space: an IdAllocator, or a draft over one (or over another draft). */
export interface IdSpace {
  readonly capacity: number;
  /** Names the id space in errors (`VIP`, `backend`). */
  readonly what: string;
  /** Keys holding an id. */
  readonly size: number;
  /** Free ids. */
  readonly available: number;
  /** Counts changes: a draft refuses to work on a space that changed under it. */
  readonly version: number;
  get(key: string): number | undefined;
  keyOf(id: number): string | undefined;
  /** The key's id, allocating one if it has none; null when every id is taken. */
  allocate(key: string): number | null;
  /** Frees the key's id (to the back of the queue). Returns the id, or undefined if it had none. */
  release(key: string): number | undefined;
  /** [key, id] pairs, ascending by id (O(capacity)). */
  entries(): [string, number][];
  /** The free id `i` places from the front of the queue (0 = the next one handed out); i < available. */
  freeAt(i: number): number;
  draft(): IdDraft;
}

export class IdAllocator implements IdSpace {
  private readonly byKey = new Map<string, number>();
  private readonly keyById: (string | undefined)[];
  /** Ring buffer of free ids: `free[head .. head+freeCount)` modulo capacity. */
  private readonly free: Uint32Array;
  private head = 0;
  private freeCount = 0;
  version = 0;

  /** @param what names the id space in errors (`VIP`, `backend`). */
  constructor(readonly capacity: number, readonly what: string) {
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

  allocate(key: string): number | null {
    const have = this.byKey.get(key);
    if (have !== undefined) return have;
    if (this.freeCount === 0) return null;
    const id = this.popFree();
    this.byKey.set(key, id);
    this.keyById[id] = key;
    this.version++;
    return id;
  }

  release(key: string): number | undefined {
    const id = this.byKey.get(key);
    if (id === undefined) return undefined;
    this.byKey.delete(key);
    this.keyById[id] = undefined;
    this.pushFree(id);
    this.version++;
    return id;
  }

  freeAt(i: number): number {
    if (!(i >= 0 && i < this.freeCount)) throw new RangeError(`${this.what} free queue has ${this.freeCount} ids, no index ${i}`);
    return this.free[(this.head + i) % this.capacity]!;
  }

  draft(): IdDraft {
    return new IdDraft(this);
  }

  /** [key, id] pairs, ascending by id. */
  entries(): [string, number][] {
    const out: [string, number][] = [];
    this.keyById.forEach((k, id) => { if (k !== undefined) out.push([k, id]); });
    return out;
  }
}

/** One change made in a draft, with what its overrides held before (undefined: no override). */
interface DraftStep {
  kind: 'allocate' | 'release';
  key: string;
  id: number;
  idOfKeyBefore: number | null | undefined;
  keyOfIdBefore: string | null | undefined;
}

/**
 * A transaction over an id space. Reads see the base plus this draft's changes; the base is not
 * touched until commit(), which replays the changes on it (FIFO order makes the replay hand out
 * the very same ids). Dropping the draft aborts it; rollbackTo() aborts part of it.
 */
export class IdDraft implements IdSpace {
  /** Overrides of the base: a number is an id taken here, null an id freed here. */
  private readonly idOfKey = new Map<string, number | null>();
  private readonly keyOfId = new Map<number, string | null>();
  /** Ids taken from the front of (base queue ++ freedHere). */
  private popped = 0;
  /** Ids freed here, in order: they queue behind the base's free ids. */
  private readonly freedHere: number[] = [];
  private readonly steps: DraftStep[] = [];
  private sizeDelta = 0;
  private readonly baseVersion: number;
  private committed = false;
  version = 0;

  constructor(private readonly base: IdSpace) {
    this.baseVersion = base.version;
  }

  get capacity(): number { return this.base.capacity; }
  get what(): string { return this.base.what; }
  get size(): number { return this.base.size + this.sizeDelta; }
  get available(): number { return this.base.available - this.popped + this.freedHere.length; }
  /** True when the draft holds changes (commit() would alter the base). */
  get changed(): boolean { return this.steps.length > 0; }

  private check(): void {
    if (this.committed) throw new Error(`${this.what} id draft was already committed; take a new draft`);
    if (this.base.version !== this.baseVersion) {
      throw new Error(`${this.what} id draft is stale: its base changed after the draft was taken; plan again from the current state`);
    }
  }

  get(key: string): number | undefined {
    const o = this.idOfKey.get(key);
    if (o !== undefined) return o ?? undefined;
    return this.base.get(key);
  }

  keyOf(id: number): string | undefined {
    const o = this.keyOfId.get(id);
    if (o !== undefined) return o ?? undefined;
    return this.base.keyOf(id);
  }

  freeAt(i: number): number {
    if (!(i >= 0 && i < this.available)) throw new RangeError(`${this.what} free queue has ${this.available} ids, no index ${i}`);
    const j = this.popped + i;
    const inBase = this.base.available;
    return j < inBase ? this.base.freeAt(j) : this.freedHere[j - inBase]!;
  }

  private record(kind: DraftStep['kind'], key: string, id: number, keyNow: string | null, idNow: number | null): void {
    this.steps.push({ kind, key, id, idOfKeyBefore: this.idOfKey.get(key), keyOfIdBefore: this.keyOfId.get(id) });
    this.idOfKey.set(key, idNow);
    this.keyOfId.set(id, keyNow);
    this.version++;
  }

  allocate(key: string): number | null {
    this.check();
    const have = this.get(key);
    if (have !== undefined) return have;
    if (this.available === 0) return null;
    const id = this.freeAt(0);
    this.record('allocate', key, id, key, id);
    this.popped++;
    this.sizeDelta++;
    return id;
  }

  release(key: string): number | undefined {
    this.check();
    const id = this.get(key);
    if (id === undefined) return undefined;
    this.record('release', key, id, null, null);
    this.freedHere.push(id);
    this.sizeDelta--;
    return id;
  }

  /** A point to roll back to. */
  mark(): number {
    return this.steps.length;
  }

  /** Undoes every change since `mark`, newest first: ids return exactly where they were in the queue. */
  rollbackTo(mark: number): void {
    this.check();
    while (this.steps.length > mark) {
      const s = this.steps.pop()!;
      if (s.kind === 'allocate') { this.popped--; this.sizeDelta--; } else { this.freedHere.pop(); this.sizeDelta++; }
      if (s.idOfKeyBefore === undefined) this.idOfKey.delete(s.key); else this.idOfKey.set(s.key, s.idOfKeyBefore);
      if (s.keyOfIdBefore === undefined) this.keyOfId.delete(s.id); else this.keyOfId.set(s.id, s.keyOfIdBefore);
      this.version++;
    }
  }

  entries(): [string, number][] {
    const out: [string, number][] = [];
    for (let id = 0; id < this.capacity; id++) {
      const k = this.keyOf(id);
      if (k !== undefined) out.push([k, id]);
    }
    return out;
  }

  draft(): IdDraft {
    return new IdDraft(this);
  }

  /** Applies the changes to the base and returns it; the draft is spent. O(changes). */
  commit(): IdSpace {
    this.check();
    for (const s of this.steps) {
      const got = s.kind === 'allocate' ? this.base.allocate(s.key) : this.base.release(s.key);
      if (got !== s.id) throw new Error(`${this.what} id draft replay gave ${s.key} id ${got}, expected ${s.id} (internal error)`);
    }
    this.committed = true;
    return this.base;
  }
}
