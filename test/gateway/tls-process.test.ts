// `meshcert gateway` as a real process (bin/meshcert, needs `npm run build`): a Gateway + VirtualService file, a
// secrets folder, a Node upstream, hit with curl over HTTP/1.1 and HTTP/2 with a client certificate (MUTUAL): the
// upstream gets Envoy's x-forwarded-client-cert (the client's own copy replaced), the access log has the request,
// and SIGTERM stops it with exit 0.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../../bench/free-port.js';
import { MESHCERT_BIN } from '../helpers/cli.js';
import { childEnv } from '../helpers/meshcert-process.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { run } from '../helpers/tools.js';
import { manifestYaml } from '../sds/secret-fixtures.js';
import { runAsync } from './tls-harness.js';

const skip = skipUnlessCi(run('sh', ['-c', 'command -v curl']).status !== 0 && 'curl is not installed');

let tmp: ReturnType<typeof tempDir>;
let root: TestCA;
let client: IssuedLeaf;
let upstream: Server;
const seen: IncomingHttpHeaders[] = [];
let child: ChildProcess;
let out = '';
let err = '';
let port: number;
let adminPort: number;

before(async () => {
  if (skip) return;
  tmp = tempDir('gw-bin-');
  root = await TestCA.root({ name: 'process root' });
  const ca = await root.child({ name: 'process CA' });
  const server = await ca.issueServer(['app.example.test']);
  client = await ca.issueSvid('spiffe://cluster.local/ns/shop/sa/cart');
  upstream = createServer((req, res) => {
    seen.push(req.headers);
    res.end(`upstream: ${req.method} ${req.url} via ${req.httpVersion}\n`);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const upstreamPort = (upstream.address() as { port: number }).port;
  port = await freePort();
  adminPort = await freePort();
  mkdirSync(join(tmp.dir, 'secrets'));
  writeFileSync(join(tmp.dir, 'secrets', 'app.yaml'), manifestYaml({ name: 'app-cred', data: { 'tls.crt': server.chainPem, 'tls.key': server.keyPem, 'ca.crt': root.cert.pem } }));
  tmp.file('root.pem', root.cert.pem);
  tmp.file('client.pem', client.chainPem);
  tmp.file('client.key', client.keyPem);
  const file = tmp.file(
    'gateway.yaml',
    [
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'Gateway',
        metadata: { name: 'edge' },
        spec: { servers: [{ port: { number: port, name: 'https', protocol: 'HTTPS' }, bind: '127.0.0.1', hosts: ['app.example.test'], tls: { mode: 'MUTUAL', credentialName: 'app-cred' } }] },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'app' },
        spec: { hosts: ['app.example.test'], gateways: ['edge'], http: [{ match: [{ uri: { prefix: '/' } }], route: [{ destination: { host: 'app-backend', port: { number: 8080 } } }] }] },
      },
      { apiVersion: 'meshcert.dev/v1', kind: 'GatewayOptions', spec: { upstreams: { 'app-backend': `127.0.0.1:${upstreamPort}` } } },
    ]
      .map((d) => stringify(d))
      .join('---\n'),
  );
  child = spawn(process.execPath, [MESHCERT_BIN, 'gateway', '-f', file, '--secrets', join(tmp.dir, 'secrets'), '--admin-listen', `127.0.0.1:${adminPort}`], {
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!/admin: http/.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`meshcert gateway did not start\n${out}\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  upstream?.close();
  tmp?.cleanup();
});

const curl = (extra: string[]) =>
  runAsync('curl', [
    '-sS',
    '--cacert', join(tmp.dir, 'root.pem'),
    '--cert', join(tmp.dir, 'client.pem'),
    '--key', join(tmp.dir, 'client.key'),
    '--resolve', `app.example.test:${port}:127.0.0.1`,
    ...extra,
    `https://app.example.test:${port}/pay?x=1`,
  ]);

describe('meshcert gateway (the built binary)', { skip }, () => {
  test('curl with a client certificate over HTTP/1.1: the upstream gets XFCC, not the client\'s forged one', async () => {
    const r = await curl(['--http1.1', '-H', 'x-forwarded-client-cert: By=forged']);
    assert.equal(r.status, 0, r.stderr + err);
    assert.match(r.stdout, /upstream: GET \/pay\?x=1/);
    const xfcc = String(seen.at(-1)!['x-forwarded-client-cert']);
    assert.match(xfcc, /URI=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart/);
    assert.match(xfcc, /Hash=[0-9a-f]{64}/);
    assert.doesNotMatch(xfcc, /forged/);
  });

  test('curl --http2 goes through too; without a client certificate it is refused', async () => {
    const r = await curl(['--http2']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /upstream: GET \/pay/);
    const anon = await runAsync('curl', ['-sS', '--cacert', join(tmp.dir, 'root.pem'), '--resolve', `app.example.test:${port}:127.0.0.1`, `https://app.example.test:${port}/`]);
    assert.notEqual(anon.status, 0);
  });

  test('admin /metrics and the access log; SIGTERM exits 0', async () => {
    const m = await runAsync('curl', ['-sS', `http://127.0.0.1:${adminPort}/metrics`]);
    assert.match(m.stdout, /meshcert_gateway_handshakes_total\{port="\d+",result="success"\} 2/);
    assert.match(m.stdout, /reason="no_client_certificate"\} 1/);
    const lines = err.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.some((l) => l.type === 'request' && l.path === '/pay?x=1'), err);
    assert.ok(lines.some((l) => l.type === 'connection' && l.reason === 'no_client_certificate'), err);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(out, /meshcert gateway: stopped \(SIGTERM\)/);
  });
});

describe('meshcert gateway: bad input exits with a clear error', () => {
  test('no certificate source, both sources, a broken file, a busy port', async () => {
    const { meshcert } = await import('../helpers/cli.js');
    const t = tempDir('gw-bin-bad-');
    try {
      const good = t.file('gw.yaml', stringify({ apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'e' }, spec: { servers: [{ port: { number: 1, protocol: 'HTTP' }, hosts: ['*'] }] } }));
      const none = await meshcert(['gateway', '-f', good]);
      assert.equal(none.status, 2, none.stderr);
      assert.match(none.stderr, /--secrets DIR or --sds/);
      const both = await meshcert(['gateway', '-f', good, '--secrets', t.dir, '--sds', 'unix:/x']);
      assert.equal(both.status, 2);
      const tcpNoCa = await meshcert(['gateway', '-f', good, '--sds', '127.0.0.1:15011']);
      assert.equal(tcpNoCa.status, 2);
      assert.match(tcpNoCa.stderr, /--sds-ca/);
      const badPolicy = await meshcert(['gateway', '-f', good, '--sds', 'unix:/x', '--policy', 'app-cred=SOMETIMES']);
      assert.equal(badPolicy.status, 2, badPolicy.stderr);
      assert.match(badPolicy.stderr, /--policy app-cred/);
      const broken = t.file('broken.yaml', stringify({ apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'e' }, spec: { servers: [{ port: { number: 8443, protocol: 'HTTPS' }, hosts: ['a.test'], tls: { mode: 'SIMPLE', credentialName: 'c', minProtocolVersion: 'TLSV9' } }] } }));
      const b = await meshcert(['gateway', '-f', broken, '--secrets', t.dir]);
      assert.equal(b.status, 1);
      assert.match(b.stderr, /spec\.servers\[0\]\.tls\.minProtocolVersion/);
      assert.match(b.stderr, /MESH_ERR_CONFIG/);
      // A port another process holds: a clear error naming the address, exit 1.
      const holder = createServer();
      await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
      const busy = (holder.address() as { port: number }).port;
      const f = t.file('busy.yaml', stringify({ apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'e' }, spec: { servers: [{ port: { number: busy, protocol: 'HTTP' }, bind: '127.0.0.1', hosts: ['*'] }] } }));
      const r = await meshcert(['gateway', '-f', f, '--secrets', t.dir]);
      holder.close();
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy} for e/0: EADDRINUSE`));
    } finally {
      t.cleanup();
    }
  });
});
