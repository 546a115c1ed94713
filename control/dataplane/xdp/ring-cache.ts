/**
 * Built rings by ringSignature(), so that VIPs with the same backends, weights and ring size
 * share one build and one copy in memory (a Kubernetes cluster's LoadBalancer Services mostly
 * have the same nodes as backends: 10,000 Services may need a handful of distinct rings).
 *
 * Entries hold their rings weakly: the cache never keeps a ring alive that no VIP uses any more,
 * so it needs no eviction policy. Rings handed out are shared: nobody may modify one.
 */
export class RingCache {
  private readonly rings = new Map<string, WeakRef<Uint32Array>>();
  private readonly dropped = new FinalizationRegistry<string>((signature) => {
    // A newer ring may hold the key by now; remove only a dead entry.
    if (this.rings.get(signature)?.deref() === undefined) this.rings.delete(signature);
  });

  get(signature: string): Uint32Array | undefined {
    return this.rings.get(signature)?.deref();
  }

  set(signature: string, ring: Uint32Array): void {
    this.rings.set(signature, new WeakRef(ring));
    this.dropped.register(ring, signature);
  }

  /** Signatures with an entry (some of whose rings may already be collected). */
  get size(): number {
    return this.rings.size;
  }
}
