import assert from 'node:assert/strict';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StapleCache, chooseStaple, stapleKey, type StapleRecord } from '../../src/secrets/index.js';
import { TestCA, tempDir } from '../helpers/test-ca.js';
import { gatewayPki, makeStaple, type GatewayPki } from '../sds/secret-fixtures.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const tmp = tempDir('meshcert-staple-cache-');
let pki: GatewayPki;
after(() => tmp.cleanup());
before(async () => {
  pki = await gatewayPki();
});

function record(der: Buffer, at: Date, nextUpdate: Date | null): StapleRecord {
  return {
    certificate: { serial: pki.leaf.cert.serial, subject: pki.leaf.cert.subject, issuer: pki.leaf.cert.issuer },
    secrets: ['gw'],
    staple: { der, url: 'http://ocsp.example/', fetchedAt: at, status: 'good', thisUpdate: at, nextUpdate },
    lastAttempt: { at, result: 'good', url: 'http://ocsp.example/', message: null, latencyMs: 3.25 },
    lastSuccessAt: at,
    consecutiveFailures: 0,
    nextAttemptAt: new Date(at.getTime() + HOUR),
  };
}

describe('the on-disk staple cache', () => {
  test('a record round-trips through a 0644 JSON file, written atomically', async () => {
    const cache = new StapleCache(join(tmp.dir, 'rt'));
    const key = stapleKey(pki.leaf.cert, pki.ca.cert);
    const der = await makeStaple(pki.ca, pki.leaf.cert);
    const at = new Date('2030-01-01T00:00:00Z');
    cache.write(key, record(der, at, new Date(at.getTime() + HOUR)));
    assert.deepEqual(readdirSync(cache.dir), [`${key}.json`]);
    assert.equal(statSync(join(cache.dir, `${key}.json`)).mode & 0o777, 0o644);
    const back = cache.read(key)!;
    assert.ok(back.staple!.der.equals(der));
    assert.equal(back.staple!.nextUpdate!.toISOString(), '2030-01-01T01:00:00.000Z');
    assert.equal(back.lastAttempt!.result, 'good');
    assert.equal(back.nextAttemptAt!.toISOString(), '2030-01-01T01:00:00.000Z');
    assert.equal(cache.read('0'.repeat(40)), null);
  });

  test('a corrupt or foreign file reads as no record', () => {
    const cache = new StapleCache(join(tmp.dir, 'bad'));
    cache.write('a'.repeat(40), record(Buffer.from([0x30]), new Date(), null));
    writeFileSync(join(cache.dir, `${'a'.repeat(40)}.json`), '{"version": 1, "staple": ');
    writeFileSync(join(cache.dir, `${'b'.repeat(40)}.json`), JSON.stringify({ version: 7 }));
    assert.equal(cache.read('a'.repeat(40)), null);
    assert.equal(cache.read('b'.repeat(40)), null);
    assert.equal(cache.list().size, 0);
  });

  test('prune drops only untracked records older than the limit', () => {
    const cache = new StapleCache(join(tmp.dir, 'prune'));
    const old = new Date('2030-01-01T00:00:00Z');
    cache.write('1'.repeat(40), record(Buffer.from([1]), old, old));
    cache.write('2'.repeat(40), record(Buffer.from([2]), old, old));
    cache.write('3'.repeat(40), record(Buffer.from([3]), new Date('2030-02-01T00:00:00Z'), null));
    const removed = cache.prune(new Set(['2'.repeat(40)]), new Date('2030-01-15T00:00:00Z'));
    assert.equal(removed, 1);
    assert.deepEqual([...cache.list().keys()].sort(), ['2'.repeat(40), '3'.repeat(40)]);
  });
});

describe('which staple is served: the secret\'s own or the fetched one', () => {
  const now = () => new Date();
  const choose = (user: Buffer | null, fetched: Buffer | null) => chooseStaple({ leaf: pki.leaf.cert, issuer: pki.ca.cert, user, fetched, at: now() });

  test('a fresher valid fetched staple wins; an older one does not', async () => {
    const t = Date.now();
    const own = await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(t - 10 * MIN), nextUpdate: new Date(t + HOUR) });
    const newer = await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(t - MIN), nextUpdate: new Date(t + HOUR) });
    const older = await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(t - 20 * MIN), nextUpdate: new Date(t + HOUR) });
    assert.equal(choose(own, newer), 'fetched');
    assert.equal(choose(own, older), 'user');
    assert.equal(choose(null, older), 'fetched');
  });

  test('a valid staple beats an expired one; a revoked answer beats an older good one', async () => {
    const t = Date.now();
    const expired = await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(t - 2 * HOUR), nextUpdate: new Date(t - HOUR) });
    const valid = await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(t - 3 * HOUR), nextUpdate: new Date(t + HOUR) });
    const revoked = await makeStaple(pki.ca, pki.leaf.cert, { status: { revoked: { at: new Date(t - 2 * MIN) } }, thisUpdate: new Date(t - MIN) });
    assert.equal(choose(valid, expired), 'user');
    assert.equal(choose(expired, valid), 'fetched');
    assert.equal(choose(valid, revoked), 'fetched');
  });

  test('a fetched staple that does not verify (tampered cache) is never chosen', async () => {
    const forged = await makeStaple(pki.ca, pki.leaf.cert, { signer: await TestCA.root({ name: 'forger' }) });
    assert.equal(choose(null, forged), 'user');
    assert.equal(choose(null, Buffer.from('garbage')), 'user');
  });
});
