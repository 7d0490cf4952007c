import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, ManualClock, MeshError, isMeshError } from '../core/index.js';
import { generateKeyPair, buildCsr, toSigningKey, Csr, checkX509Svid, validateChain } from '../pki/index.js';
import { SqliteLedger, type Ledger, type NewLedgerEntry } from '../store/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import { CertificateAuthority, CertificateIssuer, adoptPluginCa, initRootCa, makeCrl, makeOcspResponse, revokeCertificate } from './index.js';

describe('offline CA', () => {
  const t = tempDir('meshcert-ca-');
  let ca: CertificateAuthority;
  let ledger: SqliteLedger;
  before(async () => {
    await initRootCa(t.dir, { trustDomain: 'mesh.example', publicUrl: 'http://127.0.0.1:15014/', ttl: '30d' });
    ca = await CertificateAuthority.load(t.dir);
    ledger = SqliteLedger.open(join(t.dir, 'ledger.db'));
  });
  after(async () => {
    await ledger.close();
    t.cleanup();
  });

  test('issues X509-SVIDs that follow the SPIFFE rules and are in the ledger', async () => {
    const issuer = new CertificateIssuer(ca, ledger);
    const kp = generateKeyPair('ec-p256');
    const res = await issuer.issue({ publicKey: kp.publicKey, spiffeId: 'spiffe://mesh.example/ns/a/sa/b' });
    assert.deepEqual(checkX509Svid(res.cert, { trustDomain: 'mesh.example' }), []);
    assert.equal(res.cert.subject, '');
    assert.ok(res.cert.sanCritical);
    assert.deepEqual(res.cert.crlDistributionPoints, ['http://127.0.0.1:15014/crl']);
    assert.deepEqual(res.cert.ocspUrls, ['http://127.0.0.1:15014/ocsp']);
    const row = await ledger.get(res.cert.serial);
    assert.equal(row?.identity, 'spiffe://mesh.example/ns/a/sa/b');
    assert.equal(row?.fingerprint, res.cert.fingerprint256);
    assert.ok(validateChain({ leaf: res.cert, roots: ca.roots, purpose: 'client' }).ok);
  });

  test('RSA SVIDs carry keyEncipherment; servers get a CN and serverAuth only', async () => {
    const issuer = new CertificateIssuer(ca, ledger);
    const rsa = await issuer.issue({ publicKey: generateKeyPair('rsa-2048').publicKey, spiffeId: 'spiffe://mesh.example/ns/a/sa/rsa' });
    assert.deepEqual(rsa.cert.keyUsage, ['digitalSignature', 'keyEncipherment']);
    const srv = await issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: ['Web.Example.com'], ipAddresses: ['10.0.0.1'] });
    assert.equal(srv.cert.commonName, 'web.example.com');
    assert.deepEqual(srv.cert.extKeyUsageNames, ['serverAuth']);
    assert.equal(srv.profile, 'server');
  });

  test('policy refuses foreign trust domains, malformed IDs and empty requests; nothing reaches the ledger', async () => {
    const issuer = new CertificateIssuer(ca, ledger);
    const before = (await ledger.counts()).total;
    const pk = generateKeyPair().publicKey;
    await assert.rejects(issuer.issue({ publicKey: pk, spiffeId: 'spiffe://other.example/ns/a/sa/b' }), (e: unknown) => isMeshError(e, ErrorCodes.POLICY) && /other\.example/.test(e.message));
    await assert.rejects(issuer.issue({ publicKey: pk, spiffeId: 'spiffe://mesh.example/ns/../sa/b' }), (e: unknown) => isMeshError(e, ErrorCodes.SPIFFE_ID));
    await assert.rejects(issuer.issue({ publicKey: pk, spiffeId: 'spiffe://mesh.example:443/ns/a' }), (e: unknown) => isMeshError(e, ErrorCodes.SPIFFE_ID));
    await assert.rejects(issuer.issue({ publicKey: pk }), (e: unknown) => isMeshError(e, ErrorCodes.POLICY));
    await assert.rejects(issuer.issue({ publicKey: pk, dnsNames: ['bad..name'] }), (e: unknown) => isMeshError(e, ErrorCodes.SAN));
    assert.equal((await ledger.counts()).total, before);
  });

  test('a CSR must verify; its key is certified, its requested identities are not', async () => {
    const issuer = new CertificateIssuer(ca, ledger);
    const sk = await toSigningKey(generateKeyPair().privateKey);
    const csr = await buildCsr({ sans: [{ type: 'uri', value: 'spiffe://mesh.example/ns/kube-system/sa/admin' }] }, sk);
    const res = await issuer.issue({ csr, spiffeId: 'spiffe://mesh.example/ns/a/sa/b' });
    assert.deepEqual(res.cert.spiffeIds, ['spiffe://mesh.example/ns/a/sa/b']);
    assert.ok(res.cert.publicKey.equals(sk.publicKey));
    const bad = Buffer.from(csr.der);
    bad[bad.length - 2]! ^= 0x55;
    await assert.rejects(issuer.issue({ csr: Csr.parse(bad), spiffeId: 'spiffe://mesh.example/ns/a/sa/b' }), (e: unknown) => isMeshError(e, ErrorCodes.CSR_SIGNATURE));
  });

  test('lifetimes: policy maximum, then the CA expiry, each reported', async () => {
    const issuer = new CertificateIssuer(ca, ledger, { maxTtlMs: 48 * 3_600_000 });
    const pk = generateKeyPair().publicKey;
    const long = await issuer.issue({ publicKey: pk, spiffeId: 'spiffe://mesh.example/ns/a/sa/b', ttlMs: 72 * 3_600_000 });
    assert.match(long.ttlNote ?? '', /policy maximum/);
    const unlimited = new CertificateIssuer(ca, ledger, { maxTtlMs: 10 * 365 * 86_400_000 });
    const capped = await unlimited.issue({ publicKey: pk, spiffeId: 'spiffe://mesh.example/ns/a/sa/b', ttlMs: 365 * 86_400_000 });
    assert.equal(capped.cert.notAfter.getTime(), ca.cert.notAfter.getTime());
    assert.match(capped.ttlNote ?? '', /CA's own expiry/);
    assert.ok(capped.cert.notBefore.getTime() >= ca.cert.notBefore.getTime());
  });

  test('a ledger failure means no certificate', async () => {
    const failing: Ledger = Object.create(ledger, {
      record: { value: async (_e: NewLedgerEntry) => { throw new MeshError(ErrorCodes.LEDGER, 'ledger.db: disk full'); } },
    });
    const issuer = new CertificateIssuer(ca, failing);
    await assert.rejects(issuer.issue({ publicKey: generateKeyPair().publicKey, spiffeId: 'spiffe://mesh.example/ns/a/sa/b' }), (e: unknown) => isMeshError(e, ErrorCodes.LEDGER));
  });

  test('revocation reaches CRLs and OCSP; twice is harmless; unknown serials are errors', async () => {
    const issuer = new CertificateIssuer(ca, ledger);
    const res = await issuer.issue({ publicKey: generateKeyPair().publicKey, spiffeId: 'spiffe://mesh.example/ns/a/sa/revoked' });
    const serialColons = res.cert.serial.toUpperCase().match(/.{1,2}/g)!.join(':');
    const first = await revokeCertificate(ca, ledger, serialColons, 'keyCompromise');
    assert.equal(first.alreadyRevoked, false);
    const again = await revokeCertificate(ca, ledger, res.cert.serial, 'superseded');
    assert.equal(again.alreadyRevoked, true);
    assert.equal(again.entry.revocationReason, 'keyCompromise');
    await assert.rejects(revokeCertificate(ca, ledger, 'abcdef'), (e: unknown) => isMeshError(e, ErrorCodes.NOT_FOUND));
    const a = await makeCrl(ca, ledger, { validityMs: 3_600_000 });
    const b = await makeCrl(ca, ledger, { validityMs: 3_600_000 });
    assert.ok(b.crlNumber > a.crlNumber);
    assert.equal(b.crl.lookup(res.cert.serial)?.reason, 'keyCompromise');
    assert.ok(b.crl.isIssuedBy(ca.cert));
    const ocsp = await makeOcspResponse(ca, ledger, res.cert, { validityMs: 3_600_000, hash: 'sha256' });
    assert.ok(typeof ocsp.status === 'object' && ocsp.status.revoked.reason === 'keyCompromise');
  });
});

describe('CA set-up', () => {
  test('init refuses to replace a CA and writes nothing on a bad option', async () => {
    const t = tempDir();
    try {
      await assert.rejects(initRootCa(join(t.dir, 'x'), { trustDomain: 'Bad_Domain!' }), (e: unknown) => isMeshError(e, ErrorCodes.SPIFFE_ID));
      assert.equal(existsSync(join(t.dir, 'x')), false);
      await assert.rejects(initRootCa(join(t.dir, 'y'), { ttl: 'forever' }), (e: unknown) => isMeshError(e, ErrorCodes.DURATION));
      assert.equal(existsSync(join(t.dir, 'y')), false);
      await initRootCa(t.dir, { keyType: 'ec-p384' });
      const files = readdirSync(t.dir).sort();
      await assert.rejects(initRootCa(t.dir), (e: unknown) => isMeshError(e, ErrorCodes.CA_EXISTS));
      assert.deepEqual(readdirSync(t.dir).sort(), files);
    } finally {
      t.cleanup();
    }
  });

  test('a plug-in intermediate is checked, adopted and used', async () => {
    const t = tempDir();
    try {
      const rootDir = join(t.dir, 'root');
      await initRootCa(rootDir, { trustDomain: 'corp.example' });
      const root = await CertificateAuthority.load(rootDir);
      // The enterprise root signs an intermediate for the mesh (a CA profile is outside leaf policy: build directly).
      const kp = generateKeyPair();
      const { genericCertificateBuilder, randomSerial, Certificate, exportPrivateKeyPem } = await import('../pki/index.js');
      const der = await genericCertificateBuilder.build(
        { serial: randomSerial(), subject: 'O=corp, CN=mesh intermediate', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000 * 10), publicKey: kp.publicKey, basicConstraints: { ca: true, pathLen: 0 }, keyUsage: ['keyCertSign', 'cRLSign'] },
        root.issuer,
        root.signer,
      );
      const inter = Certificate.fromDer(der);
      const plugin = join(t.dir, 'cacerts');
      const write = (name: string, text: string) => { writeFileSync(join(plugin, name), text, { mode: 0o600 }); };
      const { mkdirSync } = await import('node:fs');
      mkdirSync(plugin);
      write('ca-cert.pem', inter.pem);
      write('ca-key.pem', generateKeyPair().privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
      write('root-cert.pem', root.cert.pem);
      write('cert-chain.pem', inter.pem + root.cert.pem);
      const dataDir = join(t.dir, 'mesh');
      await assert.rejects(adoptPluginCa(dataDir, plugin, { clock: new ManualClock() }), (e: unknown) => isMeshError(e, ErrorCodes.CA_PLUGIN) && /ca-key\.pem: the private key does not match/.test(e.message));
      assert.equal(existsSync(dataDir), false);
      write('ca-key.pem', exportPrivateKeyPem(kp.privateKey));
      await adoptPluginCa(dataDir, plugin, { trustDomain: 'corp.example' });
      const mesh = await CertificateAuthority.load(dataDir);
      const res = await new CertificateIssuer(mesh, SqliteLedger.open(':memory:')).issue({ publicKey: generateKeyPair().publicKey, spiffeId: 'spiffe://corp.example/ns/a/sa/b' });
      assert.equal(res.chain.length, 2);
      assert.equal(res.trustBundlePem, root.cert.pem);
      assert.ok(validateChain({ leaf: res.cert, intermediates: res.chain.slice(1), roots: mesh.roots, purpose: 'server' }).ok);
    } finally {
      t.cleanup();
    }
  });
});
