import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  closeServer,
  connectH2,
  deadPort,
  edgeGateway,
  edgeVirtualService,
  h1,
  h2,
  logFor,
  makePki,
  startStandIn,
  type Pki,
  type StandIn,
} from './http-harness.js';

// VirtualService http[].retries applied by the gateway with Envoy's semantics: which failures and responses are
// tried again (retryOn), how many times (attempts), the per-try timeout, the request body sent again, and the last
// answer passed through when the attempts are spent.

/** An upstream that fails the first `failures` requests of each path in the way the path names, then echoes. */
async function flakyUpstream(failures: number): Promise<{ port: number; tries: Map<string, { n: number; bodies: string[] }>; close(): Promise<void> }> {
  const tries = new Map<string, { n: number; bodies: string[] }>();
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const t = tries.get(path) ?? { n: 0, bodies: [] };
    tries.set(path, t);
    t.n++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      t.bodies.push(Buffer.concat(chunks).toString());
      if (t.n <= failures) {
        if (path.startsWith('/reset')) return req.socket.resetAndDestroy();
        if (path.startsWith('/hang')) return; // never answers this try
        const status = path.startsWith('/conflict') ? 409 : path.startsWith('/bad-gateway') ? 502 : 503;
        res.writeHead(status, { 'content-type': 'text/plain', 'x-try': String(t.n) }).end(`failure ${t.n}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'x-try': String(t.n) }).end(`ok on try ${t.n}: ${Buffer.concat(chunks).toString()}`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, tries, close: () => closeServer(server) };
}

/** A cleartext HTTP/2 gRPC-ish upstream: the first call per path is a trailers-only UNAVAILABLE, then a normal answer. */
async function flakyGrpcUpstream(): Promise<{ port: number; calls: Map<string, number>; bodies: Buffer[]; close(): Promise<void> }> {
  const calls = new Map<string, number>();
  const bodies: Buffer[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    const n = (calls.get(path) ?? 0) + 1;
    calls.set(path, n);
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      bodies.push(Buffer.concat(chunks));
      if (n === 1) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'try again' }, { endStream: true });
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.concat(chunks));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, calls, bodies, close: () => closeServer(server) };
}

describe('HttpProxy retries (VirtualService http[].retries)', () => {
  let pki: Pki;
  let flaky: Awaited<ReturnType<typeof flakyUpstream>>;
  let grpc: Awaited<ReturnType<typeof flakyGrpcUpstream>>;
  let gw: StandIn;

  before(async () => {
    pki = await makePki();
    flaky = await flakyUpstream(1);
    grpc = await flakyGrpcUpstream();
    const dead = await deadPort();
    const route = (prefix: string, host: string, retries?: string) => `
  - match: [{ uri: { prefix: ${prefix} } }]${retries ? `\n    retries: ${retries}` : ''}
    route: [{ destination: { host: ${host} } }]`;
    const yaml = `${edgeGateway()}${edgeVirtualService()}${route('/503', 'flaky', '{ attempts: 2 }')}${route('/no-retries', 'flaky')}${route(
      '/conflict',
      'flaky',
      '{ attempts: 2, retryOn: "retriable-4xx" }',
    )}${route('/bad-gateway', 'flaky', '{ attempts: 1, retryOn: "503" }')}${route('/reset', 'flaky', '{ attempts: 2, retryOn: reset }')}${route(
      '/hang',
      'flaky',
      '{ attempts: 1, perTryTimeout: 200ms, retryOn: gateway-error }',
    )}${route('/dead', 'dead', '{ attempts: 2, retryOn: connect-failure }')}${route('/grpc.Echo', 'grpc', '{ attempts: 2, retryOn: unavailable }')}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: grpc }
spec:
  host: grpc
  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: UPGRADE } } }
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams:
    flaky: 127.0.0.1:${flaky.port}
    grpc: 127.0.0.1:${grpc.port}
    dead: 127.0.0.1:${dead}
`;
    gw = await startStandIn(pki, yaml);
  });

  after(async () => {
    await gw?.close();
    await flaky?.close();
    await grpc?.close();
  });

  const metric = async (reason: string): Promise<number> => {
    const text = await gw.registry.metrics();
    const m = new RegExp(`meshcert_gateway_http_upstream_retries_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
    return m ? Number(m[1]) : 0;
  };

  it('a 503 is tried again (Istio default retryOn: retriable-status-codes = 503) and the client sees the 200; the body is sent again', async () => {
    const r = await h1(gw.port, pki, { path: '/503/post', method: 'POST', body: 'the payload', headers: { 'content-type': 'text/plain' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'ok on try 2: the payload');
    assert.deepEqual(flaky.tries.get('/503/post')?.bodies, ['the payload', 'the payload']);
    const log = await logFor(gw, (l) => l.path === '/503/post');
    assert.equal(log?.retries, 1);
    assert.ok((await metric('503')) >= 1);
  });

  it('without retries the first answer stands', async () => {
    const r = await h1(gw.port, pki, { path: '/no-retries/x' });
    assert.equal(r.status, 503);
    assert.equal(flaky.tries.get('/no-retries/x')?.n, 1);
  });

  it('retryOn chooses: retriable-4xx retries a 409; "503" does not retry a 502, which is passed through as the upstream sent it', async () => {
    const c = await h1(gw.port, pki, { path: '/conflict/a' });
    assert.equal(c.status, 200);
    assert.equal(c.headers['x-try'], '2');
    const b = await h1(gw.port, pki, { path: '/bad-gateway/a' });
    assert.equal(b.status, 502);
    assert.equal(b.body, 'failure 1\n', 'the upstream response, not a local reply');
    assert.equal(b.headers['x-meshcert-error'], undefined);
    assert.equal(flaky.tries.get('/bad-gateway/a')?.n, 1);
  });

  it('a reset before the response is tried again on a new connection', async () => {
    const r = await h1(gw.port, pki, { path: '/reset/a' });
    assert.equal(r.status, 200, r.body);
    assert.equal(flaky.tries.get('/reset/a')?.n, 2);
    // On a kept-alive connection the gateway's own rule (a reused connection reset: send once more) may be the one
    // that retried; either way it is counted.
    assert.ok((await metric('upstream_reset')) + (await metric('reused_connection_reset')) >= 1);
  });

  it('a try that outlives perTryTimeout is abandoned and tried again', async () => {
    const t0 = Date.now();
    const r = await h1(gw.port, pki, { path: '/hang/a' });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-try'], '2');
    assert.ok(Date.now() - t0 >= 190, 'the first try was given its 200 ms');
    assert.ok((await metric('upstream_timeout')) >= 1);
  });

  it('connect failures are tried attempts + 1 times, then the local 503 with the connect error', async () => {
    const before = await metric('upstream_connect_failure');
    const r = await h1(gw.port, pki, { path: '/dead/a' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-meshcert-error'], 'upstream_connect_failure');
    assert.equal((await metric('upstream_connect_failure')) - before, 2);
    const log = await logFor(gw, (l) => l.path === '/dead/a');
    assert.equal(log?.retries, 2);
  });

  it('gRPC: a trailers-only UNAVAILABLE is tried again (retryOn unavailable) with the same message', async () => {
    const session = connectH2(gw.port, pki);
    try {
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 5]), Buffer.from('hello')]);
      const r = await h2(
        session,
        { ':method': 'POST', ':path': '/grpc.Echo/Say', ':authority': 'app.example.test', 'content-type': 'application/grpc', te: 'trailers' },
        frame.toString('latin1'),
      );
      assert.equal(r.status, 200);
      assert.equal(r.trailers?.['grpc-status'], '0');
      assert.equal(grpc.calls.get('/grpc.Echo/Say'), 2);
      assert.deepEqual(grpc.bodies.map((b) => b.toString('latin1')), [frame.toString('latin1'), frame.toString('latin1')]);
      assert.ok((await metric('grpc_14')) >= 1);
    } finally {
      session.close();
    }
  });
});
