/**
 * When to fetch an OCSP staple again: pure arithmetic over times, with the random source injected so that tests
 * can pin the jitter. A good answer is refreshed at half of its validity (thisUpdate→nextUpdate) with jitter, so a
 * fleet does not call its responder in step; a failure is retried with capped exponential backoff and jitter.
 */

export interface StapleScheduleOptions {
  /** Where in thisUpdate→nextUpdate to refresh. Default 0.5 (the middle). */
  refreshFraction?: number;
  /** Jitter around that point, as a fraction of the validity window (±). Default 0.1. */
  jitterFraction?: number;
  /** Never refresh sooner than this after a fetch (a responder that answers with old pre-signed responses). Default 10 s. */
  minRefreshMs?: number;
  /** Refresh at least this often, however long the staple is valid. Default 1 day. */
  maxRefreshMs?: number;
  /** Refresh interval for an answer without nextUpdate (which Envoy treats as expired at once). Default 5 min. */
  noNextUpdateRefreshMs?: number;
  /** First retry after a failure. Default 5 s. */
  retryBaseMs?: number;
  /** Retries back off up to this. Default 5 min. */
  retryMaxMs?: number;
}

export interface ResolvedStapleSchedule {
  refreshFraction: number;
  jitterFraction: number;
  minRefreshMs: number;
  maxRefreshMs: number;
  noNextUpdateRefreshMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
}

export const DEFAULT_STAPLE_SCHEDULE: ResolvedStapleSchedule = {
  refreshFraction: 0.5,
  jitterFraction: 0.1,
  minRefreshMs: 10_000,
  maxRefreshMs: 86_400_000,
  noNextUpdateRefreshMs: 300_000,
  retryBaseMs: 5_000,
  retryMaxMs: 300_000,
};

export function resolveStapleSchedule(options: StapleScheduleOptions = {}): ResolvedStapleSchedule {
  const s = { ...DEFAULT_STAPLE_SCHEDULE };
  for (const [k, v] of Object.entries(options) as Array<[keyof ResolvedStapleSchedule, number | undefined]>) if (v !== undefined) s[k] = v;
  if (!(s.refreshFraction > 0 && s.refreshFraction < 1)) throw new RangeError(`refreshFraction ${s.refreshFraction}: expected between 0 and 1`);
  if (!(s.jitterFraction >= 0 && s.jitterFraction < Math.min(s.refreshFraction, 1 - s.refreshFraction))) {
    throw new RangeError(`jitterFraction ${s.jitterFraction}: expected at least 0 and below min(refreshFraction, 1 - refreshFraction)`);
  }
  if (!(s.retryBaseMs > 0 && s.retryMaxMs >= s.retryBaseMs)) throw new RangeError('retryBaseMs must be > 0 and retryMaxMs >= retryBaseMs');
  return s;
}

/** A uniform number in [0, 1), as Math.random. */
export type RandomSource = () => number;

/**
 * The instant to fetch again after a successful fetch at `fetchedAt`: thisUpdate + refreshFraction × validity,
 * ± jitterFraction × validity. When that point is already (nearly) past — a responder serving pre-signed answers
 * whose window started long ago — the same fraction of what remains of it, so that the responder is not asked
 * again and again for the answer it already gave. Bounded by [fetchedAt + minRefreshMs, fetchedAt + maxRefreshMs],
 * and never after nextUpdate.
 */
export function nextRefreshAt(
  staple: { thisUpdate: Date; nextUpdate: Date | null },
  fetchedAt: Date,
  random: RandomSource,
  schedule: ResolvedStapleSchedule = DEFAULT_STAPLE_SCHEDULE,
): Date {
  const now = fetchedAt.getTime();
  const lo = now + schedule.minRefreshMs;
  const hi = now + schedule.maxRefreshMs;
  if (!staple.nextUpdate) return new Date(Math.min(hi, Math.max(lo, now + schedule.noNextUpdateRefreshMs)));
  const next = staple.nextUpdate.getTime();
  const jitter = random() * 2 - 1;
  let start = staple.thisUpdate.getTime();
  let t = start + (next - start) * (schedule.refreshFraction + jitter * schedule.jitterFraction);
  if (t < lo) {
    start = Math.min(now, next);
    t = start + (next - start) * (schedule.refreshFraction + jitter * schedule.jitterFraction);
  }
  t = Math.min(Math.max(t, lo), hi);
  // A window shorter than minRefreshMs: still refresh before the staple runs out.
  if (t >= next && next > now) t = now + (next - now) * schedule.refreshFraction;
  return new Date(Math.round(t));
}

/**
 * Delay before retry number `failures` (1 for the first retry): retryBaseMs × 2^(failures-1), capped at
 * retryMaxMs, with "equal jitter" (half fixed, half random) so that retries spread out but never come at once.
 */
export function retryDelayMs(failures: number, random: RandomSource, schedule: ResolvedStapleSchedule = DEFAULT_STAPLE_SCHEDULE): number {
  const n = Math.max(1, Math.floor(failures));
  const exp = Math.min(schedule.retryMaxMs, schedule.retryBaseMs * 2 ** Math.min(n - 1, 40));
  return Math.round(exp / 2 + random() * (exp / 2));
}
