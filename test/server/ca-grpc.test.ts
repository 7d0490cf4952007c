import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client, Metadata, credentials, status as Status, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { ErrorCodes, MeshError } from '../../src/core/index.js';
import { Certificate, Csr, buildCsr, encodePem, toSigningKey, validateChain } from '../../src/pki/index.js';
import { CREATE_CERTIFICATE_PATH, defaultSigner, grpcStatusFor, istioCaMethod } from '../../src/server/index.js';
import { TestCA } from '../helpers/test-ca.js';
import {
  SERVER_NAME,
  TestJwtIssuer,
  call,
  httpGet,
  loopbackConfig,
  makeCsr,
  startPlane,
  statusOf,
  tempDir,
  writeBootstrapTokens,
  type Plane,
} from './fixtures.js';

const TD = 'spiffe://cluster.local';
const TOKENS = {
  edge: 'edge-token-0123456789abcdef',
  once: 'one-time-token-0123456789',
  expired: 'expired-token-0123456789ab',
  flood: 'flood-token-0123456789abcd',
};

let plane: Plane;
let jwt: TestJwtIssuer;

before(async () => {
  const dir = tempDir();
  jwt = new TestJwtIssuer(dir);
  const tokenFile = join(dir, 'tokens.yaml');
  writeBootstrapTokens(tokenFile, [
    { name: 'edge', token: TOKENS.edge, identity: `${TD}/ns/edge/sa/vm` },
    { name: 'once', token: TOKENS.once, identity: `${TD}/ns/edge/sa/once`, oneTime: true },
    { name: 'old', token: TOKENS.expired, identity: `${TD}/ns/edge/sa/old`, expires: '2020-01-01T00:00:00Z' },
    { name: 'flood', token: TOKENS.flood, identity: `${TD}/ns/flood/sa/flood` },
  ]);
  plane = await startPlane(
    loopbackConfig({
      issuance: { defaultTtl: '1h', maxTtl: '2h', dnsGrants: [{ identity: `${TD}/ns/web/sa/frontend`, dnsNames: ['web.example.com'] }] },
      auth: { jwt: [jwt.config], bootstrapTokens: tokenFile, clientCertificates: true },
      rateLimit: { perIdentityPerSecond: 0.01, burst: 20 },
    }),
    { dataDir: join(dir, 'data') },
  );
});

after(async () => {
  await plane?.stop();
});

function leafOf(certChain: string[]): Certificate {
  return Certificate.parse(certChain[0]!);
}

function assertSvid(certChain: string[], id: string): Certificate {
  // Leaf first, the trust bundle (every root) as last element.
  assert.ok(certChain.length >= 2, `chain of ${certChain.length}`);
  const leaf = leafOf(certChain);
  assert.deepEqual(leaf.spiffeIds, [id]);
  const roots = Certificate.parseAll(certChain[certChain.length - 1]!);
  assert.deepEqual(
    roots.map((r) => r.fingerprint256),
    plane.cp.ca.roots.map((r) => r.fingerprint256),
  );
  const intermediates = certChain.slice(1, -1).map((p) => Certificate.parse(p));
  const res = validateChain({ leaf, intermediates, roots, purpose: 'client' });
  assert.ok(res.ok, JSON.stringify(res));
  return leaf;
}

test('issuance with a Kubernetes service-account JWT: the SVID of that service account, in the ledger', async () => {
  const token = await jwt.token('web', 'frontend');
  const { certChain } = await call(plane, { bearerToken: token, validitySeconds: 1800 });
  const leaf = assertSvid(certChain, `${TD}/ns/web/sa/frontend`);
  const life = leaf.notAfter.getTime() - Date.now();
  assert.ok(life > 1700_000 && life <= 1800_000, `lifetime ${life}`);
  const entry = await plane.cp.ledger.get(leaf.serial);
  assert.equal(entry?.identity, `${TD}/ns/web/sa/frontend`);
});

test('issuance with a bootstrap token, and DNS names only where granted', async () => {
  const { certChain } = await call(plane, { bearerToken: TOKENS.edge });
  assertSvid(certChain, `${TD}/ns/edge/sa/vm`);

  const token = await jwt.token('web', 'frontend');
  const granted = await makeCsr({ sans: [{ type: 'dns', value: 'web.example.com' }] });
  const res = await call(plane, { bearerToken: token, csrPem: granted.csrPem });
  assert.deepEqual(leafOf(res.certChain).sans.dns, ['web.example.com']);

  const notGranted = await makeCsr({ sans: [{ type: 'dns', value: 'admin.example.com' }] });
  const st = await statusOf(plane, { bearerToken: token, csrPem: notGranted.csrPem });
  assert.equal(st.code, Status.PERMISSION_DENIED, st.message);
  assert.match(st.message, /admin\.example\.com/);
});

test('renewal with a client certificate keeps the identity; a certificate from another CA is not a credential', async () => {
  const first = await call(plane, { bearerToken: TOKENS.edge });
  const clientCert = { certChainPem: first.certChain.slice(0, -1).join('\n'), keyPem: first.keyPem };
  const renewed = await call(plane, { clientCert });
  const leaf = assertSvid(renewed.certChain, `${TD}/ns/edge/sa/vm`);
  assert.notEqual(leaf.serial, leafOf(first.certChain).serial);

  // The TLS handshake does not verify it against this CA, so grpc-js passes no peer certificate: no credential.
  const other = await TestCA.root({ name: 'someone else' });
  const foreign = await other.issueSvid(`${TD}/ns/edge/sa/vm`);
  const st = await statusOf(plane, { clientCert: { certChainPem: foreign.chainPem || foreign.cert.pem, keyPem: foreign.keyPem } });
  assert.equal(st.code, Status.UNAUTHENTICATED, st.message);
  assert.equal(st.meshCode, ErrorCodes.UNAUTHENTICATED);
});

test('denials: UNAUTHENTICATED for missing, unknown, expired, forged and replayed credentials', async () => {
  const cases: [string, Parameters<typeof statusOf>[1], RegExp][] = [
    ['no credential', {}, /no credential/],
    ['unknown bearer', { bearerToken: 'not-a-known-token-at-all' }, /not a known bootstrap token/],
    ['expired bootstrap token', { bearerToken: TOKENS.expired }, /expired/],
    ['expired JWT', { bearerToken: await jwt.token('web', 'frontend', { expInSeconds: -3600 }) }, /exp/],
    ['JWT for another audience', { bearerToken: await jwt.token('web', 'frontend', { audience: 'someone-else' }) }, /aud/],
    [
      'JWT signed by another key',
      { bearerToken: await jwt.token('web', 'frontend', { key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey }) },
      /signature|key/i,
    ],
  ];
  for (const [what, opts, message] of cases) {
    const st = await statusOf(plane, opts);
    assert.equal(st.code, Status.UNAUTHENTICATED, `${what}: ${st.message}`);
    assert.match(st.message, message, what);
  }
  assert.equal((await statusOf(plane, { bearerToken: TOKENS.once })).code, Status.OK);
  const replay = await statusOf(plane, { bearerToken: TOKENS.once });
  assert.equal(replay.code, Status.UNAUTHENTICATED);
  assert.match(replay.message, /already used/);
});

test('denials: PERMISSION_DENIED for another identity, INVALID_ARGUMENT for bad CSRs and lifetimes', async () => {
  const other = await makeCsr({ sans: [{ type: 'uri', value: `${TD}/ns/kube-system/sa/admin` }] });
  const st = await statusOf(plane, { bearerToken: TOKENS.edge, csrPem: other.csrPem });
  assert.equal(st.code, Status.PERMISSION_DENIED, st.message);

  const good = await makeCsr();
  const der = Buffer.from(Csr.parse(good.csrPem).der);
  der[der.length - 2] ^= 0xff; // inside the signature: the structure parses, the signature does not verify
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
  const weak = (await buildCsr({}, await toSigningKey(rsa))).pem;
  const invalid: [string, string, RegExp][] = [
    ['bad signature', encodePem('CERTIFICATE REQUEST', der), /signature/],
    ['not a CSR', 'hello, CA', /CSR|PEM|DER/],
    ["RSA-1024 key", weak, /1024|weak|2048/i],
    ['oversized CSR', `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(20_000)}\n-----END CERTIFICATE REQUEST-----\n`, /bytes/],
  ];
  for (const [what, csrPem, message] of invalid) {
    const r = await statusOf(plane, { bearerToken: TOKENS.edge, csrPem });
    assert.equal(r.code, Status.INVALID_ARGUMENT, `${what}: ${r.message}`);
    assert.match(r.message, message, what);
  }
});

test('denials: RESOURCE_EXHAUSTED once one identity exceeds its rate; others are still served', async () => {
  const codes: number[] = [];
  // The same CSR each time: the limit is about calls per identity, and it keeps the test quick.
  const { csrPem } = await makeCsr();
  for (let i = 0; i < 22; i++) codes.push((await statusOf(plane, { bearerToken: TOKENS.flood, csrPem })).code);
  assert.deepEqual(codes.slice(0, 20), Array(20).fill(Status.OK));
  assert.deepEqual(codes.slice(20), [Status.RESOURCE_EXHAUSTED, Status.RESOURCE_EXHAUSTED]);
  assert.equal((await statusOf(plane, { bearerToken: await jwt.token('other', 'client') })).code, Status.OK);
});

/** A raw unary call with identity serializers: the bytes go on the wire exactly as given. */
function rawCall(body: Buffer, metadata = new Metadata()): Promise<{ code: number; details: string; response?: Buffer }> {
  const client = new Client(plane.cp.addresses.grpc!, credentials.createSsl(Buffer.from(plane.rootPem)), {
    'grpc.ssl_target_name_override': SERVER_NAME,
    'grpc.default_authority': SERVER_NAME,
  });
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      CREATE_CERTIFICATE_PATH,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      metadata,
      { deadline: Date.now() + 10_000 },
      (err: ServiceError | null, res?: Buffer) => {
        client.close();
        resolve(err ? { code: err.code, details: err.details } : { code: 0, details: '', response: res });
      },
    );
  });
}

test('garbage bodies: INVALID_ARGUMENT with a reason, never a crash; the server keeps serving', async () => {
  const md = new Metadata();
  md.set('authorization', `Bearer ${TOKENS.edge}`);
  const bodies = [
    Buffer.from([0x0a, 0xff]), // a truncated length-delimited field
    Buffer.from('garbage bytes here \xff\xff', 'latin1'),
    Buffer.from([0x1a, 0x05, 0x01, 0x02]), // field 3 with the wrong wire type
    Buffer.alloc(0), // an empty message: csr = ""
    Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 37) & 0xff)),
  ];
  for (const body of bodies) {
    const r = await rawCall(body, md);
    // The service decodes bodies itself, so even undecodable ones get INVALID_ARGUMENT with the reason, not grpc-js's bare INTERNAL.
    assert.equal(r.code, Status.INVALID_ARGUMENT, `${body.toString('hex').slice(0, 20)}: ${r.code} ${r.details}`);
    assert.match(r.details, /IstioCertificateRequest|csr|CSR|PEM|DER/, r.details);
  }
  // Too large for the server's receive limit: grpc-js refuses it before decoding.
  const huge = await rawCall(Buffer.alloc(200_000, 0x41), md);
  assert.equal(huge.code, Status.RESOURCE_EXHAUSTED, huge.details);
  // A well-formed body on the same path still works, through the raw client too.
  const csr = await makeCsr();
  const ok = await rawCall(Buffer.from(istioCaMethod().requestSerialize({ csr: csr.csrPem, subjectId: '', validityDuration: 600 })), md);
  assert.equal(ok.code, 0, ok.details);
  const decoded = istioCaMethod().responseDeserialize(ok.response!);
  assertSvid(decoded.certChain, `${TD}/ns/edge/sa/vm`);
  const neg = await rawCall(Buffer.from(istioCaMethod().requestSerialize({ csr: csr.csrPem, subjectId: '', validityDuration: -5 })), md);
  assert.equal(neg.code, Status.INVALID_ARGUMENT, neg.details);
});

test('metadata (google.protobuf.Struct) is accepted and subject_id is ignored', async () => {
  const res = await call(plane, { bearerToken: TOKENS.edge, metadata: { WorkloadName: 'vm-1', ClusterID: 'Kubernetes', WorkloadIP: ['10.0.0.1'], n: 1, b: true, x: null } });
  assertSvid(res.certChain, `${TD}/ns/edge/sa/vm`);
});

test('metrics count issuances by result and code, denials by reason; audit events are in the ledger', async () => {
  const { body } = await httpGet(plane.cp.addresses.http!, '/metrics');
  const value = (re: RegExp): number => Number(re.exec(body)?.[1] ?? NaN);
  assert.ok(value(/^meshcert_ca_issuance_total\{result="issued",code="OK"\} (\d+)$/m) >= 8, body);
  assert.ok(value(/^meshcert_ca_issuance_total\{result="denied",code="UNAUTHENTICATED"\} (\d+)$/m) >= 7);
  assert.ok(value(/^meshcert_ca_issuance_total\{result="denied",code="RESOURCE_EXHAUSTED"\} (\d+)$/m) >= 2);
  assert.ok(value(/^meshcert_ca_denials_total\{reason="rate_limited"\} (\d+)$/m) >= 2);
  assert.ok(value(/^meshcert_ca_denials_total\{reason="csr_signature"\} (\d+)$/m) >= 1, body);
  assert.ok(value(/^meshcert_ca_denials_total\{reason="key_too_weak"\} (\d+)$/m) >= 1, body);
  assert.ok(value(/^meshcert_ca_issuance_duration_seconds_count\{result="issued",code="OK"\} (\d+)$/m) >= 8);
  const events = await plane.cp.ledger.auditEvents(500);
  assert.ok(events.some((e) => e.type === 'csr-allowed'));
  assert.ok(events.some((e) => e.type === 'csr-denied'));
});

test('UNAVAILABLE when the ledger is down; the server answers and /healthz says why', async () => {
  const dir = tempDir();
  const tokenFile = join(dir, 'tokens.yaml');
  writeBootstrapTokens(tokenFile, [{ name: 'edge', token: TOKENS.edge, identity: `${TD}/ns/edge/sa/vm` }]);
  const p = await startPlane(loopbackConfig({ auth: { bootstrapTokens: tokenFile } }), { dataDir: join(dir, 'data') });
  try {
    assert.equal((await statusOf(p, { bearerToken: TOKENS.edge })).code, Status.OK);
    await p.cp.ledger.close();
    const st = await statusOf(p, { bearerToken: TOKENS.edge });
    assert.equal(st.code, Status.UNAVAILABLE, st.message);
    assert.equal(st.meshCode, ErrorCodes.UNAVAILABLE);
    assert.equal((await httpGet(p.cp.addresses.http!, '/healthz')).status, 503);
  } finally {
    await p.stop();
  }
});

test('a signer that fails unexpectedly: INTERNAL with a generic message and a reference, the detail only in the log', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  const dir = tempDir();
  let calls = 0;
  const p = await startPlane(loopbackConfig(), {
    dataDir: join(dir, 'data'),
    logger,
    createSigner: () => ({
      createCertificate: async () => {
        calls++;
        throw new Error('database password is hunter2');
      },
    }),
  });
  try {
    for (let i = 0; i < 2; i++) {
      const st = await statusOf(p, { bearerToken: TOKENS.edge });
      assert.equal(st.code, Status.INTERNAL);
      assert.equal(st.meshCode, ErrorCodes.INTERNAL);
      assert.doesNotMatch(st.message, /hunter2/);
      const ref = /reference ([0-9a-f]{8})/.exec(st.message)?.[1];
      assert.ok(ref, st.message);
      assert.ok(lines.some((l) => l.includes(ref) && l.includes('hunter2')), 'the log has the detail under the same reference');
    }
    assert.equal(calls, 2);
  } finally {
    await p.stop();
  }
});

test('gRPC status for each error code', async () => {
  const cases: [Error, number, string][] = [
    [new MeshError(ErrorCodes.UNAUTHENTICATED, 'x'), Status.UNAUTHENTICATED, 'denied'],
    [new MeshError(ErrorCodes.PERMISSION_DENIED, 'x'), Status.PERMISSION_DENIED, 'denied'],
    [new MeshError(ErrorCodes.RATE_LIMITED, 'x'), Status.RESOURCE_EXHAUSTED, 'denied'],
    [new MeshError(ErrorCodes.CSR_SIGNATURE, 'x'), Status.INVALID_ARGUMENT, 'denied'],
    [new MeshError(ErrorCodes.KEY_TOO_WEAK, 'x'), Status.INVALID_ARGUMENT, 'denied'],
    [new MeshError(ErrorCodes.SPIFFE_ID, 'x'), Status.INVALID_ARGUMENT, 'denied'],
    [new MeshError(ErrorCodes.POLICY, 'x'), Status.INVALID_ARGUMENT, 'denied'],
    [new MeshError(ErrorCodes.TTL, 'x', { subject: 'ttl' }), Status.INVALID_ARGUMENT, 'denied'],
    [new MeshError(ErrorCodes.TTL, 'x', { subject: 'ca' }), Status.UNAVAILABLE, 'error'],
    [new MeshError(ErrorCodes.UNAVAILABLE, 'x'), Status.UNAVAILABLE, 'error'],
    [new MeshError(ErrorCodes.LEDGER, '/secret/path/ledger.db: SQLITE_BUSY'), Status.UNAVAILABLE, 'error'],
    [new MeshError(ErrorCodes.CA_INVALID, 'x'), Status.INTERNAL, 'error'],
    [new Error('boom'), Status.INTERNAL, 'error'],
  ];
  for (const [err, code, result] of cases) {
    const st = grpcStatusFor(err, 'ref12345');
    assert.equal(st.code, code, `${(err as { code?: string }).code ?? err.message}`);
    assert.equal(st.result, result);
  }
  assert.doesNotMatch(grpcStatusFor(new MeshError(ErrorCodes.LEDGER, '/secret/path/ledger.db'), 'r').message, /secret/);
  // The RA's specific cause becomes the denial reason.
  assert.equal(grpcStatusFor(new MeshError(ErrorCodes.INVALID_ARGUMENT, 'x', { details: { reason: ErrorCodes.KEY_TOO_WEAK } }), 'r').reason, 'key_too_weak');
});

test('overload: calls beyond grpc.maxInFlight get RESOURCE_EXHAUSTED, a call whose deadline is too near gets DEADLINE_EXCEEDED, both before any work', async () => {
  const dir = tempDir();
  const tokenFile = join(dir, 'tokens.yaml');
  writeBootstrapTokens(tokenFile, [{ name: 'edge', token: TOKENS.edge, identity: `${TD}/ns/edge/sa/vm` }]);
  let served = 0;
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const p = await startPlane(loopbackConfig({ grpc: { listen: '127.0.0.1:0', dnsNames: [SERVER_NAME, 'localhost'], maxInFlight: 1 }, auth: { bootstrapTokens: tokenFile } }), {
    dataDir: join(dir, 'data'),
    // The real registration authority, held at a gate so that the first call stays in flight.
    createSigner: (deps) => {
      const ra = defaultSigner(deps);
      return {
        createCertificate: async (req, ctx) => {
          served++;
          await gate;
          return ra.createCertificate(req, ctx);
        },
        close: () => ra.close?.(),
      };
    },
  });
  try {
    const first = call(p, { bearerToken: TOKENS.edge });
    while (served === 0) await new Promise((r) => setTimeout(r, 5));
    const second = await statusOf(p, { bearerToken: TOKENS.edge });
    assert.equal(second.code, Status.RESOURCE_EXHAUSTED, second.message);
    assert.match(second.message, /grpc\.maxInFlight/);
    release();
    const issued = await first;
    assert.equal(leafOf(issued.certChain).spiffeIds[0], `${TD}/ns/edge/sa/vm`);
    // 30 ms to go when the call arrives: under the 50 ms margin, so it is answered without being served.
    const hurried = await statusOf(p, { bearerToken: TOKENS.edge, timeoutMs: 30 });
    assert.equal(hurried.code, Status.DEADLINE_EXCEEDED, hurried.message);
    assert.equal(served, 1, 'neither shed call reached the registration authority');
    const metrics = (await httpGet(p.cp.addresses.http!, '/metrics')).body;
    assert.match(metrics, /meshcert_ca_shed_total\{reason="overloaded"\} 1/);
    assert.match(metrics, /meshcert_ca_shed_total\{reason="(deadline|cancelled)"\} 1/);
    // Served normally again once the load is gone.
    assert.equal((await statusOf(p, { bearerToken: TOKENS.edge })).code, Status.OK);
  } finally {
    await p.stop();
  }
});
