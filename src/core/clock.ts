/** Time is injected so that validity, freshness and rotation can be tested at any instant. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock that stays at one instant until moved; for tests and for `--at TIME`. */
export class ManualClock implements Clock {
  #ms: number;
  constructor(at: Date | number = Date.now()) {
    this.#ms = typeof at === 'number' ? at : at.getTime();
  }
  now(): Date {
    return new Date(this.#ms);
  }
  set(at: Date | number): void {
    this.#ms = typeof at === 'number' ? at : at.getTime();
  }
  advance(ms: number): void {
    this.#ms += ms;
  }
}

/**
 * X.509 and OCSP times are whole seconds. pkijs writes milliseconds into GeneralizedTime when the Date has them,
 * and OpenSSL 3.0 then silently skips freshness checks, so every time we sign is rounded down first.
 */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}
