// MUTUAL with CRLs in Envoy's two modes (the whole chain by default: a CA without a CRL fails; leaf only with
// onlyVerifyLeafCertCrl), subjectAltNames, and ISTIO_MUTUAL with the SPIFFE trust-domain check; with Node clients,
// `openssl s_client -cert` and `curl --cert/--key`.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { run } from '../helpers/tools.js';
import { makeCrl, manifestYaml } from '../sds/secret-fixtures.js';
import { httpsGet, runAsync, sClient, serverPlan, startListener, type ListenerHarness } from './tls-harness.js';

const skipPeers = skipUnlessCi(
  (run('sh', ['-c', 'command -v openssl']).status !== 0 && 'openssl is not installed') || (run('sh', ['-c', 'command -v curl']).status !== 0 && 'curl is not installed'),
);

let tmp: ReturnType<typeof tempDir>;
let root: TestCA;
let clientCa: TestCA;
let good: IssuedLeaf;
let revoked: IssuedLeaf;
let otherDomain: IssuedLeaf;
let plain: IssuedLeaf;
let h: ListenerHarness;

before(async () => {
  tmp = tempDir('gw-mutual-');
  root = await TestCA.root({ name: 'mtls root' });
  clientCa = await root.child({ name: 'client CA' });
  const serverCa = await root.child({ name: 'server CA' });
  good = await clientCa.issueSvid('spiffe://cluster.local/ns/shop/sa/cart');
  revoked = await clientCa.issueSvid('spiffe://cluster.local/ns/shop/sa/stolen');
  otherDomain = await clientCa.issueSvid('spiffe://evil.example/ns/shop/sa/cart');
  plain = await clientCa.issue({ subject: 'CN=no spiffe', extKeyUsage: ['clientAuth'], sans: [{ type: 'dns', value: 'client.example.test' }] });
  const crlOfClientCa = await makeCrl(clientCa, [revoked.cert.serial]);
  const crlOfRoot = await makeCrl(root, []);
  const pem = (der: Buffer) => `-----BEGIN X509 CRL-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END X509 CRL-----\n`;
  const leaf = (h: string) => serverCa.issueServer([h]);
  const [whole, missing, leafOnly, gw, sans] = await Promise.all([leaf('whole.example.test'), leaf('missing.example.test'), leaf('leaf.example.test'), root.issueSvid('spiffe://cluster.local/ns/istio-system/sa/gateway'), leaf('sans.example.test')]);
  const data = (l: IssuedLeaf, crl: string | null) => ({ 'tls.crt': l.chainPem, 'tls.key': l.keyPem, 'ca.crt': root.cert.pem, ...(crl ? { 'ca.crl': crl } : {}) });
  writeFileSync(
    join(tmp.dir, 'secrets.yaml'),
    manifestYaml(
      // Both CAs of a client chain have a CRL: whole-chain checking passes for good clients.
      { name: 'whole', data: data(whole, pem(crlOfClientCa) + pem(crlOfRoot)) },
      // Only the client CA's CRL: whole-chain checking fails everyone (the root has none); leaf-only passes.
      { name: 'missing', data: data(missing, pem(crlOfClientCa)) },
      { name: 'leafonly', data: data(leafOnly, pem(crlOfClientCa)) },
      { name: 'default', data: data(gw, null) },
      { name: 'sans', data: data(sans, null) },
    ),
  );
  mkdirSync(join(tmp.dir, 'files'));
  for (const [n, l] of Object.entries({ good, revoked, plain })) {
    tmp.file(`files/${n}.pem`, l.chainPem);
    tmp.file(`files/${n}.key`, l.keyPem);
  }
  tmp.file('files/root.pem', root.cert.pem);
  tmp.file('files/client-ca.pem', clientCa.cert.pem);
  h = await startListener(tmp.dir, [
    serverPlan({ id: 'edge/whole', hosts: ['whole.example.test'], mode: 'MUTUAL', credentialName: 'whole', validationName: 'whole' }),
    serverPlan({ id: 'edge/missing', hosts: ['missing.example.test'], mode: 'MUTUAL', credentialName: 'missing', validationName: 'missing' }),
    serverPlan({ id: 'edge/leaf', hosts: ['leaf.example.test'], mode: 'MUTUAL', credentialName: 'leafonly', validationName: 'leafonly', onlyVerifyLeafCertCrl: true }),
    serverPlan({ id: 'edge/mesh', hosts: ['mesh.example.test'], mode: 'ISTIO_MUTUAL', credentialName: 'default', validationName: 'ROOTCA', trustDomain: 'cluster.local' }),
    serverPlan({ id: 'edge/sans', hosts: ['sans.example.test'], mode: 'MUTUAL', credentialName: 'sans', validationName: 'sans', subjectAltNames: ['spiffe://cluster.local/ns/shop/sa/cart'] }),
  ]);
});

after(async () => {
  await h?.close();
  tmp?.cleanup();
});

const as = (l: IssuedLeaf) => ({ cert: l.chainPem, key: l.keyPem });
async function verdict(servername: string, client: IssuedLeaf | null): Promise<string> {
  try {
    const r = await httpsGet(h.port, { servername, ...(client ? as(client) : {}) });
    return r.body.trim();
  } catch {
    return 'refused';
  }
}

describe('MUTUAL: CRLs of the whole chain (Envoy default)', () => {
  test('a good client passes with its identity; a revoked one and one without a certificate are refused', async () => {
    assert.match(await verdict('whole.example.test', good), /peer=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart/);
    assert.equal(await verdict('whole.example.test', revoked), 'refused');
    assert.equal(await verdict('whole.example.test', null), 'refused');
    const m = await h.metricsText();
    assert.match(m, /reason="cert_revoked"\} 1/);
    assert.match(m, /reason="no_client_certificate"\} 1/);
  });

  test('a CA of the chain without a CRL fails verification for every client', async () => {
    assert.equal(await verdict('missing.example.test', good), 'refused');
    assert.match(await h.metricsText(), /reason="unable_to_get_crl"\} 1/);
  });
});

describe('MUTUAL: onlyVerifyLeafCertCrl', () => {
  test('the leaf\'s CRL alone decides: good passes although the root has no CRL, revoked is refused', async () => {
    assert.match(await verdict('leaf.example.test', good), /peer=spiffe/);
    assert.equal(await verdict('leaf.example.test', revoked), 'refused');
  });
});

describe('subjectAltNames and ISTIO_MUTUAL', () => {
  test('subjectAltNames: only a client with one of them passes', async () => {
    assert.match(await verdict('sans.example.test', good), /peer=spiffe/);
    assert.equal(await verdict('sans.example.test', plain), 'refused');
    assert.match(await h.metricsText(), /reason="san"\} 1/);
  });

  test('ISTIO_MUTUAL: the peer must have a SPIFFE ID in the trust domain', async () => {
    assert.match(await verdict('mesh.example.test', good), /peer=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart/);
    assert.equal(await verdict('mesh.example.test', otherDomain), 'refused');
    assert.equal(await verdict('mesh.example.test', plain), 'refused');
    const m = await h.metricsText();
    assert.match(m, /reason="trust_domain"\} 1/);
    assert.match(m, /reason="spiffe_id"\} 1/);
  });
});

describe('real clients: openssl s_client -cert and curl --cert/--key', { skip: skipPeers }, () => {
  const f = (n: string) => join(tmp.dir, 'files', n);
  test('openssl: a good client gets an answer, a revoked one does not', async () => {
    const ok = await sClient(h.port, ['-servername', 'whole.example.test', '-cert', f('good.pem'), '-key', f('good.key'), '-cert_chain', f('client-ca.pem'), '-CAfile', f('root.pem')]);
    assert.match(ok.stdout, /peer=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart/);
    const bad = await sClient(h.port, ['-servername', 'whole.example.test', '-cert', f('revoked.pem'), '-key', f('revoked.key'), '-cert_chain', f('client-ca.pem'), '-CAfile', f('root.pem')]);
    assert.doesNotMatch(bad.stdout, /HTTP\/1\.1 200/);
  });

  test('curl: leaf-only CRL mode, good and revoked', async () => {
    const curl = (n: string) =>
      runAsync('curl', ['-sS', '--cacert', f('root.pem'), '--cert', f(`${n}.pem`), '--key', f(`${n}.key`), '--resolve', `leaf.example.test:${h.port}:127.0.0.1`, `https://leaf.example.test:${h.port}/`]);
    const ok = await curl('good');
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /peer=spiffe/);
    const bad = await curl('revoked');
    assert.notEqual(bad.status, 0);
  });
});
