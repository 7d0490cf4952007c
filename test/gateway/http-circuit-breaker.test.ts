import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { closeServer, edgeGateway, edgeVirtualService, h1, makePki, startH2cUpstream, startHttpUpstream, startStandIn, type EchoUpstream, type Pki, type StandIn } from './http-harness.js';

// DestinationRule connectionPool.http circuit breakers, as Envoy applies them for Istio: http2MaxRequests (requests
// in flight), http1MaxPendingRequests (requests waiting for one of tcp.maxConnections), maxRetries (retries in
// flight). An overflow is a local 503 with x-envoy-overloaded, never a queue without end.

/** An upstream that holds every request until release(); `arrived` resolves when `n` requests are held. */
async function holdingUpstream(): Promise<{
  port: number;
  held: () => number;
  arrived: (n: number) => Promise<void>;
  release: (status?: number) => void;
  close(): Promise<void>;
}> {
  const waiting: Array<(status: number) => void> = [];
  let waiters: Array<{ n: number; resolve: () => void }> = [];
  const server = http.createServer((req, res) => {
    req.resume();
    waiting.push((status) => res.writeHead(status, { 'content-type': 'text/plain' }).end(`${status} for ${req.url}\n`));
    waiters = waiters.filter((w) => (waiting.length >= w.n ? (w.resolve(), false) : true));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    held: () => waiting.length,
    arrived: (n) => (waiting.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
    release: (status = 200) => {
      for (const answer of waiting.splice(0)) answer(status);
    },
    close: () => closeServer(server),
  };
}

describe('HttpProxy circuit breakers (DestinationRule connectionPool.http)', () => {
  let pki: Pki;
  let up: Awaited<ReturnType<typeof holdingUpstream>>;
  let gw: StandIn;
  let echo: EchoUpstream;
  let h2c: EchoUpstream;

  before(async () => {
    pki = await makePki();
    up = await holdingUpstream();
    echo = await startHttpUpstream('echo');
    h2c = await startH2cUpstream('h2c');
    const route = (prefix: string, host: string, extra = '') => `
  - match: [{ uri: { prefix: ${prefix} } }]${extra}
    route: [{ destination: { host: ${host} } }]`;
    const dr = (host: string, pool: string) => `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host} }
spec:
  host: ${host}
  trafficPolicy: { connectionPool: ${pool} }
`;
    const yaml = `${edgeGateway()}${edgeVirtualService()}${route('/requests', 'one-at-a-time')}${route('/pending', 'one-waiting')}${route('/per-connection', 'two-per-connection')}${route('/h2-per-connection', 'h2-two-per-connection')}${route(
      '/retries',
      'one-retry',
      '\n    retries: { attempts: 3, retryOn: "503" }',
    )}
${dr('one-at-a-time', '{ http: { http2MaxRequests: 1 } }')}${dr('one-waiting', '{ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } }')}${dr('two-per-connection', '{ http: { maxRequestsPerConnection: 2 } }')}${dr('h2-two-per-connection', '{ http: { maxRequestsPerConnection: 2, h2UpgradePolicy: UPGRADE } }')}${dr(
      'one-retry',
      '{ http: { maxRetries: 1 } }',
    )}---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams:
    one-at-a-time: 127.0.0.1:${up.port}
    one-waiting: 127.0.0.1:${up.port}
    one-retry: 127.0.0.1:${up.port}
    two-per-connection: 127.0.0.1:${echo.port}
    h2-two-per-connection: 127.0.0.1:${h2c.port}
`;
    gw = await startStandIn(pki, yaml);
  });

  after(async () => {
    up?.release();
    await gw?.close();
    await up?.close();
    await echo?.close();
    await h2c?.close();
  });

  it('http2MaxRequests: 1 — a second request while one is in flight is a local 503 with x-envoy-overloaded; later ones pass', async () => {
    const first = h1(gw.port, pki, { path: '/requests/a' });
    await up.arrived(1);
    const second = await h1(gw.port, pki, { path: '/requests/b' });
    assert.equal(second.status, 503);
    assert.equal(second.headers['x-envoy-overloaded'], 'true');
    assert.equal(second.headers['x-meshcert-error'], 'overloaded');
    assert.equal(up.held(), 1, 'the overflowing request never reached the upstream');
    up.release();
    assert.equal((await first).status, 200);
    const third = h1(gw.port, pki, { path: '/requests/c' });
    await up.arrived(1);
    up.release();
    assert.equal((await third).status, 200);
  });

  it('tcp.maxConnections: 1 with http1MaxPendingRequests: 1 — one request on the connection, one waiting, the third overflows', async () => {
    const a = h1(gw.port, pki, { path: '/pending/a' });
    await up.arrived(1);
    const b = h1(gw.port, pki, { path: '/pending/b' });
    // b waits in the gateway for the one connection; give it the time to be queued.
    await new Promise((r) => setTimeout(r, 100));
    const c = await h1(gw.port, pki, { path: '/pending/c' });
    assert.equal(c.status, 503);
    assert.equal(c.headers['x-envoy-overloaded'], 'true');
    up.release();
    assert.equal((await a).status, 200);
    await up.arrived(1);
    up.release();
    assert.equal((await b).status, 200);
  });

  it('maxRetries: 1 — of two requests failing at once, only one is retried; the other gets the upstream 503 as it came', async () => {
    const a = h1(gw.port, pki, { path: '/retries/a' });
    const b = h1(gw.port, pki, { path: '/retries/b' });
    await up.arrived(2);
    up.release(503);
    // The one retry in flight arrives; it succeeds.
    await up.arrived(1);
    up.release(200);
    const statuses = [(await a).status, (await b).status].sort();
    assert.deepEqual(statuses, [200, 503]);
    // Access-log records are written when each response has closed.
    let logs = gw.logs.filter((l) => l.path.startsWith('/retries/'));
    for (let i = 0; i < 100 && logs.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 10));
      logs = gw.logs.filter((l) => l.path.startsWith('/retries/'));
    }
    assert.deepEqual(logs.map((l) => l.retries).sort(), [0, 1]);
  });

  it('maxRequestsPerConnection: 2 — five requests one after another use three upstream connections', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await h1(gw.port, pki, { path: `/per-connection/${i}` })).status, 200);
    assert.equal(echo.seen.length, 5);
    assert.equal(echo.connections(), 3);
  });

  it('maxRequestsPerConnection: 2 over HTTP/2 upstreams — a session takes two streams, then the next request opens another', async () => {
    for (let i = 0; i < 4; i++) assert.equal((await h1(gw.port, pki, { path: `/h2-per-connection/${i}` })).status, 200);
    assert.equal(h2c.seen.length, 4);
    assert.equal(h2c.connections(), 2);
  });
});
