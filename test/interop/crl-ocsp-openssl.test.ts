// Our CRLs and OCSP messages against independent implementations: OpenSSL 3.0 (`openssl crl`, `verify`, `ca`,
// `ocsp`) and GnuTLS certtool. Every test makes its own PKI at run time.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { certtool, openssl, run } from '../helpers/tools.js';
import {
  buildCrl,
  buildOcspRequest,
  buildOcspResponse,
  certIdFor,
  Crl,
  exportPrivateKeyPem,
  generateKeyPair,
  OcspRequest,
  OcspResponse,
  opensslSerial,
  randomNonce,
  toSigningKey,
  verifyOcspResponse,
  type CertificateSpec,
  type OcspResponder,
} from '../../src/pki/index.js';
import { skipUnlessCi } from '../helpers/peers.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

function hasTool(cmd: string, args: string[]): boolean {
  try {
    return run(cmd, args).status === 0;
  } catch {
    return false;
  }
}
const HAS_CERTTOOL = hasTool('certtool', ['--version']);

interface Pki {
  ca: TestCA;
  leaf: IssuedLeaf;
  revoked: IssuedLeaf;
  dir: ReturnType<typeof tempDir>;
  /** Paths of ca.pem, leaf.pem, revoked.pem in the temp dir. */
  caPem: string;
  leafPem: string;
  revokedPem: string;
}

async function withPki(fn: (p: Pki) => Promise<void>): Promise<void> {
  const ca = await TestCA.root({ name: 'interop root' });
  const leaf = await ca.issueServer(['localhost']);
  const revoked = await ca.issueServer(['revoked.localhost']);
  const dir = tempDir('meshcert-crl-ocsp-');
  try {
    await fn({
      ca,
      leaf,
      revoked,
      dir,
      caPem: dir.file('ca.pem', ca.cert.pem),
      leafPem: dir.file('leaf.pem', leaf.cert.pem),
      revokedPem: dir.file('revoked.pem', revoked.cert.pem),
    });
  } finally {
    dir.cleanup();
  }
}

async function responderOf(ca: TestCA, spec: Partial<CertificateSpec> = {}): Promise<OcspResponder> {
  const keys = generateKeyPair('ec-p256');
  const issued = await ca.issue({ subject: 'CN=interop ocsp', extKeyUsage: ['ocspSigning'], ...spec, publicKey: keys.publicKey });
  return { cert: issued.cert, signer: await toSigningKey(keys.privateKey) };
}

/** OpenSSL's index.txt time: YYMMDDHHMMSSZ. */
function indexTime(d: Date): string {
  return d.toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
}

/** index.txt as `openssl ca` and `openssl ocsp -index` read it (tab-separated; see PEERS.md §3). */
function indexTxt(good: IssuedLeaf[], revoked: Array<{ leaf: IssuedLeaf; at: Date; reason: string }>): string {
  const line = (status: string, leaf: IssuedLeaf, rev: string) =>
    `${status}\t${indexTime(leaf.cert.notAfter)}\t${rev}\t${opensslSerial(leaf.cert.serial)}\tunknown\t/CN=${leaf.cert.commonName ?? 'x'}\n`;
  return good.map((l) => line('V', l, '')).join('') + revoked.map((r) => line('R', r.leaf, `${indexTime(r.at)},${r.reason}`)).join('');
}

describe('CRLs with OpenSSL and GnuTLS', () => {
  async function ourCrl(p: Pki): Promise<Crl> {
    const now = Date.now();
    const der = await buildCrl({
      issuer: p.ca.cert,
      signer: p.ca.signer,
      thisUpdate: new Date(now - MIN),
      nextUpdate: new Date(now + DAY),
      crlNumber: 4242n,
      entries: [
        { serial: p.revoked.cert.serial, revokedAt: new Date(now - HOUR), reason: 'keyCompromise', invalidityDate: new Date(now - DAY) },
        { serial: 'abc123', revokedAt: new Date(now - 2 * HOUR), reason: 'superseded' },
        { serial: '77', revokedAt: new Date(now - 3 * HOUR) },
      ],
    });
    return Crl.parse(der, 'ours.crl');
  }

  test('openssl crl verifies our signature and shows our entries, reasons and extensions', async () => {
    await withPki(async (p) => {
      const crl = await ourCrl(p);
      const file = p.dir.file('ours.crl', crl.pem);
      const v = openssl(['crl', '-in', file, '-CAfile', p.caPem, '-noout']);
      assert.equal(v.status, 0, v.stderr);
      assert.match(v.stderr + v.stdout, /verify OK/);
      const t = openssl(['crl', '-in', file, '-text', '-noout']);
      assert.equal(t.status, 0, t.stderr);
      assert.match(t.stdout, /Version 2 \(0x1\)/);
      assert.match(t.stdout, /X509v3 CRL Number: \n\s+4242/);
      assert.match(t.stdout, /X509v3 Authority Key Identifier: \n\s+[0-9A-F:]+/);
      assert.ok(t.stdout.includes(p.ca.cert.issuerKeyId.toUpperCase().match(/../g)!.join(':')));
      assert.match(t.stdout, new RegExp(`Serial Number: ${opensslSerial(p.revoked.cert.serial)}\\n.*\\n\\s+CRL entry extensions:\\n\\s+X509v3 CRL Reason Code: \\n\\s+Key Compromise\\n\\s+Invalidity Date: `));
      assert.match(t.stdout, /Serial Number: ABC123\n.*\n\s+CRL entry extensions:\n\s+X509v3 CRL Reason Code: \n\s+Superseded/);
      // No reason code for an entry revoked without one.
      assert.match(t.stdout, /Serial Number: 77\n\s+Revocation Date: [^\n]+\n\s+Signature Algorithm/);
      // A DER copy verifies as well.
      const derFile = p.dir.file('ours.der', crl.der);
      assert.equal(openssl(['crl', '-inform', 'DER', '-in', derFile, '-CAfile', p.caPem, '-noout']).status, 0);
    });
  });

  test('openssl verify -crl_check rejects the revoked leaf and accepts the other', async () => {
    await withPki(async (p) => {
      const file = p.dir.file('ours.crl', (await ourCrl(p)).pem);
      const bad = openssl(['verify', '-crl_check', '-CRLfile', file, '-CAfile', p.caPem, p.revokedPem]);
      assert.notEqual(bad.status, 0);
      assert.match(bad.stdout + bad.stderr, /certificate revoked/);
      const good = openssl(['verify', '-crl_check', '-CRLfile', file, '-CAfile', p.caPem, p.leafPem]);
      assert.equal(good.status, 0, good.stdout + good.stderr);
      assert.match(good.stdout, /leaf\.pem: OK/);
    });
  });

  test('GnuTLS certtool reads our CRL', { skip: skipUnlessCi(!HAS_CERTTOOL && 'certtool is not installed') }, async () => {
    await withPki(async (p) => {
      const file = p.dir.file('ours.crl', (await ourCrl(p)).pem);
      const r = certtool(['--crl-info', '--infile', file]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /Version: 2/);
      assert.match(r.stdout, /CRL Number \(not critical\): 1092/); // 4242 in hex
      assert.match(r.stdout, /Revoked certificates \(3\):/);
      assert.ok(r.stdout.includes(`Serial Number (hex): ${opensslSerial(p.revoked.cert.serial).toLowerCase()}`), r.stdout);
      assert.ok(!/error/i.test(r.stdout + r.stderr), r.stdout + r.stderr);
      // certtool also checks the signature when given the issuer.
      const v = certtool(['--crl-info', '--infile', file, '--load-ca-certificate', p.caPem, '--verify-crl']);
      assert.equal(v.status, 0, v.stdout + v.stderr);
      assert.match(v.stdout + v.stderr, /Verification output: Verified/);
    });
  });

  test('we read a CRL made by openssl ca -gencrl', async () => {
    await withPki(async (p) => {
      const revokedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - HOUR);
      p.dir.file('index.txt', indexTxt([p.leaf], [{ leaf: p.revoked, at: revokedAt, reason: 'keyCompromise' }]));
      p.dir.file('crlnumber', '1F\n');
      const key = p.dir.file('ca.key', p.ca.keyPem);
      const cnf = p.dir.file(
        'ca.cnf',
        [
          '[ ca ]',
          'default_ca = CA_default',
          '[ CA_default ]',
          `database = ${p.dir.dir}/index.txt`,
          `crlnumber = ${p.dir.dir}/crlnumber`,
          'default_md = sha256',
          'default_crl_days = 7',
          'crl_extensions = crl_ext',
          '[ crl_ext ]',
          'authorityKeyIdentifier = keyid:always',
          '',
        ].join('\n'),
      );
      const out = p.dir.file('openssl.crl');
      const r = openssl(['ca', '-gencrl', '-config', cnf, '-keyfile', key, '-cert', p.caPem, '-out', out]);
      assert.equal(r.status, 0, r.stderr);
      const crl = Crl.parse(readFileSync(out), 'openssl.crl');
      assert.equal(crl.crlNumber, 0x1fn);
      assert.equal(crl.authorityKeyId, p.ca.cert.issuerKeyId);
      assert.equal(crl.isIssuedBy(p.ca.cert), true);
      assert.equal(crl.entries.length, 1);
      const e = crl.lookup(p.revoked.cert.serial);
      assert.ok(e);
      assert.equal(e.reason, 'keyCompromise');
      assert.equal(e.revokedAt.getTime(), revokedAt.getTime());
      assert.equal(crl.lookup(p.leaf.cert.serial), null);
      assert.ok((crl.nextUpdate?.getTime() ?? 0) - crl.thisUpdate.getTime() === 7 * DAY);
    });
  });
});

describe('OCSP with openssl ocsp', () => {
  function single(p: Pki, leaf: IssuedLeaf, status: Parameters<typeof buildOcspResponse>[0]['responses'][0]['status'], hash: 'sha1' | 'sha256' = 'sha1') {
    const now = Date.now();
    return { certId: certIdFor(leaf.cert, p.ca.cert, hash), status, thisUpdate: new Date(now - MIN), nextUpdate: new Date(now + DAY) };
  }

  test('a good response signed by the CA: Response verify OK, leaf.pem: good', async () => {
    await withPki(async (p) => {
      const der = await buildOcspResponse({ responder: { cert: p.ca.cert, signer: p.ca.signer }, producedAt: new Date(), responses: [single(p, p.leaf, 'good')] });
      const file = p.dir.file('resp.der', der);
      const r = openssl(['ocsp', '-respin', file, '-issuer', p.caPem, '-cert', p.leafPem, '-CAfile', p.caPem, '-no_nonce']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /Response verify OK/);
      assert.match(r.stdout, /leaf\.pem: good/);
      assert.doesNotMatch(r.stdout + r.stderr, /WARNING/);
    });
  });

  test('a revoked response from a delegated signer, with a SHA-256 CertID: revoked with its reason', async () => {
    await withPki(async (p) => {
      const responder = await responderOf(p.ca);
      const revokedAt = new Date(Date.now() - HOUR);
      const der = await buildOcspResponse({
        responder,
        producedAt: new Date(),
        responses: [single(p, p.revoked, { revoked: { at: revokedAt, reason: 'keyCompromise' } }, 'sha256')],
      });
      const file = p.dir.file('resp.der', der);
      // -sha256 must come before -cert: it sets the digest of the CertIDs made from the following -cert.
      const r = openssl(['ocsp', '-respin', file, '-issuer', p.caPem, '-sha256', '-cert', p.revokedPem, '-CAfile', p.caPem, '-no_nonce']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /Response verify OK/);
      assert.match(r.stdout, /revoked\.pem: revoked/);
      assert.match(r.stdout, /Reason: keyCompromise/);
    });
  });

  test('OpenSSL refuses a delegated signer without the OCSP-signing EKU, as we do', async () => {
    await withPki(async (p) => {
      const responder = await responderOf(p.ca, { extKeyUsage: ['serverAuth'] });
      const der = await buildOcspResponse({ responder, producedAt: new Date(), responses: [single(p, p.leaf, 'good')] });
      const file = p.dir.file('resp.der', der);
      const r = openssl(['ocsp', '-respin', file, '-issuer', p.caPem, '-cert', p.leafPem, '-CAfile', p.caPem, '-no_nonce']);
      assert.match(r.stderr, /Response Verify Failure/);
      const ours = verifyOcspResponse(der, { cert: p.leaf.cert, issuer: p.ca.cert, at: new Date() });
      assert.ok(!ours.ok && ours.reasons.some((x) => x.code === 'responder'));
    });
  });

  test('OpenSSL sees an expired response as expired (times are whole seconds)', async () => {
    await withPki(async (p) => {
      const now = Date.now();
      const der = await buildOcspResponse({
        responder: { cert: p.ca.cert, signer: p.ca.signer },
        producedAt: new Date(now - 2 * DAY + 123),
        responses: [{ certId: certIdFor(p.leaf.cert, p.ca.cert), status: 'good', thisUpdate: new Date(now - 2 * DAY + 123), nextUpdate: new Date(now - DAY + 456) }],
      });
      const file = p.dir.file('resp.der', der);
      const r = openssl(['ocsp', '-respin', file, '-issuer', p.caPem, '-cert', p.leafPem, '-CAfile', p.caPem, '-no_nonce']);
      assert.match(r.stdout + r.stderr, /Status times invalid/);
      const ours = verifyOcspResponse(der, { cert: p.leaf.cert, issuer: p.ca.cert, at: new Date(now) });
      assert.ok(!ours.ok && ours.reasons.map((x) => x.code).join() === 'freshness');
    });
  });

  test('we read the nonce of an openssl ocsp -reqout request and echo it: no nonce error', async () => {
    await withPki(async (p) => {
      const reqFile = p.dir.file('req.der');
      const mk = openssl(['ocsp', '-issuer', p.caPem, '-cert', p.leafPem, '-cert', p.revokedPem, '-reqout', reqFile]);
      assert.equal(mk.status, 0, mk.stderr);
      const req = OcspRequest.parse(readFileSync(reqFile), 'req.der');
      assert.equal(req.certIds.length, 2);
      assert.deepEqual(req.certIds[0], certIdFor(p.leaf.cert, p.ca.cert, 'sha1'));
      assert.deepEqual(req.certIds[1], certIdFor(p.revoked.cert, p.ca.cert, 'sha1'));
      assert.equal(req.nonce?.length, 16);
      const now = Date.now();
      const der = await buildOcspResponse({
        responder: { cert: p.ca.cert, signer: p.ca.signer },
        producedAt: new Date(now),
        nonce: req.nonce!,
        responses: [
          { certId: req.certIds[0]!, status: 'good', thisUpdate: new Date(now), nextUpdate: new Date(now + DAY) },
          { certId: req.certIds[1]!, status: { revoked: { at: new Date(now - HOUR), reason: 'superseded' } }, thisUpdate: new Date(now), nextUpdate: new Date(now + DAY) },
        ],
      });
      const respFile = p.dir.file('resp.der', der);
      const r = openssl(['ocsp', '-reqin', reqFile, '-respin', respFile, '-issuer', p.caPem, '-CAfile', p.caPem, '-resp_text']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /Response verify OK/);
      assert.doesNotMatch(r.stdout + r.stderr, /Nonce Verify error|WARNING: no nonce/);
      assert.match(r.stdout, /OCSP Nonce: \n\s+0410[0-9A-F]{32}/);
      assert.match(r.stdout, /Cert Status: good/);
      assert.match(r.stdout, /Cert Status: revoked\n\s+Revocation Time: [^\n]+\n\s+Revocation Reason: superseded/);
      // A different nonce is caught by OpenSSL too.
      const wrong = await buildOcspResponse({
        responder: { cert: p.ca.cert, signer: p.ca.signer },
        producedAt: new Date(now),
        nonce: randomNonce(),
        responses: [{ certId: req.certIds[0]!, status: 'good', thisUpdate: new Date(now), nextUpdate: new Date(now + DAY) }],
      });
      const w = openssl(['ocsp', '-reqin', reqFile, '-respin', p.dir.file('wrong.der', wrong), '-issuer', p.caPem, '-CAfile', p.caPem]);
      assert.match(w.stderr, /Nonce Verify error/);
    });
  });

  test('OpenSSL answers our request (openssl ocsp -index), and we parse and verify its response', async () => {
    await withPki(async (p) => {
      const responder = await responderOf(p.ca);
      const rsigner = p.dir.file('ocsp.pem', responder.cert.pem);
      const rkey = p.dir.file('ocsp.key', exportPrivateKeyPem(responder.signer.privateKey));
      const revokedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - HOUR);
      const index = p.dir.file('index.txt', indexTxt([p.leaf], [{ leaf: p.revoked, at: revokedAt, reason: 'keyCompromise' }]));
      const nonce = randomNonce();
      const reqFile = p.dir.file('req.der', buildOcspRequest({ certIds: [certIdFor(p.leaf.cert, p.ca.cert), certIdFor(p.revoked.cert, p.ca.cert)], nonce }));
      // OpenSSL names its responder by subject by default, by key hash with -resp_key_id: we read both.
      for (const extra of [[], ['-resp_key_id']]) {
        const respFile = p.dir.file('openssl-resp.der');
        const r = openssl(['ocsp', '-index', index, '-rsigner', rsigner, '-rkey', rkey, '-CA', p.caPem, '-reqin', reqFile, '-respout', respFile, '-ndays', '7', ...extra]);
        assert.equal(r.status, 0, r.stderr);
        const resp = OcspResponse.parse(readFileSync(respFile), 'openssl-resp.der');
        assert.equal(resp.responseStatus, 'successful');
        assert.equal(resp.responderId?.type, extra.length ? 'keyHash' : 'name');
        if (resp.responderId?.type === 'name') {
          assert.ok(resp.responderId.der.equals(responder.cert.subjectDer));
          assert.match(resp.responderId.name, /CN=interop ocsp/);
        }
        assert.equal(resp.certificates.length, 1);
        assert.ok(resp.certificates[0]!.der.equals(responder.cert.der));
        assert.ok(resp.nonce?.equals(nonce), 'OpenSSL echoed our nonce');
        const good = verifyOcspResponse(resp, { cert: p.leaf.cert, issuer: p.ca.cert, at: new Date(), nonce });
        assert.ok(good.ok, JSON.stringify(!good.ok && good.reasons));
        assert.equal(good.status, 'good');
        assert.equal((good.nextUpdate?.getTime() ?? 0) - good.thisUpdate.getTime(), 7 * DAY);
        const rev = verifyOcspResponse(resp, { cert: p.revoked.cert, issuer: p.ca.cert, at: new Date(), nonce });
        assert.ok(!rev.ok && rev.status === 'revoked');
        assert.deepEqual(
          rev.reasons.map((x) => x.code),
          ['status'],
        );
        assert.equal(rev.single?.revocationReason, 'keyCompromise');
        assert.equal(rev.single?.revokedAt?.getTime(), revokedAt.getTime());
      }
    });
  });
});
