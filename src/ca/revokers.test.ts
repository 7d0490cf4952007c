import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { generateKeyPair, randomSerial } from '../pki/index.js';
import { SqliteLedger } from '../store/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import { CertificateAuthority, CertificateIssuer, Revoker, Revokers, initRootCa } from './index.js';

describe('Revokers: revocation in the CA that issued the serial', () => {
  const t = tempDir('meshcert-revokers-');
  let ledger: SqliteLedger;
  const issuers: CertificateIssuer[] = [];
  let revokers: Revokers;
  const told: string[] = [];

  before(async () => {
    ledger = SqliteLedger.open(':memory:');
    for (const td of ['cluster.local', 'partner.example']) {
      await initRootCa(join(t.dir, td), { trustDomain: td });
      issuers.push(new CertificateIssuer(await CertificateAuthority.load(join(t.dir, td)), ledger));
    }
    // A listener per CA that records what it is told: only the issuing CA's caches are refreshed.
    revokers = new Revokers(issuers.map((i) => new Revoker(i.ca, ledger, [{ name: `cache ${i.ca.trustDomain}`, invalidate: (s) => void told.push(`${i.ca.trustDomain}:${s}`) }])));
  });
  after(async () => {
    await ledger.close();
    t.cleanup();
  });

  /** The same serial under both CAs, as two independently run CAs could (in practice: a plug-in CA's serials). */
  async function twin(): Promise<string> {
    const serial = randomSerial();
    for (const i of issuers) {
      await ledger.record({
        serial,
        issuerKeyId: i.ca.cert.issuerKeyId,
        subject: '',
        sans: ['DNS:twin.example'],
        identity: 'twin.example',
        profile: 'server',
        notBefore: new Date(Date.now() - 1000),
        notAfter: new Date(Date.now() + 3_600_000),
        fingerprint: createHash('sha256').update(`${serial}${i.ca.trustDomain}`).digest('hex'),
        pem: '',
      });
    }
    return serial;
  }

  test('a serial of one CA is revoked there, without naming it; only that CA\'s caches are told', async () => {
    const cert = (await issuers[1]!.issue({ publicKey: generateKeyPair().publicKey, dnsNames: ['p.example'] })).cert;
    told.length = 0;
    const res = await revokers.revoke(cert.serial, 'keyCompromise');
    assert.equal(res.trustDomain, 'partner.example');
    assert.equal(res.entry.status, 'revoked');
    assert.deepEqual(told, [`partner.example:${cert.serial}`]);
    assert.deepEqual(revokers.trustDomains, ['cluster.local', 'partner.example']);
    assert.equal(revokers.main.ca.trustDomain, 'cluster.local');
  });

  test('a serial both CAs issued needs the trust domain named; then only that one is revoked', async () => {
    const serial = await twin();
    await assert.rejects(revokers.revoke(serial), (e: unknown) => {
      assert.ok(isMeshError(e, ErrorCodes.INVALID_ARGUMENT), String(e));
      assert.deepEqual(e.details?.ambiguous, ['cluster.local', 'partner.example']);
      assert.match(e.message, /was issued by the CAs of trust domains "cluster\.local", "partner\.example"; name the one/);
      return true;
    });
    assert.equal((await ledger.get(serial, issuers[0]!.ca.cert.issuerKeyId))?.status, 'valid', 'nothing revoked');
    const res = await revokers.revoke(serial, 'superseded', undefined, 'cluster.local');
    assert.equal(res.trustDomain, 'cluster.local');
    assert.equal((await ledger.get(serial, issuers[0]!.ca.cert.issuerKeyId))?.status, 'revoked');
    assert.equal((await ledger.get(serial, issuers[1]!.ca.cert.issuerKeyId))?.status, 'valid');
  });

  test('an unknown serial is NOT_FOUND; an unknown trust domain is INVALID_ARGUMENT naming the field', async () => {
    await assert.rejects(revokers.revoke('0BADC0DE'), (e: unknown) => isMeshError(e, ErrorCodes.NOT_FOUND) && /0BADC0DE: no certificate with this serial/.test(e.message));
    await assert.rejects(
      revokers.revoke('0BADC0DE', 'unspecified', undefined, 'elsewhere.example'),
      (e: unknown) => isMeshError(e, ErrorCodes.INVALID_ARGUMENT) && e.subject === 'trustDomain' && /"elsewhere\.example" is not a trust domain this CA signs for/.test(e.message),
    );
    // A serial named with the wrong trust domain: that CA never issued it.
    const cert = (await issuers[0]!.issue({ publicKey: generateKeyPair().publicKey, dnsNames: ['m.example'] })).cert;
    await assert.rejects(revokers.revoke(cert.serial, 'unspecified', undefined, 'partner.example'), (e: unknown) => isMeshError(e, ErrorCodes.NOT_FOUND));
  });
});
