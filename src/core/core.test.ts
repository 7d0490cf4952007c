import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, ManualClock, MeshError, formatDuration, isMeshError, parseDuration, wholeSeconds, writeFileAtomic } from './index.js';

test('parseDuration reads Istio/Kubernetes durations', () => {
  assert.equal(parseDuration('24h'), 86_400_000);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('10y'), 10 * 365 * 86_400_000);
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('1.5h'), 5_400_000);
  assert.equal(parseDuration('250ms'), 250);
});

test('parseDuration rejects garbage with the field named', () => {
  for (const bad of ['', 'bogus', '24', 'h', '1x', '-1h', '0s', '1h 30m']) {
    assert.throws(
      () => parseDuration(bad, '--ttl'),
      (e: unknown) => isMeshError(e, ErrorCodes.DURATION) && e.message.startsWith('--ttl:'),
      bad,
    );
  }
});

test('formatDuration is the inverse for round values', () => {
  for (const s of ['1d', '1h30m', '10y', '7d', '45s', '2d3h']) assert.equal(formatDuration(parseDuration(s)), s);
});

test('MeshError carries a stable code and serialises without the stack', () => {
  const e = new MeshError(ErrorCodes.CSR_SIGNATURE, 'req.csr: bad', { subject: 'req.csr' });
  assert.deepEqual(e.toJSON(), { code: 'MESH_ERR_CSR_SIGNATURE', message: 'req.csr: bad', subject: 'req.csr' });
  assert.ok(isMeshError(e, ErrorCodes.CSR_SIGNATURE));
  assert.ok(!isMeshError(new Error('x')));
});

test('ManualClock and wholeSeconds', () => {
  const c = new ManualClock(new Date('2026-01-01T00:00:00.999Z'));
  c.advance(1500);
  assert.equal(c.now().toISOString(), '2026-01-01T00:00:02.499Z');
  assert.equal(wholeSeconds(c.now()).toISOString(), '2026-01-01T00:00:02.000Z');
});

test('writeFileAtomic replaces whole files, sets the mode, leaves no temp files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshcert-core-'));
  try {
    const p = join(dir, 'sub', 'key.pem');
    writeFileAtomic(p, 'one', { mode: 0o600 });
    assert.equal(readFileSync(p, 'utf8'), 'one');
    assert.equal(statSync(p).mode & 0o777, 0o600);
    writeFileAtomic(p, new Uint8Array([116, 119, 111]));
    assert.equal(readFileSync(p, 'utf8'), 'two');
    assert.throws(() => writeFileAtomic(p, 'three', { exclusive: true }), (e: unknown) => isMeshError(e, ErrorCodes.FILE_WRITE));
    assert.equal(readFileSync(p, 'utf8'), 'two');
    assert.deepEqual(readdirSync(join(dir, 'sub')), ['key.pem']);
    // A folder in the way: the error names the path and the old content stays.
    writeFileSync(join(dir, 'file'), 'x');
    assert.throws(() => writeFileAtomic(join(dir, 'file', 'inner'), 'y'), (e: unknown) => isMeshError(e, ErrorCodes.FILE_WRITE) && e.message.includes('inner'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
