// `meshcert serve` and `meshcert cert request` as a user runs them: separate processes (from the sources, through
// tsx, so no build is needed), talking over the network.
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { Certificate, validateChain } from '../../src/pki/index.js';
import { TestCA } from '../helpers/test-ca.js';
import { httpGet, tempDir } from './fixtures.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { spawnMeshcert, waitForOutput } from '../helpers/meshcert-process.js';


const waitFor = waitForOutput;

async function run(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const r = spawnMeshcert(args);
  const { code } = await r.exited;
  return { status: code, stdout: r.stdout(), stderr: r.stderr() };
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

test('meshcert serve --config: prints where it listens, serves, and exits 0 on SIGTERM', async () => {
  const dir = tempDir();
  const cfgFile = join(dir, 'serve.yaml');
  writeFileSync(
    cfgFile,
    stringify({
      trustDomain: 'example.org',
      grpc: { listen: '127.0.0.1:0', dnsNames: ['ca.example.org'] },
      http: { listen: '127.0.0.1:0' },
      auth: { clientCertificates: true },
    }),
  );
  const r = spawnMeshcert(['serve', '--data-dir', join(dir, 'data'), '--config', cfgFile, '--log-level', 'warn']);
  try {
    const grpc = await waitFor(r, /CA gRPC API \(istio\.v1\.auth\.IstioCertificateService\): (127\.0\.0\.1:\d+) \(TLS, server name ca\.example\.org\)/);
    const http = await waitFor(r, /health and metrics: http:\/\/(127\.0\.0\.1:\d+)\/healthz/);
    assert.notEqual(grpc[1], '127.0.0.1:0');
    assert.match(r.stdout(), /trust domain example\.org/);
    assert.match(r.stdout(), /created a new mesh CA/);
    // With --config no token is made: the hint lists the credentials to choose from.
    assert.match(r.stdout(), /meshcert cert request --ca-address 127\.0\.0\.1:\d+ --ca-root \S+root-cert\.pem --ca-server-name ca\.example\.org/);
    assert.match(r.stdout(), /--bootstrap-token-file FILE \| --token-file FILE \| --cert-chain/);
    const health = await httpGet(http[1]!, '/healthz');
    assert.equal(health.status, 200);
  } finally {
    r.child.kill('SIGTERM');
  }
  const { code } = await r.exited;
  assert.equal(code, 0, `exit ${code}\n${r.stdout()}\n${r.stderr()}`);
  assert.match(r.stdout(), /meshcert serve: stopped \(SIGTERM\)/);
});

test('meshcert serve with no --config on its default ports, then the printed `meshcert cert request` line gets a first certificate', async (t) => {
  if (!(await portFree(15012)) || !(await portFree(15014)) || !(await portFree(15016))) {
    t.skip(skipUnlessCi('127.0.0.1:15012, :15014 or :15016 is in use on this machine') || undefined);
    return;
  }
  const dir = tempDir();
  const dataDir = join(dir, 'data');
  const r = spawnMeshcert(['serve', '--data-dir', dataDir, '--log-level', 'warn']);
  try {
    await waitFor(r, /CA gRPC API \(istio\.v1\.auth\.IstioCertificateService\): 127\.0\.0\.1:15012 \(TLS, server name istiod\.istio-system\.svc\)/);
    await waitFor(r, /health and metrics: http:\/\/127\.0\.0\.1:15014\/healthz/);
    // The admin API is on by default, with a token made in the data dir, and the banner says how to revoke.
    await waitFor(r, /admin API: http:\/\/127\.0\.0\.1:15016 \(token in \S+admin-token, made now\)/);
    assert.equal(statSync(join(dataDir, 'admin-token')).mode & 0o777, 0o600);
    assert.match(r.stdout(), /meshcert cert revoke --server http:\/\/127\.0\.0\.1:15016 --token-file \S+admin-token SERIAL/);
    assert.match(r.stdout(), /OCSP responder: http:\/\/127\.0\.0\.1:15014\/ocsp/);
    const line = await waitFor(r, /^ {2}meshcert (cert request .*--bootstrap-token-file \S+ --out-dir \.\/workload)$/m);
    assert.match(r.stdout(), /for spiffe:\/\/cluster\.local\/ns\/default\/sa\/default, with the one-time bootstrap token/);
    const outDir = join(dir, 'workload');
    const args = line[1]!.replace('./workload', outDir).split(' ');
    const got = await run(args);
    assert.equal(got.status, 0, `${got.stdout}\n${got.stderr}`);
    assert.match(got.stdout, /identity: +spiffe:\/\/cluster\.local\/ns\/default\/sa\/default/);
    assert.equal(statSync(join(outDir, 'key.pem')).mode & 0o777, 0o600);
    const chain = Certificate.parseAll(readFileSync(join(outDir, 'cert-chain.pem')));
    const roots = Certificate.parseAll(readFileSync(join(outDir, 'root-cert.pem')));
    assert.deepEqual(
      roots.map((c) => c.fingerprint256),
      Certificate.parseAll(readFileSync(join(dataDir, 'root-cert.pem'))).map((c) => c.fingerprint256),
    );
    assert.ok(validateChain({ leaf: chain[0]!, intermediates: chain.slice(1), roots, purpose: 'client' }).ok);

    // The token was one-time: the same line again is refused, with the CA's reason and exit 1.
    const again = await run([...args.slice(0, -1), join(dir, 'again')]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already used.*\[MESH_ERR_UNAUTHENTICATED\]/);

    // Renewal with the certificate just received, as JSON.
    const renewed = await run([
      'cert', 'request', '--ca-address', '127.0.0.1:15012', '--ca-root', join(dataDir, 'root-cert.pem'),
      '--cert-chain', join(outDir, 'cert-chain.pem'), '--key', join(outDir, 'key.pem'), '--out-dir', join(dir, 'renewed'), '--json',
    ]);
    assert.equal(renewed.status, 0, renewed.stderr);
    const json = JSON.parse(renewed.stdout) as { identity: string; serial: string };
    assert.equal(json.identity, 'spiffe://cluster.local/ns/default/sa/default');
  } finally {
    r.child.kill('SIGINT');
  }
  const { code } = await r.exited;
  assert.equal(code, 0, r.stderr());
});

test('meshcert cert request: usage errors exit 2, an unreachable CA exits 1 naming the address', async () => {
  const dir = tempDir();
  const root = join(dir, 'root.pem');
  const token = join(dir, 'token');
  writeFileSync(token, 'abc\n');
  // Any certificate will do for the trust bundle here.
  writeFileSync(root, (await TestCA.root()).cert.pem);
  const base = ['cert', 'request', '--ca-address', '127.0.0.1:1', '--ca-root', root, '--out-dir', join(dir, 'out')];
  const none = await run(base);
  assert.equal(none.status, 2, none.stderr);
  assert.match(none.stderr, /exactly one credential/);
  const two = await run([...base, '--token-file', token, '--bootstrap-token-file', token]);
  assert.equal(two.status, 2);
  const half = await run([...base, '--cert-chain', root]);
  assert.equal(half.status, 2);
  assert.match(half.stderr, /--cert-chain and --key go together/);
  const down = await run([...base, '--token-file', token]);
  assert.equal(down.status, 1, down.stderr);
  assert.match(down.stderr, /CA at 127\.0\.0\.1:1: .*\(gRPC UNAVAILABLE\) \[MESH_ERR_UNAVAILABLE\]/);
});
