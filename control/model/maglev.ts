/**
 * Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
 * Balancer", NSDI'16, §3.4) with weights, in the manner of Katran's MaglevHashV2: each backend
 * walks its own permutation of the ring's slots, and backends take turns claiming their next free
 * slot in proportion to their weight, until every slot is claimed.
 *
 * The result must be identical in every process on every machine (a restarted director, or a
 * second director behind ECMP, must send a flow to the same backend), so nothing here depends on
 * input order, Map iteration order or randomness: backends are sorted by canonical address text
 * (plain code-unit order, never locale order) and each backend's permutation comes from a fixed
 * hash of that text (MurmurHash3 x86_32 of its UTF-8 bytes, seed 0 for the offset, seed 1 for
 * the skip).
 */

export const DEFAULT_RING_SIZE = 65537;

/** Largest ring the builder accepts: slot indices and turn arithmetic stay exact in doubles. */
export const MAX_RING_SIZE = 16_777_259; // a prime just above 2^24

export interface MaglevBackend {
  /** Canonical address text: the backend's identity and the input of its hash. */
  readonly address: string;
  /** Integer 0..65535; 0 = draining (no slots). */
  readonly weight: number;
}

export interface MaglevRing<B extends MaglevBackend = MaglevBackend> {
  /** The input backends in canonical order (draining ones included, holding no slots). */
  readonly backends: readonly B[];
  /** ringSize slots, each an index into `backends`. */
  readonly slots: Uint32Array;
}

/** MurmurHash3 x86_32 (Austin Appleby, public domain) of a byte string. */
export function murmur3(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51, c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = bytes.length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, c1); k = (k << 15) | (k >>> 17); k = Math.imul(k, c2);
    h ^= k; h = (h << 13) | (h >>> 19); h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = bytes.length & 3;
  if (tail > 0) {
    let k = 0;
    for (let i = tail - 1; i >= 0; i--) k = (k << 8) | bytes[blocks + i]!;
    k = Math.imul(k, c1); k = (k << 15) | (k >>> 17); k = Math.imul(k, c2); h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** Throws unless `ringSize` is a prime the builder accepts. */
export function checkRingSize(ringSize: number): void {
  if (!isPrime(ringSize) || ringSize > MAX_RING_SIZE) {
    throw new RangeError(
      `Maglev ring size ${ringSize} is not a prime in 2..${MAX_RING_SIZE}; ` +
        `use a prime such as ${DEFAULT_RING_SIZE} (the default) or 131071`,
    );
  }
}

function byAddress(a: MaglevBackend, b: MaglevBackend): number {
  return a.address < b.address ? -1 : a.address > b.address ? 1 : 0;
}

/**
 * A min-heap of backends keyed by (round of their next turn, index): the order in which Katran's
 * round-robin-with-credit loop would give out turns, without visiting every backend every round.
 * Backend i's k-th turn falls in round turnRound(k, maxWeight, weight_i).
 */
class TurnQueue {
  private readonly heap: Uint32Array;
  private size = 0;
  constructor(private readonly round: Float64Array, capacity: number) {
    this.heap = new Uint32Array(capacity);
  }
  private less(a: number, b: number): boolean {
    const ra = this.round[a]!, rb = this.round[b]!;
    return ra < rb || (ra === rb && a < b);
  }
  push(i: number): void {
    let at = this.size++;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!this.less(i, this.heap[parent]!)) break;
      this.heap[at] = this.heap[parent]!;
      at = parent;
    }
    this.heap[at] = i;
  }
  /** Index of the backend whose turn is next; it stays queued (call siftTop after updating its round). */
  top(): number {
    return this.heap[0]!;
  }
  /** Restores the heap after the top's round grew. */
  siftTop(): void {
    const i = this.heap[0]!;
    let at = 0;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= this.size) break;
      const r = l + 1;
      const c = r < this.size && this.less(this.heap[r]!, this.heap[l]!) ? r : l;
      if (!this.less(this.heap[c]!, i)) break;
      this.heap[at] = this.heap[c]!;
      at = c;
    }
    this.heap[at] = i;
  }
}

const utf8 = new TextEncoder();

/**
 * The round in which a backend of weight w takes its k-th turn when the heaviest backend takes one
 * turn per round: at the midpoint (k - 1/2) * max / w, as in Sainte-Laguë apportionment, rather than
 * at the end of its k-th credit interval (Katran's k * max / w). Without the half-interval offset
 * a light backend beside a very heavy one gets its first turn only after the ring is full.
 */
function turnRound(k: number, maxWeight: number, weight: number): number {
  return Math.ceil(((2 * k - 1) * maxWeight) / (2 * weight));
}

/**
 * Builds the lookup table. Returns null when no backend has a weight above 0 (nothing to send new
 * flows to). Throws on a ring size that is not prime, on duplicate addresses and on weights that
 * are not integers in 0..65535.
 */
export function buildMaglevRing<B extends MaglevBackend>(
  input: readonly B[],
  ringSize: number = DEFAULT_RING_SIZE,
): MaglevRing<B> | null {
  checkRingSize(ringSize);
  const backends = [...input].sort(byAddress);
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i]!;
    if (i > 0 && backends[i - 1]!.address === b.address) {
      throw new Error(`Maglev: backend ${b.address} is listed twice; list each backend once`);
    }
    if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > 0xffff) {
      throw new RangeError(`Maglev: backend ${b.address} has weight ${b.weight}; weights are integers 0..65535`);
    }
  }
  const active: number[] = [];
  backends.forEach((b, i) => { if (b.weight > 0) active.push(i); });
  if (active.length === 0) return null;
  if (active.length > ringSize) {
    throw new RangeError(`Maglev: ${active.length} backends do not fit a ring of ${ringSize} slots; use a larger prime ring size`);
  }

  const n = active.length;
  const skip = new Int32Array(n);
  const next = new Int32Array(n); // slot of each backend's next preference
  const weight = new Float64Array(n);
  for (let a = 0; a < n; a++) {
    const b = backends[active[a]!]!;
    const bytes = utf8.encode(b.address);
    next[a] = murmur3(bytes, 0) % ringSize; // the offset
    skip[a] = (murmur3(bytes, 1) % (ringSize - 1)) + 1; // 1..M-1: coprime with prime M, visits every slot
    weight[a] = b.weight;
  }

  // Int32 with -1 for "free": V8 keeps these as small integers (0xffffffff in a Uint32Array would not be).
  const EMPTY = -1;
  const taken = new Int32Array(ringSize).fill(EMPTY);
  /** Backend `a` claims the next free slot of its permutation. */
  const claim = (a: number): void => {
    let slot = next[a]!;
    const step = skip[a]!;
    while (taken[slot] !== EMPTY) {
      slot += step;
      if (slot >= ringSize) slot -= ringSize;
    }
    taken[slot] = active[a]!;
    slot += step;
    next[a] = slot >= ringSize ? slot - ringSize : slot;
  };

  let maxWeight = 0, minWeight = Infinity;
  for (let a = 0; a < n; a++) { maxWeight = Math.max(maxWeight, weight[a]!); minWeight = Math.min(minWeight, weight[a]!); }
  if (minWeight === maxWeight) {
    // Equal weights: every round gives each backend one turn in index order, so the turn queue
    // reduces to round robin (the same table, without the heap).
    for (let filled = 0; filled < ringSize; filled++) claim(filled % n);
    return { backends, slots: new Uint32Array(taken.buffer) };
  }

  const turnsTaken = new Float64Array(n);
  const round = new Float64Array(n);
  const queue = new TurnQueue(round, n);
  for (let a = 0; a < n; a++) {
    round[a] = turnRound(1, maxWeight, weight[a]!);
    queue.push(a);
  }
  for (let filled = 0; filled < ringSize; filled++) {
    const a = queue.top();
    claim(a);
    const k = ++turnsTaken[a]! + 1;
    round[a] = turnRound(k, maxWeight, weight[a]!);
    queue.siftTop();
  }
  return { backends, slots: new Uint32Array(taken.buffer) };
}
