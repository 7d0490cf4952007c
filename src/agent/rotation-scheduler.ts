import { ErrorCodes, MeshError, systemClock, type Clock } from '../core/index.js';

export interface RotationPolicy {
  /** Renew when this fraction of the lifetime (receipt → notAfter) has passed. Default 0.66. */
  renewAt: number;
  /**
   * Spread of renewal times: the renewal comes at renewAt × (1 − jitter × U), U uniform in [0, 1), so never later
   * than renewAt and a thousand agents issued in the same second renew over a window of jitter × renewAt of the
   * lifetime. Default 0.1.
   */
  jitter: number;
  /** First retry delay after a failure; doubles on each further failure. Default 1 s. */
  backoffInitialMs: number;
  /** Cap of the retry delay. Default 60 s. */
  backoffMaxMs: number;
}

export const DEFAULT_ROTATION_POLICY: RotationPolicy = { renewAt: 0.66, jitter: 0.1, backoffInitialMs: 1000, backoffMaxMs: 60_000 };

/** Shortest wait between two attempts, whatever the arithmetic says (a certificate of a few seconds). */
export const MIN_RETRY_MS = 100;

export function checkRotationPolicy(policy: RotationPolicy): RotationPolicy {
  const fail = (field: string, message: string) => new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: ${message}`, { subject: field });
  if (!(policy.renewAt > 0 && policy.renewAt < 1)) throw fail('--renew-at', `${policy.renewAt} is not a fraction between 0 and 1 (exclusive), e.g. 0.66`);
  if (!(policy.jitter >= 0 && policy.jitter < 1)) throw fail('--renew-jitter', `${policy.jitter} is not a fraction in [0, 1), e.g. 0.1`);
  if (!(policy.backoffInitialMs > 0)) throw fail('backoffInitialMs', 'must be positive');
  if (!(policy.backoffMaxMs >= policy.backoffInitialMs)) throw fail('backoffMaxMs', 'must be at least backoffInitialMs');
  return policy;
}

/**
 * Milliseconds from receipt to renewal. The lifetime is counted from the moment the certificate was received to its
 * notAfter, not from notBefore: a CA backdates notBefore for clock skew (60 s by default), and counting from there
 * would make a 24 s certificate "two thirds used" on arrival and renew in a loop.
 */
export function renewalDelayMs(receivedAt: Date, notAfter: Date, policy: RotationPolicy, random: () => number = Math.random): number {
  const life = Math.max(0, notAfter.getTime() - receivedAt.getTime());
  const fraction = policy.renewAt * (1 - policy.jitter * random());
  return Math.max(MIN_RETRY_MS, Math.floor(life * fraction));
}

/**
 * Delay before retry number `failures` (1 = the first retry): capped exponential backoff with "equal jitter"
 * (half fixed, half random), so that agents that failed together do not retry together. While a certificate is
 * still valid, the delay is also capped at a quarter of the time it has left, so that a CA that comes back shortly
 * before expiry is still reached in time.
 */
export function retryDelayMs(failures: number, policy: RotationPolicy, remainingMs: number | null, random: () => number = Math.random): number {
  const exp = Math.min(policy.backoffMaxMs, policy.backoffInitialMs * 2 ** Math.min(Math.max(0, failures - 1), 30));
  let delay = exp / 2 + (exp / 2) * random();
  if (remainingMs !== null && remainingMs > 0) delay = Math.min(delay, remainingMs / 4);
  return Math.max(MIN_RETRY_MS, Math.floor(delay));
}

/** What the agent should do next, and when. */
export interface NextStep {
  action: 'renew' | 'expire';
  at: Date;
}

/**
 * When to renew, retry, and declare the certificate expired, from the agent's clock. Pure bookkeeping (no timers):
 * the agent asks `next()` and sleeps until then, so tests drive it with a ManualClock.
 */
export class RotationScheduler {
  readonly policy: RotationPolicy;
  readonly #clock: Clock;
  readonly #random: () => number;
  #notAfter: Date | null = null;
  #renewAt: Date;
  #failures = 0;
  #expiredHandled = false;

  constructor(options: { policy?: Partial<RotationPolicy>; clock?: Clock; random?: () => number } = {}) {
    this.policy = checkRotationPolicy({ ...DEFAULT_ROTATION_POLICY, ...(options.policy ?? {}) });
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    // Nothing held yet: get a certificate now.
    this.#renewAt = this.#clock.now();
  }

  /** Failures since the last success. */
  get failures(): number {
    return this.#failures;
  }

  get notAfter(): Date | null {
    return this.#notAfter;
  }

  get renewalAt(): Date {
    return this.#renewAt;
  }

  /** A certificate was received now (or loaded from disk): schedules its renewal; returns when. */
  issued(notAfter: Date): Date {
    const now = this.#clock.now();
    this.#notAfter = notAfter;
    this.#failures = 0;
    this.#expiredHandled = now.getTime() >= notAfter.getTime();
    this.#renewAt = new Date(now.getTime() + renewalDelayMs(now, notAfter, this.policy, this.#random));
    return this.#renewAt;
  }

  /** An attempt failed now: schedules the retry; returns when. */
  failed(): Date {
    const now = this.#clock.now();
    this.#failures++;
    const remaining = this.#notAfter && !this.#expiredHandled ? this.#notAfter.getTime() - now.getTime() : null;
    this.#renewAt = new Date(now.getTime() + retryDelayMs(this.#failures, this.policy, remaining, this.#random));
    return this.#renewAt;
  }

  /** Asks for an attempt as soon as possible (e.g. the token changed). */
  renewNow(): void {
    this.#renewAt = this.#clock.now();
  }

  /** The certificate's expiry was acted upon (stopped serving it). */
  expiredHandled(): void {
    this.#expiredHandled = true;
  }

  /** True while a certificate is held and now is before its notAfter. */
  holdsValid(): boolean {
    return this.#notAfter !== null && this.#clock.now().getTime() < this.#notAfter.getTime();
  }

  /** The earliest thing to do: renew (or retry), or — if it comes first — stop serving an expiring certificate. */
  next(): NextStep {
    if (this.#notAfter && !this.#expiredHandled && this.#notAfter.getTime() <= this.#renewAt.getTime()) {
      return { action: 'expire', at: this.#notAfter };
    }
    return { action: 'renew', at: this.#renewAt };
  }

  /** Milliseconds from now until `step` (0 when due). */
  delayUntil(step: NextStep): number {
    return Math.max(0, step.at.getTime() - this.#clock.now().getTime());
  }
}
