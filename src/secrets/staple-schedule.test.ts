import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_STAPLE_SCHEDULE, nextRefreshAt, resolveStapleSchedule, retryDelayMs } from './staple-schedule.js';

const H = 3_600_000;
const T0 = Date.parse('2030-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0 + ms);
const fixed = (x: number) => () => x;

describe('refresh at half of thisUpdate→nextUpdate, with jitter', () => {
  const staple = { thisUpdate: at(0), nextUpdate: at(4 * H) };

  test('no jitter draw (0.5): exactly the middle', () => {
    assert.equal(nextRefreshAt(staple, at(1000), fixed(0.5)).getTime(), T0 + 2 * H);
  });

  test('jitter spans ±10% of the validity and no more', () => {
    assert.equal(nextRefreshAt(staple, at(1000), fixed(0)).getTime(), T0 + 0.4 * 4 * H);
    assert.equal(nextRefreshAt(staple, at(1000), fixed(0.999999)).getTime(), Math.round(T0 + (0.5 + 0.999998 * 0.1) * 4 * H));
    for (let i = 0; i < 200; i++) {
      const t = nextRefreshAt(staple, at(1000), Math.random).getTime() - T0;
      assert.ok(t >= 0.4 * 4 * H && t <= 0.6 * 4 * H, `${t}`);
    }
  });

  test('an old pre-signed answer (its middle already past): the middle of what remains', () => {
    const old = { thisUpdate: at(-3 * H), nextUpdate: at(H) };
    assert.equal(nextRefreshAt(old, at(0), fixed(0.5)).getTime(), T0 + H / 2);
  });

  test('never sooner than minRefreshMs, never later than maxRefreshMs', () => {
    const s = resolveStapleSchedule({ minRefreshMs: 60_000, maxRefreshMs: H });
    const short = { thisUpdate: at(0), nextUpdate: at(90_000) };
    assert.equal(nextRefreshAt(short, at(0), fixed(0.5), s).getTime(), T0 + 60_000);
    const long = { thisUpdate: at(0), nextUpdate: at(7 * 24 * H) };
    assert.equal(nextRefreshAt(long, at(0), fixed(0.5), s).getTime(), T0 + H);
  });

  test('a window shorter than minRefreshMs is still refreshed before it runs out', () => {
    const tiny = { thisUpdate: at(0), nextUpdate: at(4_000) };
    const t = nextRefreshAt(tiny, at(0), fixed(0.5)).getTime();
    assert.ok(t > T0 && t < T0 + 4_000, `${t - T0}`);
  });

  test('no nextUpdate: refreshed after noNextUpdateRefreshMs', () => {
    assert.equal(nextRefreshAt({ thisUpdate: at(0), nextUpdate: null }, at(0), fixed(0.5)).getTime(), T0 + DEFAULT_STAPLE_SCHEDULE.noNextUpdateRefreshMs);
  });
});

describe('retries: capped exponential backoff with equal jitter', () => {
  const s = resolveStapleSchedule({ retryBaseMs: 1_000, retryMaxMs: 60_000 });

  test('doubles from the base, then stays at the cap', () => {
    const top = [1, 2, 3, 4, 5, 6, 7, 8, 20, 1000].map((n) => retryDelayMs(n, fixed(0.999999999), s));
    assert.deepEqual(top, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]);
  });

  test('jitter keeps at least half of the delay', () => {
    assert.deepEqual([1, 2, 3, 7].map((n) => retryDelayMs(n, fixed(0), s)), [500, 1_000, 2_000, 30_000]);
    for (let i = 0; i < 200; i++) {
      const d = retryDelayMs(4, Math.random, s);
      assert.ok(d >= 4_000 && d <= 8_000, `${d}`);
    }
  });

  test('nonsense settings are refused up front', () => {
    assert.throws(() => resolveStapleSchedule({ refreshFraction: 1 }), /refreshFraction/);
    assert.throws(() => resolveStapleSchedule({ jitterFraction: 0.6 }), /jitterFraction/);
    assert.throws(() => resolveStapleSchedule({ retryBaseMs: 10, retryMaxMs: 5 }), /retryMaxMs/);
  });
});
