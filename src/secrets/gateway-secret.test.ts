import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { decodePem, generateKeyPair } from '../pki/index.js';
import { TestCA } from '../../test/helpers/test-ca.js';
import { HOUR, gatewayPki, makeCrl, makeStaple, tlsData, type GatewayPki, type SecretData } from '../../test/sds/secret-fixtures.js';
import {
  buildGatewaySecret,
  caResourceName,
  evaluateSecret,
  resourceNamesOf,
  resourceTarget,
  tlsResourceName,
  type BuildResult,
  type RawSecret,
} from './index.js';

let pki: GatewayPki;
before(async () => {
  pki = await gatewayPki();
});

function raw(data: SecretData, options: Partial<RawSecret> = {}): RawSecret {
  const map = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(data)) if (v !== undefined) map.set(k, Buffer.from(v));
  return { name: 'gw', namespace: null, type: 'kubernetes.io/tls', annotations: {}, data: map, source: 'gw.yaml', origin: 'gw.yaml', layout: 'manifest', ...options };
}

function problems(r: BuildResult): string[] {
  assert.equal(r.ok, false, 'expected the secret to be refused');
  return r.ok ? [] : r.problems.filter((p) => p.severity === 'error').map((p) => `${p.code}: ${p.message}`);
}

describe('building the model', () => {
  test('tls.crt/tls.key with intermediates: the issuer is found in the chain, the key re-encoded as PKCS#8', () => {
    const r = buildGatewaySecret(raw(tlsData(pki)));
    assert.ok(r.ok);
    const tls = r.secret.tls!;
    assert.equal(tls.chain.length, 2);
    assert.equal(tls.issuer?.fingerprint256, pki.ca.cert.fingerprint256);
    // Normalized to PKCS#8 (the PEM label), whatever form the Secret held.
    assert.deepEqual(decodePem(tls.keyPem).map((b) => b.label), ['PRIVATE KEY']);
    assert.equal(tls.staple, null);
    assert.equal(r.secret.ca, null);
    assert.equal(r.secret.declaredPolicy, null);
  });

  test('Istio generic keys cert/key/cacert/crl, and the key in SEC1 or PKCS#1', async () => {
    const sec1 = pki.leaf.privateKey.export({ type: 'sec1', format: 'pem' }) as string;
    const r = buildGatewaySecret(raw({ cert: pki.leaf.chainPem, key: sec1, cacert: pki.root.cert.pem, crl: await makeCrl(pki.root) }, { type: 'Opaque' }));
    assert.ok(r.ok, JSON.stringify(!r.ok && r.problems));
    assert.equal(r.secret.tls!.certKey, 'cert');
    assert.equal(r.secret.ca!.caKey, 'cacert');
    assert.equal(r.secret.ca!.crlKey, 'crl');
    assert.match(r.secret.ca!.crlPem!, /^-----BEGIN X509 CRL-----/);

    const rsaCa = await TestCA.root({ keyType: 'rsa-2048' });
    const rsaLeaf = await rsaCa.issue({ subject: 'CN=rsa.example.com' }, 'rsa-2048');
    const pkcs1 = rsaLeaf.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
    const r2 = buildGatewaySecret(raw({ 'tls.crt': rsaLeaf.chainPem, 'tls.key': pkcs1 }));
    assert.ok(r2.ok);
  });

  test('staple keys: tls.ocsp-staple (Istio) or tls.ocsp (the seed design)', async () => {
    const staple = await makeStaple(pki.ca, pki.leaf.cert);
    for (const key of ['tls.ocsp-staple', 'tls.ocsp']) {
      const r = buildGatewaySecret(raw(tlsData(pki, { [key]: staple })));
      assert.ok(r.ok);
      assert.equal(r.secret.tls!.stapleKey, key);
      assert.ok(r.secret.tls!.staple!.equals(staple));
    }
  });

  test('the policy annotation, and the configuration winning over it', () => {
    const r = buildGatewaySecret(raw(tlsData(pki), { annotations: { 'kubernetes.io/ocsp-policy': 'PREFERRED' } }));
    assert.ok(r.ok);
    assert.equal(r.secret.declaredPolicy, 'PREFERRED');
    assert.equal(r.secret.policySource, 'annotation');
    const r2 = buildGatewaySecret(raw(tlsData(pki), { annotations: { 'kubernetes.io/ocsp-policy': 'PREFERRED' } }), { policy: 'MANDATORY' });
    assert.ok(r2.ok);
    assert.equal(r2.secret.declaredPolicy, 'MANDATORY');
    assert.equal(r2.secret.policySource, 'configuration');
    assert.match(r2.secret.warnings[0]!.message, /overrides the annotation's PREFERRED/);
  });

  test('refused with every reason at once: key of another certificate, unparsable CA, CRL without CA, bad annotation', () => {
    const other = generateKeyPair('ec-p256');
    const r = buildGatewaySecret(
      raw(
        { 'tls.crt': pki.leaf.chainPem, 'tls.key': other.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 'ca.crt': 'garbage' },
        { annotations: { 'kubernetes.io/ocsp-policy': 'sometimes' } },
      ),
    );
    const msgs = problems(r);
    assert.ok(msgs.some((m) => /^policy: .*"sometimes" is not a stapling policy/.test(m)), msgs.join('\n'));
    assert.ok(msgs.some((m) => /^keyMismatch: secret gw \(gw.yaml\): tls.key does not belong to the certificate in tls.crt/.test(m)), msgs.join('\n'));
    assert.ok(msgs.some((m) => /^ca: .*key ca.crt/.test(m)), msgs.join('\n'));
  });

  test('missing and half keys, unparsable certificate and key, wrong type', () => {
    assert.match(problems(buildGatewaySecret(raw({ 'tls.crt': pki.leaf.chainPem })))[0]!, /has tls.crt but no tls.key/);
    assert.match(problems(buildGatewaySecret(raw({}, { type: 'Opaque' })))[0]!, /found no keys; expected tls.crt and tls.key/);
    assert.match(problems(buildGatewaySecret(raw({ foo: 'x' }, { type: 'Opaque' })))[0]!, /found keys foo; expected/);
    assert.match(problems(buildGatewaySecret(raw({ 'tls.crt': '', 'tls.key': '' })))[0]!, /needs tls.crt and tls.key \(they are empty\)/);
    const bad = problems(buildGatewaySecret(raw({ 'tls.crt': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'tls.key': 'nope' })));
    assert.ok(bad.some((m) => m.startsWith('certificate: ')));
    assert.ok(bad.some((m) => m.startsWith('privateKey: ')));
    assert.match(problems(buildGatewaySecret(raw(tlsData(pki), { type: 'kubernetes.io/dockerconfigjson' })))[0]!, /not a TLS secret/);
    assert.match(problems(buildGatewaySecret(raw({ 'ca.crl': 'x' }, { type: 'Opaque' }))).join('\n'), /has ca.crl but no ca.crt/);
  });

  test('a CA-only secret (the NAME-cacert kind)', () => {
    const r = buildGatewaySecret(raw({ 'ca.crt': pki.root.cert.pem }, { name: 'gw-cacert', type: 'Opaque' }));
    assert.ok(r.ok);
    assert.equal(r.secret.tls, null);
    assert.equal(r.secret.ca!.certs.length, 1);
  });

  test('the digest changes with the data, the annotations and the type', () => {
    const a = buildGatewaySecret(raw(tlsData(pki)));
    const b = buildGatewaySecret(raw(tlsData(pki), { annotations: { 'kubernetes.io/ocsp-policy': 'OPTIONAL' } }));
    const c = buildGatewaySecret(raw(tlsData(pki)));
    assert.ok(a.ok && b.ok && c.ok);
    assert.notEqual(a.secret.digest, b.secret.digest);
    assert.equal(a.secret.digest, c.secret.digest);
  });
});

describe('evaluation', () => {
  test('decisions follow the policy and the staple; nextChangeAt is the staple expiry', async () => {
    const staple = await makeStaple(pki.ca, pki.leaf.cert);
    const r = buildGatewaySecret(raw(tlsData(pki, { 'tls.ocsp-staple': staple }), { annotations: { 'kubernetes.io/ocsp-policy': 'MANDATORY' } }));
    assert.ok(r.ok);
    const ev = evaluateSecret(r.secret, new Date());
    assert.equal(ev.staple!.state, 'valid');
    assert.equal(ev.decision!.gateway.action, 'staple');
    assert.equal(ev.decision!.sds.action, 'send-with-staple');
    assert.equal(ev.nextChangeAt!.getTime(), ev.staple!.nextUpdate!.getTime() + 1);
    const later = evaluateSecret(r.secret, new Date(Date.now() + 2 * HOUR));
    assert.equal(later.staple!.state, 'expired');
    assert.equal(later.decision!.gateway.action, 'fail-handshake');
    assert.equal(later.decision!.sds.action, 'send-with-staple');
  });

  test('CRLs: signer, currentness, and the own certificate listed as revoked', async () => {
    const crl = await makeCrl(pki.ca, [pki.leaf.cert.serial], { nextUpdate: new Date(Date.now() + HOUR) });
    const r = buildGatewaySecret(raw(tlsData(pki, { 'ca.crt': pki.ca.cert.pem, 'ca.crl': crl })));
    assert.ok(r.ok);
    const ev = evaluateSecret(r.secret, new Date());
    assert.equal(ev.crls.length, 1);
    assert.equal(ev.crls[0]!.current, true);
    assert.equal(ev.crls[0]!.signedBy, pki.ca.cert.subject);
    assert.ok(ev.warnings.some((w) => /lists this secret's own certificate .* as revoked/.test(w.message)));
    const stale = evaluateSecret(r.secret, new Date(Date.now() + 2 * HOUR));
    assert.equal(stale.crls[0]!.current, false);
    assert.ok(stale.warnings.some((w) => /is stale since/.test(w.message)));
  });
});

describe("Istio's resource names", () => {
  test('kubernetes://NAME and kubernetes://NAME-cacert', () => {
    assert.deepEqual(resourceTarget('kubernetes://gw'), { resource: 'kubernetes://gw', secret: 'gw', side: 'tls' });
    assert.deepEqual(resourceTarget('kubernetes://gw-cacert'), { resource: 'kubernetes://gw-cacert', secret: 'gw-cacert', side: 'ca', fallback: 'gw' });
    assert.equal(resourceTarget('default'), null);
    assert.equal(resourceTarget('ROOTCA'), null);
    assert.equal(resourceTarget('kubernetes://'), null);
    assert.equal(tlsResourceName('gw'), 'kubernetes://gw');
    assert.equal(caResourceName('gw'), 'kubernetes://gw-cacert');
    assert.equal(caResourceName('gw-cacert'), 'kubernetes://gw-cacert');
    assert.deepEqual(resourceNamesOf('gw'), ['kubernetes://gw', 'kubernetes://gw-cacert']);
    assert.deepEqual(resourceNamesOf('gw-cacert'), ['kubernetes://gw-cacert']);
  });
});
