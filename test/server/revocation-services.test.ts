// Revocation services of `meshcert serve`, judged by OpenSSL and curl against the real server on ephemeral ports:
// the OCSP responder (POST and GET, SHA-1 and SHA-256 CertIDs, good / revoked / unknown / unauthorized /
// malformedRequest), the CRL endpoint, the trust bundle, and the admin API (POST /revoke, GET /certificates, bearer
// token, never on the public listener), plus `meshcert cert revoke --server` (needs `npm run build`), and
// `cert revoke --server` / `cert list --server` with --trust-domain against a server with two trust domains.
// The server runs in this process, so every external tool is run asynchronously: a synchronous spawn would stop
// the server it is talking to.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OcspResponse, generateKeyPair, opensslSerial, randomSerial, type Certificate } from '../../src/pki/index.js';
import { initRootCa } from '../../src/ca/index.js';
import { adminListCertificates, adminRevoke } from '../../src/agent/index.js';
import { cliError, inParallel, meshcert, show } from '../helpers/cli.js';
import { ErrorCodes, isMeshError } from '../../src/core/index.js';
import { TestCA, tempDir as tempFolder } from '../helpers/test-ca.js';
import { capturingLogger, httpGet, ok, recordUnderEveryCa, startPlane, tempDir, type Plane } from './fixtures.js';

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

function runAsync(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return reject(err);
      resolve({ status: err ? Number((err as { code: number }).code) : 0, stdout, stderr });
    });
  });
}



const PUBLIC_URL = 'http://127.0.0.1:15014';

describe('revocation services: OCSP, CRL, roots and the admin API of meshcert serve', () => {
  let plane: Plane;
  let log: ReturnType<typeof capturingLogger>;
  const dir = tempFolder('meshcert-revocation-');
  let base: string;
  let admin: string;
  let token: string;
  let caCert: string;
  let rootCert: string;

  async function issue(name: string): Promise<{ cert: Certificate; file: string }> {
    const issued = await plane.cp.issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: [name] });
    const file = join(dir.dir, `${name}.pem`);
    writeFileSync(file, issued.cert.pem);
    return { cert: issued.cert, file };
  }

  function opensslOcsp(certFile: string, extra: string[] = [], issuerFile = caCert): Promise<Run> {
    // A digest option (-sha256) applies to the -cert after it.
    return runAsync('openssl', ['ocsp', '-url', `${base}/ocsp`, '-issuer', issuerFile, ...extra, '-cert', certFile, '-CAfile', rootCert, '-no_nonce']);
  }

  function adminFetch(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
    const { token: t = token, ...rest } = init;
    return fetch(`${admin}${path}`, { ...rest, headers: { ...(t === null ? {} : { authorization: `Bearer ${t}` }), 'content-type': 'application/json' } });
  }

  async function revoke(serial: string, body: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const res = await adminFetch('/revoke', { method: 'POST', body: JSON.stringify({ serial, ...body }) });
    const json = (await res.json()) as Record<string, unknown>;
    assert.equal(res.status, 200, JSON.stringify(json));
    return json;
  }

  async function metrics(): Promise<string> {
    return (await httpGet(plane.cp.addresses.http!, '/metrics')).body;
  }

  before(async () => {
    log = capturingLogger();
    plane = await startPlane(
      { trustDomain: 'cluster.local', http: { listen: '127.0.0.1:0', publicUrl: PUBLIC_URL }, admin: { listen: '127.0.0.1:0' }, ocsp: { responseValidity: '2h' } },
      { logger: log.logger, dataDir: join(dir.dir, 'data') },
    );
    base = `http://${plane.cp.addresses.http}`;
    admin = `http://${plane.cp.addresses.admin}`;
    token = readFileSync(plane.cp.adminToken!.file, 'utf8').trim();
    caCert = join(plane.dataDir, 'ca-cert.pem');
    rootCert = join(plane.dataDir, 'root-cert.pem');
  });
  after(async () => {
    await plane.stop();
    dir.cleanup();
  });

  test('start: loopback publicUrl warned about; AIA and CDP of issued certificates point to it; admin token made 0600 in the data dir', async () => {
    const warning = log.lines().find((l) => l.level === 40 && String(l.msg).includes('loopback'));
    assert.ok(warning, JSON.stringify(log.lines()));
    assert.equal(warning.publicUrl, PUBLIC_URL);
    const { cert, file } = await issue('aia.example');
    assert.deepEqual(cert.ocspUrls, [`${PUBLIC_URL}/ocsp`]);
    assert.deepEqual(cert.crlDistributionPoints, [`${PUBLIC_URL}/crl`]);
    assert.equal(ok(await runAsync('openssl', ['x509', '-in', file, '-noout', '-ocsp_uri']), 'ocsp_uri').stdout.trim(), `${PUBLIC_URL}/ocsp`);
    assert.equal(plane.cp.adminToken!.file, join(plane.dataDir, 'admin-token'));
    assert.equal(plane.cp.adminToken!.created, true);
    assert.equal(statSync(plane.cp.adminToken!.file).mode & 0o777, 0o600);
    // The OCSP signer is in the ledger like any certificate, and listed by the admin API.
    const signer = plane.cp.ocspResponder!.signerCertificate!;
    const list = (await (await adminFetch('/certificates?limit=1000')).json()) as { certificates: Array<{ serial: string; profile: string }> };
    assert.equal(list.certificates.find((c) => c.serial === opensslSerial(signer.serial))?.profile, 'ocsp-signer');
  });

  test('openssl ocsp (POST): good, then revoked after a revoke through the admin API, at once', async () => {
    const { cert, file } = await issue('post.example');
    const good = ok(await opensslOcsp(file), 'openssl ocsp');
    assert.match(good.stdout, new RegExp(`${file}: good`));
    assert.match(good.stderr + good.stdout, /Response verify OK/);
    // With a nonce (openssl's default) the answer is the same cached one: openssl warns and still accepts it.
    const nonce = ok(await runAsync('openssl', ['ocsp', '-url', `${base}/ocsp`, '-issuer', caCert, '-cert', file, '-CAfile', rootCert]), 'with nonce');
    assert.match(nonce.stdout, /: good/);
    assert.match(nonce.stderr + nonce.stdout, /WARNING: no nonce in response/);

    const res = await revoke(cert.serial, { reason: 'keyCompromise' });
    assert.equal(res.status, 'revoked');
    assert.equal(res.reason, 'keyCompromise');
    assert.equal(res.alreadyRevoked, false);
    assert.deepEqual(res.lagging, [], 'OCSP and CRL confirmed before the answer');
    const revoked = ok(await opensslOcsp(file), 'openssl ocsp after revoke');
    assert.match(revoked.stdout, new RegExp(`${file}: revoked`));
    assert.match(revoked.stdout, /Reason: keyCompromise/);
    assert.match(revoked.stderr + revoked.stdout, /Response verify OK/);
    // Revoking twice is harmless.
    const again = await revoke(cert.serial, { reason: 'keyCompromise' });
    assert.equal(again.alreadyRevoked, true);
    assert.equal(again.revokedAt, res.revokedAt);
  });

  test('GET /ocsp/{base64}: a request whose base64 holds "/" and "+", sent raw and URL-encoded; RFC 5019 caching headers; 304', async () => {
    const { cert, file } = await issue('get.example');
    // openssl makes the request (a fresh nonce each time) until its base64 has both characters that need care.
    let der: Buffer | null = null;
    const reqFile = join(dir.dir, 'get.req');
    for (let i = 0; i < 100 && !der; i++) {
      ok(await runAsync('openssl', ['ocsp', '-issuer', caCert, '-cert', file, '-reqout', reqFile]), 'reqout');
      const d = readFileSync(reqFile);
      const b = d.toString('base64');
      if (b.includes('/') && b.includes('+')) der = d;
    }
    assert.ok(der, 'no request with "/" and "+" in 100 tries');
    const b64 = der.toString('base64');
    const respFile = join(dir.dir, 'get.resp');
    for (const path of [`/ocsp/${b64.replaceAll('+', '%2B')}`, `/ocsp/${encodeURIComponent(b64)}`, `/ocsp/${b64}`]) {
      const r = ok(await runAsync('curl', ['-sS', '--path-as-is', '-D', '-', '-o', respFile, `${base}${path}`]), 'curl GET');
      assert.match(r.stdout, /^HTTP\/1\.1 200/);
      assert.match(r.stdout, /content-type: application\/ocsp-response/i);
      const cc = /cache-control: max-age=(\d+), public, no-transform, must-revalidate/i.exec(r.stdout);
      assert.ok(cc, r.stdout);
      const maxAge = Number(cc[1]);
      assert.ok(maxAge > 0 && maxAge <= 2 * 3600, `max-age ${maxAge}`);
      const expires = /expires: (.+)\r/i.exec(r.stdout)![1]!;
      const lastModified = /last-modified: (.+)\r/i.exec(r.stdout)![1]!;
      const etag = /etag: (".+")\r/i.exec(r.stdout)![1]!;
      const parsed = OcspResponse.parse(readFileSync(respFile));
      const single = parsed.responses[0]!;
      assert.equal(single.certId.serial, cert.serial);
      assert.equal(new Date(expires).getTime(), single.nextUpdate!.getTime());
      assert.equal(new Date(lastModified).getTime(), parsed.producedAt!.getTime());
      // max-age never runs past nextUpdate.
      assert.ok(Date.now() + maxAge * 1000 <= single.nextUpdate!.getTime() + 1000);
      const check = ok(
        await runAsync('openssl', ['ocsp', '-respin', respFile, '-issuer', caCert, '-cert', file, '-CAfile', rootCert, '-no_nonce']),
        'openssl -respin',
      );
      assert.match(check.stdout, new RegExp(`${file}: good`));
      assert.match(check.stderr + check.stdout, /Response verify OK/);
      const cond = ok(await runAsync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', `If-None-Match: ${etag}`, `${base}${path}`]), '304');
      assert.equal(cond.stdout, '304');
    }
    await revoke(cert.serial, { reason: 'superseded' });
    ok(await runAsync('curl', ['-sS', '--path-as-is', '-o', respFile, `${base}/ocsp/${b64}`]), 'curl GET after revoke');
    const check = ok(await runAsync('openssl', ['ocsp', '-respin', respFile, '-issuer', caCert, '-cert', file, '-CAfile', rootCert, '-no_nonce']), 'respin');
    assert.match(check.stdout, new RegExp(`${file}: revoked`));
    assert.match(check.stdout, /Reason: superseded/);
    assert.match(await metrics(), /meshcert_ocsp_requests_total\{method="GET",status="good"\} [1-9]/);
  });

  test('a SHA-256 CertID is answered with a SHA-256 CertID', async () => {
    const { file } = await issue('sha256.example');
    const r = ok(await opensslOcsp(file, ['-sha256', '-resp_text']), 'openssl ocsp -sha256');
    assert.match(r.stdout, new RegExp(`${file}: good`));
    assert.match(r.stdout, /Hash Algorithm: sha256/);
    assert.doesNotMatch(r.stdout, /Hash Algorithm: sha1/);
    assert.match(r.stderr + r.stdout, /Response verify OK/);
  });

  test('unknown serial of our CA → unknown; a certificate of another CA → unauthorized', async () => {
    const unknown = ok(
      await runAsync('openssl', ['ocsp', '-url', `${base}/ocsp`, '-issuer', caCert, '-serial', '0x0BADC0DE0BADC0DE', '-CAfile', rootCert, '-no_nonce']),
      'unknown serial',
    );
    assert.match(unknown.stdout, /0x0BADC0DE0BADC0DE: unknown/);
    assert.match(unknown.stderr + unknown.stdout, /Response verify OK/);

    const other = await TestCA.root({ name: 'not our CA' });
    const foreign = await other.issueServer(['foreign.example']);
    const otherCa = join(dir.dir, 'other-ca.pem');
    const foreignLeaf = join(dir.dir, 'foreign.pem');
    writeFileSync(otherCa, other.cert.pem);
    writeFileSync(foreignLeaf, foreign.cert.pem);
    const refused = await opensslOcsp(foreignLeaf, [], otherCa);
    assert.match(refused.stdout + refused.stderr, /Responder Error: unauthorized \(6\)/);
    assert.match(await metrics(), /meshcert_ocsp_requests_total\{method="POST",status="unauthorized"\} [1-9]/);
  });

  test('garbage, oversized (declared and chunked) and malformed GET requests: malformedRequest (413 when too large); the server keeps serving', async () => {
    const garbage = join(dir.dir, 'garbage.bin');
    writeFileSync(garbage, Buffer.from('this is not DER at all, just text that a broken client might send'));
    const out = join(dir.dir, 'answer.der');
    const post = (file: string, extra: string[] = []): Promise<Run> =>
      runAsync('curl', ['-sS', '-o', out, '-w', '%{http_code}', '-H', 'Content-Type: application/ocsp-request', '--data-binary', `@${file}`, ...extra, `${base}/ocsp`]);
    const g = ok(await post(garbage), 'garbage');
    assert.equal(g.stdout, '200');
    assert.equal(OcspResponse.parse(readFileSync(out)).responseStatus, 'malformedRequest');

    const big = join(dir.dir, 'big.bin');
    writeFileSync(big, Buffer.alloc(70 * 1024, 0x30));
    const declared = ok(await post(big), 'oversized');
    assert.equal(declared.stdout, '413');
    assert.equal(OcspResponse.parse(readFileSync(out)).responseStatus, 'malformedRequest');
    const chunked = ok(await post(big, ['-H', 'Transfer-Encoding: chunked']), 'oversized, chunked');
    assert.equal(chunked.stdout, '413');

    for (const path of ['/ocsp/!!!not-base64!!!', '/ocsp/%E0%A4%A', '/ocsp/', '/ocsp/AAAA']) {
      const r = ok(await runAsync('curl', ['-sS', '--path-as-is', '-o', out, '-w', '%{http_code}', `${base}${path}`]), path);
      assert.equal(r.stdout, '200', path);
      assert.equal(OcspResponse.parse(readFileSync(out)).responseStatus, 'malformedRequest', path);
    }
    const wrongMethod = ok(await runAsync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'PUT', `${base}/ocsp`]), 'PUT');
    assert.equal(wrongMethod.stdout, '405');

    assert.equal((await httpGet(plane.cp.addresses.http!, '/healthz')).status, 200);
    const { file } = await issue('after-garbage.example');
    assert.match(ok(await opensslOcsp(file), 'still serving').stdout, /: good/);
    const m = await metrics();
    assert.match(m, /meshcert_ocsp_malformed_requests_total\{reason="der"\} [1-9]/);
    assert.match(m, /meshcert_ocsp_malformed_requests_total\{reason="too_large"\} 2/);
    assert.match(m, /meshcert_ocsp_malformed_requests_total\{reason="base64"\} [1-9]/);
  });

  test('curl /crl: DER that openssl crl -CAfile verifies and that lists the revoked serial with reason and invalidity date; ?format=pem; /roots', async () => {
    const { cert } = await issue('crl.example');
    const invalidityDate = '2020-01-02T03:04:05Z';
    await revoke(cert.serial, { reason: 'keyCompromise', invalidityDate });
    const der = join(dir.dir, 'crl.der');
    const head = ok(await runAsync('curl', ['-sS', '-D', '-', '-o', der, `${base}/crl`]), 'curl /crl');
    assert.match(head.stdout, /content-type: application\/pkix-crl/i);
    assert.match(head.stdout, /cache-control: max-age=\d+, public, no-transform/i);
    assert.match(head.stdout, /etag: "/i);
    const text = ok(await runAsync('openssl', ['crl', '-inform', 'DER', '-in', der, '-CAfile', caCert, '-noout', '-text']), 'openssl crl');
    assert.match(text.stderr + text.stdout, /verify OK/);
    assert.match(text.stdout, new RegExp(`Serial Number: ${opensslSerial(cert.serial)}`));
    assert.match(text.stdout, /Key Compromise/);
    assert.match(text.stdout, /Invalidity Date: \s*\n?\s*Jan  2 03:04:05 2020 GMT/);

    const pem = join(dir.dir, 'crl.pem');
    ok(await runAsync('curl', ['-sS', '-o', pem, `${base}/crl?format=pem`]), 'curl /crl?format=pem');
    assert.match(readFileSync(pem, 'utf8'), /^-----BEGIN X509 CRL-----\n/);
    assert.match(ok(await runAsync('openssl', ['crl', '-in', pem, '-CAfile', caCert, '-noout']), 'pem').stderr, /verify OK/);
    assert.equal((await httpGet(plane.cp.addresses.http!, '/crl?format=xml')).status, 400);

    const roots = await httpGet(plane.cp.addresses.http!, '/roots');
    assert.equal(roots.status, 200);
    assert.equal(roots.body, readFileSync(rootCert, 'utf8'));
    const m = await metrics();
    assert.match(m, /meshcert_crl_entries\{trust_domain="cluster\.local"\} [1-9]/);
    assert.match(m, /meshcert_crl_size_bytes\{trust_domain="cluster\.local"\} \d{3,}/);
    assert.match(m, /meshcert_crl_age_seconds\{trust_domain="cluster\.local"\} \d/);
    assert.match(m, /meshcert_ocsp_signer_expiry_seconds\{trust_domain="cluster\.local"\} 6\d{5}/);
  });

  test('admin API: 401 without or with a wrong token (counted); never on the public listener; 400 and 404 with messages; GET /certificates', async () => {
    const { cert } = await issue('admin.example');
    const none = await adminFetch('/revoke', { method: 'POST', body: JSON.stringify({ serial: cert.serial }), token: null });
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    const wrong = await adminFetch('/certificates', { token: 'not-the-token-0123456789' });
    assert.equal(wrong.status, 401);
    assert.match(((await wrong.json()) as { error: { message: string } }).error.message, /not the admin token/);
    const m = await metrics();
    assert.match(m, /meshcert_admin_auth_failures_total\{reason="wrong"\} [1-9]/);
    assert.match(m, /meshcert_admin_auth_failures_total\{reason="missing"\} [1-9]/);
    // Not revoked by any of that.
    assert.equal((await plane.cp.ledger.get(cert.serial))?.status, 'valid');

    // The public listener has no admin routes, whatever the token.
    for (const [method, path] of [['POST', '/revoke'], ['GET', '/certificates']] as const) {
      const r = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}` }, ...(method === 'POST' ? { body: '{}' } : {}) });
      assert.equal(r.status, 404, `${method} ${path} on the public listener`);
    }

    const bad: Array<[unknown, RegExp]> = [
      ['not json', /not JSON/],
      [[], /JSON object/],
      [{}, /serial: required/],
      [{ serial: 'xyz' }, /not a hexadecimal serial/],
      [{ serial: cert.serial, reason: 'because' }, /not a revocation reason/],
      [{ serial: cert.serial, reason: 'removeFromCRL' }, /removeFromCRL/],
      [{ serial: cert.serial, invalidityDate: 'yesterday' }, /ISO 8601/],
      [{ serial: cert.serial, invalidityDate: '2999-01-01T00:00:00Z' }, /in the future/],
      [{ serial: cert.serial, reson: 'keyCompromise' }, /unknown field reson/],
    ];
    for (const [body, msg] of bad) {
      const r = await adminFetch('/revoke', { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
      const json = (await r.json()) as { error: { message: string } };
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(json.error.message, msg);
    }
    assert.equal((await plane.cp.ledger.get(cert.serial))?.status, 'valid', 'bad input changes nothing');
    const missing = await adminFetch('/revoke', { method: 'POST', body: JSON.stringify({ serial: '0BADC0DE0BADC0DE' }) });
    assert.equal(missing.status, 404);
    assert.match(((await missing.json()) as { error: { message: string } }).error.message, /0BADC0DE0BADC0DE: no certificate with this serial/);
    assert.equal((await adminFetch('/revoke')).status, 405);
    assert.equal((await adminFetch('/nothing-here')).status, 404);

    await revoke(opensslSerial(cert.serial).match(/../g)!.join(':'), { reason: 'affiliationChanged' });
    const revoked = (await (await adminFetch('/certificates?status=revoked&limit=1000')).json()) as { certificates: Array<{ serial: string; status: string; reason: string }> };
    const row = revoked.certificates.find((c) => c.serial === opensslSerial(cert.serial));
    assert.deepEqual([row?.status, row?.reason], ['revoked', 'affiliationChanged']);
    assert.ok(revoked.certificates.every((c) => c.status === 'revoked'));
    const byIdentity = (await (await adminFetch('/certificates?identity=admin.example')).json()) as { certificates: Array<{ serial: string }> };
    assert.deepEqual(byIdentity.certificates.map((c) => c.serial), [opensslSerial(cert.serial)]);
    const valid = (await (await adminFetch('/certificates?status=valid&limit=2')).json()) as { certificates: Array<{ status: string }>; limit: number };
    assert.equal(valid.limit, 2);
    assert.ok(valid.certificates.length <= 2 && valid.certificates.every((c) => c.status === 'valid'));
    assert.equal((await adminFetch('/certificates?status=bogus')).status, 400);
    assert.equal((await adminFetch('/certificates?limit=0')).status, 400);
    assert.equal((await adminFetch('/certificates?colour=red')).status, 400);
  });

  test('meshcert cert revoke --server URL --token-file FILE: revokes through the running server; a wrong token exits 1; usage errors exit 2', async () => {
    const { cert, file } = await issue('cli.example');
    const tokenFile = plane.cp.adminToken!.file;
    const r = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, opensslSerial(cert.serial), '--reason', 'cessationOfOperation', '--json']);
    assert.equal(r.status, 0, show(r));
    const out = JSON.parse(r.stdout) as { serial: string; reason: string; alreadyRevoked: boolean };
    assert.deepEqual([out.serial, out.reason, out.alreadyRevoked], [opensslSerial(cert.serial), 'cessationOfOperation', false]);
    const after = ok(await opensslOcsp(file), 'openssl ocsp after CLI revoke');
    assert.match(after.stdout, new RegExp(`${file}: revoked`));
    assert.match(after.stdout, /Reason: cessationOfOperation/);
    const text = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, cert.serial]);
    assert.equal(text.status, 0, show(text));
    assert.match(text.stdout, /was already revoked/);

    const wrongFile = join(dir.dir, 'wrong-token');
    writeFileSync(wrongFile, 'definitely-not-the-token\n');
    const wrong = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', wrongFile, cert.serial]);
    assert.equal(wrong.status, 1, show(wrong));
    assert.equal(cliError(wrong)?.code, 'MESH_ERR_UNAUTHENTICATED');
    const unknown = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, '0BADC0DE']);
    assert.equal(unknown.status, 1, show(unknown));
    assert.equal(cliError(unknown)?.code, 'MESH_ERR_NOT_FOUND');
    const noToken = await meshcert(['cert', 'revoke', '--server', admin, cert.serial]);
    assert.equal(noToken.status, 2, show(noToken));
    const both = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, '--data-dir', dir.dir, cert.serial]);
    assert.equal(both.status, 2, show(both));
    const down = await meshcert(['cert', 'revoke', '--server', 'http://127.0.0.1:1', '--token-file', tokenFile, cert.serial]);
    assert.equal(down.status, 1, show(down));
    assert.equal(cliError(down)?.code, 'MESH_ERR_UNAVAILABLE');
  });
});

describe('meshcert cert revoke --server / cert list --server --trust-domain, against a server with two trust domains', () => {
  const MAIN = 'cluster.local';
  const PARTNER = 'partner.example';
  const dir = tempFolder('meshcert-revoke-td-');
  let plane: Plane;
  let base: string;
  let admin: string;
  let tokenFile: string;

  /** The signing domain (CA, issuer) of a trust domain of the running server. */
  function domain(td: string) {
    const d = plane.cp.signingDomains.find((x) => x.trustDomain === td);
    assert.ok(d, td);
    return d;
  }

  async function issue(td: string, name: string): Promise<{ cert: Certificate; file: string }> {
    const issued = await domain(td).issuer.issue({ publicKey: generateKeyPair().publicKey, spiffeId: `spiffe://${td}/ns/revoke/sa/${name}` });
    const file = join(dir.dir, `${name}.pem`);
    writeFileSync(file, issued.cert.pem);
    return { cert: issued.cert, file };
  }

  /** openssl ocsp against the server's one /ocsp, with the issuer and root of the certificate's trust domain. */
  function opensslOcsp(td: string, certFile: string): Promise<Run> {
    const folder = domain(td).folder;
    return runAsync('openssl', ['ocsp', '-url', `${base}/ocsp`, '-issuer', join(folder, 'ca-cert.pem'), '-cert', certFile, '-CAfile', join(folder, 'root-cert.pem'), '-no_nonce']);
  }

  async function ledgerStatus(td: string, serial: string): Promise<string | undefined> {
    return (await plane.cp.ledger.get(serial, domain(td).ca.cert.issuerKeyId))?.status;
  }

  before(async () => {
    plane = await startPlane(
      {
        trustDomain: MAIN,
        additionalTrustDomains: [{ name: PARTNER }],
        http: { listen: '127.0.0.1:0', publicUrl: PUBLIC_URL },
        admin: { listen: '127.0.0.1:0' },
      },
      { dataDir: join(dir.dir, 'data') },
    );
    base = `http://${plane.cp.addresses.http}`;
    admin = `http://${plane.cp.addresses.admin}`;
    tokenFile = plane.cp.adminToken!.file;
    assert.deepEqual(plane.cp.signingDomains.map((d) => d.trustDomain), [MAIN, PARTNER]);
  });
  after(async () => {
    await plane.stop();
    dir.cleanup();
  });

  test('cert revoke --server --trust-domain partner.example revokes a partner certificate: openssl ocsp says revoked, the ledger row is revoked, the main leaf stays good; cert list --server --trust-domain lists it', async () => {
    const partner = await issue(PARTNER, 'partner-leaf');
    const main = await issue(MAIN, 'main-leaf');
    const serial = opensslSerial(partner.cert.serial);
    const good = ok(await opensslOcsp(PARTNER, partner.file), 'openssl ocsp (partner, before)');
    assert.match(good.stdout, new RegExp(`${partner.file}: good`));

    const r = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, '--trust-domain', PARTNER, serial, '--reason', 'keyCompromise', '--json']);
    assert.equal(r.status, 0, show(r));
    const out = JSON.parse(r.stdout) as { serial: string; trustDomain: string; identity: string; reason: string; alreadyRevoked: boolean; lagging: string[] };
    assert.deepEqual(
      [out.serial, out.trustDomain, out.identity, out.reason, out.alreadyRevoked, out.lagging],
      [serial, PARTNER, `spiffe://${PARTNER}/ns/revoke/sa/partner-leaf`, 'keyCompromise', false, []],
    );

    const revoked = ok(await opensslOcsp(PARTNER, partner.file), 'openssl ocsp (partner, after)');
    assert.match(revoked.stdout, new RegExp(`${partner.file}: revoked`));
    assert.match(revoked.stdout, /Reason: keyCompromise/);
    assert.match(revoked.stdout + revoked.stderr, /Response verify OK/);
    const mainGood = ok(await opensslOcsp(MAIN, main.file), 'openssl ocsp (main)');
    assert.match(mainGood.stdout, new RegExp(`${main.file}: good`));
    assert.equal(await ledgerStatus(PARTNER, partner.cert.serial), 'revoked');
    assert.equal(await ledgerStatus(MAIN, main.cert.serial), 'valid');

    // Again, in text: harmless, and it names the CA.
    const again = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, '--trust-domain', PARTNER, serial]);
    assert.equal(again.status, 0, show(again));
    assert.match(again.stdout, new RegExp(`${serial} was already revoked by the CA of trust domain partner\\.example at .* \\(keyCompromise\\)`));

    type Row = { serial: string; trustDomain: string; status: string; reason: string | null; identity: string | null };
    const listed = await meshcert(['cert', 'list', '--server', admin, '--token-file', tokenFile, '--trust-domain', PARTNER, '--status', 'revoked', '--limit', '1000', '--json']);
    assert.equal(listed.status, 0, show(listed));
    const rows = JSON.parse(listed.stdout) as Row[];
    const row = rows.find((x) => x.serial === serial);
    assert.ok(row, listed.stdout);
    const { revokedAt, ...rest } = row as Row & { revokedAt: string };
    assert.ok(Math.abs(Date.parse(revokedAt) - Date.now()) < 60_000, revokedAt);
    assert.deepEqual(rest, {
      serial,
      trustDomain: PARTNER,
      identity: `spiffe://${PARTNER}/ns/revoke/sa/partner-leaf`,
      profile: 'svid',
      status: 'revoked',
      notAfter: partner.cert.notAfter.toISOString(),
      reason: 'keyCompromise',
    });
    assert.ok(rows.every((x) => x.trustDomain === PARTNER && x.status === 'revoked'), listed.stdout);
    // The main trust domain by default: neither the partner leaf nor a partner row, and the main leaf is there.
    const mainList = await meshcert(['cert', 'list', '--server', admin, '--token-file', tokenFile, '--limit', '1000', '--json']);
    assert.equal(mainList.status, 0, show(mainList));
    const mainRows = JSON.parse(mainList.stdout) as Row[];
    assert.ok(!mainRows.some((x) => x.serial === serial), mainList.stdout);
    assert.ok(mainRows.every((x) => x.trustDomain === MAIN), mainList.stdout);
    assert.equal(mainRows.find((x) => x.serial === opensslSerial(main.cert.serial))?.status, 'valid');
    // Text form: one line per certificate.
    const text = await meshcert(['cert', 'list', '--server', admin, '--token-file', tokenFile, '--trust-domain', PARTNER]);
    assert.equal(text.status, 0, show(text));
    assert.match(text.stdout, new RegExp(`^${serial}  revoked  \\S+  svid    spiffe://partner\\.example/ns/revoke/sa/partner-leaf$`, 'm'));
  });

  test('a serial both CAs issued: cert revoke --server without --trust-domain exits 1 with MESH_ERR_INVALID_ARGUMENT naming both trust domains and --trust-domain, revoking nothing; with it only that CA revokes', async () => {
    // Random 128-bit serials do not collide by chance: the twin rows are written straight into the server's ledger.
    const serial = randomSerial();
    await recordUnderEveryCa(plane.cp, serial);
    const shown = opensslSerial(serial);
    const r = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, shown, '--json']);
    assert.equal(r.status, 1, show(r));
    const err = cliError(r);
    assert.equal(err?.code, 'MESH_ERR_INVALID_ARGUMENT', show(r));
    assert.match(err!.message, /cluster\.local, partner\.example/);
    assert.match(err!.message, /pass --trust-domain/);
    assert.match(err!.message, /nothing was revoked/);
    assert.equal(r.stdout, '');
    const text = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, shown]);
    assert.equal(text.status, 1, show(text));
    assert.match(text.stderr, new RegExp(`serial ${shown} was issued by the CAs of trust domains cluster\\.local, partner\\.example; pass --trust-domain .*\\[MESH_ERR_INVALID_ARGUMENT\\]`));
    assert.deepEqual([await ledgerStatus(MAIN, serial), await ledgerStatus(PARTNER, serial)], ['valid', 'valid'], 'nothing revoked');

    const named = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, '--trust-domain', PARTNER, shown, '--reason', 'superseded', '--json']);
    assert.equal(named.status, 0, show(named));
    assert.equal(JSON.parse(named.stdout).trustDomain, PARTNER);
    assert.deepEqual([await ledgerStatus(MAIN, serial), await ledgerStatus(PARTNER, serial)], ['valid', 'revoked']);
    // Still ambiguous without the flag (the main CA's twin is valid): the same refusal, not a silent pick.
    const still = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, shown]);
    assert.equal(still.status, 1, show(still));
    assert.equal(cliError(still)?.code, 'MESH_ERR_INVALID_ARGUMENT');
    assert.equal(await ledgerStatus(MAIN, serial), 'valid');
  });

  test('the admin client against the real admin API: 409 ambiguous_serial is INVALID_ARGUMENT with the trust domains in details; trustDomain goes into revoke and list', async () => {
    const serial = randomSerial();
    await recordUnderEveryCa(plane.cp, serial, 'twin2.example');
    const token = readFileSync(tokenFile, 'utf8').trim();
    await assert.rejects(
      adminRevoke({ server: admin, token, serial, reason: 'keyCompromise' }),
      (e: unknown) => {
        assert.ok(isMeshError(e, ErrorCodes.INVALID_ARGUMENT), String(e));
        assert.deepEqual(e.details, { httpStatus: 409, apiCode: 'ambiguous_serial', trustDomains: [MAIN, PARTNER] });
        assert.equal(e.subject, 'trustDomain');
        assert.match(e.message, new RegExp(`^admin API at ${admin.replace(/\./g, '\\.')}: serial ${serial} was issued by the CAs of trust domains cluster\\.local, partner\\.example; pass --trust-domain`));
        return true;
      },
    );
    const res = await adminRevoke({ server: admin, token, serial, reason: 'keyCompromise', trustDomain: MAIN });
    assert.deepEqual([res.serial, res.trustDomain, res.status, res.reason, res.alreadyRevoked], [opensslSerial(serial), MAIN, 'revoked', 'keyCompromise', false]);
    const [mainList, partnerList] = await Promise.all([
      adminListCertificates({ server: admin, token, identity: 'twin2.example' }),
      adminListCertificates({ server: admin, token, identity: 'twin2.example', trustDomain: PARTNER }),
    ]);
    assert.deepEqual(mainList.map((c) => [c.serial, c.trustDomain, c.status]), [[opensslSerial(serial), MAIN, 'revoked']]);
    assert.deepEqual(partnerList.map((c) => [c.serial, c.trustDomain, c.status]), [[opensslSerial(serial), PARTNER, 'valid']]);
    // A trust domain the server does not sign for: 400, INVALID_ARGUMENT naming the ones it does.
    for (const attempt of [
      () => adminRevoke({ server: admin, token, serial, trustDomain: 'elsewhere.example' }),
      () => adminListCertificates({ server: admin, token, trustDomain: 'elsewhere.example' }),
    ]) {
      await assert.rejects(attempt, (e: unknown) => isMeshError(e, ErrorCodes.INVALID_ARGUMENT) && /elsewhere\.example/.test(e.message) && /partner\.example/.test(e.message) && e.details?.httpStatus === 400);
    }
  });

  test('--trust-domain: a CA that did not issue the serial is NOT_FOUND naming it; an unknown trust domain exits 1 naming the server\'s; without --server, or empty, a usage error (exit 2)', async () => {
    const main = await issue(MAIN, 'main-only');
    const serial = opensslSerial(main.cert.serial);
    const wrongCa = await meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, '--trust-domain', PARTNER, serial]);
    assert.equal(wrongCa.status, 1, show(wrongCa));
    assert.equal(cliError(wrongCa)?.code, 'MESH_ERR_NOT_FOUND');
    assert.match(cliError(wrongCa)!.message, /the CA of trust domain "partner\.example"/);
    assert.equal(await ledgerStatus(MAIN, main.cert.serial), 'valid');

    const [revokeElsewhere, listElsewhere] = await Promise.all([
      meshcert(['cert', 'revoke', '--server', admin, '--token-file', tokenFile, '--trust-domain', 'elsewhere.example', serial]),
      meshcert(['cert', 'list', '--server', admin, '--token-file', tokenFile, '--trust-domain', 'elsewhere.example']),
    ]);
    for (const r of [revokeElsewhere, listElsewhere]) {
      assert.equal(r.status, 1, show(r));
      assert.equal(cliError(r)?.code, 'MESH_ERR_INVALID_ARGUMENT', show(r));
      assert.match(cliError(r)!.message, /"elsewhere\.example" is not a trust domain this CA signs for \("?cluster\.local"?, "?partner\.example"?\)/);
    }
    assert.equal(await ledgerStatus(MAIN, main.cert.serial), 'valid');

    const data = join(dir.dir, 'data');
    const usage = await inParallel(
      [
        ['cert', 'revoke', '--data-dir', data, '--trust-domain', PARTNER, serial],
        ['cert', 'list', '--data-dir', data, '--trust-domain', PARTNER],
        ['cert', 'revoke', '--server', admin, '--token-file', tokenFile, '--trust-domain', '', serial],
        ['cert', 'list', '--server', admin, '--trust-domain', PARTNER],
        ['cert', 'list', '--server', admin, '--token-file', tokenFile, '--data-dir', data],
        ['cert', 'list', '--data-dir', data, '--token-file', tokenFile],
      ],
      (args) => meshcert(args),
    );
    for (const r of usage) {
      assert.equal(r.status, 2, show(r));
      assert.equal(cliError(r)?.code, 'MESH_ERR_USAGE', show(r));
    }
    assert.match(usage[0]!.stderr, /--trust-domain goes with --server/);
    assert.match(usage[1]!.stderr, /--trust-domain goes with --server/);
    assert.match(usage[2]!.stderr, /is not a trust domain name/);
    assert.match(usage[3]!.stderr, /give --token-file FILE/);
    assert.equal(await ledgerStatus(MAIN, main.cert.serial), 'valid');
  });
});

describe('public URL and admin settings at start', () => {
  test('http.publicUrl replaces the URL in ca.json for new certificates (with a warning), unless the CA\'s is adopted; no warning for a real host', async () => {
    const d = tempDir('meshcert-publicurl-');
    const dataDir = join(d, 'data');
    await initRootCa(dataDir, { publicUrl: 'http://old.example:8080' });
    const log = capturingLogger();
    const url = 'http://ca.mesh.example:15014';
    const p = await startPlane({ http: { listen: '127.0.0.1:0', publicUrl: url } }, { dataDir, logger: log.logger });
    try {
      const cert = (await p.cp.issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: ['x.example'] })).cert;
      assert.deepEqual(cert.ocspUrls, [`${url}/ocsp`]);
      assert.deepEqual(cert.crlDistributionPoints, [`${url}/crl`]);
      assert.ok(log.lines().some((l) => l.level === 40 && String(l.msg).includes('differs from the URL in ca.json')));
      assert.ok(!log.lines().some((l) => String(l.msg).includes('loopback')), 'a real host name is not warned about');
      assert.equal(p.cp.addresses.admin, null, 'no admin section: no admin API');
    } finally {
      await p.cp.stop();
    }
    const kept = await startPlane({ http: { listen: '127.0.0.1:0', publicUrl: url } }, { dataDir, adoptCaPublicUrl: true });
    try {
      const cert = (await kept.cp.issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: ['y.example'] })).cert;
      assert.deepEqual(cert.ocspUrls, ['http://old.example:8080/ocsp']);
    } finally {
      await kept.stop();
    }
  });

  test('admin.tokenFile: a configured file is used as is; a missing one is a start-up error naming it', async () => {
    const d = tempDir('meshcert-admin-cfg-');
    const tokenFile = join(d, 'my-token');
    writeFileSync(tokenFile, 'configured-admin-token-123456\n', { mode: 0o600 });
    const p = await startPlane({ admin: { listen: '127.0.0.1:0', tokenFile } }, { dataDir: join(d, 'data') });
    try {
      assert.deepEqual(p.cp.adminToken, { file: tokenFile, created: false });
      const r = await fetch(`http://${p.cp.addresses.admin}/certificates`, { headers: { authorization: 'Bearer configured-admin-token-123456' } });
      assert.equal(r.status, 200);
      // Rotated in place: the new token works at once, the old one no longer.
      writeFileSync(tokenFile, 'rotated-admin-token-abcdefgh\n');
      const old = await fetch(`http://${p.cp.addresses.admin}/certificates`, { headers: { authorization: 'Bearer configured-admin-token-123456' } });
      assert.equal(old.status, 401);
      const rotated = await fetch(`http://${p.cp.addresses.admin}/certificates`, { headers: { authorization: 'Bearer rotated-admin-token-abcdefgh' } });
      assert.equal(rotated.status, 200);
    } finally {
      await p.cp.stop();
    }
    await assert.rejects(
      startPlane({ admin: { listen: '127.0.0.1:0', tokenFile: join(d, 'absent') } }, { dataDir: join(d, 'data2') }),
      (e: Error) => e.message.includes('admin.tokenFile') && e.message.includes(join(d, 'absent')),
    );
  });
});
