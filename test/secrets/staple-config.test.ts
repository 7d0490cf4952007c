import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configError, sdsConfigSchema } from '../../src/config/index.js';

function problems(input: unknown): string[] {
  const r = sdsConfigSchema.safeParse(input);
  assert.equal(r.success, false, 'expected the section to be refused');
  return r.success ? [] : (configError('serve.yaml', r.error).details!.problems as string[]);
}

test('sds.staples parses to milliseconds; absent means the defaults', () => {
  const c = sdsConfigSchema.parse({ secrets: 's', staples: { fetch: 'all', timeout: '3s', nonce: true, maxRetryInterval: '10m' } });
  assert.deepEqual(c.staples, { fetch: 'all', timeout: 3_000, nonce: true, maxRetryInterval: 600_000 });
  assert.equal(sdsConfigSchema.parse({ secrets: 's' }).staples, undefined);
});

test('sds.staples mistakes are named by field path', () => {
  assert.deepEqual(problems({ secrets: 's', staples: { fetch: 'sometimes' } }), ['staples.fetch: expected wanted, all or off']);
  assert.deepEqual(problems({ secrets: 's', staples: { timeout: '10m' } }), ['staples.timeout: expected between 100ms and 2m']);
  assert.deepEqual(problems({ secrets: 's', staples: { maxRetryInterval: '1s' } }), ['staples.maxRetryInterval: expected at least 5s']);
  assert.deepEqual(problems({ secrets: 's', staples: { refresh: '1h' } }), ['staples.refresh: unknown field']);
});
