// Integration: a real gRPC SDS server over a folder of gateway secrets, and real clients, on 127.0.0.1 (TLS, mTLS)
// and on a Unix socket: initial fetch, pushes on file changes (manifest, and the kubelet's ..data swap), ACK and
// NACK, a bad secret beside good ones, and reconnection after the server restarts.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { tempDir } from '../helpers/test-ca.js';
import { RawSdsStream, secretsOf, summary } from './raw-stream.js';
import { startHarness, type Harness } from './sds-harness.js';
import { gatewayPki, makeCrl, makeStaple, manifestYaml, tlsData, waitUntil, writeAtomic, writeMountedSecret, type GatewayPki } from './secret-fixtures.js';

const tmp = tempDir('meshcert-sds-it-');
const secrets = join(tmp.dir, 'secrets');
let h: Harness;
let pki: GatewayPki;
let pki2: GatewayPki;
const raws: RawSdsStream[] = [];

const serialOf = (s: { certificates?: Array<{ serial: string }> } | undefined) => s?.certificates?.[0]?.serial;

before(async () => {
  mkdirSync(secrets);
  pki = await gatewayPki({ dnsName: 'ingress.example.com' });
  pki2 = await gatewayPki({ dnsName: 'ingress.example.com' });
  writeAtomic(
    join(secrets, 'ingress.yaml'),
    manifestYaml({ name: 'ingress-cert', data: tlsData(pki, { 'ca.crt': pki.root.cert.pem, 'ca.crl': await makeCrl(pki.root) }) }),
  );
  writeMountedSecret(join(secrets, 'mounted-cert'), tlsData(pki));
  h = await startHarness(secrets, tmp.dir);
});

after(async () => {
  for (const r of raws) r.close();
  await h.close();
  tmp.cleanup();
});

function raw(): RawSdsStream {
  const r = new RawSdsStream(`unix:${h.socket}`);
  raws.push(r);
  return r;
}

describe('initial fetch', () => {
  test('over the Unix socket: kubernetes://NAME and kubernetes://NAME-cacert (from ca.crt and ca.crl of the same secret)', async () => {
    const c = h.udsClient(['kubernetes://ingress-cert', 'kubernetes://ingress-cert-cacert']);
    const tls = await c.waitFor('kubernetes://ingress-cert');
    assert.equal(serialOf(tls), pki.leaf.cert.serial);
    assert.equal(tls.certificates!.length, 2, 'leaf and intermediate');
    const ca = await c.waitFor('kubernetes://ingress-cert-cacert');
    assert.equal(ca.caCertificates![0]!.fingerprint256, pki.root.cert.fingerprint256);
    assert.equal(ca.crls!.length, 1);
  });

  test('over TLS on 127.0.0.1 with a client certificate', async () => {
    const c = await h.tlsClient(['kubernetes://ingress-cert']);
    assert.equal(serialOf(await c.waitFor('kubernetes://ingress-cert')), pki.leaf.cert.serial);
  });

  test('a client that does not trust the server does not get in', async () => {
    const r = new RawSdsStream(`127.0.0.1:${h.port}`, credentials.createSsl(Buffer.from(pki.root.cert.pem)), { 'grpc.ssl_target_name_override': 'sds.meshcert.test' });
    raws.push(r);
    r.send({ resourceNames: ['kubernetes://ingress-cert'] });
    await assert.rejects(r.next(2000));
  });
});

describe('pushes on change', () => {
  test('a manifest change reaches a subscribed client within a second', async () => {
    const c = h.udsClient(['kubernetes://ingress-cert']);
    await c.waitFor('kubernetes://ingress-cert');
    const t0 = Date.now();
    writeAtomic(join(secrets, 'ingress.yaml'), manifestYaml({ name: 'ingress-cert', data: tlsData(pki2, { 'ca.crt': pki2.root.cert.pem }) }));
    const next = await c.waitFor('kubernetes://ingress-cert', (s) => serialOf(s) === pki2.leaf.cert.serial, 2000);
    const ms = Date.now() - t0;
    assert.ok(ms < 1000, `pushed after ${ms} ms`);
    assert.ok(next.version);
  });

  test('the mounted layout: a kubelet ..data swap reaches a client on TLS within a second', async () => {
    const c = await h.tlsClient(['kubernetes://mounted-cert']);
    assert.equal(serialOf(await c.waitFor('kubernetes://mounted-cert')), pki.leaf.cert.serial);
    const t0 = Date.now();
    writeMountedSecret(join(secrets, 'mounted-cert'), tlsData(pki2));
    await c.waitFor('kubernetes://mounted-cert', (s) => serialOf(s) === pki2.leaf.cert.serial, 2000);
    const ms = Date.now() - t0;
    assert.ok(ms < 1000, `pushed after ${ms} ms`);
  });

  test('a separate NAME-cacert secret takes over kubernetes://NAME-cacert, as Istio resolves it', async () => {
    const c = h.udsClient(['kubernetes://mounted-cert-cacert']);
    writeAtomic(join(secrets, 'mounted-cacert.yaml'), manifestYaml({ name: 'mounted-cert-cacert', type: null, data: { 'ca.crt': pki2.root.cert.pem } }));
    const ca = await c.waitFor('kubernetes://mounted-cert-cacert', undefined, 2000);
    assert.equal(ca.caCertificates![0]!.fingerprint256, pki2.root.cert.fingerprint256);
  });
});

describe('ACK, NACK, and one bad secret', () => {
  test('a NACK is logged with the client error_detail and that version is not resent; the next change is', async () => {
    writeAtomic(join(secrets, 'nack.yaml'), manifestYaml({ name: 'nack-me', data: tlsData(pki) }));
    await waitUntil(() => h.source.get('nack-me')?.served != null, 2000, 'the secret');
    const r = raw();
    const names = ['kubernetes://nack-me'];
    r.send({ node: { id: 'envoy~nack' }, resourceNames: names });
    const r1 = await r.next();
    r.ack(r1, names);
    writeAtomic(join(secrets, 'nack.yaml'), manifestYaml({ name: 'nack-me', data: tlsData(pki2) }));
    const r2 = await r.next();
    assert.equal(Buffer.from(secretsOf(r2)[0]!.tlsCertificate!.certificateChain!.inlineBytes!).toString(), pki2.leaf.chainPem);
    r.nack(r2, r1.versionInfo!, names, 'Failed to load private key from <inline>');
    await waitUntil(() => h.logs.some((l) => l.error === 'Failed to load private key from <inline>'), 2000, 'the NACK in the log');
    const line = h.logs.find((l) => l.error === 'Failed to load private key from <inline>')!;
    assert.equal(line.level, 40);
    assert.equal(line.resource, 'kubernetes://nack-me');
    assert.equal(line.version, r2.versionInfo);
    assert.equal(line.node, 'envoy~nack');
    // The same file rewritten (same content) is not sent again; a new certificate is.
    writeAtomic(join(secrets, 'nack.yaml'), manifestYaml({ name: 'nack-me', data: tlsData(pki2) }));
    await r.none(600);
    const pki3 = await gatewayPki({ dnsName: 'three.example.com' });
    writeAtomic(join(secrets, 'nack.yaml'), manifestYaml({ name: 'nack-me', data: tlsData(pki3) }));
    const r3 = await r.next();
    assert.deepEqual(summary(r3).names, names);
    assert.match(await h.metrics(), /meshcert_sds_nacks_total\{resource="kubernetes:\/\/nack-me"\} 1/);
  });

  test('a secret that turns bad keeps its last good version; the others are still served and pushed', async () => {
    writeAtomic(join(secrets, 'bad.yaml'), manifestYaml({ name: 'turns-bad', data: tlsData(pki) }));
    writeAtomic(join(secrets, 'good.yaml'), manifestYaml({ name: 'stays-good', data: tlsData(pki) }));
    const c = h.udsClient(['kubernetes://turns-bad', 'kubernetes://stays-good']);
    await c.waitFor('kubernetes://turns-bad', undefined, 2000);
    await c.waitFor('kubernetes://stays-good', undefined, 2000);
    writeAtomic(join(secrets, 'bad.yaml'), 'kind: Secret\nmetadata: {name: turns-bad\n');
    writeAtomic(join(secrets, 'good.yaml'), manifestYaml({ name: 'stays-good', data: tlsData(pki2) }));
    await c.waitFor('kubernetes://stays-good', (s) => serialOf(s) === pki2.leaf.cert.serial, 2000);
    assert.equal(serialOf(c.get('kubernetes://turns-bad')), pki.leaf.cert.serial);
    // A new client still gets the last good version of the broken one.
    const fresh = h.udsClient(['kubernetes://turns-bad']);
    assert.equal(serialOf(await fresh.waitFor('kubernetes://turns-bad')), pki.leaf.cert.serial);
    assert.match(await h.metrics(), /meshcert_secret_invalid\{secret="turns-bad"\} 1/);
    assert.ok(h.logs.some((l) => l.secret === 'turns-bad' && /last good version stays served/.test(String(l.msg))));
  });
});

describe('reconnection', () => {
  for (const how of ['kill', 'close'] as const) {
    test(`after the server restarts (${how === 'kill' ? 'a crash' : 'a clean stop'}), clients reconnect and get later changes`, async () => {
      writeAtomic(join(secrets, `restart-${how}.yaml`), manifestYaml({ name: `restart-${how}`, data: tlsData(pki) }));
      const name = `kubernetes://restart-${how}`;
      const uds = h.udsClient([name]);
      const tls = await h.tlsClient([name]);
      await uds.waitFor(name, undefined, 2000);
      await tls.waitFor(name, undefined, 2000);
      const versionBefore = uds.version;
      let disconnects = 0;
      uds.on('disconnected', () => disconnects++);
      await h.restart(how);
      await waitUntil(() => disconnects > 0, 3000, 'the disconnection');
      await waitUntil(() => h.server.streams >= 2, 5000, 'both clients back');
      // The server has the same content, so it had nothing to resend: the client kept its version.
      assert.equal(uds.version, versionBefore);
      writeAtomic(join(secrets, `restart-${how}.yaml`), manifestYaml({ name: `restart-${how}`, data: tlsData(pki2) }));
      await uds.waitFor(name, (s) => serialOf(s) === pki2.leaf.cert.serial, 3000);
      await tls.waitFor(name, (s) => serialOf(s) === pki2.leaf.cert.serial, 3000);
    });
  }
});

test('a staple is carried to the client as inline bytes', async () => {
  const staple = await makeStaple(pki.ca, pki.leaf.cert);
  writeAtomic(join(secrets, 'stapled.yaml'), manifestYaml({ name: 'stapled', data: tlsData(pki, { 'tls.ocsp-staple': staple }) }));
  const c = h.udsClient(['kubernetes://stapled']);
  const s = await c.waitFor('kubernetes://stapled', undefined, 2000);
  assert.ok(s.payload.kind === 'tlsCertificate' && s.payload.ocspStaple?.equals(staple));
});
