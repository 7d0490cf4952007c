import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, isMeshError, type ErrorCode } from '../core/index.js';
import { TestCA } from '../../test/helpers/test-ca.js';
import { buildCrl, Crl, parseRevocationReason, REVOCATION_REASONS, type BuildCrlOptions } from './index.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
// Milliseconds on purpose: every time must come out rounded down to whole seconds.
const T = new Date(Math.floor(Date.now() / 1000) * 1000 + 789);
const T_SEC = new Date(Math.floor(T.getTime() / 1000) * 1000);

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

describe('revocation reasons', () => {
  test('the list is RFC 5280 CRLReason, without the unused value 7', () => {
    assert.equal(REVOCATION_REASONS.length, 10);
    assert.deepEqual(REVOCATION_REASONS.slice(0, 3), ['unspecified', 'keyCompromise', 'cACompromise']);
  });

  test('parseRevocationReason accepts RFC and OpenSSL spellings', () => {
    assert.equal(parseRevocationReason('keyCompromise'), 'keyCompromise');
    assert.equal(parseRevocationReason('CACompromise'), 'cACompromise');
    assert.equal(parseRevocationReason('key-compromise'), 'keyCompromise');
    assert.equal(parseRevocationReason(' Superseded '), 'superseded');
    assert.equal(parseRevocationReason('AACompromise'), 'aACompromise');
  });

  test('an unknown reason names the field and lists the valid names', () => {
    throwsCode(() => parseRevocationReason('stolen', '--reason'), ErrorCodes.REVOCATION_REASON, /--reason: "stolen".*keyCompromise.*aACompromise/);
    throwsCode(() => parseRevocationReason(''), ErrorCodes.REVOCATION_REASON);
  });
});

describe('CRLs', () => {
  let ca: TestCA;
  let other: TestCA;
  let base: BuildCrlOptions;

  before(async () => {
    ca = await TestCA.root({ name: 'crl root' });
    other = await TestCA.root({ name: 'crl root' }); // same name, another key
    base = {
      issuer: ca.cert,
      signer: ca.signer,
      thisUpdate: T,
      nextUpdate: new Date(T.getTime() + DAY),
      crlNumber: 7n,
      entries: [],
    };
  });

  test('a CRL with several entries, reasons, invalidity date and CRL number reads back', async () => {
    const der = await buildCrl({
      ...base,
      crlNumber: 0x0123456789abcdef0123n,
      entries: [
        { serial: '1F:A2:00:01', revokedAt: new Date(T.getTime() - HOUR), reason: 'keyCompromise', invalidityDate: new Date(T.getTime() - 2 * DAY) },
        { serial: 'ff00', revokedAt: new Date(T.getTime() - 2 * HOUR), reason: 'superseded' },
        { serial: '0x05', revokedAt: new Date(T.getTime() - 3 * HOUR), reason: 'unspecified' },
        { serial: '6', revokedAt: new Date(T.getTime() - 4 * HOUR) },
        { serial: '7', revokedAt: new Date(T.getTime() - 5 * HOUR), reason: 'certificateHold' },
      ],
    });
    const crl = Crl.parse(der, 'test.crl');
    assert.equal(crl.version, 2);
    assert.equal(crl.crlNumber, 0x0123456789abcdef0123n);
    assert.equal(crl.authorityKeyId, ca.cert.issuerKeyId);
    assert.ok(crl.issuerDer.equals(ca.cert.subjectDer), 'issuer Name copied byte for byte');
    assert.equal(crl.issuer, ca.cert.subject);
    assert.equal(crl.thisUpdate.getTime(), T_SEC.getTime());
    assert.equal(crl.nextUpdate?.getTime(), T_SEC.getTime() + DAY);
    assert.equal(crl.signatureAlgorithm, 'ecdsa-with-SHA256');
    assert.deepEqual(
      crl.entries.map((e) => [e.serial, e.reason]),
      [
        ['1fa20001', 'keyCompromise'],
        ['ff00', 'superseded'],
        ['5', 'unspecified'],
        ['6', 'unspecified'],
        ['7', 'certificateHold'],
      ],
    );
    const first = crl.entries[0]!;
    assert.equal(first.revokedAt.getTime(), T_SEC.getTime() - HOUR);
    assert.equal(first.invalidityDate?.getTime(), T_SEC.getTime() - 2 * DAY);
    assert.equal(crl.entries[1]!.invalidityDate, null);
  });

  test("'unspecified' and absent reasons write no reason code extension (RFC 5280 §5.3.1)", async () => {
    const crl = Crl.parse(
      await buildCrl({ ...base, entries: [{ serial: '5', revokedAt: T, reason: 'unspecified' }, { serial: '6', revokedAt: T }, { serial: '7', revokedAt: T, reason: 'keyCompromise' }] }),
    );
    const exts = crl.x509.entries.map((e) => e.extensions.map((x) => x.type));
    assert.deepEqual(exts, [[], [], ['2.5.29.21']]);
    // And no empty crlEntryExtensions SEQUENCE (SIZE 1..MAX): the entry for 5 is exactly SEQUENCE { INTEGER, UTCTime }.
    const entry5 = Buffer.from('3012020105170d', 'hex');
    assert.ok(crl.der.includes(entry5));
  });

  test('lookup accepts any serial form and returns null for a serial not listed', async () => {
    const crl = Crl.parse(await buildCrl({ ...base, entries: [{ serial: '00ab:cd', revokedAt: T, reason: 'affiliationChanged' }] }));
    assert.equal(crl.lookup('ABCD')?.reason, 'affiliationChanged');
    assert.equal(crl.lookup('ab:cd')?.serial, 'abcd');
    assert.equal(crl.lookup('0x00abcd')?.serial, 'abcd');
    assert.equal(crl.lookup('abce'), null);
    throwsCode(() => crl.lookup('zz'), ErrorCodes.SERIAL);
  });

  test('an empty CRL has no revokedCertificates and still carries its number', async () => {
    const crl = Crl.parse(await buildCrl({ ...base, crlNumber: 0n }));
    assert.deepEqual(crl.entries, []);
    assert.equal(crl.crlNumber, 0n);
  });

  test('PEM uses the label X509 CRL, which OpenSSL requires', async () => {
    const crl = Crl.parse(await buildCrl(base));
    assert.ok(crl.pem.startsWith('-----BEGIN X509 CRL-----\n'));
    assert.ok(crl.pem.endsWith('-----END X509 CRL-----\n'));
    assert.ok(!crl.pem.includes('BEGIN CRL'));
    assert.ok(Crl.parse(crl.pem, 'ca.crl').der.equals(crl.der));
  });

  test('parseAll reads every CRL of a bundle, also under the CRL label @peculiar/x509 writes', async () => {
    const a = Crl.parse(await buildCrl(base));
    const b = Crl.parse(await buildCrl({ ...base, issuer: other.cert, signer: other.signer, crlNumber: 9n }));
    const bundle = a.pem + 'text between blocks\n' + b.pem.replaceAll('X509 CRL', 'CRL');
    const all = Crl.parseAll(bundle, 'bundle.crl');
    assert.deepEqual(
      all.map((c) => c.crlNumber),
      [7n, 9n],
    );
    assert.equal(all[1]!.source, 'bundle.crl (CRL 2)');
    assert.equal(Crl.parseAll(a.der).length, 1);
  });

  test('signature: the issuer verifies, a same-named CA with another key does not', async () => {
    const crl = Crl.parse(await buildCrl(base), 'ca.crl');
    assert.equal(crl.verifySignature(ca.cert), true);
    assert.equal(crl.isIssuedBy(ca.cert), true);
    crl.assertIssuedBy(ca.cert);
    assert.equal(crl.verifySignature(other.cert), false);
    assert.equal(crl.isIssuedBy(other.cert), false);
    throwsCode(() => crl.assertIssuedBy(other.cert), ErrorCodes.CRL_SIGNATURE, /ca\.crl: .*does not verify/);
    const stranger = await TestCA.root({ name: 'another root' });
    throwsCode(() => crl.assertIssuedBy(stranger.cert), ErrorCodes.CRL_SIGNATURE, /ca\.crl: CRL issuer .* is not/);
  });

  test('a tampered CRL no longer verifies', async () => {
    const der = await buildCrl({ ...base, entries: [{ serial: '1234', revokedAt: T }] });
    const i = der.indexOf(Buffer.from('02021234', 'hex'));
    assert.ok(i > 0);
    const tampered = Buffer.from(der);
    tampered[i + 3] = 0x35; // revoke 1235 instead
    const crl = Crl.parse(tampered);
    assert.ok(crl.lookup('1235'));
    assert.equal(crl.verifySignature(ca.cert), false);
  });

  test('RSA and Ed25519 issuers sign CRLs too', async () => {
    for (const keyType of ['rsa-2048', 'ed25519'] as const) {
      const issuer = await TestCA.root({ keyType });
      const crl = Crl.parse(await buildCrl({ ...base, issuer: issuer.cert, signer: issuer.signer }));
      assert.equal(crl.isIssuedBy(issuer.cert), true, keyType);
    }
  });

  test('isCurrentAt follows thisUpdate and nextUpdate', async () => {
    const crl = Crl.parse(await buildCrl(base));
    assert.equal(crl.isCurrentAt(new Date(T_SEC.getTime() + HOUR)), true);
    assert.equal(crl.isCurrentAt(new Date(T_SEC.getTime() - 1000)), false);
    assert.equal(crl.isCurrentAt(new Date(T_SEC.getTime() + DAY + 1000)), false);
  });

  test('bad build input is a typed error that names the field', async () => {
    await rejectsCode(buildCrl({ ...base, nextUpdate: new Date(T.getTime() - DAY) }), ErrorCodes.INVALID_ARGUMENT, /nextUpdate/);
    await rejectsCode(buildCrl({ ...base, crlNumber: -1n }), ErrorCodes.INVALID_ARGUMENT, /crlNumber/);
    await rejectsCode(buildCrl({ ...base, crlNumber: 1n << 160n }), ErrorCodes.INVALID_ARGUMENT, /20 octets/);
    await rejectsCode(buildCrl({ ...base, entries: [{ serial: 'xyz', revokedAt: T }] }), ErrorCodes.SERIAL, /entries\[0\]\.serial/);
    await rejectsCode(
      buildCrl({ ...base, entries: [{ serial: 'ab', revokedAt: T }, { serial: '00AB', revokedAt: T }] }),
      ErrorCodes.INVALID_ARGUMENT,
      /ab is listed twice \(entries\[1\]\)/,
    );
    await rejectsCode(
      buildCrl({ ...base, entries: [{ serial: 'ab', revokedAt: T, reason: 'lost' as never }] }),
      ErrorCodes.REVOCATION_REASON,
      /entries\[0\]\.reason/,
    );
    await rejectsCode(buildCrl({ ...base, entries: [{ serial: 'ab', revokedAt: new Date(NaN) }] }), ErrorCodes.INVALID_ARGUMENT, /revokedAt/);
  });

  test('garbage, truncated input and certificates are CRL_PARSE errors naming the source', async () => {
    const der = await buildCrl({ ...base, entries: [{ serial: '1', revokedAt: T }] });
    throwsCode(() => Crl.parse(Buffer.from('not a crl at all'), 'junk.crl'), ErrorCodes.CRL_PARSE, /^junk\.crl: /);
    throwsCode(() => Crl.parse(der.subarray(0, der.length - 10), 'short.crl'), ErrorCodes.CRL_PARSE, /^short\.crl: /);
    throwsCode(() => Crl.parse(Buffer.concat([der, Buffer.from([0])]), 'long.crl'), ErrorCodes.CRL_PARSE, /trailing/);
    throwsCode(() => Crl.parse(ca.cert.der, 'cert.pem'), ErrorCodes.CRL_PARSE, /^cert\.pem: /);
    throwsCode(() => Crl.parse(ca.cert.pem, 'cert.pem'), ErrorCodes.PEM, /no X509 CRL block/);
    throwsCode(() => Crl.parse('hello', 'text.crl'), ErrorCodes.CRL_PARSE, /neither PEM nor DER/);
  });
});
