// `meshcert ca init` (self-signed root) and `ca show`, run as the compiled binary; the results are read back with
// OpenSSL. Every CA is made at run time in a temp dir.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/test-ca.js';
import { openssl } from '../helpers/tools.js';
import { cliError, fileMode, inParallel, meshcert, meshcertJson, meshcertOk, show, snapshotDir, type CliResult } from '../helpers/cli.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function x509Text(file: string): string {
  const r = openssl(['x509', '-in', file, '-noout', '-text']);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

function opensslDate(file: string, which: 'startdate' | 'enddate'): Date {
  const r = openssl(['x509', '-in', file, '-noout', `-${which}`]);
  assert.equal(r.status, 0, r.stderr);
  const d = new Date(r.stdout.trim().replace(/^not(Before|After)=/, ''));
  assert.ok(!Number.isNaN(d.getTime()), r.stdout);
  return d;
}

describe('meshcert ca init: a self-signed root', () => {
  const tmp = tempDir('meshcert-cli-ca-');
  const rootDir = join(tmp.dir, 'root');
  const p384Dir = join(tmp.dir, 'p384');
  const rsaDir = join(tmp.dir, 'rsa');
  const workload = join(tmp.dir, 'workload');
  let init: any;
  let p384: any;
  let rsa: any;
  let initStart = 0;

  before(async () => {
    initStart = Date.now();
    [init, p384, rsa] = await Promise.all([
      meshcertJson([
        'ca', 'init', '--data-dir', rootDir, '--trust-domain', 'example.org', '--org', 'Acme Mesh',
        '--public-url', 'http://127.0.0.1:15014/',
      ]),
      meshcertJson(['ca', 'init', '--data-dir', p384Dir, '--key', 'ec-p384', '--ttl', '30d']),
      meshcertJson(['ca', 'init', '--data-dir', rsaDir, '--key', 'rsa-2048', '--ttl', '2y']),
    ]);
    await meshcertOk(['cert', 'issue', '--data-dir', rootDir, '--spiffe', 'spiffe://example.org/ns/shop/sa/cart', '--out-dir', workload]);
  });
  after(() => tmp.cleanup());

  test("writes Istio's four files and ca.json; the key is 0600, the data dir 0700", () => {
    for (const f of ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem', 'ca.json']) {
      assert.ok(existsSync(join(rootDir, f)), `${f} is missing`);
    }
    assert.equal(fileMode(join(rootDir, 'ca-key.pem')), 0o600);
    assert.equal(fileMode(rootDir), 0o700);
    // A self-signed root is its own chain and trust bundle.
    const caCert = readFileSync(join(rootDir, 'ca-cert.pem'), 'utf8');
    assert.equal(readFileSync(join(rootDir, 'root-cert.pem'), 'utf8'), caCert);
    assert.equal(readFileSync(join(rootDir, 'cert-chain.pem'), 'utf8'), caCert);
    // The key is the certificate's key (openssl's view of both).
    const certPub = openssl(['x509', '-in', join(rootDir, 'ca-cert.pem'), '-noout', '-pubkey']);
    const keyPub = openssl(['pkey', '-in', join(rootDir, 'ca-key.pem'), '-pubout']);
    assert.equal(certPub.status, 0, certPub.stderr);
    assert.equal(keyPub.status, 0, keyPub.stderr);
    assert.equal(certPub.stdout, keyPub.stdout);
    const settings = JSON.parse(readFileSync(join(rootDir, 'ca.json'), 'utf8'));
    assert.equal(settings.trustDomain, 'example.org');
    assert.equal(settings.publicUrl, 'http://127.0.0.1:15014');
  });

  test('--json prints the data dir, mode, files and the certificate fields', () => {
    assert.equal(init.dataDir, rootDir);
    assert.equal(init.mode, 'self-signed');
    assert.deepEqual(
      [...init.files].sort(),
      ['ca-cert.pem', 'ca-key.pem', 'ca.json', 'cert-chain.pem', 'root-cert.pem'].map((f) => join(rootDir, f)).sort(),
    );
    const c = init.certificate;
    assert.equal(c.subject, 'O=Acme Mesh, CN=meshcert root CA');
    assert.equal(c.issuer, c.subject);
    assert.equal(c.ca, true);
    assert.equal(c.selfSigned, true);
    assert.equal(c.publicKey, 'ec-p256');
    assert.deepEqual([...c.keyUsage].sort(), ['cRLSign', 'digitalSignature', 'keyCertSign']);
    assert.match(c.serial, /^[0-9A-F]+$/);
    const serial = openssl(['x509', '-in', join(rootDir, 'ca-cert.pem'), '-noout', '-serial']).stdout.trim();
    assert.equal(serial, `serial=${c.serial}`);
    assert.match(c.sha256Fingerprint, /^[0-9a-f]{64}$/);
  });

  test('the root is CA:TRUE (critical) with keyCertSign and cRLSign, as openssl reads it', () => {
    const text = x509Text(join(rootDir, 'ca-cert.pem'));
    assert.match(text, /X509v3 Basic Constraints: critical\s+CA:TRUE/);
    const ku = /X509v3 Key Usage: critical\s+([^\n]+)/.exec(text);
    assert.ok(ku, text);
    assert.match(ku[1]!, /Certificate Sign/);
    assert.match(ku[1]!, /CRL Sign/);
    assert.match(text, /Subject: O = Acme Mesh, CN = meshcert root CA/);
    assert.match(text, /Issuer: O = Acme Mesh, CN = meshcert root CA/);
    assert.match(text, /Public-Key: \(256 bit\)/);
    // The root checks out as a trust anchor on its own.
    const v = openssl(['verify', '-x509_strict', '-CAfile', join(rootDir, 'root-cert.pem'), join(rootDir, 'ca-cert.pem')]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    // Default lifetime: 10 years.
    const life = opensslDate(join(rootDir, 'ca-cert.pem'), 'enddate').getTime() - initStart;
    assert.ok(Math.abs(life - 3652 * DAY) < 3 * DAY, `root lifetime ${life / DAY} days`);
  });

  test('--key chooses the root key type and --ttl its lifetime', () => {
    assert.equal(p384.certificate.publicKey, 'ec-p384');
    assert.equal(rsa.certificate.publicKey, 'rsa-2048');
    const t384 = x509Text(join(p384Dir, 'ca-cert.pem'));
    assert.match(t384, /Public-Key: \(384 bit\)/);
    assert.match(t384, /NIST CURVE: P-384/);
    assert.match(t384, /Signature Algorithm: ecdsa-with-SHA384/);
    const tRsa = x509Text(join(rsaDir, 'ca-cert.pem'));
    assert.match(tRsa, /Public Key Algorithm: rsaEncryption/);
    assert.match(tRsa, /Public-Key: \(2048 bit\)/);
    assert.equal(fileMode(join(rsaDir, 'ca-key.pem')), 0o600);
    const rsaKey = openssl(['pkey', '-in', join(rsaDir, 'ca-key.pem'), '-noout', '-text']);
    assert.match(rsaKey.stdout, /Private-Key: \(2048 bit/);
    const now = Date.now();
    const end384 = opensslDate(join(p384Dir, 'ca-cert.pem'), 'enddate').getTime();
    assert.ok(end384 >= initStart + 30 * DAY - 2_000 && end384 <= now + 30 * DAY + 2_000, `30d root ends ${new Date(end384).toISOString()}`);
    const endRsa = opensslDate(join(rsaDir, 'ca-cert.pem'), 'enddate').getTime();
    assert.ok(Math.abs(endRsa - initStart - 730 * DAY) < 2 * DAY, `2y root ends ${new Date(endRsa).toISOString()}`);
  });

  test('--trust-domain and --public-url land in issued certificates (SPIFFE ID, CDP /crl, AIA OCSP /ocsp)', () => {
    const text = x509Text(join(workload, 'cert-chain.pem'));
    assert.match(text, /URI:spiffe:\/\/example\.org\/ns\/shop\/sa\/cart/);
    assert.match(text, /X509v3 CRL Distribution Points:\s+Full Name:\s+URI:http:\/\/127\.0\.0\.1:15014\/crl\n/);
    assert.match(text, /Authority Information Access:\s+OCSP - URI:http:\/\/127\.0\.0\.1:15014\/ocsp\n/);
  });

  test('ca show prints the trust domain, public URL and ledger counts; MESHCERT_DATA_DIR selects the data dir', async () => {
    const info = await meshcertJson(['ca', 'show'], { env: { MESHCERT_DATA_DIR: rootDir } });
    assert.equal(info.dataDir, rootDir);
    assert.equal(info.trustDomain, 'example.org');
    assert.equal(info.publicUrl, 'http://127.0.0.1:15014');
    assert.equal(info.mode, 'self-signed');
    assert.deepEqual(info.chain, ['O=Acme Mesh, CN=meshcert root CA']);
    assert.equal(info.roots.length, 1);
    assert.equal(info.ledger.total, 1);
    assert.equal(info.ledger.valid, 1);
  });

  test('without --data-dir the CA goes to ./.meshcert of the working directory', async () => {
    const cwd = join(tmp.dir, 'cwd');
    mkdirSync(cwd);
    const r = await meshcertOk(['ca', 'init'], { cwd });
    assert.match(r.stdout, /Created self-signed root CA in .*\.meshcert/);
    assert.ok(existsSync(join(cwd, '.meshcert', 'ca-cert.pem')));
    assert.equal(fileMode(join(cwd, '.meshcert', 'ca-key.pem')), 0o600);
  });

  test('a second init in the same data dir fails with MESH_ERR_CA_EXISTS and changes nothing', async () => {
    const beforeFiles = snapshotDir(rootDir);
    const results = [await meshcert(['ca', 'init', '--data-dir', rootDir, '--key', 'rsa-2048', '--json'])];
    for (const r of results) {
      assert.equal(r.status, 1, show(r));
      const err = cliError(r);
      assert.equal(err?.code, 'MESH_ERR_CA_EXISTS', show(r));
      assert.ok(err.message.includes(rootDir), err.message);
      assert.equal(r.stdout, '');
    }
    assert.deepEqual(snapshotDir(rootDir), beforeFiles);
  });

  test('bad options are refused before anything is created', async () => {
    const cases: Array<{ args: string[]; status: number; code?: string; mentions: string }> = [
      { args: ['--public-url', 'ftp://ca.example'], status: 1, code: 'MESH_ERR_INVALID_ARGUMENT', mentions: 'ftp://ca.example' },
      { args: ['--ttl', 'forever'], status: 1, code: 'MESH_ERR_DURATION', mentions: 'forever' },
      { args: ['--trust-domain', 'Example.ORG'], status: 1, code: 'MESH_ERR_SPIFFE_ID', mentions: 'Example.ORG' },
      { args: ['--key', 'dsa-1024'], status: 2, mentions: 'dsa-1024' },
    ];
    const results: CliResult[] = await inParallel(cases, (c, i) => meshcert(['ca', 'init', '--data-dir', join(tmp.dir, `bad-${i}`), ...c.args]));
    cases.forEach((c, i) => {
      const r = results[i]!;
      assert.equal(r.status, c.status, show(r));
      if (c.code) assert.equal(cliError(r)?.code, c.code, show(r));
      assert.ok(r.stderr.includes(c.mentions), show(r));
      assert.ok(!existsSync(join(tmp.dir, `bad-${i}`)), `${r.cmd} created its data dir: ${existsSync(join(tmp.dir, `bad-${i}`)) ? readdirSync(join(tmp.dir, `bad-${i}`)) : ''}`);
    });
  });
});
