// `meshcert serve` with an `sds` section: Envoy SDS over a folder of Secret manifests, next to the CA or alone.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SdsClient, sdsClientCredentials } from '../../src/sds/index.js';
import { ControlPlane } from '../../src/server/index.js';
import { gatewayPki, manifestYaml, tlsData, writeAtomic } from '../sds/secret-fixtures.js';
import { TestCA } from '../helpers/test-ca.js';
import { SERVER_NAME, httpGet, loopbackConfig, makeConfig, startPlane, tempDir } from './fixtures.js';

async function secretsFolder(root: string, name = 'gw-cert') {
  const dir = join(root, 'secrets');
  mkdirSync(dir, { recursive: true });
  const pki = await gatewayPki();
  writeAtomic(join(dir, `${name}.yaml`), manifestYaml({ name, data: tlsData(pki) }));
  return { dir, pki };
}

test('serve with grpc, http and sds: Envoy fetches kubernetes://NAME over the default Unix socket and over TLS', async () => {
  const root = tempDir('meshcert-serve-sds-');
  const { dir, pki } = await secretsFolder(root);
  const plane = await startPlane(loopbackConfig({ sds: { secrets: dir, listen: '127.0.0.1:0' } }), { dataDir: join(root, 'data') });
  const clients: SdsClient[] = [];
  try {
    const { cp, dataDir } = plane;
    assert.equal(cp.hasCa, true);
    assert.equal(cp.createdCa, true);
    const sds = cp.addresses.sds!;
    assert.equal(sds.uds, join(dataDir, 'sds.sock'));
    assert.match(sds.listen!, /^127\.0\.0\.1:\d+$/);

    // A stream on the Unix socket, as Envoy in the same pod.
    const uds = new SdsClient({ target: `unix:${sds.uds}`, names: ['kubernetes://gw-cert'], node: { id: 'router~gw', cluster: 'ingress' } }).start();
    clients.push(uds);
    const got = await uds.waitFor('kubernetes://gw-cert');
    assert.equal(got.certificates?.[0]?.serial, pki.leaf.cert.serial);
    assert.ok(got.privateKey);

    // FetchSecrets on the TLS listener, whose certificate comes from the mesh CA for grpc.dnsNames.
    const tls = new SdsClient({
      target: sds.listen!,
      credentials: sdsClientCredentials({ rootCertsPem: plane.rootPem }),
      serverName: SERVER_NAME,
      names: [],
    });
    clients.push(tls);
    const fetched = await tls.fetch(['kubernetes://gw-cert']);
    assert.deepEqual(fetched.errors, []);
    assert.equal(fetched.secrets[0]?.certificates?.[0]?.serial, pki.leaf.cert.serial);

    // SDS and secret metrics are on the control plane's /metrics.
    const metrics = (await httpGet(cp.addresses.http!, '/metrics')).body;
    assert.match(metrics, /meshcert_sds_streams 1/);
    assert.match(metrics, /meshcert_secret_served\{secret="gw-cert"\} 1/);
    assert.match(metrics, /meshcert_sds_responses_total\{kind="fetch"\} 1/);
  } finally {
    for (const c of clients) c.close();
    await plane.cp.stop();
  }
  // stop() removes the socket (and plane.stop() the whole temp folder).
  assert.equal(existsSync(join(plane.dataDir, 'sds.sock')), false);
  await plane.stop();
});

test('serve with only sds: no CA is created or loaded; the configured socket serves the secrets', async () => {
  const root = tempDir('meshcert-serve-sds-only-');
  const { dir, pki } = await secretsFolder(root, 'only-cert');
  const dataDir = join(root, 'data');
  const socket = join(root, 'run', 'envoy-sds.sock');
  const cp = new ControlPlane();
  let client: SdsClient | null = null;
  try {
    await cp.start(makeConfig({ sds: { secrets: dir, uds: `unix:${socket}` } }), dataDir);
    assert.equal(cp.hasCa, false);
    assert.equal(cp.createdCa, false);
    assert.deepEqual(cp.addresses, { grpc: null, http: null, admin: null, sds: { uds: socket, listen: null } });
    // Nothing of a CA in the data dir (it may not even exist).
    const files = existsSync(dataDir) ? readdirSync(dataDir) : [];
    assert.equal(files.some((f) => /root-cert|ca-key|ca-cert|ca\.json|ledger/.test(f)), false, `data dir holds ${files.join(', ')}`);
    client = new SdsClient({ target: `unix:${socket}`, names: ['kubernetes://only-cert'] }).start();
    const got = await client.waitFor('kubernetes://only-cert');
    assert.equal(got.certificates?.[0]?.serial, pki.leaf.cert.serial);
  } finally {
    client?.close();
    await cp.stop();
  }
  assert.equal(existsSync(socket), false);
  rmSync(root, { recursive: true, force: true });
});

test('sds alone with listen: certFile/keyFile are required; with them and clientCaFile, client certificates are required', async () => {
  const root = tempDir('meshcert-serve-sds-mtls-');
  const { dir, pki } = await secretsFolder(root);
  assert.throws(() => makeConfig({ sds: { secrets: dir, listen: '127.0.0.1:0' } }), /sds\.listen needs sds\.certFile and sds\.keyFile/);

  const listenerCa = await TestCA.root({ name: 'sds listener CA' });
  const serving = await listenerCa.issueServer(['sds.meshcert.test']);
  const certFile = join(root, 'sds.pem');
  const keyFile = join(root, 'sds-key.pem');
  const clientCaFile = join(root, 'client-ca.pem');
  writeFileSync(certFile, serving.chainPem);
  writeFileSync(keyFile, serving.keyPem);
  writeFileSync(clientCaFile, listenerCa.cert.pem);
  const cp = new ControlPlane();
  const clients: SdsClient[] = [];
  try {
    await cp.start(makeConfig({ sds: { secrets: dir, listen: '127.0.0.1:0', certFile, keyFile, clientCaFile } }), join(root, 'data'));
    assert.equal(cp.hasCa, false);
    const target = cp.addresses.sds!.listen!;
    const leaf = await listenerCa.issueSvid('spiffe://cluster.local/ns/istio-system/sa/ingress');
    const withCert = new SdsClient({
      target,
      credentials: sdsClientCredentials({ rootCertsPem: listenerCa.cert.pem, certChainPem: leaf.chainPem, keyPem: leaf.keyPem }),
      serverName: 'sds.meshcert.test',
      names: [],
    });
    const without = new SdsClient({ target, credentials: sdsClientCredentials({ rootCertsPem: listenerCa.cert.pem }), serverName: 'sds.meshcert.test', names: [] });
    clients.push(withCert, without);
    const fetched = await withCert.fetch(['kubernetes://gw-cert']);
    assert.equal(fetched.secrets[0]?.certificates?.[0]?.serial, pki.leaf.cert.serial);
    await assert.rejects(without.fetch(['kubernetes://gw-cert'], 2000));
  } finally {
    for (const c of clients) c.close();
    await cp.stop();
  }
  rmSync(root, { recursive: true, force: true });
});

test('sds.listen with the mesh CA certificate and clientCaFile: the renewing certificate is served and client certificates are required', async () => {
  const root = tempDir('meshcert-serve-sds-meshmtls-');
  const { dir, pki } = await secretsFolder(root);
  const clientCa = await TestCA.root({ name: 'envoy client CA' });
  const clientCaFile = join(root, 'client-ca.pem');
  writeFileSync(clientCaFile, clientCa.cert.pem);
  const plane = await startPlane(loopbackConfig({ sds: { secrets: dir, listen: '127.0.0.1:0', clientCaFile } }), { dataDir: join(root, 'data') });
  const clients: SdsClient[] = [];
  try {
    const target = plane.cp.addresses.sds!.listen!;
    const leaf = await clientCa.issueSvid('spiffe://cluster.local/ns/istio-system/sa/ingress');
    const withCert = new SdsClient({
      target,
      credentials: sdsClientCredentials({ rootCertsPem: plane.rootPem, certChainPem: leaf.chainPem, keyPem: leaf.keyPem }),
      serverName: SERVER_NAME,
      names: [],
    });
    const without = new SdsClient({ target, credentials: sdsClientCredentials({ rootCertsPem: plane.rootPem }), serverName: SERVER_NAME, names: [] });
    clients.push(withCert, without);
    const fetched = await withCert.fetch(['kubernetes://gw-cert']);
    assert.equal(fetched.secrets[0]?.certificates?.[0]?.serial, pki.leaf.cert.serial);
    await assert.rejects(without.fetch(['kubernetes://gw-cert'], 2000));
  } finally {
    for (const c of clients) c.close();
    await plane.stop();
  }
});
