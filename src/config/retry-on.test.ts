import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseGatewayFile } from './gateway-file.js';
import { DEFAULT_RETRY_ON, parseRetryOn } from './retry-on.js';

test("retryOn as Istio reads it: Envoy's conditions, gRPC status names, HTTP status numbers", () => {
  const p = parseRetryOn('5xx, Reset,503,429,unavailable,deadline-exceeded');
  assert.deepEqual([...p.conditions].sort(), ['5xx', 'reset', 'retriable-status-codes']);
  assert.deepEqual([...p.statuses].sort(), [429, 503]);
  assert.deepEqual([...p.grpcCodes].sort((a, b) => a - b), [4, 14]);
  assert.deepEqual(p.unknown, []);
  // Istio's default: retriable-status-codes with no number means 503.
  const d = parseRetryOn(DEFAULT_RETRY_ON);
  assert.deepEqual([...d.statuses], [503]);
  assert.deepEqual([...d.grpcCodes].sort((a, b) => a - b), [1, 14]);
  assert.deepEqual(parseRetryOn('5xx,retry-on-everything').unknown, ['retry-on-everything']);
});

test('an unknown retry condition is a config error naming the field', () => {
  const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: ["*"]
  http:
  - retries: { attempts: 2, retryOn: "5xx,sometimes" }
    route: [{ destination: { host: a } }]
`;
  assert.throws(() => parseGatewayFile(yaml, 'gw.yaml'), (err: Error) => /http\.0\.retries\.retryOn|http\[0\]\.retries\.retryOn/.test(err.message) && /"sometimes"/.test(err.message));
});
