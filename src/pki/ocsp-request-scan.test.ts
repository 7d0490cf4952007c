import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { TestCA, tempDir } from '../../test/helpers/test-ca.js';
import { openssl } from '../../test/helpers/tools.js';
import { MAX_SCANNED_CERT_IDS, OcspRequest, buildOcspRequest, certIdFor, certIdForSerial, randomNonce, scanOcspRequest } from './index.js';

function assertSameAsFullParse(der: Buffer): void {
  const full = OcspRequest.parse(der);
  const scan = scanOcspRequest(der);
  assert.equal(scan.certIds.length, full.certIds.length);
  scan.certIds.forEach((s, i) => {
    const f = full.certIds[i]!;
    assert.equal(s.hash, f.hashAlgorithm);
    assert.ok(s.issuerNameHash.equals(f.issuerNameHash));
    assert.ok(s.issuerKeyHash.equals(f.issuerKeyHash));
    assert.equal(s.serial, f.serial);
  });
  assert.equal(scan.hasExtensions, full.nonce !== null);
  assert.equal(scan.signed, full.signed);
}

test('scanOcspRequest reads what the full parser reads: SHA-1 and SHA-256 CertIDs, nonces, several certificates', async () => {
  const ca = await TestCA.root();
  const a = await ca.issueServer(['a.example']);
  const b = await ca.issueServer(['b.example']);
  assertSameAsFullParse(buildOcspRequest({ certIds: [certIdFor(a.cert, ca.cert)] }));
  assertSameAsFullParse(buildOcspRequest({ certIds: [certIdFor(a.cert, ca.cert, 'sha256')], nonce: randomNonce() }));
  assertSameAsFullParse(buildOcspRequest({ certIds: [certIdFor(a.cert, ca.cert), certIdFor(b.cert, ca.cert, 'sha512')] }));
  // A serial whose top bit is set is written with a leading 00 byte; the scan gives the canonical hex.
  const scan = scanOcspRequest(buildOcspRequest({ certIds: [certIdForSerial('80ff', ca.cert)] }));
  assert.equal(scan.certIds[0]!.serial, '80ff');
});

test('scanOcspRequest reads requests made by openssl ocsp (nonce, -no_nonce, -sha256), and keeps the CertID bytes as sent', async () => {
  const ca = await TestCA.root();
  const leaf = await ca.issueServer(['leaf.example']);
  const dir = tempDir('meshcert-scan-');
  try {
    const caPem = dir.file('ca.pem', ca.cert.pem);
    const leafPem = dir.file('leaf.pem', leaf.cert.pem);
    for (const extra of [[], ['-no_nonce'], ['-no_nonce', '-sha256']]) {
      const out = dir.file('req.der');
      // The digest option applies to the -cert after it.
      const r = openssl(['ocsp', ...extra, '-issuer', caPem, '-cert', leafPem, '-reqout', out]);
      assert.equal(r.status, 0, r.stderr);
      const der = readFileSync(out);
      assertSameAsFullParse(der);
      const id = scanOcspRequest(der).certIds[0]!;
      assert.equal(id.serial, leaf.cert.serial);
      assert.equal(id.hash, extra.includes('-sha256') ? 'sha256' : 'sha1');
      // The CertID bytes are a sub-range of the request.
      assert.ok(der.includes(id.der));
      assert.equal(id.der[0], 0x30);
    }
  } finally {
    dir.cleanup();
  }
});

test('scanOcspRequest refuses garbage with OCSP_PARSE: truncation, trailing bytes, BER, wrong structure, empty or huge lists', async () => {
  const ca = await TestCA.root();
  const good = buildOcspRequest({ certIds: [certIdForSerial('1234', ca.cert)] });
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['text', Buffer.from('hello, OCSP')],
    ['truncated', good.subarray(0, good.length - 3)],
    ['trailing', Buffer.concat([good, Buffer.from([0])])],
    ['indefinite length', Buffer.from([0x30, 0x80, 0x00, 0x00])],
    ['not a sequence', Buffer.from([0x04, 0x02, 0x30, 0x00])],
    ['empty request list', Buffer.from([0x30, 0x04, 0x30, 0x02, 0x30, 0x00])],
    ['a certificate where a request goes', Buffer.from([0x30, 0x06, 0x30, 0x04, 0x30, 0x02, 0x02, 0x00])],
    [
      'too many CertIDs',
      buildOcspRequest({ certIds: Array.from({ length: MAX_SCANNED_CERT_IDS + 1 }, (_, i) => certIdForSerial((i + 1).toString(16), ca.cert)) }),
    ],
  ];
  for (const [name, der] of cases) {
    assert.throws(() => scanOcspRequest(der), (e: unknown) => isMeshError(e, ErrorCodes.OCSP_PARSE), name);
  }
  // Random bytes and random mutations of a good request: a MeshError or a result, never anything else.
  for (let i = 0; i < 2000; i++) {
    const der = i % 2 ? randomBytes(1 + (i % 200)) : Buffer.from(good);
    if (!(i % 2)) der[i % der.length] = randomBytes(1)[0]!;
    try {
      scanOcspRequest(der);
    } catch (e) {
      assert.ok(isMeshError(e, ErrorCodes.OCSP_PARSE), String(e));
    }
  }
});
