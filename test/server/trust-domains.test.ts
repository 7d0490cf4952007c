// A second trust domain with its own signing CA in `meshcert serve`: issuance by each authenticator, the chain
// judged by `openssl verify` against each trust domain's root, renewal, OCSP and CRL per CA (`openssl ocsp`,
// `openssl crl`), the admin API across CAs, metrics, /roots, restarts, config errors, and the CLI's banner.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { initRootCa } from '../../src/ca/index.js';
import { ErrorCodes, isMeshError } from '../../src/core/index.js';
import { Certificate, opensslSerial, randomSerial } from '../../src/pki/index.js';
import { ControlPlane } from '../../src/server/index.js';
import { TestCA } from '../helpers/test-ca.js';
import { spawnMeshcert, waitForOutput } from '../helpers/meshcert-process.js';
import {
  TestJwtIssuer,
  capturingLogger,
  ok,
  call,
  httpGet,
  loopbackConfig,
  makeConfig,
  makeCsr,
  recordUnderEveryCa,
  runTool,
  startPlane,
  statusOf,
  tempDir,
  writeBootstrapTokens,
  type Plane,
  type ToolRun,
} from './fixtures.js';

const MAIN = 'cluster.local';
const PARTNER = 'partner.example';
const PUBLIC_URL = 'http://127.0.0.1:15014';
const TOKENS = { main: 'main-domain-token-0123456789', partner: 'partner-domain-token-0123456789' };



describe('meshcert serve with a second trust domain (additionalTrustDomains)', () => {
  const dir = tempDir('meshcert-trust-domains-');
  const dataDir = join(dir, 'data');
  const partnerDir = join(dataDir, 'trust-domains', PARTNER);
  let plane: Plane;
  let log: ReturnType<typeof capturingLogger>;
  let mainJwt: TestJwtIssuer;
  let partnerJwt: TestJwtIssuer;
  let doc: Record<string, unknown>;
  let base: string;
  let admin: string;
  let adminToken: string;
  const files = {
    mainRoot: join(dataDir, 'root-cert.pem'),
    mainCa: join(dataDir, 'ca-cert.pem'),
    partnerRoot: join(partnerDir, 'root-cert.pem'),
    partnerCa: join(partnerDir, 'ca-cert.pem'),
  };

  before(async () => {
    mainJwt = new TestJwtIssuer(dir);
    partnerJwt = new TestJwtIssuer(dir, 'https://partner-cluster.example', 'partner-sa.pub');
    const tokenFile = join(dir, 'tokens.yaml');
    writeBootstrapTokens(tokenFile, [
      { name: 'main', token: TOKENS.main, identity: `spiffe://${MAIN}/ns/a/sa/b` },
      { name: 'partner', token: TOKENS.partner, identity: `spiffe://${PARTNER}/ns/a/sa/b` },
    ]);
    doc = loopbackConfig({
      additionalTrustDomains: [{ name: PARTNER }],
      auth: { jwt: [mainJwt.config, { ...partnerJwt.config, trustDomain: PARTNER }], bootstrapTokens: tokenFile, clientCertificates: true },
      admin: { listen: '127.0.0.1:0' },
    });
    log = capturingLogger();
    plane = await startPlane(doc, { dataDir, logger: log.logger });
    base = `http://${plane.cp.addresses.http}`;
    admin = `http://${plane.cp.addresses.admin}`;
    adminToken = readFileSync(plane.cp.adminToken!.file, 'utf8').trim();
  });
  after(async () => {
    // The restart test swaps in a new control plane; stop() of the fixture stops the first one and cleans up.
    await plane.cp.stop();
    await plane.stop();
  });

  /** Writes a chain's leaf and its bundle to files, for openssl. */
  function writeChain(name: string, certChain: string[]): { leaf: string; untrusted: string; leafCert: Certificate } {
    const leaf = join(dir, `${name}.pem`);
    const untrusted = join(dir, `${name}-intermediates.pem`);
    writeFileSync(leaf, certChain[0]!);
    // Intermediates (none when the CA is itself a root), so that -untrusted always has a file.
    writeFileSync(untrusted, certChain.slice(1, -1).join('') || certChain[0]!);
    return { leaf, untrusted, leafCert: Certificate.parse(certChain[0]!) };
  }

  function verify(root: string, chain: { leaf: string; untrusted: string }): Promise<ToolRun> {
    return runTool('openssl', ['verify', '-CAfile', root, '-untrusted', chain.untrusted, chain.leaf]);
  }

  /** A chain of the partner trust domain: verified by its root only, and its last element is that root bundle. */
  async function assertPartnerChain(name: string, certChain: string[], id: string): Promise<Certificate> {
    const chain = writeChain(name, certChain);
    assert.deepEqual(chain.leafCert.spiffeIds, [id]);
    assert.equal(certChain.at(-1), readFileSync(files.partnerRoot, 'utf8'), 'the trust bundle of the partner trust domain, and only it');
    assert.match(ok(await verify(files.partnerRoot, chain), 'openssl verify against the partner root').stdout, /: OK/);
    const main = await verify(files.mainRoot, chain);
    assert.notEqual(main.status, 0, `the main root must not verify a partner certificate:\n${main.stdout}${main.stderr}`);
    assert.match(main.stdout + main.stderr, /unable to get local issuer certificate/);
    return chain.leafCert;
  }

  async function assertMainChain(name: string, certChain: string[], id: string): Promise<Certificate> {
    const chain = writeChain(name, certChain);
    assert.deepEqual(chain.leafCert.spiffeIds, [id]);
    assert.equal(certChain.at(-1), plane.rootPem);
    ok(await verify(files.mainRoot, chain), 'openssl verify against the main root');
    assert.notEqual((await verify(files.partnerRoot, chain)).status, 0);
    return chain.leafCert;
  }

  function adminFetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${admin}${path}`, { ...init, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' } });
  }

  test('start: the partner CA is made in DATA-DIR/trust-domains/NAME with Istio\'s file names; one log line per trust domain', async () => {
    for (const f of ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem', 'ca.json']) assert.ok(existsSync(join(partnerDir, f)), f);
    assert.equal(JSON.parse(readFileSync(join(partnerDir, 'ca.json'), 'utf8')).trustDomain, PARTNER);
    const domains = plane.cp.signingDomains;
    assert.deepEqual(domains.map((d) => [d.trustDomain, d.main, d.folder, d.source, d.crlPath]), [
      [MAIN, true, dataDir, 'created', '/crl'],
      [PARTNER, false, partnerDir, 'created', `/crl/${PARTNER}`],
    ]);
    const lines = log.lines().filter((l) => typeof l.trustDomain === 'string' && typeof l.folder === 'string' && typeof l.subject === 'string');
    assert.deepEqual(lines.map((l) => [l.trustDomain, l.folder, l.subject]), domains.map((d) => [d.trustDomain, d.folder, d.ca.cert.subject]), JSON.stringify(log.lines()));
    assert.match(String(lines[1]!.msg), /trust domain partner\.example: created its signing CA in/);
    assert.notEqual(domains[0]!.ca.cert.fingerprint256, domains[1]!.ca.cert.fingerprint256);
  });

  test('a bootstrap token of the partner trust domain gets a partner certificate (openssl verify: partner root yes, main root no); the main one a main certificate', async () => {
    const partner = await call(plane, { bearerToken: TOKENS.partner });
    const leaf = await assertPartnerChain('boot-partner', partner.certChain, `spiffe://${PARTNER}/ns/a/sa/b`);
    assert.deepEqual(leaf.crlDistributionPoints, [`${PUBLIC_URL}/crl/${PARTNER}`], 'the partner CA\'s own CRL');
    assert.deepEqual(leaf.ocspUrls, [`${PUBLIC_URL}/ocsp`], 'one OCSP URL for every CA');
    const main = await call(plane, { bearerToken: TOKENS.main });
    const mainLeaf = await assertMainChain('boot-main', main.certChain, `spiffe://${MAIN}/ns/a/sa/b`);
    assert.deepEqual(mainLeaf.crlDistributionPoints, [`${PUBLIC_URL}/crl`]);
  });

  test('a JWT issuer mapped to the partner trust domain gets partner certificates; the other issuer main ones', async () => {
    const partner = await call(plane, { bearerToken: await partnerJwt.token('web', 'frontend') });
    await assertPartnerChain('jwt-partner', partner.certChain, `spiffe://${PARTNER}/ns/web/sa/frontend`);
    const main = await call(plane, { bearerToken: await mainJwt.token('web', 'frontend') });
    await assertMainChain('jwt-main', main.certChain, `spiffe://${MAIN}/ns/web/sa/frontend`);
  });

  test('client-certificate renewal of a partner SVID is signed by the partner CA; asking with it for a main-domain identity is PERMISSION_DENIED', async () => {
    const first = await call(plane, { bearerToken: TOKENS.partner });
    const clientCert = { certChainPem: first.certChain.slice(0, -1).join(''), keyPem: first.keyPem };
    const renewed = await call(plane, { clientCert });
    const leaf = await assertPartnerChain('renewed', renewed.certChain, `spiffe://${PARTNER}/ns/a/sa/b`);
    assert.ok(leaf.isIssuedBy(plane.cp.signingDomains[1]!.ca.cert));
    assert.notEqual(leaf.serial, Certificate.parse(first.certChain[0]!).serial);

    const mainId = await makeCsr({ sans: [{ type: 'uri', value: `spiffe://${MAIN}/ns/a/sa/b` }] });
    const st = await statusOf(plane, { clientCert, csrPem: mainId.csrPem });
    assert.equal(st.code, Status.PERMISSION_DENIED, st.message);
    assert.match(st.message, /spiffe:\/\/cluster\.local\/ns\/a\/sa\/b/);
  });

  test('OCSP at /ocsp answers for the partner CA (good, then revoked after an admin revoke); the main CA\'s leaf is unaffected; the partner CRL lists it, the main CRL does not', async () => {
    const partner = writeChain('ocsp-partner', (await call(plane, { bearerToken: TOKENS.partner })).certChain);
    const main = writeChain('ocsp-main', (await call(plane, { bearerToken: TOKENS.main })).certChain);
    const ocsp = (leaf: string, issuer: string, root: string): Promise<ToolRun> =>
      runTool('openssl', ['ocsp', '-url', `${base}/ocsp`, '-issuer', issuer, '-cert', leaf, '-CAfile', root, '-no_nonce']);

    const good = ok(await ocsp(partner.leaf, files.partnerCa, files.partnerRoot), 'openssl ocsp (partner)');
    assert.match(good.stdout, new RegExp(`${partner.leaf}: good`));
    assert.match(good.stdout + good.stderr, /Response verify OK/);

    const res = await adminFetch('/revoke', { method: 'POST', body: JSON.stringify({ serial: opensslSerial(partner.leafCert.serial), reason: 'keyCompromise' }) });
    const json = (await res.json()) as Record<string, unknown>;
    assert.equal(res.status, 200, JSON.stringify(json));
    assert.equal(json.trustDomain, PARTNER);
    assert.deepEqual(json.lagging, []);

    const revoked = ok(await ocsp(partner.leaf, files.partnerCa, files.partnerRoot), 'openssl ocsp (partner, revoked)');
    assert.match(revoked.stdout, new RegExp(`${partner.leaf}: revoked`));
    assert.match(revoked.stdout, /Reason: keyCompromise/);
    assert.match(revoked.stdout + revoked.stderr, /Response verify OK/);
    const mainGood = ok(await ocsp(main.leaf, files.mainCa, files.mainRoot), 'openssl ocsp (main)');
    assert.match(mainGood.stdout, new RegExp(`${main.leaf}: good`));
    assert.match(mainGood.stdout + mainGood.stderr, /Response verify OK/);

    const serialLine = new RegExp(`Serial Number: ${opensslSerial(partner.leafCert.serial)}`);
    const partnerCrl = join(dir, 'partner.crl');
    ok(await runTool('curl', ['-sS', '-o', partnerCrl, `${base}/crl/${PARTNER}`]), 'curl partner CRL');
    const p = ok(await runTool('openssl', ['crl', '-inform', 'DER', '-in', partnerCrl, '-CAfile', files.partnerCa, '-noout', '-text']), 'openssl crl (partner)');
    assert.match(p.stdout + p.stderr, /verify OK/);
    assert.match(p.stdout, serialLine);
    const mainCrl = join(dir, 'main.crl');
    ok(await runTool('curl', ['-sS', '-o', mainCrl, `${base}/crl`]), 'curl main CRL');
    const m = ok(await runTool('openssl', ['crl', '-inform', 'DER', '-in', mainCrl, '-CAfile', files.mainCa, '-noout', '-text']), 'openssl crl (main)');
    assert.match(m.stdout + m.stderr, /verify OK/);
    assert.doesNotMatch(m.stdout, serialLine);
    assert.equal((await httpGet(plane.cp.addresses.http!, '/crl/elsewhere.example')).status, 404);
  });

  test('admin API: a serial both CAs issued needs "trustDomain" (409), then only that CA revokes it; the list is per trust domain', async () => {
    const serial = randomSerial();
    await recordUnderEveryCa(plane.cp, serial);
    const ambiguous = await adminFetch('/revoke', { method: 'POST', body: JSON.stringify({ serial }) });
    const body = (await ambiguous.json()) as { error: { code: string; message: string; trustDomains: string[] } };
    assert.equal(ambiguous.status, 409, JSON.stringify(body));
    assert.equal(body.error.code, 'ambiguous_serial');
    assert.deepEqual(body.error.trustDomains, [MAIN, PARTNER]);
    const named = await adminFetch('/revoke', { method: 'POST', body: JSON.stringify({ serial, trustDomain: PARTNER }) });
    assert.equal(named.status, 200);
    const [mainRow, partnerRow] = await Promise.all(plane.cp.signingDomains.map((d) => plane.cp.ledger.get(serial, d.ca.cert.issuerKeyId)));
    assert.deepEqual([mainRow?.status, partnerRow?.status], ['valid', 'revoked']);
    const unknown = await adminFetch('/revoke', { method: 'POST', body: JSON.stringify({ serial, trustDomain: 'elsewhere.example' }) });
    assert.equal(unknown.status, 400);

    const list = (await (await adminFetch(`/certificates?trustDomain=${PARTNER}&limit=1000`)).json()) as { trustDomain: string; certificates: Array<{ serial: string; trustDomain: string }> };
    assert.equal(list.trustDomain, PARTNER);
    assert.ok(list.certificates.some((c) => c.serial === opensslSerial(serial)));
    assert.ok(list.certificates.every((c) => c.trustDomain === PARTNER));
    const mainList = (await (await adminFetch('/certificates?limit=1000')).json()) as { trustDomain: string };
    assert.equal(mainList.trustDomain, MAIN, 'the main trust domain by default');
    assert.equal((await adminFetch('/certificates?trustDomain=elsewhere.example')).status, 400);
  });

  test('metrics: CA expiry, OCSP signer and CRL per trust domain; /roots labelled; /roots/NAME; health checks of both CAs', async () => {
    const { body } = await httpGet(plane.cp.addresses.http!, '/metrics');
    for (const td of [MAIN, PARTNER]) {
      const re = new RegExp(`^meshcert_ca_expiry_seconds\\{trust_domain="${td.replace(/\./g, '\\.')}"\\} (\\S+)$`, 'm');
      const left = Number(re.exec(body)?.[1]);
      assert.ok(left > 9 * 365 * 86400, `${td}: ${left}\n${body}`);
      assert.match(body, new RegExp(`^meshcert_ocsp_signer_expiry_seconds\\{trust_domain="${td}"\\} \\d`, 'm'));
      assert.match(body, new RegExp(`^meshcert_crl_number\\{trust_domain="${td}"\\} [1-9]`, 'm'));
    }
    assert.match(body, /^meshcert_crl_entries\{trust_domain="partner\.example"\} [1-9]/m);

    const roots = await httpGet(plane.cp.addresses.http!, '/roots');
    assert.equal(roots.status, 200);
    const mainRoot = readFileSync(files.mainRoot, 'utf8');
    const partnerRoot = readFileSync(files.partnerRoot, 'utf8');
    assert.equal(roots.body, `# trust domain ${MAIN}\n${mainRoot}# trust domain ${PARTNER}\n${partnerRoot}`);
    assert.deepEqual(Certificate.parseAll(roots.body).map((c) => c.fingerprint256), [...Certificate.parseAll(mainRoot), ...Certificate.parseAll(partnerRoot)].map((c) => c.fingerprint256));
    assert.equal((await httpGet(plane.cp.addresses.http!, `/roots/${PARTNER}`)).body, partnerRoot);
    assert.equal((await httpGet(plane.cp.addresses.http!, `/roots/${MAIN}`)).body, mainRoot);
    assert.equal((await httpGet(plane.cp.addresses.http!, '/roots/elsewhere.example')).status, 404);
    assert.equal((await httpGet(plane.cp.addresses.http!, '/healthz')).status, 200);
  });

  test('a restart keeps both CAs (nothing made again), and certificates issued before still renew', async () => {
    const before = plane.cp.signingDomains.map((d) => d.ca.cert.fingerprint256);
    const issued = await call(plane, { bearerToken: TOKENS.partner });
    await plane.cp.stop();
    const cp = new ControlPlane();
    await cp.start(makeConfig(doc), dataDir);
    plane.cp = cp;
    assert.equal(cp.createdCa, false);
    assert.deepEqual(cp.signingDomains.map((d) => d.ca.cert.fingerprint256), before);
    assert.deepEqual(cp.signingDomains.map((d) => d.source), ['meshcert', 'meshcert']);
    const renewed = await call(plane, { clientCert: { certChainPem: issued.certChain.slice(0, -1).join(''), keyPem: issued.keyPem } });
    await assertPartnerChain('after-restart', renewed.certChain, `spiffe://${PARTNER}/ns/a/sa/b`);
  });
});

describe('additionalTrustDomains at start: folders and credentials that do not fit', () => {
  test('a caDir holding another trust domain\'s CA, or the data dir itself: CONFIG naming the field', async () => {
    const dir = tempDir('meshcert-td-errors-');
    const other = join(dir, 'other-ca');
    await initRootCa(other, { trustDomain: 'other.example' });
    const dataDir = join(dir, 'data');
    await assert.rejects(
      new ControlPlane().start(makeConfig(loopbackConfig({ additionalTrustDomains: [{ name: PARTNER, caDir: other }] })), dataDir),
      (e: unknown) =>
        isMeshError(e, ErrorCodes.CONFIG) &&
        e.subject === 'additionalTrustDomains[0].caDir' &&
        /^additionalTrustDomains\[0\]\.caDir: \S+other-ca holds the CA of trust domain "other\.example" \(its ca\.json says so\), not of "partner\.example"/.test(e.message),
    );
    await assert.rejects(
      new ControlPlane().start(makeConfig(loopbackConfig({ additionalTrustDomains: [{ name: PARTNER, caDir: dataDir }] })), dataDir),
      (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && e.subject === 'additionalTrustDomains[0].caDir' && /is the data dir/.test(e.message),
    );
    // A copy of the main CA's folder as a partner's: the same CA under two trust domains.
    const copy = join(dir, 'copy');
    cpSync(dataDir, copy, { recursive: true });
    writeFileSync(join(copy, 'ca.json'), JSON.stringify({ trustDomain: PARTNER, mode: 'self-signed', createdAt: new Date().toISOString() }));
    await assert.rejects(
      new ControlPlane().start(makeConfig(loopbackConfig({ additionalTrustDomains: [{ name: PARTNER, caDir: copy }] })), dataDir),
      (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /have the same signing CA/.test(e.message),
    );
  });

  test('a bootstrap token of a trust domain not signed for here is refused at start, naming the file and entry; a JWT issuer mapped to one is a config error', async () => {
    const dir = tempDir('meshcert-td-tokens-');
    const tokenFile = join(dir, 'tokens.yaml');
    writeBootstrapTokens(tokenFile, [
      { name: 'partner', token: TOKENS.partner, identity: `spiffe://${PARTNER}/ns/a/sa/b` },
      { name: 'stray', token: TOKENS.main, identity: 'spiffe://elsewhere.example/ns/a/sa/b' },
    ]);
    await assert.rejects(
      new ControlPlane().start(makeConfig(loopbackConfig({ additionalTrustDomains: [{ name: PARTNER }], auth: { bootstrapTokens: tokenFile } })), join(dir, 'data')),
      (e: unknown) =>
        isMeshError(e, ErrorCodes.CONFIG) &&
        e.message.startsWith(`${tokenFile}: invalid bootstrap token file`) &&
        /tokens\[1\]\.identity: "spiffe:\/\/elsewhere\.example\/ns\/a\/sa\/b" is in trust domain "elsewhere\.example", which this CA does not sign for/.test(e.message),
    );
    assert.throws(
      () => makeConfig(loopbackConfig({ auth: { jwt: [{ issuer: 'https://x', audiences: ['a'], publicKeyFiles: [tokenFile], trustDomain: PARTNER }] } })),
      (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /auth\.jwt\[0\]\.trustDomain: "partner\.example" is not a trust domain of this server/.test(e.message),
    );
  });

  test('an Istio cacerts folder (an enterprise intermediate, no ca.json) is used as it is; its chain ends at its own root', async () => {
    const dir = tempDir('meshcert-td-istio-');
    const cacerts = join(dir, 'partner-cacerts');
    const root = await TestCA.root({ name: 'partner enterprise root' });
    const mesh = await root.child({ name: 'partner mesh CA' });
    mkdirSync(cacerts);
    writeFileSync(join(cacerts, 'ca-cert.pem'), mesh.cert.pem);
    writeFileSync(join(cacerts, 'ca-key.pem'), mesh.keyPem, { mode: 0o600 });
    writeFileSync(join(cacerts, 'root-cert.pem'), root.cert.pem);
    writeFileSync(join(cacerts, 'cert-chain.pem'), mesh.cert.pem + root.cert.pem);
    const tokenFile = join(dir, 'tokens.yaml');
    writeBootstrapTokens(tokenFile, [{ name: 'partner', token: TOKENS.partner, identity: `spiffe://${PARTNER}/ns/a/sa/b` }]);
    const plane = await startPlane(loopbackConfig({ additionalTrustDomains: [{ name: PARTNER, caDir: cacerts }], auth: { bootstrapTokens: tokenFile } }), {
      dataDir: join(dir, 'data'),
    });
    try {
      const d = plane.cp.signingDomains[1]!;
      assert.deepEqual([d.trustDomain, d.source, d.folder], [PARTNER, 'istio', cacerts]);
      assert.ok(!existsSync(join(cacerts, 'ca.json')), 'nothing written into the plug-in folder');
      const res = await call(plane, { bearerToken: TOKENS.partner });
      assert.equal(res.certChain.length, 3, 'leaf, the partner intermediate, the partner root bundle');
      assert.equal(res.certChain[1], mesh.cert.pem);
      assert.equal(res.certChain[2], root.cert.pem);
      const leaf = join(dir, 'leaf.pem');
      const inter = join(dir, 'inter.pem');
      const rootFile = join(cacerts, 'root-cert.pem');
      writeFileSync(leaf, res.certChain[0]!);
      writeFileSync(inter, res.certChain[1]!);
      ok(await runTool('openssl', ['verify', '-CAfile', rootFile, '-untrusted', inter, leaf]), 'openssl verify (plug-in partner)');
    } finally {
      await plane.stop();
    }
  });
});

describe('meshcert serve --config with additionalTrustDomains (a separate process)', () => {
  test('prints one line per trust domain (CA subject and folder) and each CRL URL; --help documents the key', async () => {
    const dir = tempDir('meshcert-td-cli-');
    const cfgFile = join(dir, 'serve.yaml');
    const partnerDir = join(dir, 'partner-ca');
    writeFileSync(
      cfgFile,
      stringify({
        trustDomain: MAIN,
        additionalTrustDomains: [{ name: PARTNER, caDir: partnerDir }],
        grpc: { listen: '127.0.0.1:0' },
        http: { listen: '127.0.0.1:0', publicUrl: 'http://ca.mesh.example:15014' },
      }),
    );
    const r = spawnMeshcert(['serve', '--data-dir', join(dir, 'data'), '--config', cfgFile, '--log-level', 'warn']);
    try {
      await waitForOutput(r, /CA gRPC API/);
      const out = r.stdout();
      assert.match(out, /control plane for trust domains cluster\.local, partner\.example/);
      assert.match(out, new RegExp(`trust domain cluster\\.local: CA "O=cluster\\.local, CN=meshcert root CA" in ${join(dir, 'data')}, created now`));
      assert.match(out, new RegExp(`trust domain partner\\.example: CA "O=partner\\.example, CN=meshcert root CA" in ${partnerDir}, created now`));
      assert.match(out, /CRL of trust domain partner\.example: http:\/\/127\.0\.0\.1:\d+\/crl\/partner\.example/);
      assert.match(out, /http:\/\/ca\.mesh\.example:15014\/crl\/TRUST-DOMAIN for the other trust domains/);
    } finally {
      r.child.kill('SIGTERM');
    }
    assert.equal((await r.exited).code, 0, r.stderr());
    const help = spawnMeshcert(['serve', '--help']);
    assert.equal((await help.exited).code, 0);
    assert.match(help.stdout(), /additionalTrustDomains:/);
    assert.match(help.stdout(), /trustDomain: partner\.example/);
    assert.match(help.stdout(), /no federation/);
  });
});
