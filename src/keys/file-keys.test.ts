import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { generateKeyPair, keysMatch } from '../pki/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import { readKeyFile, writeKeyFile } from './index.js';

test('keys are written 0600 and read back; loose modes are reported', () => {
  const t = tempDir();
  try {
    const kp = generateKeyPair('ec-p256');
    const p = t.file('ca-key.pem');
    writeKeyFile(p, kp.privateKey);
    assert.equal(statSync(p).mode & 0o777, 0o600);
    const back = readKeyFile(p);
    assert.ok(keysMatch(back.key, kp.publicKey));
    assert.equal(back.looseMode, null);
    chmodSync(p, 0o644);
    assert.equal(readKeyFile(p).looseMode, 0o644);
    assert.throws(() => writeKeyFile(p, kp.privateKey, { exclusive: true }), (e: unknown) => isMeshError(e, ErrorCodes.FILE_WRITE));
  } finally {
    t.cleanup();
  }
});

test('encrypted keys: openssl reads ours, we need the passphrase', () => {
  const t = tempDir();
  try {
    const kp = generateKeyPair('rsa-2048');
    const p = t.file('enc.pem');
    writeKeyFile(p, kp.privateKey, { passphrase: 'correct horse' });
    assert.match(readFileSync(p, 'utf8'), /BEGIN ENCRYPTED PRIVATE KEY/);
    const pub = execFileSync('openssl', ['pkey', '-in', p, '-passin', 'pass:correct horse', '-pubout'], { encoding: 'utf8' });
    assert.equal(pub, kp.publicKey.export({ format: 'pem', type: 'spki' }));
    assert.throws(() => readKeyFile(p), (e: unknown) => isMeshError(e, ErrorCodes.KEY_PARSE) && e.message.startsWith(p));
    assert.throws(() => readKeyFile(p, 'wrong'), (e: unknown) => isMeshError(e, ErrorCodes.KEY_PARSE));
    assert.ok(keysMatch(readKeyFile(p, 'correct horse').key, kp.publicKey));
    assert.throws(() => readKeyFile(t.file('missing.pem')), (e: unknown) => isMeshError(e, ErrorCodes.FILE_READ) && e.message.includes('missing.pem'));
  } finally {
    t.cleanup();
  }
});
