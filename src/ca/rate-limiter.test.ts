import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, ManualClock, isMeshError } from '../core/index.js';
import { RateLimiter } from './rate-limiter.js';

describe('RateLimiter', () => {
  test('a token bucket per key: burst, then the sustained rate, with a retry time; other keys unaffected', () => {
    const clock = new ManualClock(0);
    const rl = new RateLimiter({ perSecond: 2, burst: 3, clock });
    for (let i = 0; i < 3; i++) rl.take('a');
    assert.deepEqual(rl.tryTake('a'), { ok: false, retryAfterMs: 500 });
    assert.throws(() => rl.take('a'), (e: unknown) =>
      isMeshError(e, ErrorCodes.RATE_LIMITED) && e.message === 'too many certificate requests for a: the limit is 2/s with bursts of 3; retry in 0.50 s' && e.details?.retryAfterMs === 500);
    rl.take('b'); // another identity has its own bucket
    clock.advance(250);
    assert.deepEqual(rl.tryTake('a'), { ok: false, retryAfterMs: 250 });
    clock.advance(250);
    rl.take('a');
    assert.equal(rl.tryTake('a').ok, false);
    clock.advance(10_000); // refills to the burst, not beyond
    for (let i = 0; i < 3; i++) rl.take('a');
    assert.equal(rl.tryTake('a').ok, false);
    clock.advance(-5_000); // a clock stepping back does not refill
    assert.equal(rl.tryTake('a').ok, false);
  });

  test('memory is bounded: idle full buckets are dropped, and past maxKeys the least recently used go', () => {
    const clock = new ManualClock(0);
    const rl = new RateLimiter({ perSecond: 10, burst: 10, clock, maxKeys: 100 });
    for (let i = 0; i < 50; i++) rl.take(`id-${i}`);
    assert.equal(rl.size, 50);
    clock.advance(1_000); // every bucket has refilled: each call now drops a few of them
    for (let i = 0; i < 20; i++) rl.tryTake('busy');
    assert.equal(rl.size, 1); // only 'busy' is left
    for (let i = 0; i < 10_000; i++) rl.tryTake(`flood-${i}`);
    assert.ok(rl.size <= 100, `size ${rl.size}`);
    assert.throws(() => new RateLimiter({ perSecond: 0, burst: 1 }), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /perIdentityPerSecond/.test(e.message));
    assert.throws(() => new RateLimiter({ perSecond: 1, burst: 0 }), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /burst/.test(e.message));
  });
});
