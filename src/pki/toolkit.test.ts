import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { TestCA } from '../../test/helpers/test-ca.js';
import {
  Certificate,
  Csr,
  KEY_TYPES,
  buildCsr,
  decodePem,
  describeKey,
  encodePem,
  exportPrivateKeyPem,
  formatInspection,
  generateKeyPair,
  inspectData,
  keysMatch,
  normalizeSerial,
  opensslSerial,
  parsePrivateKey,
  randomSerial,
  serialToDerHex,
  toSigningKey,
} from './index.js';

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

describe('PEM', () => {
  test('round trip, bundles, and errors that name the source', () => {
    const a = encodePem('CERTIFICATE', Buffer.from([1, 2, 3]));
    assert.match(a, /^-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n$/);
    const blocks = decodePem(`junk before\n${a}between\n${encodePem('X509 CRL', Buffer.alloc(100, 7))}`);
    assert.deepEqual(blocks.map((b) => b.label), ['CERTIFICATE', 'X509 CRL']);
    assert.equal(blocks[1]!.der.length, 100);
    assert.throws(() => decodePem('-----BEGIN A-----\nAQID\n-----END B-----\n', 'x.pem'), (e: unknown) => isMeshError(e, ErrorCodes.PEM) && e.message.startsWith('x.pem'));
    assert.throws(() => decodePem('-----BEGIN A-----\n!!!!\n-----END A-----\n', 'y.pem'), (e: unknown) => isMeshError(e, ErrorCodes.PEM));
    assert.throws(() => decodePem('-----BEGIN A-----\nAQID\n', 'z.pem'), (e: unknown) => isMeshError(e, ErrorCodes.PEM));
  });
});

describe('serials', () => {
  test('random serials are positive 128-bit and unique', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const s = randomSerial();
      assert.equal(serialToDerHex(s).length, 32, s);
      assert.equal(normalizeSerial(s), s);
      assert.ok(parseInt(serialToDerHex(s).slice(0, 2), 16) < 0x80);
      seen.add(s);
    }
    assert.equal(seen.size, 2000);
  });

  test('serials as users paste them', () => {
    assert.equal(normalizeSerial('0A:1B:FF'), 'a1bff');
    assert.equal(normalizeSerial('0x00ab'), 'ab');
    assert.equal(normalizeSerial(' 7F 01 '), '7f01');
    assert.equal(opensslSerial('a1bff'), '0A1BFF');
    assert.equal(serialToDerHex('ff'), '00ff');
    for (const bad of ['', 'xyz', '12:3g', '0x']) {
      assert.throws(() => normalizeSerial(bad, 'serial'), (e: unknown) => isMeshError(e, ErrorCodes.SERIAL), bad);
    }
  });
});

describe('keys', () => {
  test('every key type generates, describes itself and signs through both APIs', async () => {
    for (const type of KEY_TYPES.filter((t) => t !== 'rsa-4096' && t !== 'rsa-3072')) {
      const kp = generateKeyPair(type);
      assert.equal(describeKey(kp.privateKey).name, type);
      const sk = await toSigningKey(kp.privateKey);
      assert.ok(keysMatch(kp.privateKey, kp.publicKey));
      assert.equal(sk.description.name, type);
    }
  });

  test('private keys in PKCS#8, PKCS#1 and SEC1 as openssl and cert-manager write them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshcert-keys-'));
    try {
      const ec = openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout']);
      assert.match(ec, /BEGIN EC PRIVATE KEY/);
      assert.equal(describeKey(parsePrivateKey(ec, 'ec.key')).name, 'ec-p256');
      writeFileSync(join(dir, 'rsa.pem'), openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']));
      const pkcs1 = openssl(['rsa', '-in', join(dir, 'rsa.pem'), '-traditional']);
      assert.match(pkcs1, /BEGIN RSA PRIVATE KEY/);
      assert.equal(describeKey(parsePrivateKey(pkcs1, 'rsa1.key')).name, 'rsa-2048');
      const pkcs8 = exportPrivateKeyPem(parsePrivateKey(pkcs1));
      assert.match(pkcs8, /BEGIN PRIVATE KEY/);
      const enc = openssl(['pkcs8', '-topk8', '-in', join(dir, 'rsa.pem'), '-passout', 'pass:s3cret']);
      assert.throws(() => parsePrivateKey(enc, 'enc.key'), (e: unknown) => isMeshError(e, ErrorCodes.KEY_PARSE) && e.message.includes('passphrase'));
      assert.equal(describeKey(parsePrivateKey(enc, 'enc.key', 's3cret')).name, 'rsa-2048');
      const weak = openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024']);
      assert.throws(() => parsePrivateKey(weak, 'weak.key'), (e: unknown) => isMeshError(e, ErrorCodes.KEY_TOO_WEAK) && e.message.startsWith('weak.key'));
      const k1 = openssl(['ecparam', '-name', 'secp256k1', '-genkey', '-noout']);
      assert.throws(() => parsePrivateKey(k1, 'k1.key'), (e: unknown) => isMeshError(e, ErrorCodes.KEY_TYPE));
      assert.throws(() => parsePrivateKey('not a key', 'x.key'), (e: unknown) => isMeshError(e, ErrorCodes.KEY_PARSE));
      assert.throws(() => parsePrivateKey(encodePem('CERTIFICATE', Buffer.from([1])), 'c.pem'), (e: unknown) => isMeshError(e, ErrorCodes.KEY_PARSE) && e.message.includes('no PRIVATE KEY'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('certificates', () => {
  test('every extension the builder writes reads back, and openssl agrees', async () => {
    const root = await TestCA.root({ pathLen: 1 });
    const ca = await root.child({ spec: { nameConstraints: { permitted: { dns: ['.svc.cluster.local'], uri: ['cluster.local'], ip: ['10.0.0.0/8'] } } } });
    const leaf = await ca.issue({
      subject: 'CN=web.shop.svc.cluster.local, O=shop',
      sans: [
        { type: 'dns', value: 'web.shop.svc.cluster.local' },
        { type: 'ip', value: '10.1.2.3' },
        { type: 'uri', value: 'spiffe://cluster.local/ns/shop/sa/web' },
      ],
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extKeyUsage: ['serverAuth', 'clientAuth'],
      crlDistributionPoints: ['http://127.0.0.1:15014/crl'],
      ocspUrls: ['http://127.0.0.1:15014/ocsp'],
      caIssuersUrls: ['http://127.0.0.1:15014/roots'],
      mustStaple: true,
    });
    const c = leaf.cert;
    assert.equal(c.commonName, 'web.shop.svc.cluster.local');
    assert.deepEqual(c.sans.dns, ['web.shop.svc.cluster.local']);
    assert.deepEqual(c.sans.ip, ['10.1.2.3']);
    assert.deepEqual(c.spiffeIds, ['spiffe://cluster.local/ns/shop/sa/web']);
    assert.deepEqual(c.keyUsage, ['digitalSignature', 'keyEncipherment']);
    assert.deepEqual(c.extKeyUsageNames, ['serverAuth', 'clientAuth']);
    assert.deepEqual(c.crlDistributionPoints, ['http://127.0.0.1:15014/crl']);
    assert.deepEqual(c.ocspUrls, ['http://127.0.0.1:15014/ocsp']);
    assert.deepEqual(c.caIssuersUrls, ['http://127.0.0.1:15014/roots']);
    assert.equal(c.mustStaple, true);
    assert.equal(c.isCA, false);
    assert.equal(c.authorityKeyId, ca.cert.subjectKeyId);
    assert.ok(c.isIssuedBy(ca.cert));
    assert.ok(!c.isIssuedBy(root.cert));
    assert.deepEqual(ca.cert.nameConstraints?.permitted.dns, ['.svc.cluster.local']);
    assert.deepEqual(ca.cert.nameConstraints?.permitted.ip, ['10.0.0.0/8']);
    assert.equal(root.cert.basicConstraints?.pathLen, 1);
    assert.equal(c.serial, normalizeSerial(openssl(['x509', '-noout', '-serial'], c.pem).split('=')[1]!));
    const text = openssl(['x509', '-noout', '-text'], c.pem);
    assert.match(text, /TLS Feature:\s*\n\s*status_request/);
    assert.match(text, /OCSP - URI:http:\/\/127\.0\.0\.1:15014\/ocsp/);
    const fp = openssl(['x509', '-noout', '-fingerprint', '-sha256'], c.pem).split('=')[1]!.trim().replace(/:/g, '').toLowerCase();
    assert.equal(c.fingerprint256, fp);
    assert.equal(c.issuerKeyId, c.subjectKeyId ?? '');
  });

  test('parses what openssl makes (RSA and EC), bundles and DER', () => {
    const ec = openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=ossl/O=x', '-days', '2', '-addext', 'subjectAltName=DNS:a.example,IP:::1']);
    const cert = Certificate.parse(ec, 'ec.pem');
    assert.equal(cert.key.name, 'ec-p384');
    assert.deepEqual(cert.sans.ip, ['::1']);
    assert.ok(cert.isSelfIssued && cert.verifySignature(cert.publicKey));
    const der = execFileSync('openssl', ['x509', '-outform', 'DER'], { input: ec });
    assert.equal(Certificate.parse(der, 'ec.der').fingerprint256, cert.fingerprint256);
    const bundle = Certificate.parseAll(ec + ec, 'bundle.pem');
    assert.equal(bundle.length, 2);
  });

  test('garbage, truncated DER and wrong labels are typed errors naming the source', async () => {
    const root = await TestCA.root();
    assert.throws(() => Certificate.parse(Buffer.from('hello world'), 'g.der'), (e: unknown) => isMeshError(e, ErrorCodes.CERT_PARSE) && e.message.startsWith('g.der'));
    assert.throws(() => Certificate.fromDer(root.cert.der.subarray(0, 100), 't.der'), (e: unknown) => isMeshError(e, ErrorCodes.CERT_PARSE));
    assert.throws(() => Certificate.fromDer(Buffer.concat([root.cert.der, Buffer.from([0])]), 'x.der'), (e: unknown) => isMeshError(e, ErrorCodes.CERT_PARSE) && /trailing/.test(e.message));
    assert.throws(() => Certificate.parse(encodePem('PRIVATE KEY', root.cert.der), 'k.pem'), (e: unknown) => isMeshError(e, ErrorCodes.PEM) && /no CERTIFICATE/.test(e.message));
  });
});

describe('CSRs', () => {
  test('build, parse, verify; openssl agrees both ways', async () => {
    const sk = await toSigningKey(generateKeyPair('ec-p256').privateKey);
    const csr = await buildCsr({ subject: 'CN=x', sans: [{ type: 'uri', value: 'spiffe://td/ns/a/sa/b' }, { type: 'dns', value: 'b.a' }], mustStaple: true }, sk);
    assert.ok(csr.verify());
    assert.deepEqual(csr.requestedSans.uri, ['spiffe://td/ns/a/sa/b']);
    assert.ok(csr.requestedExtensionOids.includes('1.3.6.1.5.5.7.1.24'));
    // openssl exits non-zero (and execFileSync throws) when the self-signature does not verify.
    execFileSync('openssl', ['req', '-noout', '-verify'], { input: csr.pem, stdio: ['pipe', 'pipe', 'pipe'] });
    const ossl = openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=o', '-addext', 'subjectAltName=DNS:x.y,IP:10.0.0.1']);
    const parsed = Csr.parseVerified(ossl, 'o.csr');
    assert.equal(parsed.key.name, 'rsa-2048');
    assert.deepEqual(parsed.requestedSans.ip, ['10.0.0.1']);
    const tampered = Buffer.from(parsed.der);
    tampered[tampered.length - 3]! ^= 0xff;
    assert.throws(() => Csr.parseVerified(tampered, 'bad.csr'), (e: unknown) => isMeshError(e, ErrorCodes.CSR_SIGNATURE) && e.message.startsWith('bad.csr'));
    assert.throws(() => Csr.parse(Buffer.from('30030201', 'hex'), 'trunc.csr'), (e: unknown) => isMeshError(e, ErrorCodes.CSR_PARSE));
  });
});

describe('inspect', () => {
  test('recognises objects by content', async () => {
    const root = await TestCA.root();
    const svid = await root.issueSvid('spiffe://cluster.local/ns/a/sa/b');
    const [d] = inspectData(svid.cert.der, 'leaf.der');
    assert.equal(d!.kind, 'certificate');
    assert.deepEqual(d!.fields.spiffeIds, ['spiffe://cluster.local/ns/a/sa/b']);
    const csr = await buildCsr({ subject: 'CN=q' }, await toSigningKey(generateKeyPair().privateKey));
    assert.deepEqual(inspectData(Buffer.from(svid.chainPem + csr.pem)).map((x) => x.kind), ['certificate', 'csr']);
    assert.equal(inspectData(csr.der)[0]!.kind, 'csr');
    assert.match(formatInspection(inspectData(svid.cert.der)), /SPIFFE ID: spiffe:\/\/cluster\.local\/ns\/a\/sa\/b/);
    assert.throws(() => inspectData(Buffer.from('garbage!'), 'g'), (e: unknown) => isMeshError(e, ErrorCodes.UNKNOWN_FORMAT));
  });
});
