// Asynchronous OCSP check of a client certificate (issue #9): ask the responder named in the certificate's AIA,
// cache the answer until its nextUpdate, and share one in-flight query among every connection presenting the same
// certificate, so that a burst of handshakes from one workload costs one round trip.
import { systemClock, type Clock } from '../core/index.js';
import type { Certificate } from '../pki/index.js';
import { fetchStaple, ocspUrlsOf, type StapleFetchResult } from '../secrets/index.js';
import type { PeerValidator, ValidationInput, ValidatorResult } from './peer-validation.js';

export interface OcspValidatorOptions {
  timeoutMs: number;
  onUnknown: 'allow' | 'deny';
  onError: 'allow' | 'deny';
  clock?: Clock;
  /** Bound on cached answers (LRU by insertion); default 10,000. */
  maxCached?: number;
  /** An answer without nextUpdate is cached this long; default 5 minutes. */
  defaultTtlMs?: number;
}

interface CachedAnswer {
  result: StapleFetchResult;
  expiresAt: number;
}

export class OcspValidator implements PeerValidator {
  readonly name = 'ocsp';
  readonly #options: Required<Omit<OcspValidatorOptions, 'clock'>>;
  readonly #clock: Clock;
  readonly #cache = new Map<string, CachedAnswer>();
  readonly #inFlight = new Map<string, Promise<StapleFetchResult>>();
  /** Responder round trips made (for tests and metrics: shared queries and cache hits make none). */
  queries = 0;

  constructor(options: OcspValidatorOptions) {
    this.#options = { maxCached: 10_000, defaultTtlMs: 5 * 60_000, ...options };
    this.#clock = options.clock ?? systemClock;
  }

  async validate(input: ValidationInput): Promise<ValidatorResult> {
    const [leaf, issuer] = input.chain;
    if (!leaf || !issuer) return this.#onError('no issuer certificate in the presented chain to build the OCSP request');
    const url = ocspUrlsOf(leaf).find((u) => /^https?:\/\//i.test(u));
    if (!url) return this.#onError(`the client certificate (serial ${leaf.serial}) names no OCSP responder`);
    const result = await this.#answer(leaf, issuer, url);
    if (result.ok) {
      if (result.status === 'good') return { allowed: true };
      return { allowed: false, reason: 'ocsp_revoked', detail: `OCSP responder ${url} says the client certificate (serial ${leaf.serial}) is revoked` };
    }
    if (result.reason === 'unknown-status') {
      const detail = `OCSP responder ${url} does not know the client certificate (serial ${leaf.serial})`;
      return this.#options.onUnknown === 'allow' ? { allowed: true, note: detail } : { allowed: false, reason: 'ocsp_unknown', detail };
    }
    return this.#onError(`OCSP responder ${url}: ${result.reason}: ${result.message}`);
  }

  #onError(detail: string): ValidatorResult {
    return this.#options.onError === 'allow' ? { allowed: true, note: detail } : { allowed: false, reason: 'ocsp_error', detail };
  }

  #answer(leaf: Certificate, issuer: Certificate, url: string): Promise<StapleFetchResult> {
    const key = `${issuer.fingerprint256}:${leaf.serial}`;
    const now = this.#clock.now().getTime();
    const cached = this.#cache.get(key);
    if (cached && cached.expiresAt > now) return Promise.resolve(cached.result);
    if (cached) this.#cache.delete(key);
    const pending = this.#inFlight.get(key);
    if (pending) return pending;
    this.queries++;
    const query = fetchStaple({ cert: leaf, issuer, url, clock: this.#clock, timeoutMs: this.#options.timeoutMs })
      .then((result) => {
        // Definite answers are cached until nextUpdate; failures are not, so the next connection asks again.
        if (result.ok || result.reason === 'unknown-status') this.#remember(key, result);
        return result;
      })
      .finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, query);
    return query;
  }

  #remember(key: string, result: StapleFetchResult): void {
    const now = this.#clock.now().getTime();
    const next = result.ok && result.nextUpdate ? result.nextUpdate.getTime() : now + this.#options.defaultTtlMs;
    if (next <= now) return;
    if (this.#cache.size >= this.#options.maxCached) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    this.#cache.set(key, { result, expiresAt: next });
  }
}
