import { ErrorCodes, MeshError, systemClock, type Clock } from '../core/index.js';

export interface RateLimiterOptions {
  /** Sustained rate per key (tokens added per second). */
  perSecond: number;
  /** Bucket size: how many requests may arrive at once after a quiet period. */
  burst: number;
  clock?: Clock;
  /** Most keys tracked at once; beyond it the least recently used are forgotten. Default 100,000. */
  maxKeys?: number;
}

export type RateDecision = { ok: true } | { ok: false; retryAfterMs: number };

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per key (per identity for the RA). Memory is bounded: buckets live in a Map kept in least recently
 * used order, each call drops buckets at the old end that have refilled completely (forgetting them changes nothing),
 * and past `maxKeys` the least recently used go even if not full: under such a flood, a few idle identities getting a
 * fresh burst is the lesser harm.
 */
export class RateLimiter {
  readonly perSecond: number;
  readonly burst: number;
  readonly maxKeys: number;
  readonly #clock: Clock;
  readonly #buckets = new Map<string, Bucket>();
  /** How long an untouched bucket takes to refill completely; after that it is the same as no bucket. */
  readonly #fullAfterMs: number;

  constructor(options: RateLimiterOptions) {
    if (!(options.perSecond > 0) || !Number.isFinite(options.perSecond)) {
      throw new MeshError(ErrorCodes.CONFIG, `rateLimit.perIdentityPerSecond: ${String(options.perSecond)} is not a positive number`, {
        subject: 'rateLimit.perIdentityPerSecond',
      });
    }
    if (!(options.burst >= 1) || !Number.isFinite(options.burst)) {
      throw new MeshError(ErrorCodes.CONFIG, `rateLimit.burst: ${String(options.burst)} must be at least 1`, { subject: 'rateLimit.burst' });
    }
    this.perSecond = options.perSecond;
    this.burst = options.burst;
    this.maxKeys = Math.max(1, options.maxKeys ?? 100_000);
    this.#clock = options.clock ?? systemClock;
    this.#fullAfterMs = (this.burst / this.perSecond) * 1000;
  }

  /** Takes one token for `key`, or says how long until one is available. */
  tryTake(key: string): RateDecision {
    const now = this.#clock.now().getTime();
    let b = this.#buckets.get(key);
    if (b) {
      // Refill; a clock stepping back refills nothing rather than draining.
      b.tokens = Math.min(this.burst, b.tokens + (Math.max(0, now - b.at) * this.perSecond) / 1000);
      b.at = Math.max(b.at, now);
      this.#buckets.delete(key); // re-inserted below: the Map's order is recency order
    } else {
      b = { tokens: this.burst, at: now };
    }
    this.#buckets.set(key, b);
    this.#sweep(now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil(((1 - b.tokens) * 1000) / this.perSecond) };
  }

  /** tryTake, throwing MeshError RATE_LIMITED naming the key and when to retry. */
  take(key: string): void {
    const d = this.tryTake(key);
    if (!d.ok) {
      const secs = d.retryAfterMs / 1000;
      throw new MeshError(
        ErrorCodes.RATE_LIMITED,
        `too many certificate requests for ${key}: the limit is ${this.perSecond}/s with bursts of ${this.burst}; retry in ${secs < 10 ? secs.toFixed(secs < 1 ? 2 : 1) : Math.ceil(secs)} s`,
        { subject: key, details: { retryAfterMs: d.retryAfterMs, perSecond: this.perSecond, burst: this.burst } },
      );
    }
  }

  /** Keys currently tracked (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  #sweep(now: number): void {
    // A few steps per call keep the cost O(1) amortized: each bucket is inserted once per use and removed once.
    let steps = 0;
    for (const [key, b] of this.#buckets) {
      const over = this.#buckets.size > this.maxKeys;
      if (!over && (steps >= 4 || now - b.at < this.#fullAfterMs)) break;
      this.#buckets.delete(key);
      steps++;
    }
  }
}
