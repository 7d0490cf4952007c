// Revocation from the command line, judged by OpenSSL: `cert revoke` with serials as openssl prints them,
// `crl make` (PEM and DER) read by `openssl crl` and `openssl verify -crl_check`, `ocsp make` read by
// `openssl ocsp -respin`, and `ocsp check` for good, revoked, expired and mismatched staples.
// The tests of this file run in order on one CA: revocations happen half way.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/test-ca.js';
import { openssl, type ToolResult } from '../helpers/tools.js';
import { cliError, inParallel, meshcert, meshcertJson, meshcertOk, show } from '../helpers/cli.js';

function ok(r: ToolResult, what: string): ToolResult {
  assert.equal(r.status, 0, `${what}:\n${r.stdout}${r.stderr}`);
  return r;
}

/** The serial as `openssl x509 -serial` prints it: upper-case hex, no colons. */
function opensslSerial(certFile: string): string {
  return ok(openssl(['x509', '-in', certFile, '-noout', '-serial']), 'serial').stdout.trim().replace(/^serial=/, '');
}

/** The serial as `openssl x509 -text` prints it: lower-case hex pairs with colons (or a decimal for tiny ones). */
function opensslTextSerial(certFile: string): string {
  const text = ok(openssl(['x509', '-in', certFile, '-noout', '-text']), 'x509 -text').stdout;
  const m = /Serial Number:\s*\n\s+([0-9a-f:]+)\n/.exec(text);
  assert.ok(m, text);
  return m[1]!;
}

describe('revocation: cert revoke, crl make, ocsp make, ocsp check', () => {
  const tmp = tempDir('meshcert-cli-revoke-');
  const data = join(tmp.dir, 'ca');
  const caCert = join(data, 'ca-cert.pem');
  const rootCert = join(data, 'root-cert.pem');
  const leaf = (n: string): string => join(tmp.dir, n, 'cert-chain.pem');
  const file = (n: string): string => join(tmp.dir, n);
  const names = ['alpha', 'beta', 'gamma'] as const;
  const serials: Record<string, string> = {};

  before(async () => {
    await meshcertOk(['ca', 'init', '--data-dir', data, '--public-url', 'http://127.0.0.1:15014']);
    await inParallel(names, (n) =>
      meshcertOk(['cert', 'issue', '--data-dir', data, '--dns', `${n}.example.com`, '--out-dir', join(tmp.dir, n)]),
    );
    for (const n of names) serials[n] = opensslSerial(leaf(n));
    // A certificate this CA never issued.
    ok(
      openssl([
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file('outsider-key.pem'),
        '-out', file('outsider.pem'), '-days', '2', '-subj', '/CN=outsider.example.com',
      ]),
      'outsider',
    );
  });
  after(() => tmp.cleanup());

  // Tests inside each phase are independent and run concurrently; the phases run in order.
  describe('before any revocation', { concurrency: true }, () => {
    test('ocsp make before any revocation: openssl ocsp says "Response verify OK" and good (SHA-1 and SHA-256 CertIDs); ocsp check judges it', async () => {
      const [sha1, sha256] = await Promise.all([
        meshcertJson(['ocsp', 'make', '--data-dir', data, '--cert', leaf('alpha'), '--out', file('alpha-good.ocsp')]),
        meshcertJson(['ocsp', 'make', '--data-dir', data, '--cert', leaf('alpha'), '--out', file('alpha-good-256.ocsp'), '--hash', 'sha256', '--valid', '2h']),
      ]);
      assert.deepEqual(sha1, { file: file('alpha-good.ocsp'), serial: serials.alpha, status: 'good', hash: 'sha1' });
      assert.equal(sha256.hash, 'sha256');
      const r = ok(
        openssl(['ocsp', '-respin', file('alpha-good.ocsp'), '-issuer', caCert, '-cert', leaf('alpha'), '-CAfile', rootCert, '-no_nonce']),
        'openssl ocsp (sha1)',
      );
      assert.match(r.stderr + r.stdout, /Response verify OK/);
      assert.match(r.stdout, /cert-chain\.pem: good/);
      // openssl hashes its CertID with SHA-256 only when told so, before -cert.
      const r256 = ok(
        openssl(['ocsp', '-respin', file('alpha-good-256.ocsp'), '-issuer', caCert, '-sha256', '-cert', leaf('alpha'), '-CAfile', rootCert, '-no_nonce']),
        'openssl ocsp (sha256)',
      );
      assert.match(r256.stderr + r256.stdout, /Response verify OK/);
      assert.match(r256.stdout, /cert-chain\.pem: good/);
      const nu = /Next Update: (.+)\n/.exec(r256.stdout);
      const tu = /This Update: (.+)\n/.exec(r256.stdout);
      assert.ok(nu && tu, r256.stdout);
      assert.equal(new Date(nu[1]!).getTime() - new Date(tu[1]!).getTime(), 2 * 3_600_000, '--valid 2h');
      // A SHA-1 lookup does not match a SHA-256 CertID: the hash is really the one asked for.
      const mismatch = openssl(['ocsp', '-respin', file('alpha-good-256.ocsp'), '-issuer', caCert, '-cert', leaf('alpha'), '-CAfile', rootCert, '-no_nonce']);
      assert.doesNotMatch(mismatch.stdout, /cert-chain\.pem: good/);
      // ocsp check: 0 for a good fresh staple; 1 when expired (--at later), 1 for a staple of another certificate.
      const [good, expired, other] = await Promise.all([
        meshcert(['ocsp', 'check', '--cert', leaf('alpha'), '--issuer', caCert, file('alpha-good.ocsp')]),
        meshcert(['ocsp', 'check', '--cert', leaf('alpha'), '--issuer', caCert, '--at', new Date(Date.now() + 5 * 3_600_000).toISOString(), '--json', file('alpha-good.ocsp')]),
        meshcert(['ocsp', 'check', '--cert', leaf('beta'), '--issuer', caCert, '--json', file('alpha-good.ocsp')]),
      ]);
      assert.equal(good.status, 0, show(good));
      assert.match(good.stdout, /valid staple: good/);
      assert.equal(expired.status, 1, show(expired));
      const e = JSON.parse(expired.stdout);
      assert.equal(e.ok, false);
      assert.equal(e.status, 'good');
      assert.deepEqual(e.reasons.map((x: { code: string }) => x.code), ['freshness']);
      assert.equal(other.status, 1, show(other));
      const o = JSON.parse(other.stdout);
      assert.equal(o.ok, false);
      assert.ok(o.reasons.some((x: { code: string }) => x.code === 'certId'), other.stdout);
    });

    test('ocsp make for a certificate this CA did not issue: exit 1, nothing written', async () => {
      const r = await meshcert(['ocsp', 'make', '--data-dir', data, '--cert', file('outsider.pem'), '--out', file('outsider.ocsp')]);
      assert.equal(r.status, 1, show(r));
      assert.match(cliError(r)?.code ?? '', /^MESH_ERR_/);
      assert.match(r.stderr, /not issued by this CA/);
      assert.ok(!existsSync(file('outsider.ocsp')));
    });

    test('an unknown serial exits 1 with MESH_ERR_NOT_FOUND naming it', async () => {
      const r = await meshcert(['cert', 'revoke', '--data-dir', data, '7E:57:00:00:00:00:00:01', '--json']);
      assert.equal(r.status, 1, show(r));
      const err = cliError(r);
      assert.equal(err?.code, 'MESH_ERR_NOT_FOUND', show(r));
      assert.match(err!.message, /7e57000000000001/i);
      assert.equal(r.stdout, '');
    });
  });

  describe('revoking', () => {
    test('cert revoke takes serials as openssl prints them: lower case without colons, and with colons', async () => {
      const alpha = serials.alpha!.toLowerCase();
      const beta = opensslTextSerial(leaf('beta'));
      assert.match(alpha, /^[0-9a-f]+$/);
      assert.match(beta, /^[0-9a-f]{2}(:[0-9a-f]{2})+$/);
      const [a, b] = await Promise.all([
        meshcertJson(['cert', 'revoke', '--data-dir', data, alpha, '--reason', 'keyCompromise']),
        meshcertOk(['cert', 'revoke', '--data-dir', data, beta, '--reason', 'superseded']),
      ]);
      assert.equal(a.serial, serials.alpha);
      assert.equal(a.reason, 'keyCompromise');
      assert.equal(a.alreadyRevoked, false);
      assert.equal(a.identity, 'alpha.example.com');
      assert.match(b.stdout, new RegExp(`Revoked ${serials.beta} \\(beta\\.example\\.com\\) at .*, reason superseded`));
    });
  });

  describe('after the revocations', { concurrency: true }, () => {
    test('revoking twice exits 0 and says it was already revoked; the first reason stands', async () => {
      const colons = serials.alpha!.match(/../g)!.join(':');
      const [text, json] = await Promise.all([
        meshcert(['cert', 'revoke', '--data-dir', data, colons]),
        meshcert(['cert', 'revoke', '--data-dir', data, serials.alpha!, '--reason', 'cessationOfOperation', '--json']),
      ]);
      assert.equal(text.status, 0, show(text));
      assert.match(text.stdout, /already revoked/);
      assert.match(text.stdout, /keyCompromise/);
      assert.equal(json.status, 0, show(json));
      const j = JSON.parse(json.stdout);
      assert.equal(j.alreadyRevoked, true);
      assert.equal(j.reason, 'keyCompromise');
    });


    test('crl make: openssl crl -CAfile verifies it and lists the revoked serials with their reasons; verify -crl_check rejects the revoked leaf; --der; numbers increase', async () => {
      const firstCrl = await meshcertJson(['crl', 'make', '--data-dir', data, '--out', file('ca.crl')]);
      assert.equal(firstCrl.format, 'pem');
      assert.match(readFileSync(file('ca.crl'), 'utf8'), /^-----BEGIN X509 CRL-----\n/);
      const v = ok(openssl(['crl', '-in', file('ca.crl'), '-CAfile', caCert, '-noout']), 'openssl crl -CAfile');
      assert.match(v.stdout + v.stderr, /verify OK/);
      const text = ok(openssl(['crl', '-in', file('ca.crl'), '-noout', '-text']), 'openssl crl -text').stdout;
      assert.match(text, new RegExp(`Serial Number: ${serials.alpha}\\n\\s+Revocation Date: [^\\n]+\\n\\s+CRL entry extensions:\\n\\s+X509v3 CRL Reason Code: *\\n\\s+Key Compromise`));
      assert.match(text, new RegExp(`Serial Number: ${serials.beta}\\n\\s+Revocation Date: [^\\n]+\\n\\s+CRL entry extensions:\\n\\s+X509v3 CRL Reason Code: *\\n\\s+Superseded`));
      assert.ok(!text.includes(serials.gamma!), 'gamma is not revoked');
      assert.match(text, /Issuer: O = cluster\.local, CN = meshcert root CA/);
      assert.match(text, /X509v3 CRL Number: *\n\s+1\n/);
      assert.deepEqual(
        firstCrl.revoked.map((e: { serial: string; reason: string }) => [e.serial, e.reason]).sort(),
        [
          [serials.alpha, 'keyCompromise'],
          [serials.beta, 'superseded'],
        ].sort(),
      );

      // openssl verify -crl_check rejects the revoked leaf and accepts the others.
      const bad = openssl(['verify', '-crl_check', '-CRLfile', file('ca.crl'), '-CAfile', rootCert, leaf('alpha')]);
      assert.notEqual(bad.status, 0);
      assert.match(bad.stdout + bad.stderr, /certificate revoked/);
      const good = ok(openssl(['verify', '-crl_check', '-CRLfile', file('ca.crl'), '-CAfile', rootCert, leaf('gamma')]), 'verify gamma');
      assert.match(good.stdout, /OK/);

      // crl make --der: DER that openssl crl -inform DER reads; CRL numbers increase.
      const second = await meshcertJson(['crl', 'make', '--data-dir', data, '--out', file('ca.crl.der'), '--der', '--next-update', '6h']);
      assert.equal(second.format, 'der');
      assert.equal(readFileSync(file('ca.crl.der'))[0], 0x30, 'DER SEQUENCE');
      const vDer = ok(openssl(['crl', '-inform', 'DER', '-in', file('ca.crl.der'), '-CAfile', caCert, '-noout']), 'openssl crl -inform DER');
      assert.match(vDer.stdout + vDer.stderr, /verify OK/);
      const n1 = ok(openssl(['crl', '-in', file('ca.crl'), '-noout', '-crlnumber']), 'crlnumber').stdout.trim();
      const n2 = ok(openssl(['crl', '-inform', 'DER', '-in', file('ca.crl.der'), '-noout', '-crlnumber']), 'crlnumber').stdout.trim();
      // openssl prints crlNumber=0x02
      assert.ok(BigInt(n2.replace(/^crlNumber=/, '')) > BigInt(n1.replace(/^crlNumber=/, '')), `${n1} then ${n2}`);
      assert.ok(BigInt(second.crlNumber) > BigInt(firstCrl.crlNumber));
      const dates = ok(openssl(['crl', '-inform', 'DER', '-in', file('ca.crl.der'), '-noout', '-lastupdate', '-nextupdate']), 'dates').stdout;
      const last = new Date(/lastUpdate=(.+)/.exec(dates)![1]!).getTime();
      const next = new Date(/nextUpdate=(.+)/.exec(dates)![1]!).getTime();
      assert.equal(next - last, 6 * 3_600_000, '--next-update 6h');
    });

    test('ocsp make after the revocation: openssl ocsp says revoked with the reason; ocsp check exits 1', async () => {
      await meshcertOk(['ocsp', 'make', '--data-dir', data, '--cert', leaf('alpha'), '--out', file('alpha-revoked.ocsp')]);
      const r = ok(
        openssl(['ocsp', '-respin', file('alpha-revoked.ocsp'), '-issuer', caCert, '-cert', leaf('alpha'), '-CAfile', rootCert, '-no_nonce']),
        'openssl ocsp',
      );
      assert.match(r.stderr + r.stdout, /Response verify OK/);
      assert.match(r.stdout, /cert-chain\.pem: revoked/);
      assert.match(r.stdout, /Reason: keyCompromise/);
      assert.match(r.stdout, /Revocation Time: /);
      const check = await meshcert(['ocsp', 'check', '--cert', leaf('alpha'), '--issuer', caCert, file('alpha-revoked.ocsp')]);
      assert.equal(check.status, 1, show(check));
      assert.match(check.stdout, /not a valid staple \(status revoked\)/);
    });

    test('cert list shows the revocations', async () => {
      const [rows, all] = await Promise.all([
        meshcertJson(['cert', 'list', '--data-dir', data, '--status', 'revoked']),
        meshcertJson(['cert', 'list', '--data-dir', data]),
      ]);
      assert.deepEqual(rows.map((r: { serial: string }) => r.serial).sort(), [serials.alpha, serials.beta].sort());
      for (const r of rows) assert.equal(r.status, 'revoked');
      assert.equal(all.length, 3);
      assert.equal(all.find((r: { serial: string }) => r.serial === serials.gamma).status, 'valid');
    });
  });
});
