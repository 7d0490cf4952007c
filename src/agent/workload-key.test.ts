import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { Csr, describeKey, keysMatch, parsePrivateKey } from '../pki/index.js';
import { AGENT_KEY_TYPES, makeWorkloadKey, parseAgentKeyType } from './workload-key.js';

test('each --key type gives a fresh key and a CSR for it that asks for nothing (the CA decides the identity)', async () => {
  const seen = new Set<string>();
  for (const type of AGENT_KEY_TYPES) {
    const k = await makeWorkloadKey(type);
    assert.equal(describeKey(k.privateKey).name, type);
    const csr = Csr.parse(k.csrPem);
    assert.ok(keysMatch(k.privateKey, csr.publicKey), `${type}: the CSR is for the key`);
    assert.ok(keysMatch(parsePrivateKey(k.keyPem), csr.publicKey), `${type}: key.pem is the same key`);
    assert.match(k.keyPem, new RegExp(`^-----BEGIN ${'PRIVATE'} KEY-----\n`));
    seen.add(k.keyPem);
  }
  assert.equal(seen.size, AGENT_KEY_TYPES.length);
  const again = await makeWorkloadKey();
  assert.ok(!seen.has(again.keyPem), 'a new key every time');
  assert.throws(() => parseAgentKeyType('rsa-1024'), (e) => isMeshError(e, ErrorCodes.KEY_TYPE) && /--key: "rsa-1024" is not a workload key type/.test(e.message));
});
