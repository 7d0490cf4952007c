import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock, isMeshError } from '../core/index.js';
import { DEFAULT_ROTATION_POLICY, MIN_RETRY_MS, RotationScheduler, renewalDelayMs, retryDelayMs } from './rotation-scheduler.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const S = 1000;

test('renewal comes at renew-at of the lifetime counted from receipt, not from a backdated notBefore', () => {
  const clock = new ManualClock(T0);
  const s = new RotationScheduler({ clock, policy: { renewAt: 0.66, jitter: 0 } });
  // A 24 s certificate whose notBefore the CA backdated by 60 s: counted from notBefore it would be "used up".
  const at = s.issued(new Date(T0 + 24 * S));
  assert.equal(at.getTime() - T0, Math.floor(24 * S * 0.66));
  assert.deepEqual(s.next(), { action: 'renew', at });
  assert.equal(s.delayUntil(s.next()), Math.floor(24 * S * 0.66));
  clock.advance(20 * S);
  assert.equal(s.delayUntil(s.next()), 0);
});

test('jitter only brings renewal earlier, within jitter × renew-at of the lifetime', () => {
  const policy = { ...DEFAULT_ROTATION_POLICY, renewAt: 0.5, jitter: 0.2 };
  const recv = new Date(T0);
  const notAfter = new Date(T0 + 100 * S);
  assert.equal(renewalDelayMs(recv, notAfter, policy, () => 0), 50 * S);
  assert.equal(renewalDelayMs(recv, notAfter, policy, () => 0.999999), Math.floor(100 * S * 0.5 * (1 - 0.2 * 0.999999)));
  const samples = Array.from({ length: 200 }, () => renewalDelayMs(recv, notAfter, policy));
  assert.ok(samples.every((d) => d >= 40 * S && d <= 50 * S), `${Math.min(...samples)}..${Math.max(...samples)}`);
  assert.ok(new Set(samples).size > 100, 'renewal times are spread');
});

test('retries back off exponentially with jitter, capped, and never past a quarter of the time left', () => {
  const policy = { ...DEFAULT_ROTATION_POLICY, backoffInitialMs: 1000, backoffMaxMs: 8000 };
  // Equal jitter: between half and all of the exponential delay.
  assert.equal(retryDelayMs(1, policy, null, () => 0), 500);
  assert.equal(retryDelayMs(1, policy, null, () => 1), 1000);
  assert.equal(retryDelayMs(3, policy, null, () => 1), 4000);
  assert.equal(retryDelayMs(4, policy, null, () => 1), 8000);
  assert.equal(retryDelayMs(40, policy, null, () => 1), 8000);
  assert.equal(retryDelayMs(40, policy, 12_000, () => 1), 3000);
  assert.equal(retryDelayMs(40, policy, 10, () => 1), MIN_RETRY_MS);
});

test('a failed renewal is retried while the certificate is served; its expiry comes first when retries run past it', () => {
  const clock = new ManualClock(T0);
  const s = new RotationScheduler({ clock, policy: { renewAt: 0.5, jitter: 0, backoffInitialMs: 4000, backoffMaxMs: 4000 }, random: () => 1 });
  assert.equal(s.next().action, 'renew');
  assert.equal(s.next().at.getTime(), T0, 'nothing held: get one at once');
  const notAfter = new Date(T0 + 10 * S);
  s.issued(notAfter);
  clock.set(T0 + 5 * S);
  assert.equal(s.holdsValid(), true);
  // 5 s left: the retry waits at most 1.25 s instead of 4 s.
  assert.equal(s.failed().getTime(), T0 + 5 * S + 1250);
  assert.equal(s.failures, 1);
  clock.set(T0 + 9 * S);
  assert.equal(s.failed().getTime(), T0 + 9 * S + 250);
  clock.set(T0 + 9900);
  const retry = s.failed();
  assert.equal(retry.getTime(), T0 + 9900 + MIN_RETRY_MS);
  // The retry is due at notAfter: expiry is acted upon first (stop serving), then retries go on at full backoff.
  assert.deepEqual(s.next(), { action: 'expire', at: notAfter });
  clock.set(notAfter);
  assert.equal(s.holdsValid(), false);
  s.expiredHandled();
  assert.deepEqual(s.next(), { action: 'renew', at: retry });
  clock.set(T0 + 11 * S);
  assert.equal(s.failed().getTime(), T0 + 11 * S + 4000);
  // Success resets the failure count.
  s.issued(new Date(T0 + 31 * S));
  assert.equal(s.failures, 0);
  assert.equal(s.next().at.getTime(), T0 + 11 * S + 10 * S);
});

test('renewNow asks for an attempt at once; bad policies are refused with the option named', () => {
  const clock = new ManualClock(T0);
  const s = new RotationScheduler({ clock, policy: { jitter: 0 } });
  s.issued(new Date(T0 + 3600 * S));
  assert.ok(s.delayUntil(s.next()) > 0);
  s.renewNow();
  assert.equal(s.delayUntil(s.next()), 0);
  for (const [policy, field] of [
    [{ renewAt: 1 }, '--renew-at'],
    [{ renewAt: 0 }, '--renew-at'],
    [{ jitter: 1 }, '--renew-jitter'],
    [{ backoffMaxMs: 10 }, 'backoffMaxMs'],
  ] as const) {
    assert.throws(() => new RotationScheduler({ policy }), (e) => isMeshError(e) && e.subject === field && e.message.startsWith(field));
  }
});
