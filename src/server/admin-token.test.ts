import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import { ADMIN_TOKEN_FILE, AdminToken, defaultAdminTokenFile } from './admin-token.js';

test('the default admin token file is made once, 0600, with 256 random bits; later starts keep it', () => {
  const t = tempDir('meshcert-admin-token-');
  try {
    const first = defaultAdminTokenFile(t.dir);
    assert.equal(first.path, join(t.dir, ADMIN_TOKEN_FILE));
    assert.equal(first.created, true);
    assert.equal(statSync(first.path).mode & 0o777, 0o600);
    const token = readFileSync(first.path, 'utf8').trim();
    assert.match(token, /^[0-9a-f]{64}$/);
    const again = defaultAdminTokenFile(t.dir);
    assert.equal(again.created, false);
    assert.equal(readFileSync(again.path, 'utf8').trim(), token);
  } finally {
    t.cleanup();
  }
});

test('check: the right bearer token, a wrong one, none, and a token file that goes bad (fail closed); rotation needs no restart', () => {
  const t = tempDir('meshcert-admin-token-');
  try {
    const file = t.file('token', '  s3cret-token-0123456789\n');
    const token = new AdminToken(file);
    token.load();
    assert.equal(token.check('Bearer s3cret-token-0123456789'), 'ok');
    assert.equal(token.check('bearer   s3cret-token-0123456789 '), 'ok');
    assert.equal(token.check('Bearer s3cret-token-012345678'), 'wrong');
    assert.equal(token.check('Bearer s3cret-token-0123456789x'), 'wrong');
    assert.equal(token.check('Basic czNjcmV0'), 'missing');
    assert.equal(token.check(undefined), 'missing');
    assert.equal(token.check('Bearer '), 'missing');

    writeFileSync(file, 'rotated-token-abcdefghij\n');
    assert.equal(token.check('Bearer s3cret-token-0123456789'), 'wrong');
    assert.equal(token.check('Bearer rotated-token-abcdefghij'), 'ok');

    writeFileSync(file, 'short\n');
    assert.equal(token.check('Bearer short'), 'token_file');
    assert.match(token.problem()!, /at least 16 characters/);
    assert.ok(!token.problem()!.includes('short'), 'the message never quotes the token');
    rmSync(file);
    assert.equal(token.check('Bearer rotated-token-abcdefghij'), 'token_file');
  } finally {
    t.cleanup();
  }
});

test('load() refuses a missing or weak token file with an error that names the file', () => {
  const t = tempDir('meshcert-admin-token-');
  try {
    assert.throws(() => new AdminToken(join(t.dir, 'nope')).load(), (e: unknown) => isMeshError(e, ErrorCodes.FILE_READ) && e.message.includes('nope'));
    const weak = t.file('weak', 'two words here and more\n');
    assert.throws(() => new AdminToken(weak).load(), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && e.message.includes(weak));
  } finally {
    t.cleanup();
  }
});
