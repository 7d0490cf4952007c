import assert from 'node:assert/strict';
import { mkdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { tempDir } from '../../test/helpers/test-ca.js';
import { writeMountedSecret } from '../../test/sds/secret-fixtures.js';
import { isMountedSecretDir, listOrigins, mountedSecretSignature, readMountedSecret } from './index.js';

const tmp = tempDir('meshcert-mounted-');
after(() => tmp.cleanup());

test('the kubelet layout: keys read through ..data, hidden entries are not keys', () => {
  const dir = join(tmp.dir, 'gw');
  writeMountedSecret(dir, { 'tls.crt': 'CERT1', 'tls.key': 'KEY1', 'tls.ocsp-staple': Buffer.from([1, 2, 3]) });
  assert.ok(isMountedSecretDir(dir));
  const read = readMountedSecret(dir);
  assert.ok(read.ok);
  assert.equal(read.secret.name, 'gw');
  assert.equal(read.secret.type, 'kubernetes.io/tls');
  assert.equal(read.secret.layout, 'mounted');
  assert.deepEqual([...read.secret.data.keys()], ['tls.crt', 'tls.key', 'tls.ocsp-staple']);
  assert.deepEqual([...read.secret.data.get('tls.ocsp-staple')!], [1, 2, 3]);
});

test('the ..data swap changes the signature and the next read sees the new version whole', () => {
  const dir = join(tmp.dir, 'swap');
  writeMountedSecret(dir, { 'tls.crt': 'CERT1', 'tls.key': 'KEY1' });
  const before = mountedSecretSignature(dir);
  const firstTarget = readlinkSync(join(dir, '..data'));
  writeMountedSecret(dir, { 'tls.crt': 'CERT2', 'tls.key': 'KEY2', 'ca.crt': 'CA2' });
  assert.notEqual(readlinkSync(join(dir, '..data')), firstTarget);
  assert.notEqual(mountedSecretSignature(dir), before);
  const read = readMountedSecret(dir);
  assert.ok(read.ok);
  assert.deepEqual(
    Object.fromEntries([...read.secret.data].map(([k, v]) => [k, v.toString()])),
    { 'ca.crt': 'CA2', 'tls.crt': 'CERT2', 'tls.key': 'KEY2' },
  );
  // Unchanged folder, unchanged signature: an unchanged secret is not re-parsed.
  assert.equal(mountedSecretSignature(dir), mountedSecretSignature(dir));
});

test('a plain folder of key files is a mounted secret too; a folder of folders is not', () => {
  const plain = join(tmp.dir, 'plain');
  mkdirSync(plain);
  writeFileSync(join(plain, 'cert'), 'C');
  writeFileSync(join(plain, 'key'), 'K');
  writeFileSync(join(plain, '.cert.swp'), 'editor');
  assert.ok(isMountedSecretDir(plain));
  const read = readMountedSecret(plain);
  assert.ok(read.ok);
  assert.equal(read.secret.type, 'Opaque');
  assert.deepEqual([...read.secret.data.keys()], ['cert', 'key']);
  assert.equal(isMountedSecretDir(tmp.dir), false);
});

test('listing a folder: manifests and mounted secret folders, hidden names skipped', () => {
  const root = join(tmp.dir, 'listing');
  mkdirSync(root);
  writeFileSync(join(root, 'a.yaml'), '');
  writeFileSync(join(root, 'b.json'), '');
  writeFileSync(join(root, 'README.md'), '');
  writeFileSync(join(root, '.a.yaml.swp'), '');
  writeMountedSecret(join(root, 'mounted'), { 'tls.crt': 'C', 'tls.key': 'K' });
  const listing = listOrigins([root, join(tmp.dir, 'missing')]);
  assert.deepEqual(
    listing.origins.map((o) => [o.path.slice(root.length + 1), o.kind]),
    [
      ['a.yaml', 'manifest'],
      ['b.json', 'manifest'],
      ['mounted', 'mounted'],
    ],
  );
  assert.deepEqual(listing.watchDirs, [root, join(root, 'mounted')]);
  assert.equal(listing.problems.length, 1);
  assert.match(listing.problems[0]!.problem.message, /missing: no such file or folder/);
});
