// Certificates over SDS (a real SdsServer on a Unix socket, as `meshcert serve` runs it): the gateway serves what
// arrives, keeps serving its last good certificate while the SDS server is gone, reconnects, and picks up the
// next version. The staple travels over SDS too and is stapled at the handshake.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Gateway, SdsCredentialStore } from '../../src/gateway/index.js';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { startHarness, type Harness } from '../sds/sds-harness.js';
import { makeStaple, manifestYaml, waitUntil, writeAtomic } from '../sds/secret-fixtures.js';
import { EchoHandler, httpsGet } from './tls-harness.js';

let tmp: ReturnType<typeof tempDir>;
let ca: TestCA;
let leaf: IssuedLeaf;
let sds: Harness;
let gw: Gateway;
let secretsFile: string;

const hex = (s: string) => s.toLowerCase().replace(/^0+/, '');

before(async () => {
  tmp = tempDir('gw-sds-');
  const root = await TestCA.root({ name: 'sds gateway root' });
  ca = await root.child({ name: 'sds gateway CA' });
  leaf = await ca.issueServer(['app.example.test']);
  const secretsDir = join(tmp.dir, 'secrets');
  mkdirSync(secretsDir);
  secretsFile = join(secretsDir, 'app.yaml');
  writeFileSync(secretsFile, manifestYaml({ name: 'app-cred', data: { 'tls.crt': leaf.chainPem, 'tls.key': leaf.keyPem, 'tls.ocsp-staple': await makeStaple(ca, leaf.cert) } }));
  sds = await startHarness(secretsDir, tmp.dir);
  const file = tmp.file(
    'gateway.yaml',
    stringify({
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge' },
      spec: { servers: [{ port: { number: 8443, protocol: 'HTTPS' }, hosts: ['app.example.test'], tls: { mode: 'SIMPLE', credentialName: 'app-cred' } }] },
    }),
  );
  gw = await Gateway.start({
    file,
    credentials: { sds: { target: `unix:${sds.socket}` } },
    defaultBind: '127.0.0.1',
    portOverrides: { 8443: 0 },
    handler: () => new EchoHandler(),
    watch: false,
  });
});

after(async () => {
  await gw?.close();
  await sds?.close();
  tmp?.cleanup();
});

describe('credentials over SDS', () => {
  test('the certificate and its staple arrive over SDS and are served', async () => {
    await waitUntil(() => gw.store.serving('app-cred') !== undefined, 5000, 'kubernetes://app-cred');
    const r = await httpsGet(gw.boundPorts[8443]!, { servername: 'app.example.test', requestOCSP: true });
    assert.match(r.body, /server=app\.example\.test/);
    assert.equal(hex(r.socket.getPeerX509Certificate()!.serialNumber), hex(leaf.cert.serial));
    assert.ok(r.staple && r.staple.length > 0, 'stapled');
  });

  test('the SDS server goes away: the last good certificate stays; it comes back: the new version is used', async () => {
    const client = (gw.store as SdsCredentialStore).client;
    sds.server.kill();
    await waitUntil(() => !client.connected, 5000, 'the disconnect');
    const during = await httpsGet(gw.boundPorts[8443]!, { servername: 'app.example.test' });
    assert.equal(hex(during.socket.getPeerX509Certificate()!.serialNumber), hex(leaf.cert.serial));
    const next = await ca.issueServer(['app.example.test']);
    writeAtomic(secretsFile, manifestYaml({ name: 'app-cred', data: { 'tls.crt': next.chainPem, 'tls.key': next.keyPem } }));
    sds.source.reload();
    await sds.restart('close');
    await waitUntil(() => hex(gw.store.serving('app-cred')?.chain[0]!.serial ?? '') === hex(next.cert.serial), 10_000, 'the new version over SDS');
    const after = await httpsGet(gw.boundPorts[8443]!, { servername: 'app.example.test', requestOCSP: true });
    assert.equal(hex(after.socket.getPeerX509Certificate()!.serialNumber), hex(next.cert.serial));
    assert.equal(after.staple, null, 'the new version has no staple');
  });
});

describe('SDS over TLS with a client certificate (--sds HOST:PORT --sds-ca --sds-cert --sds-key)', () => {
  test('the gateway gets its certificate from the TLS listener of the SDS server', async () => {
    const { sdsClientCredentials } = await import('../../src/sds/index.js');
    const me = await sds.ca.issueSvid('spiffe://cluster.local/ns/istio-system/sa/ingress');
    const file = tmp.file(
      'tls-sds.yaml',
      stringify({
        apiVersion: 'networking.istio.io/v1',
        kind: 'Gateway',
        metadata: { name: 'edge' },
        spec: { servers: [{ port: { number: 8443, protocol: 'HTTPS' }, hosts: ['app.example.test'], tls: { mode: 'SIMPLE', credentialName: 'app-cred' } }] },
      }),
    );
    const g = await Gateway.start({
      file,
      credentials: {
        sds: {
          target: `127.0.0.1:${sds.port}`,
          credentials: sdsClientCredentials({ rootCertsPem: sds.ca.cert.pem, certChainPem: me.chainPem, keyPem: me.keyPem }),
          serverName: 'sds.meshcert.test',
        },
      },
      defaultBind: '127.0.0.1',
      portOverrides: { 8443: 0 },
      handler: () => new EchoHandler(),
      watch: false,
    });
    try {
      await waitUntil(() => g.store.serving('app-cred') !== undefined, 5000, 'kubernetes://app-cred over TLS');
      const r = await httpsGet(g.boundPorts[8443]!, { servername: 'app.example.test' });
      assert.match(r.body, /server=app\.example\.test/);
      assert.match(String(g.configDump().certificates && JSON.stringify(g.configDump().certificates)), /sds: kubernetes:\/\/app-cred/);
    } finally {
      await g.close();
    }
  });
});

describe('ISTIO_MUTUAL over SDS (default + ROOTCA, as a workload agent serves them)', () => {
  test('the gateway serves its SVID; clients in the trust domain pass, others are refused; a new ROOTCA applies', async () => {
    const { SdsServer, StaticSecretProvider } = await import('../../src/sds/index.js');
    const meshRoot = await TestCA.root({ name: 'mesh root' });
    const gwSvid = await meshRoot.issueSvid('spiffe://cluster.local/ns/istio-system/sa/ingress');
    const provider = new StaticSecretProvider();
    provider.set('default', { kind: 'tlsCertificate', certificateChain: gwSvid.chainPem, privateKey: gwSvid.keyPem });
    provider.set('ROOTCA', { kind: 'validationContext', trustedCa: meshRoot.cert.pem });
    const socket = join(tmp.dir, 'agent.sock');
    const server = await SdsServer.start({ provider, uds: socket });
    const file = tmp.file(
      'mesh.yaml',
      [
        {
          apiVersion: 'networking.istio.io/v1',
          kind: 'Gateway',
          metadata: { name: 'mesh' },
          spec: { servers: [{ port: { number: 15443, protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'ISTIO_MUTUAL' } }] },
        },
        { apiVersion: 'meshcert.dev/v1', kind: 'GatewayOptions', spec: { trustDomain: 'cluster.local' } },
      ]
        .map((d) => stringify(d))
        .join('---\n'),
    );
    const echo = new EchoHandler();
    const mesh = await Gateway.start({ file, credentials: { sds: { target: `unix:${socket}` } }, defaultBind: '127.0.0.1', portOverrides: { 15443: 0 }, handler: () => echo, watch: false });
    try {
      await waitUntil(() => mesh.store.serving('default') !== undefined && mesh.store.validation('ROOTCA') !== undefined, 5000, 'default and ROOTCA');
      const port = mesh.boundPorts[15443]!;
      const inMesh = await meshRoot.issueSvid('spiffe://cluster.local/ns/shop/sa/cart');
      const r = await httpsGet(port, { servername: 'gw.mesh', cert: inMesh.chainPem, key: inMesh.keyPem, ca: meshRoot.cert.pem, checkServerIdentity: () => undefined });
      assert.match(r.body, /peer=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart/);
      assert.deepEqual(echo.contexts.at(-1)?.localUriSans, ['spiffe://cluster.local/ns/istio-system/sa/ingress'], "the gateway's own SPIFFE ID, for XFCC By=");
      const foreign = await meshRoot.issueSvid('spiffe://other.domain/ns/shop/sa/cart');
      await assert.rejects(httpsGet(port, { servername: 'gw.mesh', cert: foreign.chainPem, key: foreign.keyPem }));
      // A root rotation: a client of the new root passes once ROOTCA carries both roots.
      const newRoot = await TestCA.root({ name: 'new mesh root' });
      const rotated = await newRoot.issueSvid('spiffe://cluster.local/ns/shop/sa/cart');
      await assert.rejects(httpsGet(port, { servername: 'gw.mesh', cert: rotated.chainPem, key: rotated.keyPem }));
      provider.set('ROOTCA', { kind: 'validationContext', trustedCa: meshRoot.cert.pem + newRoot.cert.pem });
      await waitUntil(() => (mesh.store.validation('ROOTCA')?.cas.length ?? 0) === 2, 5000, 'the new ROOTCA');
      const r2 = await httpsGet(port, { servername: 'gw.mesh', cert: rotated.chainPem, key: rotated.keyPem });
      assert.match(r2.body, /peer=spiffe:\/\/cluster\.local/);
    } finally {
      await mesh.close();
      await server.close();
    }
  });
});
