import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../core/index.js';
import {
  OcspResponse,
  buildOcspRequest,
  certIdFor,
  certIdForSerial,
  generateKeyPair,
  randomNonce,
  verifyOcspResponse,
  type Certificate,
} from '../pki/index.js';
import { SqliteLedger } from '../store/index.js';
import { TestCA, tempDir } from '../../test/helpers/test-ca.js';
import { CertificateAuthority, CertificateIssuer, OcspResponder, initRootCa, isSignedAnswer, revokeCertificate, type OcspAnswer } from './index.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function settled(a: OcspAnswer | Promise<OcspAnswer>): Promise<OcspAnswer> {
  return a instanceof Promise ? a : a;
}

describe('OcspResponder', () => {
  const t = tempDir('meshcert-ocsp-responder-');
  const clock = new ManualClock(new Date('2030-01-01T00:00:00Z'));
  let ca: CertificateAuthority;
  let ledger: SqliteLedger;
  let issuer: CertificateIssuer;
  const responders: OcspResponder[] = [];

  async function responder(options: { validityMs?: number; signerTtlMs?: number; maxEntries?: number } = {}): Promise<OcspResponder> {
    const r = new OcspResponder({ issuer, responseValidityMs: options.validityMs ?? HOUR, signerTtlMs: options.signerTtlMs ?? 7 * DAY, maxEntries: options.maxEntries });
    responders.push(r);
    await r.start();
    return r;
  }

  async function leaf(name: string): Promise<Certificate> {
    return (await issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: [name] })).cert;
  }

  function request(cert: Certificate, hash: 'sha1' | 'sha256' = 'sha1', nonce = false): Buffer {
    return buildOcspRequest({ certIds: [certIdFor(cert, ca.cert, hash)], ...(nonce ? { nonce: randomNonce() } : {}) });
  }

  before(async () => {
    await initRootCa(t.dir, { trustDomain: 'mesh.example', ttl: '3650d', clock });
    ca = await CertificateAuthority.load(t.dir, { clock });
    ledger = SqliteLedger.open(':memory:');
    issuer = new CertificateIssuer(ca, ledger);
  });
  after(async () => {
    for (const r of responders) r.stop();
    await ledger.close();
    t.cleanup();
  });

  test('issues itself a delegated signer: EKU OCSPSigning, ocsp-nocheck, digitalSignature only, 7 days, in the ledger as ocsp-signer', async () => {
    const r = await responder();
    const signer = r.signerCertificate!;
    assert.deepEqual(signer.extKeyUsageNames, ['ocspSigning']);
    assert.equal(signer.ocspNoCheck, true);
    assert.deepEqual(signer.keyUsage, ['digitalSignature']);
    assert.equal(signer.isCA, false);
    assert.ok(signer.node.verify(ca.cert.publicKey));
    assert.equal(signer.notAfter.getTime() - clock.now().getTime(), 7 * DAY);
    assert.deepEqual(signer.crlDistributionPoints, [], 'a nocheck signer needs no revocation pointers');
    const row = await ledger.get(signer.serial);
    assert.equal(row?.profile, 'ocsp-signer');
    assert.deepEqual(r.health(), { ok: true });
  });

  test('good, then revoked after invalidate(); the cached answer is returned synchronously as the same object', async () => {
    const r = await responder();
    const cert = await leaf('good.example');
    const req = request(cert);
    const first = r.answer(req);
    assert.ok(first instanceof Promise, 'a miss is signed first');
    const a = await first;
    assert.equal(a.outcome, 'good');
    const b = r.answer(req);
    assert.ok(!(b instanceof Promise), 'a hit is synchronous');
    assert.equal(b, a);
    assert.equal(r.stats.hits, 1);
    const v = verifyOcspResponse(a.der, { cert, issuer: ca.cert, at: clock.now() });
    assert.ok(v.ok, JSON.stringify(v));
    assert.equal(v.ok && v.responder.serial, r.signerCertificate!.serial, 'signed by the delegated signer');
    assert.ok(isSignedAnswer(a));
    assert.equal(a.nextUpdate.getTime() - a.thisUpdate.getTime(), HOUR);
    assert.match(a.etag, /^"[0-9a-f]{40}"$/);

    await revokeCertificate(ca, ledger, cert.serial, 'keyCompromise');
    // Not yet told: the cache still says good (this is why revocation must call invalidate).
    assert.equal((await settled(r.answer(req))).outcome, 'good');
    r.invalidate(cert.serial);
    const c = await settled(r.answer(req));
    assert.equal(c.outcome, 'revoked');
    const parsed = OcspResponse.parse(c.der);
    assert.equal(parsed.responses[0]!.revocationReason, 'keyCompromise');
    // invalidate() re-signed at once: the answer after that is cached again.
    assert.ok(!(r.answer(req) instanceof Promise));
  });

  test('answers in the hash algorithm of the request, one cache entry per CertID; nonces are not echoed', async () => {
    const r = await responder();
    const cert = await leaf('hash.example');
    const a1 = await settled(r.answer(request(cert, 'sha1')));
    const a256 = await settled(r.answer(request(cert, 'sha256')));
    assert.equal(OcspResponse.parse(a1.der).responses[0]!.certId.hashAlgorithm, 'sha1');
    assert.equal(OcspResponse.parse(a256.der).responses[0]!.certId.hashAlgorithm, 'sha256');
    assert.notEqual(a1, a256);
    assert.equal(r.size, 2);
    // Two requests with different nonces share the cached answer, which carries no nonce.
    const n1 = await settled(r.answer(request(cert, 'sha1', true)));
    const n2 = await settled(r.answer(request(cert, 'sha1', true)));
    assert.equal(n1, a1);
    assert.equal(n2, a1);
    assert.equal(OcspResponse.parse(n1.der).nonce, null);
  });

  test('unknown for a serial of our issuer never issued; unauthorized for another issuer; malformedRequest for garbage', async () => {
    const r = await responder();
    const unknown = await settled(r.answer(buildOcspRequest({ certIds: [certIdForSerial('123456789abcdef', ca.cert)] })));
    assert.equal(unknown.outcome, 'unknown');
    assert.equal(OcspResponse.parse(unknown.der).responses[0]!.status, 'unknown');

    const other = await TestCA.root({ name: 'someone else' });
    const foreign = await other.issueServer(['foreign.example']);
    const refused = await settled(r.answer(buildOcspRequest({ certIds: [certIdFor(foreign.cert, other.cert)] })));
    assert.equal(refused.outcome, 'unauthorized');
    assert.equal(OcspResponse.parse(refused.der).responseStatus, 'unauthorized');
    // Same serial, our name hash but another key: still not ours.
    const id = certIdForSerial('1', ca.cert);
    const mixed = await settled(r.answer(buildOcspRequest({ certIds: [{ ...id, issuerKeyHash: Buffer.alloc(20, 1) }] })));
    assert.equal(mixed.outcome, 'unauthorized');

    const garbage = await settled(r.answer(Buffer.from('not an OCSP request')));
    assert.equal(garbage.outcome, 'malformedRequest');
    assert.equal(OcspResponse.parse(garbage.der).responseStatus, 'malformedRequest');
  });

  test('several certificates in one request: one signed answer with a response for each, not cached', async () => {
    const r = await responder();
    const a = await leaf('multi-a.example');
    const b = await leaf('multi-b.example');
    await revokeCertificate(ca, ledger, b.serial, 'superseded');
    const der = buildOcspRequest({ certIds: [certIdFor(a, ca.cert), certIdFor(b, ca.cert, 'sha256')] });
    const ans = await settled(r.answer(der));
    assert.equal(ans.outcome, 'revoked');
    const parsed = OcspResponse.parse(ans.der);
    assert.deepEqual(
      parsed.responses.map((s) => [s.certId.serial, s.certId.hashAlgorithm, s.status]),
      [
        [a.serial, 'sha1', 'good'],
        [b.serial, 'sha256', 'revoked'],
      ],
    );
    assert.ok(r.answer(der) instanceof Promise, 'signed per request');
  });

  test('re-signed at half the validity (the old answer is served meanwhile) and at once after nextUpdate', async () => {
    const r = await responder({ validityMs: HOUR });
    const cert = await leaf('refresh.example');
    const req = request(cert);
    const a = await settled(r.answer(req));
    clock.advance(HOUR / 2 + 1_000);
    const stale = r.answer(req);
    assert.equal(stale, a, 'still valid: served as is while a fresh one is signed');
    await new Promise((res) => setTimeout(res, 200));
    const fresh = r.answer(req);
    assert.ok(!(fresh instanceof Promise));
    assert.notEqual(fresh, a);
    assert.ok((fresh as { thisUpdate: Date }).thisUpdate > (a as { thisUpdate: Date }).thisUpdate);
    clock.advance(2 * HOUR);
    const expired = r.answer(req);
    assert.ok(expired instanceof Promise, 'past nextUpdate: never served, signed anew');
    assert.ok(verifyOcspResponse((await expired).der, { cert, issuer: ca.cert, at: clock.now() }).ok);
  });

  test('a revocation during signing is not lost: the answer signed from the older ledger read is not cached', async () => {
    const r = await responder();
    const cert = await leaf('race.example');
    const req = request(cert);
    const inFlight = r.answer(req);
    await revokeCertificate(ca, ledger, cert.serial, 'keyCompromise');
    r.invalidate(cert.serial);
    await inFlight;
    assert.equal((await settled(r.answer(req))).outcome, 'revoked');
  });

  test('responses never outlive the signer; revoking the signer itself gets a new signer and drops every cached answer', async () => {
    const r = await responder({ validityMs: 2 * HOUR, signerTtlMs: 3 * HOUR });
    const cert = await leaf('signer.example');
    const a = (await settled(r.answer(request(cert)))) as { nextUpdate: Date };
    assert.ok(a.nextUpdate.getTime() <= r.signerCertificate!.notAfter.getTime());
    const old = r.signerCertificate!;
    await revokeCertificate(ca, ledger, old.serial, 'keyCompromise');
    r.invalidate(old.serial);
    assert.equal(r.size, 0);
    const b = await settled(r.answer(request(cert)));
    assert.equal(b.outcome, 'good');
    assert.notEqual(r.signerCertificate!.serial, old.serial);
    const v = verifyOcspResponse(b.der, { cert, issuer: ca.cert, at: clock.now() });
    assert.ok(v.ok && v.responder.serial === r.signerCertificate!.serial);
  });

  test('the cache is bounded, and unknown serials get at most a tenth of it', async () => {
    const r = await responder({ maxEntries: 100 });
    for (let i = 1; i <= 30; i++) await settled(r.answer(buildOcspRequest({ certIds: [certIdForSerial(`ab${i}`, ca.cert)] })));
    assert.equal(r.size, 10);
    const certs = await Promise.all(Array.from({ length: 120 }, (_, i) => leaf(`bound${i}.example`)));
    for (const c of certs) await settled(r.answer(request(c)));
    assert.equal(r.size, 100);
    // The oldest went first: the last certificates are still cached.
    assert.ok(!(r.answer(request(certs.at(-1)!)) instanceof Promise));
  });
});
