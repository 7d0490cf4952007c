// The workload agent (in-process, for speed) against a real `meshcert serve` process: certificates over SDS to a
// real SDS client and as files, rotation, trust bundle updates, mutual TLS between two workloads, bad input.
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, realpathSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect as tlsConnect, createServer as tlsCreateServer, type TLSSocket } from 'node:tls';
import { ErrorCodes, isMeshError } from '../../src/core/index.js';
import { Certificate, keysMatch, validateChain } from '../../src/pki/index.js';
import { SdsClient, type ClientSecret } from '../../src/sds/index.js';
import { SDS_DEFAULT, SDS_ROOTCA, type Agent, type CertificateEvent, type FailureEvent } from '../../src/agent/index.js';
import { TestCA } from '../helpers/test-ca.js';
import { CaProcess, TD, freePort, httpGet, nextEvent, startAgent, tempDir } from './fixtures.js';

const TOKENS = {
  web: { name: 'web', token: 'web-token-0123456789abcdef', identity: `${TD}/ns/shop/sa/web` },
  rot: { name: 'rot', token: 'rot-token-0123456789abcdef', identity: `${TD}/ns/shop/sa/rotating` },
  trust: { name: 'trust', token: 'trust-token-0123456789abcd', identity: `${TD}/ns/shop/sa/trust` },
  bad: { name: 'bad', token: 'bad-token-0123456789abcdef', identity: `${TD}/ns/shop/sa/bad` },
};

let ca: CaProcess;
const agents: Agent[] = [];
const clients: SdsClient[] = [];

before(async () => {
  ca = await new CaProcess(Object.values(TOKENS)).start();
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all(agents.map((a) => a.stop()));
  await ca?.stop();
});

function tokenFile(dir: string, token: string): string {
  const f = join(dir, 'token');
  writeFileSync(f, `${token}\n`);
  return f;
}

function sdsClient(agent: Agent): SdsClient {
  const c = new SdsClient({ target: `unix:${agent.addresses.sdsUds}`, names: [SDS_DEFAULT, SDS_ROOTCA], node: { id: 'test-proxy' }, backoff: { initialMs: 50, maxMs: 200 } }).start();
  clients.push(c);
  return c;
}

const serialOf = (s: ClientSecret) => s.certificates![0]!.serial;

test('an agent gets a certificate from meshcert serve and serves it over SDS (default, ROOTCA) and as files', async () => {
  const dir = tempDir();
  const out = join(dir, 'out');
  const agent = await startAgent(ca, {
    bootstrapTokenFile: tokenFile(dir, TOKENS.web.token),
    outDir: out,
    sdsUds: join(dir, 'sds.sock'),
    adminListen: { host: '127.0.0.1', port: 0 },
    certTtlMs: 3_600_000,
  });
  agents.push(agent);
  const first = await agent.firstCertificate();
  assert.equal(first.spiffeId, TOKENS.web.identity);
  assert.equal(first.method, 'bootstrap-token');

  const client = sdsClient(agent);
  const tls = await client.waitFor(SDS_DEFAULT);
  const roots = await client.waitFor(SDS_ROOTCA);
  const leaf = tls.certificates![0]!;
  assert.deepEqual(leaf.spiffeIds, [TOKENS.web.identity]);
  assert.ok(keysMatch(tls.privateKey!, leaf.publicKey), 'the key served is the key of the certificate');
  const caRoots = Certificate.parseAll(readFileSync(ca.rootFile));
  assert.deepEqual(roots.caCertificates!.map((c) => c.fingerprint256), caRoots.map((c) => c.fingerprint256));
  const v = validateChain({ leaf, intermediates: tls.certificates!.slice(1), roots: roots.caCertificates!, purpose: 'client' });
  assert.ok(v.ok, JSON.stringify(v));
  // The lifetime asked for was granted (the CA allows up to 2 h).
  assert.ok(leaf.notAfter.getTime() - Date.now() > 3_500_000);

  // Files: the same certificate and key, key.pem 0600, the trust bundle.
  assert.equal(readFileSync(join(out, 'cert-chain.pem'), 'utf8'), tls.payload.kind === 'tlsCertificate' ? tls.payload.certificateChain : '');
  assert.equal(statSync(join(out, 'key.pem')).mode & 0o777, 0o600);
  assert.equal(readFileSync(join(out, 'key.pem'), 'utf8'), tls.payload.kind === 'tlsCertificate' ? tls.payload.privateKey : '');
  assert.deepEqual(Certificate.parseAll(readFileSync(join(out, 'root-cert.pem'))).map((c) => c.fingerprint256), caRoots.map((c) => c.fingerprint256));
  assert.equal(realpathSync(join(out, 'cert-chain.pem')), join(out, first.version!, 'cert-chain.pem'));

  const health = await httpGet(agent.addresses.admin!, '/healthz');
  assert.equal(health.status, 200, health.body);
  assert.match(health.body, new RegExp(`^ready: serving ${TOKENS.web.identity}, serial ${first.serial}`));
  const metrics = (await httpGet(agent.addresses.admin!, '/metrics')).body;
  assert.match(metrics, new RegExp(`^meshcert_agent_certificate_expiry_timestamp_seconds ${leaf.notAfter.getTime() / 1000}$`, 'm'));
  assert.match(metrics, /^meshcert_agent_renewals_total\{result="success"\} 1$/m);
  assert.match(metrics, /^meshcert_agent_certificate_valid 1$/m);
});

test('rotation on time with a short TTL: each new certificate is in the files before SDS pushes it, then --on-rotate runs', async () => {
  const dir = tempDir();
  const out = join(dir, 'out');
  const hookLog = join(dir, 'rotations.log');
  const agent = await startAgent(ca, {
    bootstrapTokenFile: tokenFile(dir, TOKENS.rot.token),
    outDir: out,
    sdsUds: join(dir, 'sds.sock'),
    // Renewal about 1.5 s after each receipt, leaving seconds of margin before expiry on a loaded machine.
    certTtlMs: 5000,
    rotation: { renewAt: 0.3, jitter: 0.1 },
    onRotate: `printf '%s %s %s\\n' "$MESHCERT_ROTATION" "$MESHCERT_SERIAL" "$(basename "$(readlink "$MESHCERT_OUT_DIR/..data")")" >> ${hookLog}`,
  });
  agents.push(agent);
  const events: CertificateEvent[] = [];
  agent.on('certificate', (e: CertificateEvent) => events.push(e));
  const client = sdsClient(agent);
  const seen: Array<{ serial: string; fileChain: string; sdsChain: string }> = [];
  client.on('secret', (s: ClientSecret) => {
    if (s.name !== SDS_DEFAULT || s.payload.kind !== 'tlsCertificate') return;
    // What a proxy reading the files at the moment of the push would get.
    seen.push({ serial: serialOf(s), fileChain: readFileSync(join(out, 'cert-chain.pem'), 'utf8'), sdsChain: s.payload.certificateChain });
  });
  await client.waitFor(SDS_DEFAULT, () => new Set(seen.map((x) => x.serial)).size >= 4, 20_000);
  const installed = events.map((e) => e.serial);
  const serials = [...new Set(seen.map((x) => x.serial))];
  assert.ok(serials.length >= 4);
  // The proxy saw every certificate the agent installed (the last one may still be on its way).
  const seenSerials = new Set(serials.map((x) => x.toUpperCase().replace(/^0+/, '')));
  for (const s of installed.slice(0, -1)) assert.ok(seenSerials.has(s.replace(/^0+/, '')), `SDS client saw ${s}`);
  for (const s of seen) assert.equal(s.fileChain, s.sdsChain, `files of ${s.serial} were in place before its push`);
  // Each renewal came before the certificate it replaced expired, and renewals are for the same identity.
  for (let i = 1; i < events.length; i++) {
    assert.ok(events[i]!.receivedAt.getTime() < events[i - 1]!.notAfter.getTime(), `renewal ${i} before expiry`);
    assert.equal(events[i]!.spiffeId, TOKENS.rot.identity);
    assert.equal(events[i]!.method, 'certificate', 'renewals use the current certificate');
  }
  await agent.stop();
  const lines = readFileSync(hookLog, 'utf8').trim().split('\n');
  const byHook = new Map(lines.map((l) => l.split(' ')).map(([reason, serial, version]) => [serial, { reason, version }]));
  for (const e of events) {
    assert.equal(byHook.get(e.serial)?.reason, 'certificate', `--on-rotate ran for ${e.serial}`);
  }
  // The hook saw the version folder of its own certificate (or a later one): files first, hook after.
  assert.ok(lines.every((l) => l.split(' ')[2]!.startsWith('..')));
});

test('a trust bundle change in --ca-root reaches the proxy over SDS and root-cert.pem without a restart', async () => {
  const dir = tempDir();
  const out = join(dir, 'out');
  const caRoot = join(dir, 'ca-root.pem');
  copyFileSync(ca.rootFile, caRoot);
  const agent = await startAgent(ca, { caRootFile: caRoot, bootstrapTokenFile: tokenFile(dir, TOKENS.trust.token), outDir: out, sdsUds: join(dir, 'sds.sock'), certTtlMs: 3_600_000 });
  agents.push(agent);
  const first = await agent.firstCertificate();
  const client = sdsClient(agent);
  await client.waitFor(SDS_ROOTCA);
  // A root rotation begins: the new root is added to the bundle.
  const next = await TestCA.root({ name: 'next mesh root' });
  writeFileSync(caRoot, readFileSync(ca.rootFile, 'utf8') + next.cert.pem);
  const roots = await client.waitFor(SDS_ROOTCA, (s) => (s.caCertificates?.length ?? 0) === 2, 10_000);
  assert.ok(roots.caCertificates!.some((c) => c.fingerprint256 === next.cert.fingerprint256));
  assert.equal(Certificate.parseAll(readFileSync(join(out, 'root-cert.pem'))).length, 2);
  // The certificate did not change; only the bundle did.
  assert.equal(serialOf(client.get(SDS_DEFAULT)!), Certificate.parse(readFileSync(join(out, 'cert-chain.pem'))).serial);
  assert.equal(agent.current?.leaf.serial, Certificate.parse(readFileSync(join(out, 'cert-chain.pem'))).serial);
  assert.equal(first.spiffeId, TOKENS.trust.identity);
});

test('two agents with different service accounts (JWT) give two workloads mutual TLS with each other\'s SPIFFE IDs checked', async () => {
  const ids = { a: `${TD}/ns/shop/sa/frontend`, b: `${TD}/ns/pay/sa/backend` };
  const mk = async (ns: string, sa: string) => {
    const dir = tempDir();
    const agent = await startAgent(ca, { tokenFile: tokenFile(dir, await ca.jwt.token(ns, sa)), sdsUds: join(dir, 'sds.sock'), certTtlMs: 600_000 });
    agents.push(agent);
    const c = sdsClient(agent);
    const tls = await c.waitFor(SDS_DEFAULT, () => true, 15_000);
    const roots = await c.waitFor(SDS_ROOTCA);
    if (tls.payload.kind !== 'tlsCertificate' || roots.payload.kind !== 'validationContext') throw new Error('wrong secret kinds');
    return { cert: tls.payload.certificateChain, key: tls.payload.privateKey, ca: roots.payload.trustedCa, method: (await agent.firstCertificate()).method };
  };
  const [a, b] = await Promise.all([mk('shop', 'frontend'), mk('pay', 'backend')]);
  assert.equal(a.method, 'token');
  const uriOf = (s: TLSSocket) => s.getPeerX509Certificate()?.subjectAltName ?? '';
  const server = tlsCreateServer({ cert: a.cert, key: a.key, ca: a.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (s) => {
    // The server authorizes the client by its SPIFFE ID, as an AuthorizationPolicy would.
    s.end(uriOf(s) === `URI:${ids.b}` ? `hello ${ids.b}` : 'denied');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as { port: number }).port;
    const reply = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, cert: b.cert, key: b.key, ca: b.ca, checkServerIdentity: () => undefined }, () => {
        // The client checks the server's SPIFFE ID (there is no DNS name in an SVID to check).
        if (uriOf(s) !== `URI:${ids.a}`) reject(new Error(`server is ${uriOf(s)}`));
      });
      let data = '';
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('end', () => resolve(data));
      s.on('error', reject);
    });
    assert.equal(reply, `hello ${ids.b}`);
    // A client without a certificate of this mesh is refused in the handshake.
    const other = await (await TestCA.root()).issueSvid(ids.b);
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, cert: other.chainPem, key: other.keyPem, ca: b.ca, checkServerIdentity: () => undefined }, () => s.once('data', resolve));
        s.on('error', reject);
        s.on('end', () => reject(new Error('closed')));
      }),
    );
  } finally {
    server.close();
  }
});

test('bad input: token file missing, out dir not writable, CA unreachable at start, a certificate for another identity', async () => {
  const dir = tempDir();
  await assert.rejects(startAgent(ca, { tokenFile: join(dir, 'no-such-token'), sdsUds: join(dir, 's1.sock') }), (e) => {
    assert.ok(isMeshError(e, ErrorCodes.FILE_READ), String(e));
    assert.match(e.message, /--token-file \S+no-such-token: cannot read the token: no such file/);
    return true;
  });
  writeFileSync(join(dir, 'a-file'), 'x');
  await assert.rejects(startAgent(ca, { bootstrapTokenFile: tokenFile(dir, TOKENS.bad.token), outDir: join(dir, 'a-file', 'out') }), (e) =>
    isMeshError(e, ErrorCodes.FILE_WRITE) && /--out-dir \S+a-file\/out: not writable/.test(e.message),
  );

  // Nothing listens there: the agent starts, says why it has no certificate, and keeps trying.
  const port = await freePort();
  const down = await startAgent(ca, { caAddress: `127.0.0.1:${port}`, bootstrapTokenFile: tokenFile(dir, TOKENS.bad.token), sdsUds: join(dir, 's2.sock'), adminListen: { host: '127.0.0.1', port: 0 } });
  agents.push(down);
  const f1 = await nextEvent<FailureEvent>(down, 'failure');
  const f2 = await nextEvent<FailureEvent>(down, 'failure');
  assert.equal(f1.error.code, ErrorCodes.UNAVAILABLE);
  assert.match(f1.error.message, new RegExp(`CA at 127\\.0\\.0\\.1:${port}`));
  assert.equal(f2.failures, f1.failures + 1);
  const h = await httpGet(down.addresses.admin!, '/healthz');
  assert.equal(h.status, 503);
  assert.match(h.body, /not ready: no certificate yet; last error: CA at 127\.0\.0\.1:\d+/);
  await down.stop();

  // The CA grants spiffe://…/sa/bad for this token; the agent was told to be sa/web: rejected, nothing served.
  const out = join(dir, 'out-bad');
  const wrong = await startAgent(ca, { bootstrapTokenFile: tokenFile(dir, TOKENS.bad.token), spiffeId: TOKENS.web.identity, outDir: out, sdsUds: join(dir, 's3.sock') });
  agents.push(wrong);
  const f = await nextEvent<FailureEvent>(wrong, 'failure');
  assert.equal(f.result, 'rejected');
  assert.equal(f.error.code, ErrorCodes.IDENTITY_MISMATCH);
  assert.match(f.error.message, /certificate rejected, not served: it is for spiffe:\/\/cluster\.local\/ns\/shop\/sa\/bad, but this agent is spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/);
  const fetched = await sdsClient(wrong).fetch([SDS_DEFAULT, SDS_ROOTCA]);
  assert.deepEqual(fetched.secrets.map((s) => s.name), [SDS_ROOTCA]);
  assert.equal(existsSync(join(out, 'cert-chain.pem')), false);
  await wrong.stop();
});
