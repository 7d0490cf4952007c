// Two trust domains in one server: which CA signs, for whom, and what chain comes back (CA selection).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, ManualClock, isMeshError } from '../core/index.js';
import { Certificate, SpiffeId, buildCsr, generateKeyPair, toSigningKey, validateChain, type San } from '../pki/index.js';
import { SqliteLedger } from '../store/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import { CertificateAuthority } from './authority.js';
import { initRootCa } from './ca-init.js';
import { BootstrapTokenAuthenticator } from './bootstrap-token-authenticator.js';
import { CertificateIssuer } from './certificate-issuer.js';
import { ClientCertificateAuthenticator } from './client-certificate-authenticator.js';
import { RegistrationAuthority } from './registration-authority.js';
import { revokeCertificate } from './revocation.js';
import { SigningCas } from './signing-cas.js';

const MAIN = 'cluster.local';
const PARTNER = 'partner.example';
const MAIN_TOKEN = 'main-token-0123456789abcdef';
const PARTNER_TOKEN = 'partner-token-0123456789abcdef';

describe('SigningCas: one signing CA per trust domain', () => {
  const t = tempDir('meshcert-signing-cas-');
  const clock = new ManualClock();
  let main: CertificateIssuer;
  let partner: CertificateIssuer;
  let cas: SigningCas;
  let ledger: SqliteLedger;
  let ra: RegistrationAuthority;

  before(async () => {
    clock.set(Date.now());
    await initRootCa(join(t.dir, 'main'), { trustDomain: MAIN });
    await initRootCa(join(t.dir, 'partner'), { trustDomain: PARTNER });
    ledger = SqliteLedger.open(join(t.dir, 'ledger.db'));
    main = new CertificateIssuer(await CertificateAuthority.load(join(t.dir, 'main'), { clock }), ledger);
    partner = new CertificateIssuer(await CertificateAuthority.load(join(t.dir, 'partner'), { clock }), ledger);
    cas = new SigningCas([main, partner]);
    const tokens = t.file(
      'tokens.yaml',
      [
        'tokens:',
        '  - name: main',
        `    token: ${MAIN_TOKEN}`,
        `    identity: spiffe://${MAIN}/ns/a/sa/b`,
        '  - name: partner',
        `    token: ${PARTNER_TOKEN}`,
        `    identity: spiffe://${PARTNER}/ns/a/sa/b`,
      ].join('\n'),
    );
    ra = new RegistrationAuthority({
      issuer: cas,
      ledger,
      clock,
      authenticators: [
        new BootstrapTokenAuthenticator({ file: tokens, trustDomain: cas.trustDomains, ledger, clock }),
        new ClientCertificateAuthenticator({ ca: cas.all.map((i) => i.ca), ledger, clock }),
      ],
    });
  });
  after(async () => {
    await ledger.close();
    t.cleanup();
  });

  async function csrPem(sans: San[] = []): Promise<{ pem: string; key: ReturnType<typeof generateKeyPair>['privateKey'] }> {
    const keys = generateKeyPair('ec-p256');
    return { pem: (await buildCsr({ sans }, await toSigningKey(keys.privateKey))).pem, key: keys.privateKey };
  }

  function verifies(chain: string[], roots: Certificate[]): boolean {
    const leaf = Certificate.parse(chain[0]!);
    return validateChain({ leaf, intermediates: chain.slice(1, -1).map((p) => Certificate.parse(p)), roots, purpose: 'client' }).ok;
  }

  test('selection: by the trust domain of the identity, the main one first; none for another trust domain', () => {
    assert.equal(cas.main, main);
    assert.deepEqual(cas.trustDomains, [MAIN, PARTNER]);
    assert.equal(cas.forTrustDomain(PARTNER), partner);
    assert.equal(cas.forTrustDomain('elsewhere.example'), null);
    assert.equal(cas.forIdentity(SpiffeId.parse(`spiffe://${PARTNER}/ns/x/sa/y`)), partner);
    assert.equal(cas.forIdentity(SpiffeId.parse(`spiffe://${MAIN}/ns/x/sa/y`)), main);
    assert.throws(
      () => cas.forIdentity(SpiffeId.parse('spiffe://elsewhere.example/ns/x/sa/y')),
      (e: unknown) => isMeshError(e, ErrorCodes.PERMISSION_DENIED) && /"elsewhere\.example", which this CA does not sign for \(it signs for "cluster\.local", "partner\.example"\)/.test(e.message),
    );
    assert.deepEqual(SigningCas.of(main).trustDomains, [MAIN]);
  });

  test('a trust domain twice, or one CA for two trust domains, is a CONFIG error naming both', async () => {
    assert.throws(() => new SigningCas([main, main]), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /trust domain "cluster\.local" has two signing CAs/.test(e.message));
    // A copy of the partner's folder relabelled as a third trust domain: the same key under two names.
    const copy = join(t.dir, 'copy');
    cpSync(join(t.dir, 'partner'), copy, { recursive: true });
    writeFileSync(join(copy, 'ca.json'), JSON.stringify({ trustDomain: 'third.example', mode: 'self-signed', createdAt: new Date().toISOString() }));
    const third = new CertificateIssuer(await CertificateAuthority.load(copy, { clock }), ledger);
    assert.throws(
      () => new SigningCas([main, partner, third]),
      (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /trust domains "partner\.example" and "third\.example" have the same signing CA/.test(e.message),
    );
  });

  test('the RA signs with the CA of the caller\'s trust domain; the chain ends with that trust domain\'s roots only', async () => {
    const p = await ra.createCertificate({ csrPem: (await csrPem()).pem }, { authorization: `Bearer ${PARTNER_TOKEN}` });
    const leaf = Certificate.parse(p.certChain[0]!);
    assert.deepEqual(leaf.spiffeIds, [`spiffe://${PARTNER}/ns/a/sa/b`]);
    assert.ok(leaf.isIssuedBy(partner.ca.cert));
    assert.equal(p.certChain.at(-1), partner.ca.trustBundlePem);
    assert.ok(verifies(p.certChain, partner.ca.roots));
    assert.ok(!verifies(p.certChain, main.ca.roots), 'not trusted by the main trust domain\'s roots');
    assert.equal((await ledger.get(leaf.serial, partner.ca.cert.issuerKeyId))?.identity, `spiffe://${PARTNER}/ns/a/sa/b`);
    assert.equal(await ledger.get(leaf.serial, main.ca.cert.issuerKeyId), null);

    const m = await ra.createCertificate({ csrPem: (await csrPem()).pem }, { authorization: `Bearer ${MAIN_TOKEN}` });
    assert.ok(Certificate.parse(m.certChain[0]!).isIssuedBy(main.ca.cert));
    assert.equal(m.certChain.at(-1), main.ca.trustBundlePem);
  });

  test('client certificates: a partner SVID renews with the partner CA; asking for a main-domain identity is PERMISSION_DENIED', async () => {
    const first = await csrPem();
    const issued = await ra.createCertificate({ csrPem: first.pem }, { authorization: `Bearer ${PARTNER_TOKEN}` });
    const peer = [Certificate.parse(issued.certChain[0]!)];
    const renewed = await ra.createCertificate({ csrPem: (await csrPem()).pem }, { peerCertificates: peer });
    const leaf = Certificate.parse(renewed.certChain[0]!);
    assert.deepEqual(leaf.spiffeIds, [`spiffe://${PARTNER}/ns/a/sa/b`]);
    assert.ok(leaf.isIssuedBy(partner.ca.cert));

    const other = await csrPem([{ type: 'uri', value: `spiffe://${MAIN}/ns/a/sa/b` }]);
    await assert.rejects(ra.createCertificate({ csrPem: other.pem }, { peerCertificates: peer }), (e: unknown) => isMeshError(e, ErrorCodes.PERMISSION_DENIED));

    // Revoked in the partner CA: no longer a credential.
    await revokeCertificate(partner.ca, ledger, peer[0]!.serial);
    await assert.rejects(ra.createCertificate({ csrPem: (await csrPem()).pem }, { peerCertificates: peer }), (e: unknown) => isMeshError(e, ErrorCodes.UNAUTHENTICATED) && /revoked/.test(e.message));
  });

  test('client certificates: a certificate naming one trust domain but signed by the other trust domain\'s CA is refused', async () => {
    const auth = new ClientCertificateAuthenticator({ ca: cas.all.map((i) => i.ca), ledger, clock });
    // The main CA's policy refuses another trust domain, so make one with a policy that allows it: a forgery, as
    // far as the partner trust domain is concerned.
    const rogue = new CertificateIssuer(main.ca, ledger, { trustDomain: PARTNER });
    const forged = await rogue.issue({ publicKey: generateKeyPair().publicKey, spiffeId: `spiffe://${PARTNER}/ns/a/sa/b` });
    await assert.rejects(
      auth.authenticate({ peerCertificates: forged.chain }),
      (e: unknown) => isMeshError(e, ErrorCodes.UNAUTHENTICATED) && /does not chain to the trust bundle of trust domain "partner\.example"/.test(e.message),
    );
    const stranger = await new CertificateIssuer(main.ca, ledger, { trustDomain: 'elsewhere.example' }).issue({ publicKey: generateKeyPair().publicKey, spiffeId: 'spiffe://elsewhere.example/ns/a/sa/b' });
    await assert.rejects(
      auth.authenticate({ peerCertificates: stranger.chain }),
      (e: unknown) => isMeshError(e, ErrorCodes.UNAUTHENTICATED) && /not an X509-SVID of a trust domain signed for here \("cluster\.local", "partner\.example"\)/.test(e.message),
    );
  });
});
