import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, verify as nodeVerify } from 'node:crypto';
import * as asn1js from 'asn1js';
import { ErrorCodes, isMeshError, type ErrorCode } from '../core/index.js';
import { TestCA, type IssuedLeaf } from '../../test/helpers/test-ca.js';
import {
  buildOcspErrorResponse,
  buildOcspRequest,
  buildOcspResponse,
  certIdEquals,
  certIdFor,
  certIdForSerial,
  generateKeyPair,
  isValidStaple,
  matchesIssuer,
  OcspRequest,
  OcspResponse,
  randomNonce,
  toSigningKey,
  verifyOcspResponse,
  type BuildOcspResponseOptions,
  type CertificateSpec,
  type OcspResponder,
  type OcspVerifyOptions,
  type OcspVerifyReasonCode,
  type OcspVerifyResult,
} from './index.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
// Milliseconds on purpose: signed times must come out in whole seconds.
const T = new Date(Math.floor(Date.now() / 1000) * 1000 + 456);
const T_SEC = new Date(Math.floor(T.getTime() / 1000) * 1000);
const at = (ms: number) => new Date(T.getTime() + ms);

function throwsCode(fn: () => unknown, code: ErrorCode, match?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isMeshError(err, code), `expected ${code}, got ${String(err)}`);
    if (match) assert.match(err.message, match);
    return true;
  });
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode, match?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isMeshError(err, code), `expected ${code}, got ${String(err)}`);
    if (match) assert.match(err.message, match);
    return true;
  });
}

function codes(r: OcspVerifyResult): OcspVerifyReasonCode[] {
  return r.ok ? [] : r.reasons.map((x) => x.code);
}

/** A responder certificate issued by `ca` (EKU ocspSigning unless overridden) with its signing key. */
async function responderOf(ca: TestCA, spec: Partial<CertificateSpec> = {}): Promise<OcspResponder> {
  const keys = generateKeyPair('ec-p256');
  const issued = await ca.issue({ subject: 'CN=ocsp responder', extKeyUsage: ['ocspSigning'], ...spec, publicKey: keys.publicKey });
  return { cert: issued.cert, signer: await toSigningKey(keys.privateKey) };
}

describe('OCSP', () => {
  let ca: TestCA;
  let otherCa: TestCA;
  let leaf: IssuedLeaf;
  let leaf2: IssuedLeaf;
  let caResponder: OcspResponder;
  let delegated: OcspResponder;

  before(async () => {
    ca = await TestCA.root({ name: 'ocsp root' });
    otherCa = await TestCA.root({ name: 'ocsp root' }); // same name, another key
    leaf = await ca.issueServer(['a.example']);
    leaf2 = await ca.issueServer(['b.example']);
    caResponder = { cert: ca.cert, signer: ca.signer };
    delegated = await responderOf(ca);
  });

  /** A response about `leaf` with sensible defaults. */
  function respond(over: Partial<BuildOcspResponseOptions> & { status?: BuildOcspResponseOptions['responses'][0]['status'] } = {}): Promise<Buffer> {
    const { status, ...rest } = over;
    return buildOcspResponse({
      responder: caResponder,
      producedAt: T,
      responses: [{ certId: certIdFor(leaf.cert, ca.cert), status: status ?? 'good', thisUpdate: T, nextUpdate: at(DAY) }],
      ...rest,
    });
  }

  function verify(resp: Uint8Array | OcspResponse, over: Partial<OcspVerifyOptions> = {}): OcspVerifyResult {
    return verifyOcspResponse(resp, { cert: leaf.cert, issuer: ca.cert, at: at(HOUR), ...over });
  }

  describe('CertIDs', () => {
    test('certIdFor hashes the issuer subject DER and key bits; SHA-1 by default, SHA-256 on request', () => {
      const id = certIdFor(leaf.cert, ca.cert);
      assert.equal(id.hashAlgorithm, 'sha1');
      assert.equal(id.serial, leaf.cert.serial);
      assert.ok(id.issuerNameHash.equals(createHash('sha1').update(ca.cert.subjectDer).digest()));
      assert.ok(id.issuerKeyHash.equals(createHash('sha1').update(ca.cert.publicKeyBits).digest()));
      // The key hash is the RFC 5280 method-1 key id, the CA's SKI here.
      assert.equal(id.issuerKeyHash.toString('hex'), ca.cert.subjectKeyId);
      const id256 = certIdFor(leaf.cert, ca.cert, 'sha256');
      assert.equal(id256.issuerNameHash.length, 32);
      assert.ok(id256.issuerKeyHash.equals(createHash('sha256').update(ca.cert.publicKeyBits).digest()));
      assert.ok(certIdEquals(certIdForSerial(leaf.cert.serial.toUpperCase(), ca.cert), id));
      assert.ok(!certIdEquals(id, id256));
    });

    test('matchesIssuer checks both hashes with the CertID’s own algorithm', () => {
      assert.equal(matchesIssuer(certIdFor(leaf.cert, ca.cert), ca.cert), true);
      assert.equal(matchesIssuer(certIdFor(leaf.cert, ca.cert, 'sha256'), ca.cert), true);
      assert.equal(matchesIssuer(certIdFor(leaf.cert, ca.cert), otherCa.cert), false, 'same name, other key');
      assert.equal(matchesIssuer({ ...certIdFor(leaf.cert, ca.cert), hashAlgorithm: '1.2.3.4' }, ca.cert), false);
    });

    test('an unsupported hash is an error naming the choices', () => {
      throwsCode(() => certIdFor(leaf.cert, ca.cert, 'md5' as never), ErrorCodes.INVALID_ARGUMENT, /sha1, sha256/);
    });
  });

  describe('requests', () => {
    test('build and parse: several CertIDs, SHA-1 and SHA-256, with a nonce', () => {
      const nonce = randomNonce();
      assert.equal(nonce.length, 16);
      const ids = [certIdFor(leaf.cert, ca.cert), certIdFor(leaf2.cert, ca.cert, 'sha256'), certIdForSerial('ff01', ca.cert)];
      const req = OcspRequest.parse(buildOcspRequest({ certIds: ids, nonce }), 'req.der');
      assert.equal(req.certIds.length, 3);
      req.certIds.forEach((id, i) => assert.ok(certIdEquals(id, ids[i]!), `CertID ${i}`));
      assert.equal(req.certIds[2]!.serial, 'ff01', 'a serial with the top bit set stays positive');
      assert.ok(req.nonce?.equals(nonce));
      assert.equal(req.signed, false);
      assert.equal(req.source, 'req.der');
    });

    test('without a nonce the request has none, and the CertID hash carries NULL parameters as OpenSSL writes', () => {
      const der = buildOcspRequest({ certIds: [certIdFor(leaf.cert, ca.cert)] });
      assert.equal(OcspRequest.parse(der).nonce, null);
      assert.ok(der.includes(Buffer.from('300906052b0e03021a0500', 'hex')));
    });

    test('bad requests to build are OCSP_BUILD errors', () => {
      throwsCode(() => buildOcspRequest({ certIds: [] }), ErrorCodes.OCSP_BUILD, /at least one CertID/);
      throwsCode(() => buildOcspRequest({ certIds: [certIdFor(leaf.cert, ca.cert)], nonce: Buffer.alloc(0) }), ErrorCodes.OCSP_BUILD, /1 to 32/);
      throwsCode(() => buildOcspRequest({ certIds: [certIdFor(leaf.cert, ca.cert)], nonce: Buffer.alloc(33) }), ErrorCodes.OCSP_BUILD, /1 to 32/);
    });

    test('garbage, truncated input and other structures are OCSP_PARSE errors naming the source', async () => {
      const der = buildOcspRequest({ certIds: [certIdFor(leaf.cert, ca.cert)], nonce: randomNonce() });
      throwsCode(() => OcspRequest.parse(Buffer.from('GET / HTTP/1.1'), 'body'), ErrorCodes.OCSP_PARSE, /^body: /);
      throwsCode(() => OcspRequest.parse(der.subarray(0, 20), 'short'), ErrorCodes.OCSP_PARSE, /^short: /);
      throwsCode(() => OcspRequest.parse(ca.cert.der, 'cert'), ErrorCodes.OCSP_PARSE, /^cert: not an OCSP request/);
      const resp = await respond();
      throwsCode(() => OcspRequest.parse(resp, 'resp'), ErrorCodes.OCSP_PARSE, /^resp: /);
      throwsCode(() => OcspRequest.parse(Buffer.alloc(0), 'empty'), ErrorCodes.OCSP_PARSE);
    });
  });

  describe('responses', () => {
    test('good, signed by the CA: key-hash responder ID, no certificates, whole-second times', async () => {
      const resp = OcspResponse.parse(await respond(), 'staple.der');
      assert.equal(resp.responseStatus, 'successful');
      assert.deepEqual(resp.responderId, { type: 'keyHash', keyHash: createHash('sha1').update(ca.cert.publicKeyBits).digest() });
      assert.equal(resp.certificates.length, 0);
      assert.equal(resp.producedAt?.getTime(), T_SEC.getTime());
      assert.equal(resp.responses.length, 1);
      const s = resp.responses[0]!;
      assert.equal(s.status, 'good');
      assert.equal(s.thisUpdate.getTime(), T_SEC.getTime());
      assert.equal(s.nextUpdate?.getTime(), T_SEC.getTime() + DAY);
      assert.equal(s.revokedAt, null);
      assert.ok(certIdEquals(s.certId, certIdFor(leaf.cert, ca.cert)));
      assert.equal(resp.nonce, null);
      // GeneralizedTime without fractional seconds, or OpenSSL 3.0 skips its freshness check.
      assert.ok(!resp.tbsResponseData!.toString('latin1').includes('.456Z'));
    });

    test('the raw signed bytes verify with the responder key', async () => {
      const resp = OcspResponse.parse(await respond());
      assert.equal(resp.signatureAlgorithmOid, '1.2.840.10045.4.3.2');
      assert.equal(resp.signatureAlgorithmParams, null);
      assert.ok(nodeVerify('sha256', resp.tbsResponseData!, ca.cert.publicKey, resp.signature!));
    });

    test('revoked with and without a reason, and unknown', async () => {
      const r1 = OcspResponse.parse(await respond({ status: { revoked: { at: at(-HOUR), reason: 'keyCompromise' } } })).responses[0]!;
      assert.equal(r1.status, 'revoked');
      assert.equal(r1.revokedAt?.getTime(), T_SEC.getTime() - HOUR);
      assert.equal(r1.revocationReason, 'keyCompromise');
      const der2 = await respond({ status: { revoked: { at: at(-HOUR), reason: 'unspecified' } } });
      const r2 = OcspResponse.parse(der2).responses[0]!;
      assert.equal(r2.status, 'revoked');
      assert.equal(r2.revocationReason, 'unspecified');
      assert.ok(!der2.includes(Buffer.from('a0030a0100', 'hex')), "no [0] CRLReason for 'unspecified'");
      const r3 = OcspResponse.parse(await respond({ status: 'unknown' })).responses[0]!;
      assert.equal(r3.status, 'unknown');
      assert.equal(r3.revocationReason, null);
    });

    test('several single responses; each keeps the CertID hash it was given', async () => {
      const ids = [certIdFor(leaf.cert, ca.cert, 'sha256'), certIdFor(leaf2.cert, ca.cert)];
      const resp = OcspResponse.parse(
        await buildOcspResponse({
          responder: caResponder,
          producedAt: T,
          responses: [
            { certId: ids[0]!, status: 'good', thisUpdate: T, nextUpdate: at(DAY) },
            { certId: ids[1]!, status: { revoked: { at: T } }, thisUpdate: T },
          ],
        }),
      );
      assert.deepEqual(
        resp.responses.map((r) => [r.certId.hashAlgorithm, r.status, r.nextUpdate === null]),
        [
          ['sha256', 'good', false],
          ['sha1', 'revoked', true],
        ],
      );
      assert.equal(resp.find(ids[1]!)?.status, 'revoked');
      assert.equal(resp.find(certIdFor(leaf.cert, ca.cert)), null, 'the SHA-1 CertID of leaf was not answered');
    });

    test('the nonce is echoed', async () => {
      const nonce = randomNonce(32);
      assert.ok(OcspResponse.parse(await respond({ nonce })).nonce?.equals(nonce));
    });

    test('a delegated responder’s certificate is included; the CA’s is not unless asked', async () => {
      const d = OcspResponse.parse(await respond({ responder: delegated }));
      assert.equal(d.certificates.length, 1);
      assert.ok(d.certificates[0]!.der.equals(delegated.cert.der));
      assert.ok(d.responderId?.type === 'keyHash' && d.responderId.keyHash.equals(createHash('sha1').update(delegated.cert.publicKeyBits).digest()));
      assert.equal(OcspResponse.parse(await respond({ responder: delegated, includeCertificates: false })).certificates.length, 0);
      assert.equal(OcspResponse.parse(await respond({ includeCertificates: true })).certificates.length, 1);
    });

    test('error responses carry only their status', () => {
      for (const status of ['malformedRequest', 'internalError', 'tryLater', 'sigRequired', 'unauthorized'] as const) {
        const resp = OcspResponse.parse(buildOcspErrorResponse(status));
        assert.equal(resp.responseStatus, status);
        assert.equal(resp.producedAt, null);
        assert.deepEqual(resp.responses, []);
      }
      assert.deepEqual([...buildOcspErrorResponse('unauthorized')], [0x30, 0x03, 0x0a, 0x01, 0x06]);
      throwsCode(() => buildOcspErrorResponse('successful' as never), ErrorCodes.OCSP_BUILD, /not an OCSP error status/);
    });

    test('bad build input is an OCSP_BUILD error', async () => {
      await rejectsCode(respond({ responses: [] }), ErrorCodes.OCSP_BUILD, /at least one/);
      await rejectsCode(respond({ responder: { cert: ca.cert, signer: delegated.signer } }), ErrorCodes.OCSP_BUILD, /does not belong/);
      await rejectsCode(
        respond({ responses: [{ certId: certIdFor(leaf.cert, ca.cert), status: 'good', thisUpdate: T, nextUpdate: at(-MIN) }] }),
        ErrorCodes.OCSP_BUILD,
        /responses\[0\]: nextUpdate/,
      );
      await rejectsCode(respond({ status: { revoked: { at: new Date(NaN) } } }), ErrorCodes.OCSP_BUILD, /responses\[0\]/);
      await rejectsCode(respond({ nonce: Buffer.alloc(40) }), ErrorCodes.OCSP_BUILD, /nonce/);
    });

    test('garbage, truncated input and foreign response types are OCSP_PARSE errors naming the source', async () => {
      const der = await respond();
      throwsCode(() => OcspResponse.parse(Buffer.from([0x30, 0x82, 0x01]), 'x.der'), ErrorCodes.OCSP_PARSE, /^x\.der: /);
      throwsCode(() => OcspResponse.parse(der.subarray(0, der.length - 5), 'cut.der'), ErrorCodes.OCSP_PARSE, /^cut\.der: /);
      throwsCode(() => OcspResponse.parse(ca.cert.der, 'cert.der'), ErrorCodes.OCSP_PARSE, /^cert\.der: not an OCSP response/);
      throwsCode(() => OcspResponse.parse(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x04]), 'four'), ErrorCodes.OCSP_PARSE, /unknown OCSP response status 4/);
      throwsCode(() => OcspResponse.parse(Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x00]), 'bare'), ErrorCodes.OCSP_PARSE, /without responseBytes/);
      const foreign = new asn1js.Sequence({
        value: [
          new asn1js.Enumerated({ value: 0 }),
          new asn1js.Constructed({
            idBlock: { tagClass: 3, tagNumber: 0 },
            value: [new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: '1.2.3.4' }), new asn1js.OctetString({ valueHex: new Uint8Array([5, 0]).buffer })] })],
          }),
        ],
      }).toBER();
      throwsCode(() => OcspResponse.parse(new Uint8Array(foreign), 'foreign'), ErrorCodes.OCSP_PARSE, /unsupported OCSP response type 1\.2\.3\.4/);
    });
  });

  describe('verification', () => {
    test('a good response signed by the issuer is valid, with SHA-1 and with SHA-256 CertIDs', async () => {
      for (const hash of ['sha1', 'sha256'] as const) {
        const der = await respond({ responses: [{ certId: certIdFor(leaf.cert, ca.cert, hash), status: 'good', thisUpdate: T, nextUpdate: at(DAY) }] });
        const r = verify(der);
        assert.ok(r.ok, `${hash}: ${JSON.stringify(codes(r))}`);
        assert.equal(r.status, 'good');
        assert.ok(r.responder.der.equals(ca.cert.der));
        assert.equal(r.nextUpdate?.getTime(), T_SEC.getTime() + DAY);
        assert.equal(isValidStaple(der, { cert: leaf.cert, issuer: ca.cert, at: at(HOUR) }), true);
      }
    });

    test('revoked: a failure with reason status that still reports revoked and its reason', async () => {
      const der = await respond({ status: { revoked: { at: at(-HOUR), reason: 'keyCompromise' } } });
      const r = verify(der);
      assert.equal(r.ok, false);
      assert.deepEqual(codes(r), ['status']);
      assert.ok(!r.ok && r.status === 'revoked' && r.single?.revocationReason === 'keyCompromise');
      assert.match(!r.ok ? r.reasons[0]!.message : '', /is revoked since .* \(keyCompromise\)/);
      assert.equal(isValidStaple(der, { cert: leaf.cert, issuer: ca.cert, at: at(HOUR) }), false);
      // A revocation checker that believes any authentic answer asks not to require good.
      const any = verify(der, { requireGood: false });
      assert.ok(any.ok && any.status === 'revoked');
    });

    test('unknown: a failure with reason status, told apart from revoked', async () => {
      const r = verify(await respond({ status: 'unknown' }));
      assert.deepEqual(codes(r), ['status']);
      assert.ok(!r.ok && r.status === 'unknown');
      assert.match(!r.ok ? r.reasons[0]!.message : '', /unknown to the responder/);
    });

    test('a delegated signer with the OCSP-signing EKU is accepted', async () => {
      const r = verify(await respond({ responder: delegated }));
      assert.ok(r.ok, JSON.stringify(codes(r)));
      assert.ok(r.responder.der.equals(delegated.cert.der));
    });

    test('a delegated signer without the EKU, or with other EKUs only, is refused', async () => {
      const noEku = await responderOf(ca, { extKeyUsage: [] });
      const serverEku = await responderOf(ca, { extKeyUsage: ['serverAuth'] });
      for (const responder of [noEku, serverEku]) {
        const r = verify(await respond({ responder }));
        assert.deepEqual(codes(r), ['responder']);
        assert.match(!r.ok ? r.reasons[0]!.message : '', /lacks the OCSP signing extended key usage/);
      }
    });

    test('a delegated signer issued by another CA is refused', async () => {
      const foreign = await responderOf(otherCa);
      const r = verify(await respond({ responder: foreign }));
      assert.deepEqual(codes(r), ['responder']);
      assert.match(!r.ok ? r.reasons[0]!.message : '', /is not issued by/);
    });

    test('an expired delegated signer is refused', async () => {
      const expired = await responderOf(ca, { notBefore: at(-3 * DAY), notAfter: at(-DAY) });
      const r = verify(await respond({ responder: expired }));
      assert.deepEqual(codes(r), ['responder']);
      assert.match(!r.ok ? r.reasons[0]!.message : '', /is not valid at/);
    });

    test('a delegated signer whose certificate is missing cannot be identified', async () => {
      const r = verify(await respond({ responder: delegated, includeCertificates: false }));
      assert.deepEqual(codes(r), ['responder']);
      assert.match(!r.ok ? r.reasons[0]!.message : '', /no certificate .* matches responder key hash/);
    });

    test('wrong issuer: another CA’s response for the same serial', async () => {
      const der = await buildOcspResponse({
        responder: { cert: otherCa.cert, signer: otherCa.signer },
        producedAt: T,
        responses: [{ certId: certIdForSerial(leaf.cert.serial, otherCa.cert), status: 'good', thisUpdate: T, nextUpdate: at(DAY) }],
      });
      const r = verify(der);
      assert.deepEqual(codes(r), ['responder', 'certId']);
      assert.match(!r.ok ? r.reasons[1]!.message : '', /names serial .* but another issuer/);
    });

    test('wrong issuer passed in: the certificate was not issued by it', async () => {
      const r = verify(await respond(), { issuer: otherCa.cert });
      assert.ok(codes(r).includes('certId'));
      assert.match(!r.ok ? r.reasons.find((x) => x.code === 'certId')!.message : '', /is not issued by/);
    });

    test('wrong serial: a response about another certificate', async () => {
      const r = verify(await respond(), { cert: leaf2.cert });
      assert.deepEqual(codes(r), ['certId']);
      assert.match(!r.ok ? r.reasons[0]!.message : '', new RegExp(`is about serial ${leaf.cert.serial}.*not serial ${leaf2.cert.serial}`));
    });

    test('a CertID with a hash other than SHA-1 or SHA-256 is not accepted', async () => {
      const der = await respond({ responses: [{ certId: certIdFor(leaf.cert, ca.cert, 'sha384'), status: 'good', thisUpdate: T, nextUpdate: at(DAY) }] });
      const r = verify(der);
      assert.deepEqual(codes(r), ['certId']);
      assert.match(!r.ok ? r.reasons[0]!.message : '', /sha384 CertID/);
    });

    test('expired and not yet valid, with the clock skew allowance', async () => {
      const der = await respond();
      const expired = verify(der, { at: at(DAY + 6 * MIN) });
      assert.deepEqual(codes(expired), ['freshness']);
      assert.match(!expired.ok ? expired.reasons[0]!.message : '', /expired: nextUpdate/);
      assert.ok(!expired.ok && expired.status === 'good' && expired.nextUpdate?.getTime() === T_SEC.getTime() + DAY, 'the window is reported');
      assert.ok(verify(der, { at: at(DAY + 4 * MIN) }).ok, 'within the default 5 minutes of skew');
      assert.deepEqual(codes(verify(der, { at: at(DAY + 1000), maxClockSkewMs: 0 })), ['freshness']);
      const early = verify(der, { at: at(-6 * MIN) });
      assert.deepEqual(codes(early), ['freshness']);
      assert.match(!early.ok ? early.reasons[0]!.message : '', /not yet valid/);
      assert.ok(verify(der, { at: at(-4 * MIN) }).ok);
    });

    test('without nextUpdate a response is fresh for a day after thisUpdate (configurable)', async () => {
      const der = await respond({ responses: [{ certId: certIdFor(leaf.cert, ca.cert), status: 'good', thisUpdate: T }] });
      assert.ok(verify(der, { at: at(HOUR) }).ok);
      const stale = verify(der, { at: at(DAY + 10 * MIN) });
      assert.deepEqual(codes(stale), ['freshness']);
      assert.match(!stale.ok ? stale.reasons[0]!.message : '', /no nextUpdate/);
      assert.deepEqual(codes(verify(der, { at: at(HOUR), maxAgeWithoutNextUpdateMs: 0 })), ['freshness'], "Envoy's rule");
    });

    test('a tampered signature or tampered content is reason signature', async () => {
      const der = await respond();
      const sigTampered = Buffer.from(der);
      sigTampered[sigTampered.length - 1] ^= 0x01;
      assert.deepEqual(codes(verify(sigTampered)), ['signature']);
      const resp = OcspResponse.parse(der);
      const i = der.indexOf(resp.tbsResponseData!) + resp.tbsResponseData!.indexOf(Buffer.from(leaf.cert.serial.slice(-6), 'hex'));
      const contentTampered = Buffer.from(der);
      contentTampered[i] ^= 0x01;
      assert.ok(codes(verify(contentTampered)).includes('signature'));
    });

    test('truncated or garbage input is reason parse, never a throw', async () => {
      const der = await respond();
      const r = verify(der.subarray(0, der.length - 1));
      assert.deepEqual(codes(r), ['parse']);
      assert.deepEqual(codes(verify(Buffer.from('<html>502</html>'))), ['parse']);
      assert.deepEqual(codes(verify(Buffer.alloc(0))), ['parse']);
    });

    test('an error response is reason responseStatus', () => {
      const r = verify(buildOcspErrorResponse('tryLater'));
      assert.deepEqual(codes(r), ['responseStatus']);
      assert.match(!r.ok ? r.reasons[0]!.message : '', /tryLater/);
    });

    test('nonce: echoed is fine, missing or different is reason nonce', async () => {
      const nonce = randomNonce();
      assert.ok(verify(await respond({ nonce }), { nonce }).ok);
      assert.deepEqual(codes(verify(await respond(), { nonce })), ['nonce']);
      assert.deepEqual(codes(verify(await respond({ nonce: randomNonce() }), { nonce })), ['nonce']);
      // A staple check sends no nonce, so a response with one is still fine.
      assert.ok(verify(await respond({ nonce })).ok);
    });

    test('several failures are all reported', async () => {
      const noEku = await responderOf(ca, { extKeyUsage: ['clientAuth'], notAfter: at(10 * DAY) });
      const der = await respond({ responder: noEku, status: { revoked: { at: T } } });
      assert.deepEqual(codes(verify(der, { at: at(2 * DAY), nonce: randomNonce() })), ['responder', 'status', 'freshness', 'nonce']);
    });

    test('an RSA CA signs and verifies', async () => {
      const rsa = await TestCA.root({ keyType: 'rsa-2048' });
      const rsaLeaf = await rsa.issue();
      const der = await buildOcspResponse({
        responder: { cert: rsa.cert, signer: rsa.signer },
        producedAt: T,
        responses: [{ certId: certIdFor(rsaLeaf.cert, rsa.cert), status: 'good', thisUpdate: T, nextUpdate: at(DAY) }],
      });
      const resp = OcspResponse.parse(der);
      assert.ok(resp.signatureAlgorithmParams?.equals(Buffer.from([0x05, 0x00])), 'NULL parameters for RSA');
      assert.ok(verifyOcspResponse(resp, { cert: rsaLeaf.cert, issuer: rsa.cert, at: at(HOUR) }).ok);
    });
  });
});
