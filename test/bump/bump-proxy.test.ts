import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { accessRule, BumpProxy, headerFilter, initBumpCa, type BumpCa } from '../../src/bump/index.js';
import { Certificate } from '../../src/pki/index.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { exec, makePki, startUpstream, tempDir, type Pki, type Upstream } from './bump-fixture.js';

const haveCurl = (await exec('curl', ['--version'])).code === 0;
const haveOpenssl = (await exec('openssl', ['version'])).code === 0;
const skip = skipUnlessCi(!haveCurl || !haveOpenssl ? 'curl and openssl are needed' : false);

/** The first certificate openssl s_client printed, parsed. */
function firstCert(sClientOutput: string): Certificate {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(sClientOutput);
  assert.ok(m, `no certificate in the s_client output:\n${sClientOutput.slice(0, 2000)}`);
  return Certificate.parse(m[0]);
}

describe('meshcert bump: explicit and transparent proxy with real curl and openssl', { skip }, () => {
  let pki: Pki;
  let tmp: ReturnType<typeof tempDir>;
  let ca: BumpCa;
  let caFile: string;
  let good: Upstream;
  let expired: Upstream;
  let noSan: Upstream;
  let proxy: BumpProxy;
  let refusing: BumpProxy;
  let deadPort: number;
  let auditFile: string;
  let proxyUrl: string;

  before(async () => {
    pki = await makePki();
    tmp = tempDir('meshcert-bump-');
    ca = await initBumpCa(`${tmp.dir}/ca`);
    caFile = `${tmp.dir}/ca/ca-cert.pem`;
    good = await startUpstream(pki.good);
    expired = await startUpstream(pki.expired);
    noSan = await startUpstream(pki.noSan);
    // A port nobody listens on: an upstream that does not answer.
    const probe = createNetServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    deadPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    auditFile = `${tmp.dir}/audit.jsonl`;
    const resolve = {
      'upstream.test:443': `127.0.0.1:${good.port}`,
      'spliced.upstream.test:443': `127.0.0.1:${good.port}`,
      'expired.test:443': `127.0.0.1:${expired.port}`,
      'nosan.test:443': `127.0.0.1:${noSan.port}`,
      'dead.test:443': `127.0.0.1:${deadPort}`,
    };
    proxy = await BumpProxy.start({
      listen: { host: '127.0.0.1', port: 0 },
      transparentListen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      ca,
      upstream: { caPem: pki.publicCa.cert.pem, resolve },
      splice: { splice: ['*.upstream.test'] },
      filters: [
        accessRule('deny', { host: 'upstream.test', pathPrefix: '/admin' }, 'admin pages are off limits'),
        accessRule('deny', { method: 'DELETE' }),
        headerFilter('request', 'add', 'x-bumped-by', 'meshcert'),
        headerFilter('request', 'remove', 'x-remove-me'),
        headerFilter('response', 'remove', 'x-secret'),
        headerFilter('response', 'add', 'x-via-bump', '1'),
      ],
      auditLog: auditFile,
      mimic: { keyPoolSize: 2, prefillKeyTypes: ['ec-p256'] },
    });
    proxyUrl = `http://${proxy.addresses.listen}`;
    refusing = await BumpProxy.start({
      listen: { host: '127.0.0.1', port: 0 },
      ca,
      upstream: { caPem: pki.publicCa.cert.pem, resolve, onInvalidCertificate: 'refuse' },
      mimic: { keyPoolSize: 1, prefillKeyTypes: ['ec-p256'] },
    });
  });

  after(async () => {
    await proxy?.stop();
    await refusing?.stop();
    await Promise.all([good?.close(), expired?.close(), noSan?.close()]);
    tmp?.cleanup();
  });

  it('bump ca init writes the key 0600', () => {
    assert.equal(statSync(`${tmp.dir}/ca/ca-key.pem`).mode & 0o777, 0o600);
    assert.ok(ca.cert.isCA);
  });

  it('curl -x … --cacert bump-ca.pem https://upstream.test/ succeeds; the filter header reaches the upstream; over HTTP/2', async () => {
    const r = await exec('curl', ['-sS', '--http2', '-x', proxyUrl, '--cacert', caFile, '-H', 'x-remove-me: 1', '-D', '-', 'https://upstream.test/hello?x=1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/2 200/m);
    assert.match(r.stdout, /^x-via-bump: 1/m);
    assert.doesNotMatch(r.stdout, /x-secret/i, 'a response header removed by a filter');
    const body = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { headers: Record<string, string>; path: string; httpVersion: string };
    assert.equal(body.headers['x-bumped-by'], 'meshcert');
    assert.equal(body.headers['x-remove-me'], undefined);
    assert.equal(body.path, '/hello?x=1');
    assert.equal(body.httpVersion, '2.0', 'ALPN h2 mirrored to the upstream');
  });

  it('HTTP/1.1 clients get HTTP/1.1 end to end, kept alive across requests', async () => {
    const r = await exec('curl', ['-sS', '--http1.1', '-x', proxyUrl, '--cacert', caFile, '-w', '\n%{http_version} %{num_connects}\n', 'https://upstream.test/a', 'https://upstream.test/b']);
    assert.equal(r.code, 0, r.stderr);
    const bodies = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { path: string; httpVersion: string; headers: Record<string, string> });
    assert.deepEqual(bodies.map((b) => b.path), ['/a', '/b']);
    assert.ok(bodies.every((b) => b.httpVersion === '1.1' && b.headers['x-bumped-by'] === 'meshcert'));
    assert.match(r.stdout, /^1\.1 0$/m, 'the second request reused the bumped connection');
  });

  it('when the upstream closes a kept-alive connection, the next request reconnects (verified again) on the same client connection', async () => {
    const r = await exec('curl', ['-sS', '--http1.1', '-x', proxyUrl, '--cacert', caFile, '-w', '\n%{http_code} %{num_connects}\n', 'https://upstream.test/close-1', 'https://upstream.test/after-close']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"path":"\/close-1"[\s\S]*\n200 1\n[\s\S]*"path":"\/after-close"[\s\S]*\n200 0\n/);
  });

  it('a ClientHello without SNI after CONNECT is bumped for the CONNECT host', async () => {
    const r = await exec('openssl', ['s_client', '-proxy', proxy.addresses.listen!, '-connect', 'upstream.test:443', '-noservername', '-CAfile', caFile, '-verify_hostname', 'upstream.test'], { input: '' });
    assert.match(r.stdout, /Verify return code: 0 \(ok\)/, r.stdout + r.stderr);
    assert.deepEqual(firstCert(r.stdout).sans.dns, ['upstream.test', 'www.upstream.test']);
  });

  it('request bodies pass through, over HTTP/2 and HTTP/1.1', async () => {
    for (const v of ['--http2', '--http1.1']) {
      const r = await exec('curl', ['-sS', v, '-x', proxyUrl, '--cacert', caFile, '--data-binary', 'hello body', 'https://upstream.test/post']);
      assert.equal(r.code, 0, r.stderr);
      const echo = JSON.parse(r.stdout) as { method: string; body: string };
      assert.equal(echo.method, 'POST');
      assert.equal(echo.body, 'hello body');
    }
  });

  it('openssl s_client -proxy sees a mimic: subject and SANs copied, issued by the bumping CA', async () => {
    const r = await exec('openssl', ['s_client', '-proxy', proxy.addresses.listen!, '-connect', 'upstream.test:443', '-servername', 'upstream.test', '-CAfile', caFile, '-showcerts'], {
      input: '',
    });
    assert.match(r.stdout, /Verify return code: 0 \(ok\)/, r.stdout + r.stderr);
    const mimic = firstCert(r.stdout);
    const real = pki.good.cert;
    assert.equal(mimic.subject, real.subject);
    assert.deepEqual(mimic.sans, real.sans);
    assert.equal(mimic.issuer, ca.cert.subject);
    assert.ok(mimic.isIssuedBy(ca.cert));
    assert.equal(mimic.isCA, false);
    assert.deepEqual(mimic.extKeyUsageNames, ['serverAuth']);
    assert.equal(mimic.key.name, real.key.name);
    assert.ok(mimic.notAfter.getTime() - mimic.notBefore.getTime() <= 7 * 86_400_000);
    assert.ok(mimic.notAfter <= real.notAfter);
  });

  it('a deny rule answers 403 with the reason; the upstream never sees the request', async () => {
    const before = good.seen.length;
    const r = await exec('curl', ['-sS', '-x', proxyUrl, '--cacert', caFile, '-w', '\n%{http_code}', 'https://upstream.test/admin/users']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /admin pages are off limits/);
    assert.match(r.stdout, /\n403$/);
    const del = await exec('curl', ['-sS', '-X', 'DELETE', '-x', proxyUrl, '--cacert', caFile, '-o', '/dev/null', '-w', '%{http_code}', 'https://upstream.test/x']);
    assert.equal(del.stdout, '403');
    assert.equal(good.seen.length, before);
  });

  it('writes one audit JSON line per request (client, SNI, method, URL, status, bytes, mimic serial)', async () => {
    await exec('curl', ['-sS', '-x', proxyUrl, '--cacert', caFile, '-o', '/dev/null', 'https://upstream.test/audited']);
    // The line is written when the response closes; give the write stream a moment.
    let line: Record<string, unknown> | undefined;
    for (let i = 0; i < 50 && !line; i++) {
      const lines = readFileSync(auditFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      line = lines.find((l) => l.url === 'https://upstream.test/audited');
      if (!line) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(line, 'audit line written');
    assert.equal(line.event, 'request');
    assert.equal(line.sni, 'upstream.test');
    assert.equal(line.method, 'GET');
    assert.equal(line.status, 200);
    assert.ok(typeof line.bytes === 'number' && line.bytes > 0);
    assert.match(String(line.mimicSerial), /^[0-9a-f]+$/);
    assert.match(String(line.client), /^127\.0\.0\.1:\d+$/);
    assert.ok(!Number.isNaN(Date.parse(String(line.time))));
  });

  it('an upstream with an expired certificate: curl fails with a certificate error (mimic signed by an untrusted CA)', async () => {
    const r = await exec('curl', ['-sS', '-x', proxyUrl, '--cacert', caFile, 'https://expired.test/']);
    assert.equal(r.code, 60, `curl exit 60 (peer certificate cannot be authenticated): ${r.stderr}`);
    assert.match(r.stderr, /certificate/i);
  });

  it('refuse mode closes the connection instead of mimicking an invalid certificate', async () => {
    const r = await exec('curl', ['-sS', '-x', `http://${refusing.addresses.listen}`, '--cacert', caFile, 'https://expired.test/']);
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stdout, /expired/);
  });

  it('an upstream certificate without SAN is never mimicked as valid', async () => {
    const r = await exec('curl', ['-sS', '-x', proxyUrl, '--cacert', caFile, 'https://nosan.test/']);
    assert.equal(r.code, 60, r.stderr);
  });

  it('a spliced host shows the upstream its own certificate', async () => {
    const r = await exec('openssl', ['s_client', '-proxy', proxy.addresses.listen!, '-connect', 'spliced.upstream.test:443', '-servername', 'spliced.upstream.test', '-showcerts'], {
      input: '',
    });
    const seen = firstCert(r.stdout);
    assert.ok(seen.der.equals(pki.good.cert.der), 'the very certificate of the upstream');
  });

  it('transparent mode: openssl s_client -servername gets a mimic that verifies against the bumping CA', async () => {
    const [host, port] = proxy.addresses.transparent!.split(':');
    const r = await exec('openssl', ['s_client', '-connect', `${host}:${port}`, '-servername', 'upstream.test', '-CAfile', caFile, '-alpn', 'http/1.1', '-ign_eof'], {
      input: 'GET /transparent HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n',
    });
    assert.match(r.stdout, /Verify return code: 0 \(ok\)/, r.stdout + r.stderr);
    assert.ok(firstCert(`${r.stdout}`) || true);
    assert.match(r.stdout, /"path":"\/transparent"/);
    assert.match(r.stdout, /"x-bumped-by":"meshcert"/);
  });

  it('bad input is an error for that connection only: garbage, no SNI, an upstream that does not answer', async () => {
    const [host, port] = proxy.addresses.transparent!.split(':');
    // Garbage instead of a ClientHello: closed.
    const closed = await new Promise<boolean>((resolve) => {
      const s = netConnect(Number(port), host!, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('error', () => resolve(true));
      s.on('close', () => resolve(true));
      s.resume();
    });
    assert.ok(closed);
    // A ClientHello without SNI on the transparent port: refused.
    const noSni = await exec('openssl', ['s_client', '-connect', `${host}:${port}`, '-noservername'], { input: '' });
    assert.doesNotMatch(noSni.stdout, /BEGIN CERTIFICATE/);
    // An upstream that does not answer.
    const dead = await exec('curl', ['-sS', '-x', proxyUrl, '--cacert', caFile, 'https://dead.test/']);
    assert.notEqual(dead.code, 0);
    // A CONNECT without a port.
    const [phost, pport] = proxy.addresses.listen!.split(':');
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      const s = netConnect(Number(pport), phost!, () => s.write('CONNECT upstream.test HTTP/1.1\r\nHost: upstream.test\r\n\r\n'));
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('close', () => resolve(text));
      s.on('error', () => resolve(text));
    });
    assert.match(answer, /^HTTP\/1\.1 400 [\s\S]*CONNECT needs host:port/);
    // The proxy still serves everyone else.
    const ok = await exec('curl', ['-sS', '-x', proxyUrl, '--cacert', caFile, '-o', '/dev/null', '-w', '%{http_code}', 'https://upstream.test/still-up']);
    assert.equal(ok.stdout, '200');
    const metrics = await (await fetch(`http://${proxy.addresses.admin}/metrics`)).text();
    assert.match(metrics, /meshcert_bump_client_errors_total\{reason="client-hello"\} [1-9]/);
    assert.match(metrics, /meshcert_bump_client_errors_total\{reason="no-sni"\} [1-9]/);
    assert.match(metrics, /meshcert_bump_upstream_errors_total\{stage="handshake"\} [1-9]/);
  });

  it('/metrics counts bumped and spliced connections, cache hits and misses, verification failures; /healthz is ok', async () => {
    const health = await fetch(`http://${proxy.addresses.admin}/healthz`);
    assert.equal(health.status, 200);
    const metrics = await (await fetch(`http://${proxy.addresses.admin}/metrics`)).text();
    assert.match(metrics, /meshcert_bump_connections_total\{mode="bumped",result="ok"\} [1-9]/);
    assert.match(metrics, /meshcert_bump_connections_total\{mode="spliced",result="ok"\} [1-9]/);
    assert.match(metrics, /meshcert_bump_mimic_cache_total\{result="hit"\} [1-9]/);
    assert.match(metrics, /meshcert_bump_mimic_cache_total\{result="miss"\} [1-9]/);
    assert.match(metrics, /meshcert_bump_upstream_verify_failures_total\{reason="expired"\} [1-9]/);
    assert.match(metrics, /meshcert_bump_mint_seconds_count\{key_type="ec-p256"\} [1-9]/);
    // Connections to a host verified moments ago skip their own upstream handshake (pooled, verified connections).
    assert.match(metrics, /meshcert_bump_upstream_handshakes_total\{result="reused"\} [1-9]/);
    assert.match(metrics, /meshcert_bump_upstream_handshakes_total\{result="new"\} [1-9]/);
  });

  it('WebSocket (HTTP/1.1 Upgrade) over a bumped connection: filtered like a request, then spliced to the upstream on 101', async () => {
    const https = await import('node:https');
    const seenHeaders: Record<string, string | string[] | undefined>[] = [];
    const server = https.createServer({ key: pki.good.keyPem, cert: pki.good.chainPem }, (_req, res) => res.end('plain'));
    server.on('upgrade', (req, sock, head) => {
      seenHeaders.push(req.headers);
      if (req.url === '/ws/declined') {
        sock.end('HTTP/1.1 426 Upgrade Required\r\ncontent-type: text/plain\r\ncontent-length: 14\r\n\r\nno websockets\n');
        return;
      }
      sock.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
      if (head.length) sock.write(head.toString().toUpperCase());
      sock.on('data', (c: Buffer) => sock.write(c.toString().toUpperCase()));
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const wsProxy = await BumpProxy.start({
      listen: { host: '127.0.0.1', port: 0 },
      ca,
      upstream: { caPem: pki.publicCa.cert.pem, resolve: { 'upstream.test:443': `127.0.0.1:${(server.address() as AddressInfo).port}` } },
      filters: [accessRule('deny', { pathPrefix: '/admin' }, 'no admin sockets'), headerFilter('request', 'add', 'x-bumped-by', 'meshcert')],
      mimic: { keyPoolSize: 1, prefillKeyTypes: ['ec-p256'] },
    });
    const tls = await import('node:tls');
    // A raw client: CONNECT, TLS trusting the bumping CA, then the Upgrade request and bytes both ways.
    const open = async (path: string): Promise<{ head: string; socket: import('node:tls').TLSSocket }> => {
      const [host, port] = wsProxy.addresses.listen!.split(':');
      const raw = netConnect(Number(port), host!);
      await new Promise((r) => raw.once('connect', r));
      raw.write('CONNECT upstream.test:443 HTTP/1.1\r\nhost: upstream.test:443\r\n\r\n');
      const connected = await new Promise<string>((r) => raw.once('data', (d: Buffer) => r(d.toString())));
      assert.match(connected, /^HTTP\/1\.1 200/);
      const socket = tls.connect({ socket: raw, servername: 'upstream.test', ca: readFileSync(caFile, 'utf8'), ALPNProtocols: ['http/1.1'] });
      await new Promise((r, j) => socket.once('secureConnect', r).once('error', j));
      socket.write(`GET ${path} HTTP/1.1\r\nhost: upstream.test\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      let head = '';
      await new Promise<void>((r) => {
        const onData = (d: Buffer): void => {
          head += d.toString();
          if (head.includes('\r\n\r\n')) {
            socket.off('data', onData);
            r();
          }
        };
        socket.on('data', onData);
      });
      return { head, socket };
    };
    try {
      const ok = await open('/ws/chat');
      assert.match(ok.head, /^HTTP\/1\.1 101 /);
      ok.socket.write('hello through the bump');
      const echoed = await new Promise<string>((r) => ok.socket.once('data', (d: Buffer) => r(d.toString())));
      assert.equal(echoed, 'HELLO THROUGH THE BUMP');
      assert.equal(seenHeaders[0]?.['x-bumped-by'], 'meshcert', 'request filters applied to the Upgrade request');
      assert.equal(seenHeaders[0]?.upgrade, 'websocket');
      ok.socket.destroy();
      const denied = await open('/admin/socket');
      assert.match(denied.head, /^HTTP\/1\.1 403 /);
      assert.match(denied.head, /no admin sockets/);
      denied.socket.destroy();
      assert.equal(seenHeaders.length, 1, 'the denied Upgrade never reached the upstream');
      // The upstream declines: its answer reaches the client as it came, and the connection closes after it.
      const declined = await open('/ws/declined');
      let rest = declined.head;
      await new Promise<void>((r) => {
        declined.socket.on('data', (d: Buffer) => (rest += d.toString()));
        declined.socket.once('close', () => r());
      });
      assert.match(rest, /^HTTP\/1\.1 426 Upgrade Required\r\n/);
      assert.match(rest, /connection: close/i);
      assert.match(rest, /no websockets\n$/);
    } finally {
      await wsProxy.stop();
      server.close();
    }
  });

  it('the client gets the protocol the upstream chose: h2 offered, an HTTP/1.1-only upstream answers HTTP/1.1', async () => {
    const https = await import('node:https');
    const server = https.createServer({ key: pki.good.keyPem, cert: pki.good.chainPem }, (req, res) => res.end(`h1 upstream saw HTTP/${req.httpVersion}`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const h1only = await BumpProxy.start({
      listen: { host: '127.0.0.1', port: 0 },
      ca,
      upstream: { caPem: pki.publicCa.cert.pem, resolve: { 'upstream.test:443': `127.0.0.1:${(server.address() as AddressInfo).port}` } },
      mimic: { keyPoolSize: 1, prefillKeyTypes: ['ec-p256'] },
    });
    try {
      const r = await exec('curl', ['-sS', '--http2', '-x', `http://${h1only.addresses.listen}`, '--cacert', caFile, '-w', '\n%{http_version}', 'https://upstream.test/']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'h1 upstream saw HTTP/1.1\n1.1');
    } finally {
      await h1only.stop();
      server.close();
    }
  });

  it('plain-HTTP forward proxying goes through the filters too', async () => {
    const http = await import('node:http');
    const seen: Record<string, unknown>[] = [];
    const server = http.createServer((req, res) => {
      seen.push({ url: req.url, headers: req.headers });
      res.end('plain ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const r = await exec('curl', ['-sS', '-x', proxyUrl, `http://127.0.0.1:${port}/p?q=1`]);
      assert.equal(r.stdout, 'plain ok');
      assert.equal(seen[0]!.url, '/p?q=1');
      assert.equal((seen[0]!.headers as Record<string, string>)['x-bumped-by'], 'meshcert');
      const denied = await exec('curl', ['-sS', '-X', 'DELETE', '-x', proxyUrl, '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${port}/`]);
      assert.equal(denied.stdout, '403');
    } finally {
      server.close();
    }
  });
});
