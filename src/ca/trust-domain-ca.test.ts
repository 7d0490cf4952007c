import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { TestCA, tempDir } from '../../test/helpers/test-ca.js';
import { initRootCa } from './ca-init.js';
import { openTrustDomainCa } from './trust-domain-ca.js';

const FIELD = 'additionalTrustDomains[0].caDir';

/** Istio's cacerts files for an intermediate under a test root, and nothing else (no ca.json). */
async function istioFolder(dir: string, spiffe?: string): Promise<{ root: TestCA; mesh: TestCA }> {
  const root = await TestCA.root({ name: 'partner root' });
  const mesh = await root.child({ name: 'partner mesh CA', ...(spiffe ? { spec: { sans: [{ type: 'uri', value: spiffe }] } } : {}) });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ca-cert.pem'), mesh.cert.pem);
  writeFileSync(join(dir, 'ca-key.pem'), mesh.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'root-cert.pem'), root.cert.pem);
  writeFileSync(join(dir, 'cert-chain.pem'), mesh.cert.pem + root.cert.pem);
  return { root, mesh };
}

describe('openTrustDomainCa: the CA folder of an additional trust domain', () => {
  const t = tempDir('meshcert-td-ca-');
  after(() => t.cleanup());

  test('an empty or absent folder gets a new self-signed root for the trust domain; the next open loads the same CA', async () => {
    const dir = join(t.dir, 'new');
    const made = await openTrustDomainCa(dir, 'partner.example', { field: FIELD });
    assert.equal(made.source, 'created');
    assert.equal(made.ca.trustDomain, 'partner.example');
    assert.match(made.ca.cert.subject, /O=partner\.example/);
    assert.equal(JSON.parse(readFileSync(join(dir, 'ca.json'), 'utf8')).trustDomain, 'partner.example');
    const again = await openTrustDomainCa(dir, 'partner.example', { field: FIELD });
    assert.equal(again.source, 'meshcert');
    assert.equal(again.ca.cert.fingerprint256, made.ca.cert.fingerprint256, 'not made again');
  });

  test('a folder whose ca.json names another trust domain is a CONFIG error naming the field, the folder and both names', async () => {
    const dir = join(t.dir, 'other');
    await initRootCa(dir, { trustDomain: 'other.example' });
    await assert.rejects(openTrustDomainCa(dir, 'partner.example', { field: FIELD }), (e: unknown) => {
      assert.ok(isMeshError(e, ErrorCodes.CONFIG), String(e));
      assert.equal(e.subject, FIELD);
      assert.match(e.message, /^additionalTrustDomains\[0\]\.caDir: \S*other holds the CA of trust domain "other\.example" \(its ca\.json says so\), not of "partner\.example"/);
      return true;
    });
  });

  test('Istio\'s cacerts files alone are used as they are, in the configured trust domain, and nothing is written there', async () => {
    const dir = join(t.dir, 'istio');
    const { mesh, root } = await istioFolder(dir);
    const before = readdirSync(dir).sort();
    const opened = await openTrustDomainCa(dir, 'partner.example', { field: FIELD });
    assert.equal(opened.source, 'istio');
    assert.equal(opened.ca.trustDomain, 'partner.example');
    assert.equal(opened.ca.cert.fingerprint256, mesh.cert.fingerprint256);
    assert.deepEqual(opened.ca.roots.map((r) => r.fingerprint256), [root.cert.fingerprint256]);
    assert.deepEqual(readdirSync(dir).sort(), before);
    assert.ok(!existsSync(join(dir, 'ca.json')));
  });

  test('an Istio CA certificate whose SPIFFE ID names another trust domain is refused; a broken folder names the field too', async () => {
    const dir = join(t.dir, 'istio-other');
    await istioFolder(dir, 'spiffe://other.example');
    await assert.rejects(
      openTrustDomainCa(dir, 'partner.example', { field: FIELD }),
      (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /names trust domain "other\.example" \(its SPIFFE ID\), not "partner\.example"/.test(e.message),
    );
    const broken = join(t.dir, 'broken');
    await istioFolder(broken);
    writeFileSync(join(broken, 'ca-key.pem'), (await TestCA.root()).keyPem, { mode: 0o600 });
    await assert.rejects(
      openTrustDomainCa(broken, 'partner.example', { field: FIELD }),
      (e: unknown) => isMeshError(e, ErrorCodes.CA_INVALID) && e.message.startsWith(`${FIELD}: CA in ${broken} is not usable`) && /does not match/.test(e.message),
    );
  });
});
