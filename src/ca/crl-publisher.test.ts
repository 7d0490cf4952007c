import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Crl, generateKeyPair } from '../pki/index.js';
import { SqliteLedger, type Ledger } from '../store/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import { CertificateAuthority, CertificateIssuer, CrlPublisher, OcspResponder, Revoker, initRootCa, type RevocationListener } from './index.js';

const HOUR = 3_600_000;

describe('CrlPublisher and Revoker', () => {
  const t = tempDir('meshcert-crl-publisher-');
  let ca: CertificateAuthority;
  let ledger: SqliteLedger;
  let issuer: CertificateIssuer;
  const stops: Array<() => void> = [];

  async function serial(name: string): Promise<string> {
    return (await issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: [name] })).cert.serial;
  }

  before(async () => {
    await initRootCa(t.dir, { trustDomain: 'mesh.example', ttl: '30d' });
    ca = await CertificateAuthority.load(t.dir);
    ledger = SqliteLedger.open(':memory:');
    issuer = new CertificateIssuer(ca, ledger);
  });
  after(async () => {
    for (const s of stops) s();
    await ledger.close();
    t.cleanup();
  });

  test('publishes at start, and again on invalidate() with the new revocation; numbers increase; health follows nextUpdate', async () => {
    const published: bigint[] = [];
    const p = new CrlPublisher({ ca, ledger, validityMs: HOUR, onPublish: (c) => published.push(c.crlNumber) });
    stops.push(() => p.stop());
    const first = await p.start();
    assert.equal(p.current, first);
    assert.equal(first.entries, 0);
    const parsed = Crl.fromDer(first.der);
    assert.ok(parsed.isIssuedBy(ca.cert));
    assert.equal(parsed.nextUpdate!.getTime() - parsed.thisUpdate.getTime(), HOUR);
    assert.match(first.pem, /^-----BEGIN X509 CRL-----\n/);
    assert.deepEqual(p.health(), { ok: true });

    const s = await serial('crl.example');
    await ledger.revoke(s, 'keyCompromise', new Date(Math.floor(Date.now() / 1000) * 1000), undefined, ca.cert.issuerKeyId);
    const second = await p.invalidate(s);
    assert.equal(second.entries, 1);
    assert.equal(Crl.fromDer(second.der).lookup(s)?.reason, 'keyCompromise');
    assert.ok(second.crlNumber > first.crlNumber);
    assert.notEqual(second.etag, first.etag);
    assert.deepEqual(published, [first.crlNumber, second.crlNumber]);
  });

  test('a burst of invalidations costs at most two CRLs, and every caller gets one made after its call', async () => {
    let made = 0;
    const p = new CrlPublisher({ ca, ledger, validityMs: HOUR, onGeneration: () => made++ });
    stops.push(() => p.stop());
    await p.start();
    made = 0;
    const results = await Promise.all(Array.from({ length: 20 }, () => p.invalidate()));
    assert.ok(made <= 2, `${made} CRLs for 20 invalidations`);
    assert.equal(results.at(-1), p.current);
  });

  test('a failed generation keeps the current CRL and rejects the waiters', async () => {
    let fail = false;
    const flaky: Ledger = new Proxy(ledger, {
      get(target, prop, recv) {
        if (prop === 'listRevoked' && fail) return async () => Promise.reject(new Error('database is locked'));
        const v = Reflect.get(target, prop, recv) as unknown;
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const results: boolean[] = [];
    const p = new CrlPublisher({ ca, ledger: flaky, validityMs: HOUR, onGeneration: (ok) => results.push(ok) });
    stops.push(() => p.stop());
    const good = await p.start();
    fail = true;
    await assert.rejects(p.invalidate(), /database is locked/);
    assert.equal(p.current, good);
    assert.deepEqual(results, [true, false]);
  });

  test('Revoker: the ledger first, then OCSP and CRL; twice is harmless; a lagging cache is reported, not fatal', async () => {
    const ocsp = new OcspResponder({ issuer, responseValidityMs: HOUR, signerTtlMs: 7 * 24 * HOUR });
    const crl = new CrlPublisher({ ca, ledger, validityMs: HOUR });
    stops.push(() => ocsp.stop(), () => crl.stop());
    await ocsp.start();
    await crl.start();
    const order: string[] = [];
    const probe: RevocationListener = {
      name: 'probe',
      invalidate: async (s) => {
        order.push(`probe saw ledger status ${(await ledger.get(s))?.status}`);
      },
    };
    const slow: RevocationListener = { name: 'slow', invalidate: () => new Promise((r) => setTimeout(r, 500)) };
    // Fails after the wait is over: reported as lagging, and the late rejection is handled (no crash).
    const late: RevocationListener = { name: 'late', invalidate: () => new Promise((_, reject) => setTimeout(() => reject(new Error('gone')), 150)) };
    const broken: RevocationListener = {
      name: 'broken',
      invalidate: () => {
        throw new Error('broken cache');
      },
    };
    const revoker = new Revoker(ca, ledger, [ocsp, crl, probe, slow, late, broken], { waitMs: 100 });
    const s = await serial('revoker.example');
    const res = await revoker.revoke(s.toUpperCase(), 'cessationOfOperation');
    assert.equal(res.alreadyRevoked, false);
    assert.deepEqual(order, ['probe saw ledger status revoked']);
    assert.deepEqual(res.lagging.sort(), ['broken', 'late', 'slow']);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(crl.current!.entries >= 1);
    assert.ok(Crl.fromDer(crl.current!.der).lookup(s));
    const again = await revoker.revoke(s, 'cessationOfOperation');
    assert.equal(again.alreadyRevoked, true);
    await assert.rejects(revoker.revoke('abcdef0123'), /no such certificate/);
  });
});
