import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import { ErrorCodes, ManualClock, MeshError, isMeshError, type Logger } from '../core/index.js';
import { Certificate, buildCsr, checkX509Svid, generateKeyPair, toSigningKey, validateChain, type San } from '../pki/index.js';
import { SqliteLedger, type AuditEvent, type Ledger } from '../store/index.js';
import { TestCA, tempDir } from '../../test/helpers/test-ca.js';
import { CertificateAuthority } from './authority.js';
import { BootstrapTokenAuthenticator, hashBootstrapToken } from './bootstrap-token-authenticator.js';
import { adoptPluginCa } from './ca-init.js';
import { CertificateIssuer } from './certificate-issuer.js';
import { ClientCertificateAuthenticator } from './client-certificate-authenticator.js';
import { JwtAuthenticator } from './jwt-authenticator.js';
import { RegistrationAuthority, RA_ERROR_CODES, type RaDecision, type RegistrationAuthorityOptions } from './registration-authority.js';
import { revokeCertificate } from './revocation.js';

const HOUR = 3_600_000;
const ISS = 'https://kubernetes.default.svc';
const ID = 'spiffe://cluster.local/ns/web/sa/frontend';
const ONCE = 'one-time-bootstrap-token-0123456789';
const REUSABLE = 'reusable-bootstrap-token-abcdefabcdef';

async function pluggedCa(dir: string): Promise<{ root: TestCA; ca: CertificateAuthority }> {
  const root = await TestCA.root({ name: 'enterprise root' });
  const mesh = await root.child({ name: 'mesh CA' });
  const plugin = join(dir, 'cacerts');
  mkdirSync(plugin);
  writeFileSync(join(plugin, 'ca-cert.pem'), mesh.cert.pem);
  writeFileSync(join(plugin, 'ca-key.pem'), mesh.keyPem, { mode: 0o600 });
  writeFileSync(join(plugin, 'root-cert.pem'), root.cert.pem);
  writeFileSync(join(plugin, 'cert-chain.pem'), mesh.cert.pem + root.cert.pem);
  await adoptPluginCa(join(dir, 'data'), plugin, { trustDomain: 'cluster.local' });
  return { root, ca: await CertificateAuthority.load(join(dir, 'data')) };
}

/** A ledger whose named methods fail as a full disk or a lost database would; the rest work. */
function failing(ledger: Ledger, ...methods: Array<keyof Ledger>): Ledger {
  return new Proxy(ledger, {
    get(target, prop) {
      if ((methods as PropertyKey[]).includes(prop)) {
        return async () => {
          throw new MeshError(ErrorCodes.LEDGER, `${String(prop)}: disk I/O error`);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function capturingLogger(): { logger: Logger; text(): string } {
  const lines: string[] = [];
  return { logger: pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) }), text: () => lines.join('') };
}

function failsWith(code: string, pattern: RegExp, reason?: string) {
  return (err: unknown): boolean => {
    assert.ok(isMeshError(err), `expected a MeshError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    assert.ok((RA_ERROR_CODES as readonly string[]).includes(err.code));
    if (reason) assert.equal(err.details?.reason, reason);
    return true;
  };
}

describe('RegistrationAuthority', () => {
  const t = tempDir('meshcert-ra-');
  const clock = new ManualClock();
  const jwtKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  let root: TestCA;
  let ca: CertificateAuthority;
  let ledger: SqliteLedger;
  let issuer: CertificateIssuer;
  let tokensFile: string;
  let log: ReturnType<typeof capturingLogger>;
  let decisions: RaDecision[];

  before(async () => {
    ({ root, ca } = await pluggedCa(t.dir));
    ledger = SqliteLedger.open(join(t.dir, 'ledger.db'));
    issuer = new CertificateIssuer(ca, ledger, { defaultTtlMs: 24 * HOUR, maxTtlMs: 48 * HOUR, backdateMs: 60_000 });
    t.file('jwks.json', JSON.stringify({ keys: [{ ...(jwtKey.publicKey.export({ format: 'jwk' }) as object), kid: 'k1' }] }));
    tokensFile = t.file(
      'tokens.yaml',
      [
        'tokens:',
        '  - name: vm-1',
        `    tokenSha256: ${hashBootstrapToken(ONCE)}`,
        '    identity: spiffe://cluster.local/ns/edge/sa/vm-1',
        '    oneTime: true',
        '  - name: lab',
        `    token: ${REUSABLE}`,
        '    identity: spiffe://cluster.local/ns/lab/sa/runner',
      ].join('\n'),
    );
  });
  beforeEach(() => {
    clock.set(Date.now());
    log = capturingLogger();
    decisions = [];
  });
  after(async () => {
    await ledger.close();
    t.cleanup();
  });

  function makeRa(over: Partial<RegistrationAuthorityOptions> = {}): RegistrationAuthority {
    return new RegistrationAuthority({
      issuer,
      ledger,
      authenticators: [
        new JwtAuthenticator({ trustDomain: 'cluster.local', clock, issuers: [{ issuer: ISS, audiences: ['istio-ca'], jwksFile: join(t.dir, 'jwks.json') }] }),
        new ClientCertificateAuthenticator({ ca, ledger, clock }),
        new BootstrapTokenAuthenticator({ file: tokensFile, trustDomain: 'cluster.local', ledger, clock }),
      ],
      dnsGrants: [{ identity: 'spiffe://cluster.local/ns/web/sa/*', dnsNames: ['*.web.svc.cluster.local'] }],
      maxCsrBytes: 4096,
      logger: log.logger,
      clock,
      onDecision: (d) => decisions.push(d),
      ...over,
    });
  }

  async function k8sToken(ns = 'web', sa = 'frontend', over: Record<string, unknown> = {}): Promise<string> {
    const now = Math.floor(clock.now().getTime() / 1000);
    return new SignJWT({ iss: ISS, aud: 'istio-ca', sub: `system:serviceaccount:${ns}:${sa}`, iat: now, exp: now + 600, ...over })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .sign(jwtKey.privateKey);
  }

  async function csrPem(sans: San[] = [{ type: 'uri', value: ID }]): Promise<string> {
    return (await buildCsr({ sans }, await toSigningKey(generateKeyPair('ec-p256').privateKey))).pem;
  }

  async function lastAudit(): Promise<AuditEvent> {
    return (await ledger.auditEvents(1))[0]!;
  }

  test('a Kubernetes JWT gets an SVID: chain = leaf, intermediates, trust bundle; recorded and audited as allowed', async () => {
    const ra = makeRa();
    const token = await k8sToken();
    const res = await ra.createCertificate({ csrPem: await csrPem([{ type: 'uri', value: ID }, { type: 'dns', value: 'a.web.svc.cluster.local' }]) }, { authorization: `Bearer ${token}`, remoteAddress: '10.1.2.3:5555' });
    assert.equal(res.certChain.length, 3);
    assert.equal(res.identity, ID);
    const [leafPem, interPem, bundle] = res.certChain;
    const leaf = Certificate.parse(leafPem!);
    assert.equal(interPem, ca.cert.pem);
    assert.equal(bundle, root.cert.pem);
    assert.deepEqual(checkX509Svid(leaf, { trustDomain: 'cluster.local' }), []);
    assert.deepEqual(leaf.sans.uri, [ID]);
    assert.deepEqual(leaf.sans.dns, ['a.web.svc.cluster.local']);
    assert.equal(res.serial, leaf.serial);
    assert.ok(validateChain({ leaf, intermediates: [Certificate.parse(interPem!)], roots: Certificate.parseAll(bundle!), purpose: 'client' }).ok);
    assert.equal((await ledger.get(leaf.serial, ca.cert.issuerKeyId))?.identity, ID);
    // Default lifetime, backdated by a minute.
    assert.equal(leaf.notAfter.getTime() - leaf.notBefore.getTime(), 24 * HOUR + 60_000);

    const ev = await lastAudit();
    assert.equal(ev.type, 'csr-allowed');
    assert.equal(ev.subject, ID);
    assert.deepEqual(ev.details?.requested, { uris: [ID], dnsNames: ['a.web.svc.cluster.local'], ipAddresses: [] });
    assert.equal(ev.details?.method, 'jwt');
    assert.equal(ev.details?.principal, `jwt iss=${ISS} sub=system:serviceaccount:web:frontend`);
    assert.equal(ev.details?.remoteAddress, '10.1.2.3:5555');
    assert.equal((ev.details?.granted as { serial: string }).serial, leaf.serial);
    assert.deepEqual(decisions.map((d) => [d.allowed, d.method, d.identity]), [[true, 'jwt', ID]]);
    // Neither the token nor anything of it reaches the audit trail or the logs.
    const sig = token.split('.')[2]!;
    assert.ok(!JSON.stringify(ev).includes(sig));
    assert.ok(!log.text().includes(sig));
  });

  test('requested lifetimes: 0 → default, shorter honoured, longer capped at maxTtl, nonsense refused', async () => {
    const ra = makeRa();
    const auth = { authorization: `Bearer ${await k8sToken()}` };
    const life = async (validitySeconds: number) => {
      const leaf = Certificate.parse((await ra.createCertificate({ csrPem: await csrPem(), validitySeconds }, auth)).certChain[0]!);
      return leaf.notAfter.getTime() - leaf.notBefore.getTime() - 60_000;
    };
    assert.equal(await life(0), 24 * HOUR);
    assert.equal(await life(10), 10_000);
    assert.equal(await life(3600), HOUR);
    assert.equal(await life(30 * 24 * 3600), 48 * HOUR);
    assert.match(String((((await lastAudit()).details?.granted) as { note?: string }).note), /shortened to the policy maximum 2d/);
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem(), validitySeconds: -5 }, auth), failsWith(ErrorCodes.INVALID_ARGUMENT, /negative/));
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem(), validitySeconds: 11 * 365 * 86_400 }, auth), failsWith(ErrorCodes.INVALID_ARGUMENT, /more than 10 years/));
  });

  test('no credential, an unrecognised one, a bad JWT: UNAUTHENTICATED, audited as anonymous', async () => {
    const ra = makeRa();
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem() }, {}), failsWith(ErrorCodes.UNAUTHENTICATED, /^no credential: send a bearer token or a client certificate$/));
    let ev = await lastAudit();
    assert.equal(ev.type, 'csr-denied');
    assert.equal(ev.subject, 'anonymous');
    assert.equal(ev.details?.reason, ErrorCodes.UNAUTHENTICATED);
    const jwtOnly = makeRa({ authenticators: [makeRa().authenticators[0]!] });
    await assert.rejects(jwtOnly.createCertificate({ csrPem: await csrPem() }, { authorization: 'Bearer some-opaque-thing-123' }), failsWith(ErrorCodes.UNAUTHENTICATED, /credential was not recognised/));
    const expired = await k8sToken('web', 'frontend', { exp: Math.floor(clock.now().getTime() / 1000) - 3600 });
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem() }, { authorization: `Bearer ${expired}` }), failsWith(ErrorCodes.UNAUTHENTICATED, /JWT expired at/));
    ev = await lastAudit();
    assert.equal(ev.subject, 'anonymous');
    assert.equal(ev.details?.method, 'jwt');
    assert.match(String(ev.details?.message), /JWT expired at/);
    assert.ok(!JSON.stringify(ev).includes(expired.split('.')[2]!));
    assert.deepEqual(decisions.map((d) => d.allowed), [false, false, false]);
  });

  test('authorization: another identity or an ungranted DNS name is PERMISSION_DENIED and audited with what was asked', async () => {
    const ra = makeRa();
    const auth = { authorization: `Bearer ${await k8sToken()}` };
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem([{ type: 'uri', value: 'spiffe://cluster.local/ns/kube-system/sa/admin' }]) }, auth),
      failsWith(ErrorCodes.PERMISSION_DENIED, /asks for identity "spiffe:\/\/cluster\.local\/ns\/kube-system\/sa\/admin", but the caller authenticated as/));
    const ev = await lastAudit();
    assert.equal(ev.type, 'csr-denied');
    assert.equal(ev.subject, ID);
    assert.deepEqual((ev.details?.requested as { uris: string[] }).uris, ['spiffe://cluster.local/ns/kube-system/sa/admin']);
    assert.equal(ev.details?.method, 'jwt');
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem([{ type: 'dns', value: 'evil.example.com' }]) }, auth), failsWith(ErrorCodes.PERMISSION_DENIED, /"evil\.example\.com" is not granted/));
  });

  test('bad CSRs: oversized, empty, garbage, bad signature, weak key → INVALID_ARGUMENT with the specific reason', async () => {
    const ra = makeRa();
    const auth = { authorization: `Bearer ${await k8sToken()}` };
    await assert.rejects(ra.createCertificate({ csrPem: 'x'.repeat(5000) }, auth), failsWith(ErrorCodes.INVALID_ARGUMENT, /the CSR is 5000 bytes; this CA accepts at most 4096/));
    assert.equal((await lastAudit()).subject, 'anonymous'); // refused before authentication
    await assert.rejects(ra.createCertificate({ csrPem: '' }, auth), failsWith(ErrorCodes.INVALID_ARGUMENT, /no CSR/));
    await assert.rejects(ra.createCertificate({ csrPem: 'hello' }, auth), failsWith(ErrorCodes.INVALID_ARGUMENT, /neither PEM nor DER/, ErrorCodes.CSR_PARSE));
    const good = await buildCsr({ sans: [{ type: 'uri', value: ID }] }, await toSigningKey(generateKeyPair().privateKey));
    const bad = Buffer.from(good.der);
    bad[bad.length - 3]! ^= 0x40;
    const badPem = `-----BEGIN CERTIFICATE REQUEST-----\n${bad.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(ra.createCertificate({ csrPem: badPem }, auth), failsWith(ErrorCodes.INVALID_ARGUMENT, /signature/, ErrorCodes.CSR_SIGNATURE));
    const weak = await buildCsr({}, await toSigningKey(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey));
    await assert.rejects(ra.createCertificate({ csrPem: weak.pem }, auth), failsWith(ErrorCodes.INVALID_ARGUMENT, /1024 bits is too weak/, ErrorCodes.KEY_TOO_WEAK));
  });

  test('bootstrap tokens: a one-time token gives one certificate; a replay is refused; a refused CSR does not burn it', async () => {
    const ra = makeRa();
    const auth = { authorization: `Bearer ${ONCE}` };
    const vm = 'spiffe://cluster.local/ns/edge/sa/vm-1';
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem([{ type: 'uri', value: ID }]) }, auth), failsWith(ErrorCodes.PERMISSION_DENIED, /authenticated as spiffe:\/\/cluster\.local\/ns\/edge\/sa\/vm-1/));
    const res = await ra.createCertificate({ csrPem: await csrPem([]) }, auth);
    assert.equal(res.identity, vm);
    assert.equal((await lastAudit()).details?.principal, 'bootstrap token vm-1 (one-time)');
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem([]) }, auth), failsWith(ErrorCodes.UNAUTHENTICATED, /one-time bootstrap token "vm-1" was already used/));
    const ev = await lastAudit();
    assert.equal(ev.type, 'csr-denied');
    assert.equal(ev.subject, vm);
    // Reusable tokens work again and again.
    for (let i = 0; i < 2; i++) assert.equal((await ra.createCertificate({ csrPem: await csrPem([]) }, { authorization: `Bearer ${REUSABLE}` })).identity, 'spiffe://cluster.local/ns/lab/sa/runner');
    assert.ok(!log.text().includes(ONCE) && !log.text().includes(REUSABLE));
    assert.ok(!JSON.stringify(await ledger.auditEvents(20)).includes(REUSABLE));
  });

  test('client certificates: a valid SVID renews itself; a revoked one is refused', async () => {
    const ra = makeRa();
    const first = await ra.createCertificate({ csrPem: await csrPem() }, { authorization: `Bearer ${await k8sToken()}` });
    const chain = first.certChain.slice(0, -1).map((p) => Certificate.parse(p));
    const renewed = await ra.createCertificate({ csrPem: await csrPem([]) }, { peerCertificates: chain });
    assert.equal(renewed.identity, ID);
    assert.notEqual(renewed.serial, first.serial);
    assert.equal((await lastAudit()).details?.method, 'client-certificate');
    await revokeCertificate(ca, ledger, first.serial, 'superseded');
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem([]) }, { peerCertificates: chain }), failsWith(ErrorCodes.UNAUTHENTICATED, /was revoked at .*superseded/));
  });

  test('rate limit per identity: a burst, then RATE_LIMITED naming the identity and when to retry; others unaffected', async () => {
    const ra = makeRa({ rateLimit: { perIdentityPerSecond: 1, burst: 2 } });
    const web = { authorization: `Bearer ${await k8sToken()}` };
    const other = { authorization: `Bearer ${await k8sToken('ops', 'batch')}` };
    await ra.createCertificate({ csrPem: await csrPem([]) }, web);
    await ra.createCertificate({ csrPem: await csrPem([]) }, web);
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem([]) }, web), (e: unknown) =>
      failsWith(ErrorCodes.RATE_LIMITED, /too many certificate requests for spiffe:\/\/cluster\.local\/ns\/web\/sa\/frontend: .*retry in 1\.0 s/)(e) && (e as MeshError).details?.retryAfterMs === 1000);
    assert.equal((await lastAudit()).details?.reason, ErrorCodes.RATE_LIMITED);
    assert.equal((await ra.createCertificate({ csrPem: await csrPem([]) }, other)).identity, 'spiffe://cluster.local/ns/ops/sa/batch');
    clock.advance(1000);
    await ra.createCertificate({ csrPem: await csrPem([]) }, web);
  });

  test('ledger down at issuance → UNAVAILABLE, no certificate, nothing recorded; the denial is still audited', async () => {
    const broken = new CertificateIssuer(ca, failing(ledger, 'record', 'recordMany'), issuer.policy);
    const ra = makeRa({ issuer: broken });
    const before = (await ledger.counts()).total;
    let response: unknown;
    await assert.rejects(
      (async () => {
        response = await ra.createCertificate({ csrPem: await csrPem() }, { authorization: `Bearer ${await k8sToken()}` });
      })(),
      failsWith(ErrorCodes.UNAVAILABLE, /^ledger unavailable, retry$/, ErrorCodes.LEDGER),
    );
    assert.equal(response, undefined);
    assert.equal((await ledger.counts()).total, before);
    const ev = await lastAudit();
    assert.equal(ev.type, 'csr-denied');
    assert.equal(ev.details?.reason, ErrorCodes.LEDGER);
    assert.match(log.text(), /disk I\/O error/);
  });

  test('audit write failing: a denial is still a denial; an issuance is withheld (UNAVAILABLE)', async () => {
    const ra = makeRa({ ledger: failing(ledger, 'audit') });
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem() }, {}), failsWith(ErrorCodes.UNAUTHENTICATED, /no credential/));
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem() }, { authorization: `Bearer ${await k8sToken()}` }), failsWith(ErrorCodes.UNAVAILABLE, /ledger unavailable/));
    assert.match(log.text(), /certificate withheld/);
  });

  test('a broken token file is UNAVAILABLE for callers (a server problem), with the detail in the log only', async () => {
    const file = t.file('tokens2.yaml', `tokens:\n  - name: a\n    token: ${REUSABLE}\n    identity: spiffe://cluster.local/ns/a/sa/b\n`);
    const ra = makeRa({ authenticators: [new BootstrapTokenAuthenticator({ file, trustDomain: 'cluster.local', ledger, clock })] });
    assert.ok(await ra.createCertificate({ csrPem: await csrPem([]) }, { authorization: `Bearer ${REUSABLE}` }));
    writeFileSync(file, 'tokens: {');
    await assert.rejects(ra.createCertificate({ csrPem: await csrPem([]) }, { authorization: `Bearer ${REUSABLE}` }), (e: unknown) =>
      failsWith(ErrorCodes.UNAVAILABLE, /cannot check credentials right now/, ErrorCodes.CONFIG)(e) && !(e as Error).message.includes(file));
    assert.ok(log.text().includes(file));
  });
});
