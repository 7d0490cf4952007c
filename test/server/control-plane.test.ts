import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCodes, isMeshError } from '../../src/core/index.js';
import { Certificate } from '../../src/pki/index.js';
import { ControlPlane, FIRST_TOKEN_FILES } from '../../src/server/index.js';
import { SERVER_NAME, call, httpGet, loopbackConfig, makeConfig, servedCertificate, sleep, splitHostPort, startPlane, statusOf, tempDir } from './fixtures.js';

test('first start creates the CA, binds ephemeral ports and reports them; /healthz, /metrics, 404', async () => {
  const plane = await startPlane(loopbackConfig());
  try {
    const { cp, dataDir } = plane;
    assert.equal(cp.createdCa, true);
    assert.ok(existsSync(join(dataDir, 'ca-key.pem')));
    assert.equal(cp.ca.trustDomain, 'cluster.local');
    // The CA was made with the config's publicUrl: it is written into issued certificates.
    assert.equal(cp.ca.settings.publicUrl, 'http://127.0.0.1:15014');
    assert.match(cp.addresses.grpc!, /^127\.0\.0\.1:\d+$/);
    assert.match(cp.addresses.http!, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(cp.addresses.grpc!.endsWith(':0'), true);

    const health = await httpGet(cp.addresses.http!, '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.body.trim(), 'ok');
    const head = await httpGet(cp.addresses.http!, '/healthz', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal((await httpGet(cp.addresses.http!, '/nope')).status, 404);
    assert.equal((await httpGet(cp.addresses.http!, '/healthz', 'POST')).status, 405);

    const metrics = await httpGet(cp.addresses.http!, '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.headers['content-type']), /^text\/plain/);
    const ca = /^meshcert_ca_expiry_seconds\{trust_domain="cluster\.local"\} (\S+)$/m.exec(metrics.body);
    assert.ok(ca, metrics.body);
    const caLeft = Number(ca[1]);
    assert.ok(caLeft > 9 * 365 * 86400 && caLeft <= 10 * 365 * 86400, `CA expiry ${caLeft}`);
    const serving = /^meshcert_grpc_serving_certificate_expiry_seconds (\S+)$/m.exec(metrics.body);
    assert.ok(serving && Number(serving[1]) > 23 * 3600 && Number(serving[1]) <= 24 * 3600, metrics.body);
    assert.match(metrics.body, /# TYPE meshcert_ca_issuance_total counter/);
    assert.match(metrics.body, /# TYPE meshcert_ca_issuance_duration_seconds histogram/);
    assert.match(metrics.body, /# TYPE meshcert_ca_denials_total counter/);
  } finally {
    await plane.stop();
  }
});

test('the serving certificate: issued by the mesh CA for grpc.dnsNames plus loopback IPs, in the ledger, verifiable by name and by IP', async () => {
  const plane = await startPlane(loopbackConfig());
  try {
    const { cp, rootPem } = plane;
    const { cert } = await servedCertificate(cp.addresses.grpc!, rootPem);
    const served = Certificate.fromDer(cert.raw);
    assert.deepEqual(served.sans.dns.sort(), [SERVER_NAME, 'localhost'].sort());
    assert.deepEqual(served.sans.ip.sort(), ['127.0.0.1', '::1'].sort());
    assert.equal(served.isCA, false);
    assert.ok(cert.verify(cp.ca.cert.publicKey), 'signed by the mesh CA');
    assert.ok(cert.checkHost('localhost'));
    assert.ok(cert.checkIP('127.0.0.1'));
    const entry = await cp.ledger.get(served.serial);
    assert.equal(entry?.profile, 'server');
    // Dialing by IP with no SNI verifies against the IP SAN (what a client configured with 127.0.0.1 does).
    const byIp = await servedCertificate(cp.addresses.grpc!, rootPem, '127.0.0.1');
    assert.equal(Certificate.fromDer(byIp.cert.raw).serial, served.serial);
  } finally {
    await plane.stop();
  }
});

test('the serving certificate is renewed at about 2/3 of its lifetime and swapped into the live server', async () => {
  const plane = await startPlane(loopbackConfig({ grpc: { listen: '127.0.0.1:0', dnsNames: [SERVER_NAME, 'localhost'], certificateTtl: '6s' } }));
  try {
    const { cp, rootPem } = plane;
    const first = Certificate.fromDer((await servedCertificate(cp.addresses.grpc!, rootPem)).cert.raw);
    assert.ok(first.notAfter.getTime() - Date.now() <= 6_000);
    // Issuance keeps working on the same server across the swap.
    assert.equal((await statusOf(plane)).code, 16);
    const deadline = Date.now() + 9_000;
    let current = first;
    while (current.serial === first.serial && Date.now() < deadline) {
      await sleep(250);
      current = Certificate.fromDer((await servedCertificate(cp.addresses.grpc!, rootPem)).cert.raw);
    }
    assert.notEqual(current.serial, first.serial, 'a new serving certificate within the old one\'s lifetime');
    // Renewed before the old one expired (at 2/3 ± jitter of a 6 s lifetime, about 4 s after issuance); the ledger
    // time of issuance says so however slowly this loop observed it.
    const [firstEntry, renewedEntry] = [await cp.ledger.get(first.serial), await cp.ledger.get(current.serial)];
    assert.ok(firstEntry && renewedEntry, 'both serving certificates are in the ledger');
    const after = renewedEntry.issuedAt.getTime() - firstEntry.issuedAt.getTime();
    assert.ok(after >= 3_000 && renewedEntry.issuedAt.getTime() < first.notAfter.getTime(), `renewed ${after} ms after the first, before it expired`);
    assert.equal(cp.servingCertificate?.certificate?.serial, current.serial);
    assert.equal((await statusOf(plane)).code, 16, 'the server still answers after the swap');
    const metrics = await httpGet(cp.addresses.http!, '/metrics');
    assert.match(metrics.body, /^meshcert_grpc_serving_certificate_renewals_total\{result="ok"\} [1-9]/m);
  } finally {
    await plane.stop();
  }
});

test('a section that is absent is off: HTTP only, then gRPC only', async () => {
  const dir = tempDir();
  const httpOnly = new ControlPlane();
  await httpOnly.start(makeConfig({ http: { listen: '127.0.0.1:0' } }), join(dir, 'a'));
  try {
    assert.equal(httpOnly.addresses.grpc, null);
    assert.equal(httpOnly.servingCertificate, null);
    assert.equal((await httpGet(httpOnly.addresses.http!, '/healthz')).status, 200);
  } finally {
    await httpOnly.stop();
  }
  const grpcOnly = new ControlPlane();
  await grpcOnly.start(makeConfig({ grpc: { listen: '127.0.0.1:0' } }), join(dir, 'b'));
  try {
    assert.equal(grpcOnly.addresses.http, null);
    assert.match(grpcOnly.addresses.grpc!, /^127\.0\.0\.1:\d+$/);
    // No auth section: no authenticator, every call is UNAUTHENTICATED.
    const plane = { cp: grpcOnly, dataDir: join(dir, 'b'), rootPem: readFileSync(join(dir, 'b', 'root-cert.pem'), 'utf8'), stop: async () => undefined };
    assert.equal((await statusOf(plane)).code, 16);
  } finally {
    await grpcOnly.stop();
  }
});

test('a CA in another trust domain is a CONFIG error, unless the caller adopts the CA\'s (serve without --config)', async () => {
  const plane = await startPlane(loopbackConfig({ trustDomain: 'example.org' }));
  const dataDir = plane.dataDir;
  await plane.cp.stop();
  try {
    const cp = new ControlPlane();
    await assert.rejects(cp.start(makeConfig(loopbackConfig()), dataDir), (err: unknown) => isMeshError(err, ErrorCodes.CONFIG) && /example\.org/.test(err.message) && /trustDomain/.test(err.message));
    const adopted = new ControlPlane();
    await adopted.start(makeConfig(loopbackConfig()), dataDir, { adoptCaTrustDomain: true });
    assert.equal(adopted.createdCa, false);
    assert.equal(adopted.ca.trustDomain, 'example.org');
    await adopted.stop();
  } finally {
    await plane.stop();
  }
});

test('a port in use is a CONFIG error naming the field, and a failed start releases what it had opened', async () => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  const dir = tempDir();
  try {
    const cp = new ControlPlane();
    await assert.rejects(
      cp.start(makeConfig({ grpc: { listen: '127.0.0.1:0' }, http: { listen: `127.0.0.1:${port}` } }), join(dir, 'd')),
      (err: unknown) => isMeshError(err, ErrorCodes.CONFIG) && err.subject === 'http.listen' && err.message.includes(String(port)),
    );
    // gRPC had been bound before HTTP failed: the failed start closed it again.
    assert.ok(cp.addresses.grpc);
    const [gh, gp] = splitHostPort(cp.addresses.grpc);
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const s = connect(gp, gh, () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      /ECONNREFUSED/,
    );
    await assert.rejects(
      new ControlPlane().start(makeConfig({ grpc: { listen: `127.0.0.1:${port}` } }), join(dir, 'd')),
      (err: unknown) => isMeshError(err, ErrorCodes.CONFIG) && err.subject === 'grpc.listen',
    );
  } finally {
    blocker.close();
  }
});

test('/healthz is 503 with the reason when the ledger is unusable', async () => {
  const plane = await startPlane(loopbackConfig());
  try {
    await plane.cp.ledger.close();
    const res = await httpGet(plane.cp.addresses.http!, '/healthz');
    assert.equal(res.status, 503);
    assert.match(res.body, /^unhealthy\nledger: /);
    assert.doesNotMatch(res.body, /^ca:/m);
  } finally {
    await plane.stop();
  }
});

test('first start without a bootstrap token file makes a one-time token in the data dir; later starts keep using it', async () => {
  const dir = tempDir();
  const dataDir = join(dir, 'data');
  const cfg = loopbackConfig({ auth: { clientCertificates: true } });
  const cp = new ControlPlane();
  await cp.start(makeConfig(cfg), dataDir, { firstStartBootstrapToken: true });
  const plane = { cp, dataDir, rootPem: readFileSync(join(dataDir, 'root-cert.pem'), 'utf8'), stop: () => cp.stop() };
  let tokenText: string;
  try {
    assert.ok(cp.firstToken);
    assert.equal(cp.firstToken.tokenFile, join(dataDir, FIRST_TOKEN_FILES.token));
    assert.equal(cp.firstToken.identity, 'spiffe://cluster.local/ns/default/sa/default');
    assert.equal(statSync(cp.firstToken.tokenFile).mode & 0o777, 0o600);
    tokenText = readFileSync(cp.firstToken.tokenFile, 'utf8');
    const list = readFileSync(cp.firstToken.listFile, 'utf8');
    assert.ok(!list.includes(tokenText.trim()), 'the list holds the hash only');
    const token = tokenText.trim();
    const res = await call(plane, { bearerToken: token });
    assert.deepEqual(Certificate.parse(res.certChain[0]!).spiffeIds, ['spiffe://cluster.local/ns/default/sa/default']);
    const again = await statusOf(plane, { bearerToken: token });
    assert.equal(again.code, 16);
    assert.match(again.message, /already used/);
  } finally {
    await cp.stop();
  }
  const restarted = new ControlPlane();
  await restarted.start(makeConfig(cfg), dataDir, { firstStartBootstrapToken: true });
  try {
    assert.equal(restarted.createdCa, false);
    assert.equal(readFileSync(join(dataDir, FIRST_TOKEN_FILES.token), 'utf8'), tokenText, 'not made again');
    assert.ok(restarted.firstToken);
    const replay = await statusOf({ ...plane, cp: restarted }, { bearerToken: tokenText.trim() });
    assert.equal(replay.code, 16, 'spent across restarts (the ledger remembers)');
  } finally {
    await restarted.stop();
  }
});
