import { describeError, silentLogger, systemClock, type Clock, type Logger } from '../core/index.js';
import type { Certificate } from '../pki/index.js';
import { stapleKey, type CachedStaple, type StapleAttempt, type StapleCache, type StapleRecord } from './staple-cache.js';
import { fetchStaple, ocspUrlsOf, type FetchStapleOptions, type StapleFetchResult } from './staple-fetcher.js';
import { nextRefreshAt, resolveStapleSchedule, retryDelayMs, type RandomSource, type ResolvedStapleSchedule, type StapleScheduleOptions } from './staple-schedule.js';
import type { StapleSupplier, StapleTarget, SuppliedStaple } from './staple-supplier.js';

/**
 * Which certificates get their staples fetched. `wanted` (the default): those whose secret asks for stapling —
 * a declared policy (annotation or configuration), the must-staple extension, or a staple of its own to keep
 * fresh. `all`: every certificate with an OCSP URL. `off`: none.
 */
export type StapleFetchScope = 'wanted' | 'all' | 'off';

/** Events the refresher reports, for metrics (StapleMetrics implements it). */
export interface StapleFetchObserver {
  fetched(secrets: readonly string[], result: StapleFetchResult): void;
}

export interface StapleRefresherOptions {
  /** Fetched staples and fetch state on disk (DATA-DIR/ocsp-staples); without it, memory only. */
  cache?: StapleCache | null;
  clock?: Clock;
  logger?: Logger;
  scope?: StapleFetchScope;
  /** Send a nonce (and require it echoed). Default false. */
  nonce?: boolean;
  /** Per request. Default 10 s. */
  timeoutMs?: number;
  schedule?: StapleScheduleOptions;
  /** Default Math.random; tests pin the jitter. */
  random?: RandomSource;
  /**
   * Arm timers on the real event loop for the next due fetch (computed from the clock). Default true. Tests with a
   * ManualClock turn them off and drive the schedule with runDue() after moving the clock.
   */
  timers?: boolean;
  /** At most this many fetches at once. Default 4. */
  concurrency?: number;
  observer?: StapleFetchObserver;
  /** The fetch itself; replaceable for tests of the scheduling alone. Default fetchStaple. */
  fetch?: (options: FetchStapleOptions) => Promise<StapleFetchResult>;
}

/** One certificate's fetch state, for metrics, reports and tests. */
export interface StapleFetchState {
  key: string;
  secrets: string[];
  serial: string;
  urls: string[];
  /** The newest usable staple fetched (good or revoked), or null. */
  staple: CachedStaple | null;
  lastAttempt: StapleAttempt | null;
  lastSuccessAt: Date | null;
  consecutiveFailures: number;
  nextAttemptAt: Date;
  fetching: boolean;
}

interface Tracked {
  key: string;
  leaf: Certificate;
  issuer: Certificate;
  urls: string[];
  secrets: Set<string>;
  current: CachedStaple | null;
  /** A good answer whose thisUpdate is (within the skew) still ahead of our clock: served from then on. */
  pending: CachedStaple | null;
  lastAttempt: StapleAttempt | null;
  lastSuccessAt: Date | null;
  failures: number;
  nextAttemptAt: Date;
  inflight: Promise<void> | null;
}

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function iso(d: Date | null | undefined): string | null {
  return d ? d.toISOString() : null;
}

/**
 * Keeps the OCSP staples of the served certificates fresh: for each certificate a SecretSource tracks (and the
 * scope selects), it asks the responder of its AIA (POST, SHA-1 CertID), keeps the newest usable answer, refreshes
 * it at half its validity with jitter, and retries failures (down, timeout, 5xx, garbage, wrong signer…) with
 * capped exponential backoff and jitter while the current staple stays in use until its nextUpdate — after that
 * the stapling policy applies, through the SecretSource's own re-evaluation. A `revoked` answer is used at once
 * (the policy then withholds or strips the certificate) and logged at error level. Every staple and attempt is
 * written to the on-disk cache, and read back when a certificate is first tracked, so a restart neither serves
 * without a staple it still has nor hammers a responder it was backing off from.
 *
 * It is the SecretSource's StapleSupplier: `track` comes from the source after every scan, `onChange` tells the
 * source which secrets to re-judge. Time comes from the injected Clock; timers only wake the loop up.
 */
export class StapleRefresher implements StapleSupplier {
  readonly #cache: StapleCache | null;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #scope: StapleFetchScope;
  readonly #nonce: boolean;
  readonly #timeoutMs: number;
  readonly #schedule: ResolvedStapleSchedule;
  readonly #random: RandomSource;
  readonly #timers: boolean;
  readonly #concurrency: number;
  readonly #observer: StapleFetchObserver | null;
  readonly #fetch: (options: FetchStapleOptions) => Promise<StapleFetchResult>;
  readonly #tracked = new Map<string, Tracked>();
  readonly #listeners = new Set<(secrets: readonly string[]) => void>();
  /** Cache reads for certificates asked about before they are tracked (the source's first scan). */
  readonly #peeked = new Map<string, StapleRecord | null>();
  /** Secrets already told about (no OCSP URL, no issuer), so that each is logged once. */
  readonly #warned = new Set<string>();
  #timer: NodeJS.Timeout | null = null;
  #prunedAt = -Infinity;
  #running = 0;
  #closed = false;

  constructor(options: StapleRefresherOptions = {}) {
    this.#cache = options.cache ?? null;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#scope = options.scope ?? 'wanted';
    this.#nonce = options.nonce ?? false;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#schedule = resolveStapleSchedule(options.schedule);
    this.#random = options.random ?? Math.random;
    this.#timers = options.timers ?? true;
    this.#concurrency = Math.max(1, options.concurrency ?? 4);
    this.#observer = options.observer ?? null;
    this.#fetch = options.fetch ?? fetchStaple;
  }

  // --- StapleSupplier ---

  staple(leaf: Certificate, issuer: Certificate): SuppliedStaple | null {
    const key = stapleKey(leaf, issuer);
    const t = this.#tracked.get(key);
    const s = t ? t.current : this.#peek(key)?.staple ?? null;
    return s ? { der: s.der, url: s.url, fetchedAt: s.fetchedAt } : null;
  }

  record(leaf: Certificate, issuer: Certificate): StapleRecord | null {
    const t = this.#tracked.get(stapleKey(leaf, issuer));
    return t ? this.#record(t) : null;
  }

  onChange(listener: (secrets: readonly string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  track(targets: readonly StapleTarget[]): void {
    if (this.#closed) return;
    const now = this.#clock.now();
    const wanted = new Map<string, { leaf: Certificate; issuer: Certificate; urls: string[]; secrets: Set<string> }>();
    for (const target of targets) {
      if (!this.#wants(target, now)) continue;
      const key = stapleKey(target.leaf, target.issuer!);
      const w = wanted.get(key);
      if (w) w.secrets.add(target.secret);
      else wanted.set(key, { leaf: target.leaf, issuer: target.issuer!, urls: ocspUrlsOf(target.leaf), secrets: new Set([target.secret]) });
    }
    for (const key of [...this.#tracked.keys()]) if (!wanted.has(key)) this.#tracked.delete(key);
    for (const [key, w] of wanted) {
      const t = this.#tracked.get(key);
      if (t) {
        t.secrets = w.secrets;
        continue;
      }
      this.#tracked.set(key, this.#fromCache(key, w, now));
    }
    this.#peeked.clear();
    this.#prune(now);
    this.#arm();
  }

  // --- driving ---

  /** Fetches every certificate that is due at the clock's now (and promotes pending staples); resolves when done. */
  async runDue(): Promise<void> {
    const now = this.#clock.now();
    const started: Promise<void>[] = [];
    for (const t of this.#tracked.values()) {
      if (t.pending && t.pending.thisUpdate.getTime() <= now.getTime()) this.#promote(t);
      if (!t.inflight && t.nextAttemptAt.getTime() <= now.getTime()) started.push(this.#start(t));
    }
    await Promise.all(started);
    this.#prune(this.#clock.now());
    this.#arm();
  }

  /** Fetches now, whatever the schedule: all tracked certificates, or those of one secret. */
  async refreshNow(secret?: string): Promise<void> {
    const started: Promise<void>[] = [];
    for (const t of this.#tracked.values()) {
      if (secret !== undefined && !t.secrets.has(secret)) continue;
      started.push(t.inflight ?? this.#start(t));
    }
    await Promise.all(started);
    this.#arm();
  }

  /** The fetch state of every tracked certificate. */
  states(): StapleFetchState[] {
    return [...this.#tracked.values()].map((t) => ({
      key: t.key,
      secrets: [...t.secrets].sort(),
      serial: t.leaf.serial,
      urls: t.urls,
      staple: t.current,
      lastAttempt: t.lastAttempt,
      lastSuccessAt: t.lastSuccessAt,
      consecutiveFailures: t.failures,
      nextAttemptAt: t.nextAttemptAt,
      fetching: t.inflight !== null,
    }));
  }

  /** The fetch state of the certificate a secret serves, or undefined when it is not fetched. */
  stateOf(secret: string): StapleFetchState | undefined {
    return this.states().find((s) => s.secrets.includes(secret));
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#listeners.clear();
  }

  // --- internals ---

  #wants(target: StapleTarget, now: Date): boolean {
    if (this.#scope === 'off') return false;
    const asks = target.policy.declared !== null || target.policy.mustStaple || target.userStaple;
    if (this.#scope === 'wanted' && !asks) return false;
    if (target.leaf.notAfter.getTime() < now.getTime()) return false;
    const urls = ocspUrlsOf(target.leaf);
    const once = (what: string, msg: string) => {
      const k = `${target.secret}:${target.leaf.serial}:${what}`;
      if (this.#warned.has(k)) return;
      this.#warned.add(k);
      // Only worth a warning when the policy needs a staple to serve at all.
      const level = target.policy.policy === 'OPTIONAL' ? 'info' : 'warn';
      this.#logger[level]({ secret: target.secret, serial: target.leaf.serial, policy: target.policy.policy }, msg);
    };
    if (urls.length === 0) {
      if (asks) once('url', 'no staple can be fetched: the certificate names no http(s) OCSP responder (AIA); provide the staple in tls.ocsp-staple');
      return false;
    }
    if (!target.issuer) {
      once('issuer', "no staple can be fetched: the certificate's issuer is neither in the chain nor in ca.crt");
      return false;
    }
    return true;
  }

  /** At most hourly: drop cache files of certificates not served for a week (see StapleCache.prune). */
  #prune(now: Date): void {
    if (!this.#cache || now.getTime() - this.#prunedAt < 3_600_000) return;
    this.#prunedAt = now.getTime();
    try {
      const removed = this.#cache.prune(new Set(this.#tracked.keys()), new Date(now.getTime() - 7 * 86_400_000));
      if (removed) this.#logger.info({ removed, dir: this.#cache.dir }, 'removed cached OCSP staples of certificates no longer served');
    } catch (err) {
      this.#logger.warn({ err: describeError(err) }, 'cannot prune the OCSP staple cache');
    }
  }

  #peek(key: string): StapleRecord | null {
    if (!this.#cache) return null;
    if (!this.#peeked.has(key)) this.#peeked.set(key, this.#cache.read(key));
    return this.#peeked.get(key)!;
  }

  #fromCache(key: string, w: { leaf: Certificate; issuer: Certificate; urls: string[]; secrets: Set<string> }, now: Date): Tracked {
    const r = this.#peek(key);
    const t: Tracked = {
      key,
      ...w,
      current: r?.staple ?? null,
      pending: null,
      lastAttempt: r?.lastAttempt ?? null,
      lastSuccessAt: r?.lastSuccessAt ?? null,
      failures: r?.consecutiveFailures ?? 0,
      nextAttemptAt: now,
      inflight: null,
    };
    // Keep the schedule of the last run (a staple still fresh, a backoff in progress), unless it is implausibly far.
    const cap = now.getTime() + Math.max(this.#schedule.maxRefreshMs, this.#schedule.retryMaxMs);
    const planned = r?.nextAttemptAt?.getTime();
    if (planned !== undefined && planned > now.getTime() && planned <= cap) {
      const stapleLeft = t.current?.nextUpdate ? t.current.nextUpdate.getTime() : Infinity;
      t.nextAttemptAt = new Date(Math.min(planned, stapleLeft));
    }
    if (r) {
      this.#logger.info(
        { secrets: [...w.secrets], serial: w.leaf.serial, cachedStaple: t.current ? { status: t.current.status, nextUpdate: iso(t.current.nextUpdate) } : null, nextFetch: iso(t.nextAttemptAt) },
        'OCSP staple state read from the cache',
      );
    }
    return t;
  }

  #start(t: Tracked): Promise<void> {
    const p = this.#attempt(t).catch((err: unknown) => {
      // A bug, not a responder failure; still back off, or the timer would spin on an attempt that is always due.
      t.failures++;
      t.nextAttemptAt = new Date(this.#clock.now().getTime() + retryDelayMs(t.failures, this.#random, this.#schedule));
      this.#logger.error({ secrets: [...t.secrets], err: describeError(err) }, 'OCSP staple fetch failed unexpectedly');
    });
    t.inflight = p.finally(() => {
      t.inflight = null;
    });
    return t.inflight;
  }

  async #slot(): Promise<() => void> {
    while (this.#running >= this.#concurrency) await new Promise((r) => setTimeout(r, 5));
    this.#running++;
    return () => {
      this.#running--;
    };
  }

  async #attempt(t: Tracked): Promise<void> {
    const release = await this.#slot();
    let result: StapleFetchResult | null = null;
    try {
      for (const url of t.urls) {
        result = await this.#fetch({ cert: t.leaf, issuer: t.issuer, url, clock: this.#clock, nonce: this.#nonce, timeoutMs: this.#timeoutMs });
        if (result.ok) break;
      }
    } finally {
      release();
    }
    if (this.#closed || !result || this.#tracked.get(t.key) !== t) return;
    const now = this.#clock.now();
    const secrets = [...t.secrets].sort();
    this.#observer?.fetched(secrets, result);
    t.lastAttempt = {
      at: now,
      result: result.ok ? result.status : result.reason,
      url: result.url,
      message: result.ok ? null : result.message,
      latencyMs: result.latencyMs,
    };
    let changed = false;
    if (!result.ok) {
      t.failures++;
      const delay = retryDelayMs(t.failures, this.#random, this.#schedule);
      t.nextAttemptAt = new Date(now.getTime() + delay);
      const keep = t.current?.nextUpdate && t.current.nextUpdate.getTime() > now.getTime();
      this.#logger.warn(
        {
          secrets,
          serial: t.leaf.serial,
          url: result.url,
          reason: result.reason,
          failures: t.failures,
          retryInMs: delay,
          ...(keep ? { keepingStapleUntil: iso(t.current!.nextUpdate) } : {}),
        },
        `OCSP staple fetch failed (${result.reason}): ${result.message}; ${keep ? 'the current staple stays until its nextUpdate' : 'no current staple: the stapling policy applies'}`,
      );
    } else {
      const staple: CachedStaple = {
        der: result.der,
        url: result.url,
        fetchedAt: now,
        status: result.status,
        thisUpdate: result.thisUpdate,
        nextUpdate: result.nextUpdate,
      };
      t.failures = 0;
      t.lastSuccessAt = now;
      if (result.status === 'revoked') {
        const first = t.current?.status !== 'revoked';
        changed = !t.current || !t.current.der.equals(staple.der);
        t.current = staple;
        t.pending = null;
        if (first) {
          this.#logger.error(
            {
              secrets,
              serial: t.leaf.serial,
              subject: t.leaf.subject,
              url: result.url,
              revokedAt: iso(result.revokedAt),
              revocationReason: result.revocationReason,
            },
            'OCSP responder says the certificate is REVOKED: the stapling policy now withholds it (PREFERRED, MANDATORY) or serves it without a staple (OPTIONAL); replace the certificate',
          );
        }
      } else if (result.thisUpdate.getTime() > now.getTime()) {
        // Fine within the skew, but a staple not yet valid by our clock would be judged expired: use it from thisUpdate.
        t.pending = staple;
      } else {
        changed = !t.current || !t.current.der.equals(staple.der);
        if (t.current?.status === 'revoked') {
          this.#logger.warn({ secrets, serial: t.leaf.serial, url: result.url }, 'OCSP responder says good again for a certificate it said was revoked');
        }
        t.current = staple;
        t.pending = null;
      }
      t.nextAttemptAt = t.pending ? new Date(t.pending.thisUpdate.getTime()) : nextRefreshAt(staple, now, this.#random, this.#schedule);
      if (t.pending) {
        // Promote at thisUpdate, then fetch again on the normal schedule from there.
        this.#logger.debug({ secrets, thisUpdate: iso(staple.thisUpdate) }, 'fetched staple is valid from a moment ahead');
      } else {
        this.#logger.info(
          { secrets, serial: t.leaf.serial, status: staple.status, thisUpdate: iso(staple.thisUpdate), nextUpdate: iso(staple.nextUpdate), nextFetch: iso(t.nextAttemptAt), latencyMs: Math.round(result.latencyMs) },
          changed ? 'OCSP staple fetched' : 'OCSP staple fetched (unchanged)',
        );
      }
    }
    this.#persist(t);
    if (changed) this.#notify(secrets);
  }

  #promote(t: Tracked): void {
    const p = t.pending!;
    t.pending = null;
    t.current = p;
    t.nextAttemptAt = nextRefreshAt(p, this.#clock.now(), this.#random, this.#schedule);
    this.#persist(t);
    this.#notify([...t.secrets].sort());
  }

  #record(t: Tracked): StapleRecord {
    return {
      certificate: { serial: t.leaf.serial, subject: t.leaf.subject, issuer: t.leaf.issuer },
      secrets: [...t.secrets].sort(),
      staple: t.current,
      lastAttempt: t.lastAttempt,
      lastSuccessAt: t.lastSuccessAt,
      consecutiveFailures: t.failures,
      nextAttemptAt: t.nextAttemptAt,
    };
  }

  #persist(t: Tracked): void {
    if (!this.#cache) return;
    try {
      this.#cache.write(t.key, this.#record(t));
    } catch (err) {
      this.#logger.error({ secrets: [...t.secrets], err: describeError(err) }, 'cannot write the OCSP staple cache; the staple is served from memory');
    }
  }

  #notify(secrets: readonly string[]): void {
    for (const l of [...this.#listeners]) {
      try {
        l(secrets);
      } catch (err) {
        this.#logger.error({ err: describeError(err) }, 'staple change listener failed');
      }
    }
  }

  #arm(): void {
    if (!this.#timers || this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    let next: number | null = null;
    for (const t of this.#tracked.values()) {
      if (t.inflight) continue;
      const at = Math.min(t.nextAttemptAt.getTime(), t.pending ? t.pending.thisUpdate.getTime() : Infinity);
      if (next === null || at < next) next = at;
    }
    if (next === null) return;
    const delay = Math.min(Math.max(0, next - this.#clock.now().getTime()), MAX_TIMEOUT_MS);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.runDue();
    }, delay);
    this.#timer.unref();
  }
}
