// The `sds` config section lives in src/config (config imports only core); its tests sit here with the SDS code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configError, sdsConfigSchema } from '../config/index.js';

function problems(input: unknown): string[] {
  const r = sdsConfigSchema.safeParse(input);
  assert.equal(r.success, false, 'expected the section to be refused');
  return r.success ? [] : (configError('serve.yaml', r.error).details!.problems as string[]);
}

test('the full section parses: address, socket (unix: prefix accepted), files, authorization, policies', () => {
  const c = sdsConfigSchema.parse({
    listen: '127.0.0.1:15011',
    uds: 'unix:/run/meshcert/sds.sock',
    secrets: './secrets',
    clientCaFile: 'ca.pem',
    certFile: 'sds.pem',
    keyFile: 'sds-key.pem',
    authorization: { 'spiffe://cluster.local/ns/istio-system/sa/ingress-*': ['kubernetes://ingress-*'] },
    ocspPolicies: { 'ingress-cert': 'mandatory' },
  });
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 15011 });
  assert.equal(c.uds, '/run/meshcert/sds.sock');
  assert.deepEqual(c.ocspPolicies, { 'ingress-cert': 'MANDATORY' });
});

test('only secrets is required (a Unix socket alone is fine)', () => {
  const c = sdsConfigSchema.parse({ secrets: '/etc/secrets', uds: '/tmp/sds.sock' });
  assert.equal(c.listen, undefined);
  assert.match(problems({})[0]!, /^secrets: /);
});

test('mistakes are named by field path', () => {
  assert.deepEqual(problems({ secrets: 's', listen: 'nope' }), ['listen: "nope" is not HOST:PORT (e.g. 127.0.0.1:15012, [::1]:15012, 0.0.0.0:0)']);
  assert.deepEqual(problems({ secrets: 's', listen: '127.0.0.1:1', certFile: 'a.pem' }), ['keyFile: give certFile and keyFile together']);
  assert.deepEqual(problems({ secrets: 's', certFile: 'a', keyFile: 'b' }), ['certFile: certFile and keyFile are the certificate of `listen`; set listen too']);
  assert.deepEqual(problems({ secrets: 's', clientCaFile: 'ca.pem' }), ['clientCaFile: client certificates are asked for on `listen`; set listen too']);
  assert.deepEqual(problems({ secrets: 's', listen: '127.0.0.1:1', authorization: { x: ['y'] } }), [
    'authorization: authorization needs clientCaFile: identities come from client certificates',
  ]);
  assert.match(problems({ secrets: 's', ocspPolicies: { gw: 'ALWAYS' } })[0]!, /^ocspPolicies.gw: expected OPTIONAL, PREFERRED or MANDATORY/);
  assert.match(problems({ secrets: 's', listen: '127.0.0.1:1', clientCaFile: 'c', authorization: { 'spiffe://*/x': ['a'] } }).join('\n'), /"\*" may only end a pattern/);
  assert.deepEqual(problems({ secrets: 's', port: 1 }), ['port: unknown field']);
});
