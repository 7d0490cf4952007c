import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  KeyPool,
  LruCache,
  MimicMinter,
  SpliceRules,
  accessRule,
  headerFilter,
  initBumpCa,
  loadBumpCa,
  loadFilterModule,
  readUpstreamCertificate,
  runRequestFilters,
  runResponseFilters,
  untrustedCa,
  type BumpCa,
  type BumpHttpRequest,
} from '../../src/bump/index.js';
import { ManualClock, isMeshError } from '../../src/core/index.js';
import { Certificate } from '../../src/pki/index.js';
import { TestCA, tempDir } from '../helpers/test-ca.js';

const DAY = 86_400_000;

describe('mimic minting', () => {
  let tmp: ReturnType<typeof tempDir>;
  let ca: BumpCa;
  let publicCa: TestCA;
  let pool: KeyPool;

  before(async () => {
    tmp = tempDir('meshcert-bump-unit-');
    ca = await initBumpCa(`${tmp.dir}/ca`);
    publicCa = await TestCA.root({ name: 'public' });
    pool = new KeyPool({ size: 2, prefill: ['ec-p256', 'ec-p384', 'rsa-2048'], blankContexts: 2 });
    await pool.ready(['ec-p256', 'ec-p384', 'rsa-2048']);
  });
  after(() => {
    pool.close();
    tmp.cleanup();
  });

  const minter = async (options: { clock?: ManualClock; cacheSize?: number; maxValidityMs?: number; ca?: BumpCa } = {}): Promise<MimicMinter> =>
    new MimicMinter({ ca: options.ca ?? ca, untrustedCa: await untrustedCa(), keyPool: pool, ...options });

  it('copies subject (escapes included), SANs and key class; no CA bit, EKU serverAuth, signed by the bumping CA', async () => {
    const up = await publicCa.issueServer(['shop.example', 'www.shop.example'], {
      subject: [
        ['C', 'US'],
        ['O', 'Shop, Inc. + "Friends"'],
        ['CN', 'shop.example'],
      ],
      sans: [
        { type: 'dns', value: 'shop.example' },
        { type: 'dns', value: 'www.shop.example' },
        { type: 'ip', value: '192.0.2.7' },
      ],
    });
    const m = await minter();
    const { mimic, cached } = await m.mimicFor(new X509Certificate(up.cert.der), 'shop.example', true);
    assert.equal(cached, false);
    const c = Certificate.fromDer(mimic.der);
    assert.equal(c.subject, up.cert.subject);
    assert.deepEqual(c.sans, up.cert.sans);
    assert.ok(c.isIssuedBy(ca.cert));
    assert.equal(c.isCA, false);
    assert.deepEqual(c.extKeyUsageNames, ['serverAuth']);
    assert.equal(c.key.name, 'ec-p256');
    assert.equal(mimic.signedBy, 'bump-ca');
    // The TLS context holds the mimic with a key that matches it (OpenSSL refuses a mismatched pair when it is set).
    assert.ok(mimic.context.context);
  });

  it('mimics RSA-2048 with RSA-2048 and P-384 with P-384, from the pool', async () => {
    const m = await minter();
    for (const [keyType, expected] of [
      ['rsa-2048', 'rsa-2048'],
      ['ec-p384', 'ec-p384'],
    ] as const) {
      const typed = await publicCa.issue({ subject: `CN=${keyType}.example`, sans: [{ type: 'dns', value: `${keyType}.example` }], extKeyUsage: ['serverAuth'] }, keyType);
      const { mimic } = await m.mimicFor(new X509Certificate(typed.cert.der), `${keyType}.example`, true);
      assert.equal(Certificate.fromDer(mimic.der).key.name, expected);
    }
  });

  it('clamps validity to maxValidity and to the bumping CA', async () => {
    const clock = new ManualClock(new Date());
    const up = await publicCa.issueServer(['long.example'], { notBefore: new Date(Date.now() - 100 * DAY), notAfter: new Date(Date.now() + 300 * DAY) });
    const m = await minter({ clock, maxValidityMs: 2 * DAY });
    const { mimic } = await m.mimicFor(new X509Certificate(up.cert.der), 'long.example', true);
    assert.ok(mimic.notAfter.getTime() <= clock.now().getTime() + 2 * DAY);
    assert.ok(mimic.notAfter.getTime() - mimic.notBefore.getTime() <= 2 * DAY);
    // A bumping CA that ends in one day bounds every mimic.
    const shortDir = `${tmp.dir}/short`;
    await initBumpCa(shortDir, { validityMs: DAY });
    const shortCa = await loadBumpCa(shortDir);
    const m2 = await minter({ ca: shortCa });
    const { mimic: clamped } = await m2.mimicFor(new X509Certificate(up.cert.der), 'long.example', true);
    assert.ok(clamped.notAfter <= shortCa.cert.notAfter);
    assert.ok(clamped.notBefore >= shortCa.cert.notBefore);
  });

  it('caches by fingerprint + SNI + verdict (LRU); an untrusted verdict signs with the throwaway CA', async () => {
    const up = await publicCa.issueServer(['cache.example']);
    const x = new X509Certificate(up.cert.der);
    const m = await minter({ cacheSize: 2 });
    const first = await m.mimicFor(x, 'cache.example', true);
    const again = await m.mimicFor(new X509Certificate(up.cert.der), 'cache.example', true);
    assert.equal(again.cached, true);
    assert.equal(again.mimic.serial, first.mimic.serial);
    const otherSni = await m.mimicFor(x, 'alias.example', true);
    assert.equal(otherSni.cached, false);
    const bad = await m.mimicFor(x, 'cache.example', false);
    assert.equal(bad.cached, false);
    assert.equal(bad.mimic.signedBy, 'untrusted-ca');
    assert.ok(!Certificate.fromDer(bad.mimic.der).isIssuedBy(ca.cert));
    // Capacity 2: the first entry was evicted by the two after it.
    assert.equal(m.cache.size, 2);
    assert.equal((await m.mimicFor(x, 'cache.example', true)).cached, false);
  });

  it('reads a CN-only certificate as having no SAN', async () => {
    const up = await publicCa.issue({ subject: 'CN=nosan.example' });
    const info = readUpstreamCertificate(new X509Certificate(up.cert.der));
    assert.deepEqual(info.sans, []);
    assert.equal(info.rawSan, null);
    assert.deepEqual(info.subject, [['CN', 'nosan.example']]);
  });

  it('the key pool hands out keys without generating inline, re-using keys when the fresh ones run out', async () => {
    const p = new KeyPool({ size: 2, prefill: ['ec-p256'], blankContexts: 0 });
    await p.ready(['ec-p256']);
    const keys = Array.from({ length: 6 }, () => p.takeNow('ec-p256'));
    assert.ok(keys.every((k) => k !== null));
    assert.ok(p.reused > 0 || p.generated > 2, 'either re-used or refilled in the background');
    assert.equal(p.takeNow('ed25519'), null, 'an unfilled type has no key yet (the caller awaits take())');
    const ed = await p.take('ed25519');
    assert.equal(ed.privateKey.asymmetricKeyType, 'ed25519');
    p.close();
  });

  it('bump ca load refuses a key that does not match, naming the files', async () => {
    const a = `${tmp.dir}/a`;
    const b = `${tmp.dir}/b`;
    await initBumpCa(a);
    await initBumpCa(b);
    const { readFileSync } = await import('node:fs');
    writeFileSync(`${a}/ca-key.pem`, readFileSync(`${b}/ca-key.pem`), { mode: 0o600 });
    await assert.rejects(loadBumpCa(a), (err: unknown) => isMeshError(err, 'MESH_ERR_CA_INVALID') && /does not match/.test((err as Error).message));
    await assert.rejects(loadBumpCa(`${tmp.dir}/none`), (err: unknown) => isMeshError(err, 'MESH_ERR_CA_NOT_FOUND') && /bump ca init/.test((err as Error).message));
  });
});

describe('LRU cache', () => {
  it('evicts the least recently used entry', () => {
    const c = new LruCache<number>(2);
    c.set('a', 1);
    c.set('b', 2);
    assert.equal(c.get('a'), 1); // a is now the most recent
    c.set('c', 3);
    assert.equal(c.get('b'), undefined);
    assert.equal(c.get('a'), 1);
    assert.equal(c.get('c'), 3);
    assert.equal(c.evictions, 1);
  });
});

describe('splice rules', () => {
  it('exact names and *.domain patterns; the apex is not under its wildcard; a default for the rest', () => {
    const r = new SpliceRules({ splice: ['*.bank.example', 'Pay.Example.'], bump: ['*.shop.example'] });
    assert.equal(r.actionFor('www.bank.example'), 'splice');
    assert.equal(r.actionFor('a.b.bank.example'), 'splice');
    assert.equal(r.actionFor('bank.example'), 'bump');
    assert.equal(r.actionFor('pay.example'), 'splice');
    assert.equal(r.actionFor('x.shop.example'), 'bump');
    assert.equal(r.actionFor(undefined), 'bump');
    const spliceByDefault = new SpliceRules({ bump: ['*.shop.example'], default: 'splice' });
    assert.equal(spliceByDefault.actionFor('x.shop.example'), 'bump');
    assert.equal(spliceByDefault.actionFor('other.example'), 'splice');
  });
});

describe('filters', () => {
  const req = (over: Partial<BumpHttpRequest> = {}): BumpHttpRequest => ({
    client: '127.0.0.1:1',
    serverName: 'upstream.test',
    mode: 'bumped',
    protocol: 'http/1.1',
    method: 'GET',
    host: 'upstream.test',
    path: '/',
    url: 'https://upstream.test/',
    headers: {},
    ...over,
  });

  it('deny by host, path prefix and method; an earlier allow wins over a later deny', async () => {
    const filters = [accessRule('allow', { host: '*.ok.example' }), accessRule('deny', { pathPrefix: '/admin', method: ['post', 'DELETE'] }, 'no admin writes'), accessRule('deny', {})];
    assert.equal((await runRequestFilters(filters, req({ host: 'a.ok.example', path: '/admin', method: 'POST' }))).denied, null);
    const d = (await runRequestFilters(filters, req({ path: '/admin/x', method: 'POST' }))).denied;
    assert.equal(d?.reason, 'no admin writes');
    assert.equal(d?.status, 403);
    const all = (await runRequestFilters(filters, req({ path: '/admin/x', method: 'GET' }))).denied;
    assert.match(all?.reason ?? '', /every request/);
  });

  it('adds and removes request and response headers', async () => {
    const filters = [headerFilter('request', 'add', 'X-A', '1'), headerFilter('request', 'add', 'x-a', '2'), headerFilter('request', 'remove', 'cookie'), headerFilter('response', 'remove', 'Server')];
    const r = req({ headers: { cookie: 'secret' } });
    await runRequestFilters(filters, r);
    assert.deepEqual(r.headers, { 'x-a': ['1', '2'] });
    const res = { status: 200, headers: { server: 'nginx', 'content-type': 'text/plain' } as Record<string, string | string[]> };
    await runResponseFilters(filters, res, r);
    assert.deepEqual(res.headers, { 'content-type': 'text/plain' });
  });

  it('loads user filter modules (JS and TypeScript) and reports a bad one with its path', async () => {
    const tmp = tempDir('meshcert-bump-filter-');
    try {
      writeFileSync(`${tmp.dir}/f.mjs`, "export default (o) => ({ name: 'js', onRequest: (r) => (r.path === o.block ? { deny: 'js says no' } : undefined) });\n");
      writeFileSync(
        `${tmp.dir}/f.ts`,
        "const filter: { name: string; onRequest(r: { headers: Record<string, string> }): void } = { name: 'ts', onRequest(r) { r.headers['x-ts'] = 'yes'; } };\nexport default filter;\n",
      );
      writeFileSync(`${tmp.dir}/bad.mjs`, 'export default 42;\n');
      const js = await loadFilterModule('f.mjs', { block: '/x' }, tmp.dir);
      assert.equal((await runRequestFilters([js], req({ path: '/x' }))).denied?.reason, 'js says no');
      const ts = await loadFilterModule(`${tmp.dir}/f.ts`, undefined);
      const r = req();
      await runRequestFilters([ts], r);
      assert.equal(r.headers['x-ts'], 'yes');
      await assert.rejects(loadFilterModule('bad.mjs', undefined, tmp.dir), (err: unknown) => isMeshError(err, 'MESH_ERR_BUMP_FILTER') && (err as Error).message.includes('bad.mjs'));
      await assert.rejects(loadFilterModule('missing.mjs', undefined, tmp.dir), /no such file/);
      const throwing = { name: 'boom', onRequest: () => { throw new Error('kaput'); } };
      await assert.rejects(runRequestFilters([throwing], req()), (err: unknown) => isMeshError(err, 'MESH_ERR_BUMP_FILTER') && /boom.*kaput/.test((err as Error).message));
    } finally {
      tmp.cleanup();
    }
  });
});
