import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, ManualClock, isMeshError } from '../core/index.js';
import { Certificate, generateKeyPair, randomSerial } from '../pki/index.js';
import { SqliteLedger } from '../store/index.js';
import { TestCA, tempDir } from '../../test/helpers/test-ca.js';
import { CertificateAuthority } from './authority.js';
import { adoptPluginCa } from './ca-init.js';
import { CertificateIssuer } from './certificate-issuer.js';
import { ClientCertificateAuthenticator } from './client-certificate-authenticator.js';
import { planCertificate } from './issuance-policy.js';
import { revokeCertificate } from './revocation.js';

const ID = 'spiffe://cluster.local/ns/web/sa/frontend';

/** A mesh CA plugged in under a test root (root → mesh intermediate), loaded from its data dir as `serve` does. */
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

function refused(pattern: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isMeshError(err, ErrorCodes.UNAUTHENTICATED), `expected UNAUTHENTICATED, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('ClientCertificateAuthenticator', () => {
  const t = tempDir('meshcert-clientcert-');
  const clock = new ManualClock();
  let root: TestCA;
  let ca: CertificateAuthority;
  let ledger: SqliteLedger;
  let issuer: CertificateIssuer;
  let auth: ClientCertificateAuthenticator;

  before(async () => {
    ({ root, ca } = await pluggedCa(t.dir));
    ledger = SqliteLedger.open(join(t.dir, 'ledger.db'));
    issuer = new CertificateIssuer(ca, ledger);
    auth = new ClientCertificateAuthenticator({ ca, ledger, clock });
  });
  after(async () => {
    await ledger.close();
    t.cleanup();
  });

  const svid = async (id = ID) => issuer.issue({ publicKey: generateKeyPair().publicKey, spiffeId: id });

  test('a valid SVID from this CA, in the ledger, authenticates as its own SPIFFE ID (with or without the chain)', async () => {
    const s = await svid();
    const caller = await auth.authenticate({ peerCertificates: s.chain });
    assert.equal(caller?.spiffeId.toString(), ID);
    assert.equal(caller?.method, 'client-certificate');
    assert.equal(caller?.principal, `certificate serial ${s.cert.serial}`);
    assert.equal((await auth.authenticate({ peerCertificates: [s.cert] }))?.spiffeId.toString(), ID);
    assert.equal(await auth.authenticate({}), null);
    assert.equal(await auth.authenticate({ peerCertificates: [] }), null);
  });

  test('a revoked SVID is refused, naming when and why', async () => {
    const s = await svid();
    await revokeCertificate(ca, ledger, s.cert.serial, 'keyCompromise');
    await assert.rejects(auth.authenticate({ peerCertificates: s.chain }), refused(/serial [0-9a-f]+ was revoked at .*\(keyCompromise\)/));
  });

  test('an expired or not yet valid SVID is refused', async () => {
    const s = await svid();
    clock.set(s.cert.notAfter.getTime() + 1000);
    try {
      await assert.rejects(auth.authenticate({ peerCertificates: s.chain }), refused(new RegExp(`expired at ${s.cert.notAfter.toISOString().replace(/\./g, '\\.')}`)));
      clock.set(s.cert.notBefore.getTime() - 1000);
      await assert.rejects(auth.authenticate({ peerCertificates: s.chain }), refused(/not valid before/));
    } finally {
      clock.set(Date.now());
    }
  });

  test('an SVID of another CA is refused: another root, or a sibling CA under the same root', async () => {
    const other = await (await TestCA.root({ name: 'other root' })).child();
    const foreign = await other.issueSvid(ID);
    await assert.rejects(auth.authenticate({ peerCertificates: foreign.chain }), refused(/does not chain to the trust bundle of trust domain "cluster\.local"/));
    const sibling = await root.child({ name: 'sibling CA' });
    const s = await sibling.issueSvid(ID);
    await assert.rejects(auth.authenticate({ peerCertificates: s.chain }), refused(/was issued by .*sibling CA.*, not by this signing CA/));
  });

  test('a certificate signed by this CA but missing from the ledger, or not an SVID, is refused', async () => {
    const plan = planCertificate({ publicKey: generateKeyPair().publicKey, spiffeId: ID }, issuer.policy, { maxNotAfter: ca.maxNotAfter, notBefore: ca.cert.notBefore }, new Date());
    const unrecorded = Certificate.fromDer(await ca.builder.build({ ...plan.spec, serial: randomSerial() }, ca.issuer, ca.signer));
    await assert.rejects(auth.authenticate({ peerCertificates: [unrecorded] }), refused(/is not in this CA's ledger/));
    const server = await issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: ['web.example.com'] });
    await assert.rejects(auth.authenticate({ peerCertificates: server.chain }), refused(/is not an X509-SVID of trust domain "cluster\.local": no URI SAN/));
    const otherDomain = await (await root.child()).issueSvid('spiffe://other.example/ns/a/sa/b');
    await assert.rejects(auth.authenticate({ peerCertificates: otherDomain.chain }), refused(/not in trust domain "cluster\.local"/));
  });
});
