/**
 * Immutable maps that share their bulk: a base map and a small layer of changes on top. Deriving
 * the next version after k changes costs O(k + layer), not a copy of the whole map, so a planner
 * can keep "current" and "next" apart (and stay pure) when 1 of 10,000 entries changes. The layer
 * is folded into a fresh base once it outgrows a fraction of the base: amortised O(1) per change.
 */

const GONE: unique symbol = Symbol('gone');
type Slot<V> = V | typeof GONE;

/** A key's value seen through `layer` (a change, or GONE) over `base`. */
function readThrough<K, V>(layer: ReadonlyMap<K, Slot<V>>, base: ReadonlyMap<K, V>, key: K): V | undefined {
  const v = layer.get(key);
  if (v !== undefined) return v === GONE ? undefined : v;
  return base.get(key);
}

function hasThrough<K, V>(layer: ReadonlyMap<K, Slot<V>>, base: ReadonlyMap<K, V>, key: K): boolean {
  const v = layer.get(key);
  if (v !== undefined) return v !== GONE;
  return base.has(key);
}

/** Layers larger than this fraction of the base (or than the minimum) are folded in. */
const FOLD_MIN = 64;
const FOLD_SHIFT = 4; // 1/16

export class LayeredMap<K, V> implements ReadonlyMap<K, V> {
  /** @internal use MapEdit.result() */
  constructor(
    readonly base: ReadonlyMap<K, V>,
    readonly layer: ReadonlyMap<K, Slot<V>>,
    readonly size: number,
  ) {}

  get(key: K): V | undefined {
    return readThrough(this.layer, this.base, key);
  }

  has(key: K): boolean {
    return hasThrough(this.layer, this.base, key);
  }

  /** Base order (changed entries in place), then entries the layer adds. */
  *entries(): MapIterator<[K, V]> {
    for (const [k, v] of this.base) {
      const over = this.layer.get(k);
      if (over === undefined) yield [k, v];
      else if (over !== GONE) yield [k, over];
    }
    for (const [k, v] of this.layer) if (v !== GONE && !this.base.has(k)) yield [k, v];
  }

  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }
}

/** Changes to a map, read through to it; result() is the changed map, `from` itself untouched. */
export class MapEdit<K, V> {
  private readonly changes = new Map<K, Slot<V>>();

  constructor(private readonly from: ReadonlyMap<K, V>) {}

  get(key: K): V | undefined {
    return readThrough(this.changes, this.from, key);
  }

  has(key: K): boolean {
    return hasThrough(this.changes, this.from, key);
  }

  set(key: K, value: V): void {
    this.changes.set(key, value);
  }

  delete(key: K): void {
    this.changes.set(key, GONE);
  }

  /** The edited map (`from` itself when nothing changed). */
  result(): ReadonlyMap<K, V> {
    if (this.changes.size === 0) return this.from;
    const from = this.from;
    const base = from instanceof LayeredMap ? (from.base as ReadonlyMap<K, V>) : from;
    const layer = new Map<K, Slot<V>>(from instanceof LayeredMap ? (from.layer as ReadonlyMap<K, Slot<V>>) : undefined);
    let size = from.size;
    for (const [k, v] of this.changes) {
      const was = from.has(k);
      if (v === GONE) {
        if (was) size--;
        if (base.has(k)) layer.set(k, GONE);
        else layer.delete(k);
      } else {
        if (!was) size++;
        layer.set(k, v);
      }
    }
    const layered = new LayeredMap<K, V>(base, layer, size);
    if (layer.size <= Math.max(FOLD_MIN, base.size >> FOLD_SHIFT)) return layered;
    return new Map(layered);
  }
}
