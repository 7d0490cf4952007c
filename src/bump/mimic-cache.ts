/**
 * A bounded LRU map: a Map keeps insertion order, so a hit is re-inserted at the end and the first key is the
 * least recently used. O(1) per operation, no timers.
 */
export class LruCache<V> {
  readonly #map = new Map<string, V>();
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(
    readonly capacity: number,
    private readonly onEvict?: (value: V) => void,
  ) {
    if (!(capacity >= 1)) throw new RangeError(`LRU capacity must be at least 1, got ${capacity}`);
  }

  get size(): number {
    return this.#map.size;
  }

  /** The value, marked most recently used; undefined (a miss) otherwise. `valid` may reject a stale entry. */
  get(key: string, valid?: (value: V) => boolean): V | undefined {
    const v = this.#map.get(key);
    if (v === undefined || (valid && !valid(v))) {
      if (v !== undefined) this.#map.delete(key);
      this.misses++;
      return undefined;
    }
    this.#map.delete(key);
    this.#map.set(key, v);
    this.hits++;
    return v;
  }

  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    while (this.#map.size > this.capacity) {
      const oldest = this.#map.keys().next().value as string;
      const value = this.#map.get(oldest)!;
      this.#map.delete(oldest);
      this.evictions++;
      this.onEvict?.(value);
    }
  }

  clear(): void {
    if (this.onEvict) for (const v of this.#map.values()) this.onEvict(v);
    this.#map.clear();
  }
}
