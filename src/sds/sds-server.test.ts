import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { credentials, status as Status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { TestCA, tempDir } from '../../test/helpers/test-ca.js';
import { gatewayPki, type GatewayPki } from '../../test/sds/secret-fixtures.js';
import { RawSdsStream, secretsOf, summary } from '../../test/sds/raw-stream.js';
import {
  SECRET_TYPE_URL,
  SdsMetrics,
  SdsServer,
  StaticSecretProvider,
  sdsServerCredentials,
  versionOf,
  type SecretPayload,
} from './index.js';

const tmp = tempDir('meshcert-sds-server-');
let pki: GatewayPki;
let pki2: GatewayPki;
let provider: StaticSecretProvider;
let server: SdsServer;
let registry: Registry;
const logLines: Array<Record<string, unknown>> = [];
const streams: RawSdsStream[] = [];

function tls(p: GatewayPki): SecretPayload {
  return { kind: 'tlsCertificate', certificateChain: p.leaf.chainPem, privateKey: p.leaf.keyPem };
}

function open(): RawSdsStream {
  const s = new RawSdsStream(`unix:${server.addresses.uds}`);
  streams.push(s);
  return s;
}

before(async () => {
  pki = await gatewayPki();
  pki2 = await gatewayPki({ dnsName: 'two.example.com' });
  provider = new StaticSecretProvider();
  registry = new Registry();
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split('\n')) if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    }),
  );
  server = await SdsServer.start({ provider, uds: join(tmp.dir, 'sds.sock'), logger, metrics: new SdsMetrics(registry), controlPlaneId: 'meshcert-test' });
});

beforeEach(() => {
  provider.set('kubernetes://a', tls(pki));
  provider.set('kubernetes://b', tls(pki2));
});

after(async () => {
  for (const s of streams) s.close();
  await server.close();
  tmp.cleanup();
});

describe('versions, nonces, ACK and NACK', () => {
  test('initial request: one response per resource, each with a version and a nonce; the Secret unpacked', async () => {
    const s = open();
    s.send({ node: { id: 'router~1', cluster: 'gw' }, resourceNames: ['kubernetes://a', 'kubernetes://b', 'kubernetes://missing'] });
    const r1 = await s.next();
    const r2 = await s.next();
    assert.deepEqual([summary(r1).names, summary(r2).names], [['kubernetes://a'], ['kubernetes://b']]);
    for (const r of [r1, r2]) {
      assert.equal(r.typeUrl, SECRET_TYPE_URL);
      assert.match(r.versionInfo!, /^[0-9a-f]{16}$/);
      assert.ok(r.nonce);
      assert.equal(r.controlPlane?.identifier, 'meshcert-test');
    }
    assert.notEqual(r1.nonce, r2.nonce);
    const secret = secretsOf(r1)[0]!;
    assert.equal(secret['@type'], SECRET_TYPE_URL);
    assert.equal(Buffer.from(secret.tlsCertificate!.certificateChain!.inlineBytes!).toString(), pki.leaf.chainPem);
    await s.none(200); // nothing for the name that does not exist
  });

  test('an ACK is not answered; a change is pushed with a new version; a NACKed version is never resent', async () => {
    const s = open();
    const names = ['kubernetes://a'];
    s.send({ resourceNames: names });
    const r1 = await s.next();
    s.ack(r1, names);
    await s.none(200);
    // A change: pushed.
    provider.set('kubernetes://a', tls(pki2));
    const r2 = await s.next();
    assert.notEqual(r2.versionInfo, r1.versionInfo);
    // NACK it, as Envoy does: the previous version, this nonce, and why.
    s.nack(r2, r1.versionInfo!, names, 'Failed to load certificate chain from <inline>');
    await s.none(300);
    const nack = logLines.find((l) => l.msg === 'SDS client rejected a secret (NACK); that version will not be sent to it again');
    assert.ok(nack, 'the NACK is logged');
    assert.equal(nack.error, 'Failed to load certificate chain from <inline>');
    assert.equal(nack.resource, 'kubernetes://a');
    assert.equal(nack.version, r2.versionInfo);
    // Another change to the same content is still not resent; going back to what the client holds needs nothing.
    provider.set('kubernetes://a', tls(pki2));
    await s.none(200);
    provider.set('kubernetes://a', tls(pki));
    await s.none(200);
    // A different content is sent.
    const pki3 = await gatewayPki({ dnsName: 'three.example.com' });
    provider.set('kubernetes://a', tls(pki3));
    const r3 = await s.next();
    assert.equal(Buffer.from(secretsOf(r3)[0]!.tlsCertificate!.certificateChain!.inlineBytes!).toString(), pki3.leaf.chainPem);
    s.ack(r3, names);
    // Back to the first content: the version is the first one again (it is derived from the content).
    provider.set('kubernetes://a', tls(pki));
    const r4 = await s.next();
    assert.equal(r4.versionInfo, r1.versionInfo);
    assert.match(await registry.getSingleMetricAsString('meshcert_sds_nacks_total'), /resource="kubernetes:\/\/a"} 1/);
  });

  test('a request with a stale nonce is not answered; subscribing to a new name sends it; unsubscribing forgets', async () => {
    const s = open();
    s.send({ resourceNames: ['kubernetes://a'] });
    const r1 = await s.next();
    provider.set('kubernetes://a', tls(pki2));
    const r2 = await s.next();
    // An ACK of r1 that names b too: r1's nonce is stale (r2 was sent since), so the new name is not acted on.
    s.send({ versionInfo: r1.versionInfo!, resourceNames: ['kubernetes://a', 'kubernetes://b'], responseNonce: r1.nonce! });
    await s.none(200);
    // With the current nonce it is.
    s.send({ versionInfo: r2.versionInfo!, resourceNames: ['kubernetes://a', 'kubernetes://b'], responseNonce: r2.nonce! });
    const r3 = await s.next();
    assert.deepEqual(summary(r3).names, ['kubernetes://b']);
    // Unsubscribe from b, then subscribe again: the server must resend it although it did not change.
    s.send({ versionInfo: r3.versionInfo!, resourceNames: ['kubernetes://a'], responseNonce: r3.nonce! });
    await s.none(200);
    s.send({ versionInfo: r3.versionInfo!, resourceNames: ['kubernetes://a', 'kubernetes://b'], responseNonce: r3.nonce! });
    const r4 = await s.next();
    assert.deepEqual(summary(r4).names, ['kubernetes://b']);
    // Changes to names the stream did not ask for are not sent.
    provider.set('kubernetes://c', tls(pki));
    await s.none(200);
  });

  test('a withheld resource is not sent (the client keeps what it had); sent again once it is ready', async () => {
    const s = open();
    s.send({ resourceNames: ['kubernetes://a'] });
    const r1 = await s.next();
    s.ack(r1, ['kubernetes://a']);
    provider.withhold('kubernetes://a', 'MANDATORY policy but no OCSP staple');
    await s.none(200);
    provider.set('kubernetes://a', tls(pki2));
    const r2 = await s.next();
    assert.deepEqual(summary(r2).names, ['kubernetes://a']);
    assert.match(await registry.getSingleMetricAsString('meshcert_sds_streams'), /meshcert_sds_streams \d+/);
  });

  test('a reconnecting client that already holds the current version gets no resend; an older one does', async () => {
    const names = ['kubernetes://a', 'kubernetes://b'];
    const digest = (n: string): string => {
      const r = provider.resolve(n);
      return r.state === 'ready' ? r.resource.digest : '';
    };
    const held = versionOf(new Map(names.map((n) => [n, digest(n)])));
    const s = open();
    s.send({ versionInfo: held, resourceNames: names });
    await s.none(300);
    // ...and it is still subscribed: a change reaches it.
    provider.set('kubernetes://b', tls(pki));
    assert.deepEqual(summary(await s.next()).names, ['kubernetes://b']);
    const old = open();
    old.send({ versionInfo: 'something-else', resourceNames: names });
    assert.equal((await old.next()).resources!.length, 1);
    assert.equal((await old.next()).resources!.length, 1);
  });

  test('a first request carrying a nonce left over from an earlier stream is answered', async () => {
    const s = open();
    s.send({ versionInfo: 'old', responseNonce: '17.0', resourceNames: ['kubernetes://a'] });
    assert.deepEqual(summary(await s.next()).names, ['kubernetes://a']);
  });

  test('a wrong type_url is refused with INVALID_ARGUMENT', async () => {
    const s = open();
    s.send({ typeUrl: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', resourceNames: ['x'] });
    const st = await s.ended();
    assert.equal(st.code, Status.INVALID_ARGUMENT);
    assert.match(st.details, /serves only type.googleapis.com\/envoy.extensions.transport_sockets.tls.v3.Secret/);
  });

  test('streams that start alike, and streams in one push, get identical responses (encoded once)', async () => {
    const many = Array.from({ length: 50 }, () => open());
    for (const s of many) s.send({ resourceNames: ['kubernetes://b'] });
    const first = await Promise.all(many.map((s) => s.next()));
    assert.equal(new Set(first.map((r) => `${r.versionInfo}|${r.nonce}`)).size, 1, 'identical first answers too');
    many.forEach((s, i) => s.ack(first[i]!, ['kubernetes://b']));
    provider.set('kubernetes://b', tls(pki));
    const pushed = await Promise.all(many.map((s) => s.next()));
    assert.equal(new Set(pushed.map((r) => `${r.versionInfo}|${r.nonce}`)).size, 1);
    for (const s of many) s.close();
  });
});

describe('TLS listener and authorization', () => {
  let mtlsServer: SdsServer;
  let ca: TestCA;
  before(async () => {
    ca = await TestCA.root({ name: 'sds test CA' });
    const serving = await ca.issueServer(['localhost'], { sans: [{ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }] });
    mtlsServer = await SdsServer.start({
      provider,
      listen: { host: '127.0.0.1', port: 0, credentials: sdsServerCredentials({ certChainPem: serving.chainPem, keyPem: serving.keyPem, clientCaPem: ca.cert.pem }) },
      authorization: {
        'spiffe://cluster.local/ns/istio-system/sa/gateway-a': ['kubernetes://a', 'kubernetes://a-cacert'],
        'spiffe://cluster.local/ns/istio-system/sa/admin-*': ['kubernetes://*'],
      },
    });
  });
  after(async () => {
    await mtlsServer.close();
  });

  async function client(spiffeId: string | null): Promise<RawSdsStream> {
    const leaf = spiffeId ? await ca.issueSvid(spiffeId) : null;
    const creds = credentials.createSsl(Buffer.from(ca.cert.pem), leaf ? Buffer.from(leaf.keyPem) : null, leaf ? Buffer.from(leaf.chainPem) : null);
    const s = new RawSdsStream(`127.0.0.1:${mtlsServer.addresses.listen!.port}`, creds, { 'grpc.ssl_target_name_override': 'localhost' });
    streams.push(s);
    return s;
  }

  test('an identity fetches the names it is allowed', async () => {
    const s = await client('spiffe://cluster.local/ns/istio-system/sa/gateway-a');
    s.send({ resourceNames: ['kubernetes://a'] });
    assert.deepEqual(summary(await s.next()).names, ['kubernetes://a']);
    const admin = await client('spiffe://cluster.local/ns/istio-system/sa/admin-1');
    admin.send({ resourceNames: ['kubernetes://b'] });
    assert.deepEqual(summary(await admin.next()).names, ['kubernetes://b']);
  });

  test('a name not allowed ends the stream with PERMISSION_DENIED naming it', async () => {
    const s = await client('spiffe://cluster.local/ns/istio-system/sa/gateway-a');
    s.send({ resourceNames: ['kubernetes://a', 'kubernetes://b'] });
    const st = await s.ended();
    assert.equal(st.code, Status.PERMISSION_DENIED);
    assert.equal(st.details, 'spiffe://cluster.local/ns/istio-system/sa/gateway-a may not fetch kubernetes://b');
  });

  test('the Unix socket is local: authorization does not apply there', async () => {
    const s = open();
    s.send({ resourceNames: ['kubernetes://b'] });
    assert.deepEqual(summary(await s.next()).names, ['kubernetes://b']);
  });

  test('without a client certificate the TLS handshake itself fails', async () => {
    const s = await client(null);
    s.send({ resourceNames: ['kubernetes://a'] });
    const st = await s.ended();
    assert.equal(st.code, Status.UNAVAILABLE);
  });
});
