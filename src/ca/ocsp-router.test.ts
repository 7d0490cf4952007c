import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ManualClock } from '../core/index.js';
import { OcspResponse, buildOcspRequest, certIdFor, generateKeyPair, verifyOcspResponse, type Certificate } from '../pki/index.js';
import { SqliteLedger } from '../store/index.js';
import { TestCA, tempDir } from '../../test/helpers/test-ca.js';
import { CertificateAuthority, CertificateIssuer, OcspResponder, OcspRouter, initRootCa, isSignedAnswer, revokeCertificate, type OcspAnswer } from './index.js';

const HOUR = 3_600_000;

describe('OcspRouter: one OCSP URL for the CAs of several trust domains', () => {
  const t = tempDir('meshcert-ocsp-router-');
  const clock = new ManualClock(new Date('2030-01-01T00:00:00Z'));
  let ledger: SqliteLedger;
  const domains: Array<{ ca: CertificateAuthority; issuer: CertificateIssuer; responder: OcspResponder }> = [];
  let router: OcspRouter;

  before(async () => {
    ledger = SqliteLedger.open(':memory:');
    for (const td of ['cluster.local', 'partner.example']) {
      await initRootCa(join(t.dir, td), { trustDomain: td, clock });
      const ca = await CertificateAuthority.load(join(t.dir, td), { clock });
      const issuer = new CertificateIssuer(ca, ledger);
      const responder = new OcspResponder({ issuer, responseValidityMs: HOUR, signerTtlMs: 7 * 24 * HOUR });
      await responder.start();
      domains.push({ ca, issuer, responder });
    }
    router = new OcspRouter(domains.map((d) => d.responder));
  });
  after(async () => {
    for (const d of domains) d.responder.stop();
    await ledger.close();
    t.cleanup();
  });

  async function leaf(i: number, name: string): Promise<Certificate> {
    return (await domains[i]!.issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: [name] })).cert;
  }

  async function ask(certs: Array<{ cert: Certificate; issuer: Certificate }>): Promise<OcspAnswer> {
    return router.answer(buildOcspRequest({ certIds: certs.map((c) => certIdFor(c.cert, c.issuer)) }));
  }

  test('each CA\'s certificate is answered by that CA\'s responder, signed by its own delegated signer', async () => {
    for (const [i, d] of domains.entries()) {
      const cert = await leaf(i, `leaf${i}.example`);
      const answer = await ask([{ cert, issuer: d.ca.cert }]);
      assert.ok(isSignedAnswer(answer), answer.outcome);
      assert.equal(answer.outcome, 'good');
      const parsed = OcspResponse.parse(answer.der);
      assert.equal(parsed.certificates[0]?.serial, d.responder.signerCertificate!.serial, 'signed by this CA\'s signer');
      assert.ok(verifyOcspResponse(parsed, { cert, issuer: d.ca.cert, at: clock.now() }).ok);
      // The other CA's signer would not do: the response does not verify for the other issuer.
      const other = domains[1 - i]!;
      assert.ok(!verifyOcspResponse(parsed, { cert, issuer: other.ca.cert, at: clock.now() }).ok);
    }
  });

  test('revocation in one CA shows in its answers only', async () => {
    const a = await leaf(0, 'a.example');
    const b = await leaf(1, 'b.example');
    await revokeCertificate(domains[1]!.ca, ledger, b.serial, 'keyCompromise');
    domains[1]!.responder.invalidate(b.serial);
    assert.equal((await ask([{ cert: b, issuer: domains[1]!.ca.cert }])).outcome, 'revoked');
    assert.equal((await ask([{ cert: a, issuer: domains[0]!.ca.cert }])).outcome, 'good');
  });

  test('a CertID naming no CA of ours, or a request mixing CAs, is unauthorized; garbage is malformedRequest', async () => {
    const foreign = await TestCA.root({ name: 'someone else' });
    const f = await foreign.issueServer(['f.example']);
    const refused = await ask([{ cert: f.cert, issuer: foreign.cert }]);
    assert.equal(refused.outcome, 'unauthorized');
    const a = await leaf(0, 'mix-a.example');
    const b = await leaf(1, 'mix-b.example');
    const mixed = await ask([
      { cert: a, issuer: domains[0]!.ca.cert },
      { cert: b, issuer: domains[1]!.ca.cert },
    ]);
    assert.equal(mixed.outcome, 'unauthorized');
    assert.match((mixed as { reason: string }).reason, /several CAs/);
    const two = await ask([
      { cert: b, issuer: domains[1]!.ca.cert },
      { cert: await leaf(1, 'mix-c.example'), issuer: domains[1]!.ca.cert },
    ]);
    assert.equal(two.outcome, 'good', 'several certificates of one CA are fine');
    assert.equal((await router.answer(Buffer.from('not DER'))).outcome, 'malformedRequest');
  });
});
