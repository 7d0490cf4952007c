import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  closeServer,
  deadPort,
  h1,
  makePki,
  startHttpUpstream,
  startH2cUpstream,
  startHttpsUpstream,
  logFor,
  startStandIn,
  type EchoUpstream,
  type Pki,
  type StandIn, edgeGateway, edgeVirtualService } from './http-harness.js';

// Origination per DestinationRule (SIMPLE with SNI + SAN checks, SPIFFE URI SANs, MUTUAL with a client certificate)
// and the local replies for upstream failures: 503 connect refused / TLS failure / missing credentials, 502 reset
// and garbage, 504 route timeout — each with x-meshcert-error and a short body, the detail in the access log.

async function rawServer(onConn: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    onConn(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}
const portOf = (s: net.Server) => (s.address() as AddressInfo).port;

describe('HttpProxy upstreams', () => {
  let pki: Pki;
  let tlsUp: EchoUpstream;
  let mtlsUp: EchoUpstream;
  let plain: EchoUpstream;
  let h2c: EchoUpstream;
  let resetter: net.Server;
  let garbage: net.Server;
  let silent: net.Server;
  let gw: StandIn;
  let istioReady = false;

  before(async () => {
    pki = await makePki();
    [tlsUp, mtlsUp, plain, h2c] = await Promise.all([startHttpsUpstream(pki, 'tls'), startHttpsUpstream(pki, 'mtls', true), startHttpUpstream('plain'), startH2cUpstream('h2c')]);
    resetter = await rawServer((s) => s.once('data', () => s.resetAndDestroy()));
    garbage = await rawServer((s) => s.once('data', () => s.end('this is not HTTP\r\n\r\n')));
    silent = await rawServer((s) => s.resume()); // reads the request, never answers
    const dead = await deadPort();
    const route = (prefix: string, host: string, extra = '') => `
  - match: [{ uri: { prefix: ${prefix} } }]${extra}
    route: [{ destination: { host: ${host} } }]`;
    const dr = (host: string, tls: string) => `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host} }
spec:
  host: ${host}
  trafficPolicy:
    tls: ${tls}
`;
    const yaml = `${edgeGateway()}${edgeVirtualService()}${route('/dns', 'up-dns')}${route('/spiffe', 'up-spiffe')}${route('/wrong-san', 'up-wrong')}${route('/wrong-host', 'up-wrong-host')}${route('/mtls', 'up-mtls')}${route('/no-client-cert', 'up-mtls-simple')}${route('/no-cred', 'up-no-cred')}${route('/refused', 'dead')}${route('/reset', 'resetter')}${route('/garbage', 'garbage')}${route('/slow', 'silent', '\n    timeout: 300ms')}${route('/plain', 'plain')}${route('/h2c', 'h2c')}${route('/istio', 'up-istio')}${route('/sans-istio', 'up-istio-sans')}
${dr('up-dns', '{ mode: SIMPLE, credentialName: upstream-ca, sni: upstream.test }')}${dr('up-spiffe', '{ mode: SIMPLE, credentialName: upstream-ca, sni: upstream.test, subjectAltNames: ["spiffe://cluster.local/ns/app/sa/backend"] }')}${dr('up-wrong', '{ mode: SIMPLE, credentialName: upstream-ca, subjectAltNames: ["spiffe://cluster.local/ns/other/sa/intruder"] }')}${dr('up-wrong-host', '{ mode: SIMPLE, credentialName: upstream-ca, sni: elsewhere.test }')}${dr('up-mtls', '{ mode: MUTUAL, credentialName: upstream-client, sni: upstream.test }')}${dr('up-mtls-simple', '{ mode: SIMPLE, credentialName: upstream-ca, sni: upstream.test }')}${dr('up-no-cred', '{ mode: SIMPLE, credentialName: not-there }')}${dr('up-istio', '{ mode: ISTIO_MUTUAL }')}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: h2c }
spec:
  host: h2c
  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: UPGRADE } } }
${dr('up-istio-sans', '{ mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/app/sa/other"] }')}---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams:
    up-dns: 127.0.0.1:${tlsUp.port}
    up-spiffe: 127.0.0.1:${tlsUp.port}
    up-wrong: 127.0.0.1:${tlsUp.port}
    up-wrong-host: 127.0.0.1:${tlsUp.port}
    up-mtls: 127.0.0.1:${mtlsUp.port}
    up-mtls-simple: 127.0.0.1:${mtlsUp.port}
    up-no-cred: 127.0.0.1:${tlsUp.port}
    dead: 127.0.0.1:${dead}
    resetter: 127.0.0.1:${portOf(resetter)}
    garbage: 127.0.0.1:${portOf(garbage)}
    silent: 127.0.0.1:${portOf(silent)}
    plain: 127.0.0.1:${plain.port}
    up-istio: 127.0.0.1:${mtlsUp.port}
    h2c: 127.0.0.1:${h2c.port}
    up-istio-sans: 127.0.0.1:${mtlsUp.port}
  timeouts: { upstreamConnect: 2s }
`;
    gw = await startStandIn(pki, yaml, {
      proxy: {
        credentials: (name) =>
          name === 'upstream-ca'
            ? { ca: pki.root.cert.pem }
            : name === 'upstream-client'
              ? { ca: pki.root.cert.pem, key: pki.client.keyPem, certChain: pki.client.chainPem }
              : undefined,
        istioCredentials: () => (istioReady ? { key: pki.client.keyPem, certChain: pki.client.chainPem, trustBundle: pki.root.cert.pem } : undefined),
      },
    });
  });

  after(async () => {
    await gw?.close();
    await Promise.all([tlsUp?.close(), mtlsUp?.close(), plain?.close(), h2c?.close(), closeServer(resetter), closeServer(garbage), closeServer(silent)]);
  });

  it('SIMPLE: verifies the upstream against the CA and the SNI as host name', async () => {
    const r = await h1(gw.port, pki, { path: '/dns' });
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).upstream, 'tls');
  });

  it('SIMPLE with subjectAltNames: a SPIFFE URI SAN matches', async () => {
    const r = await h1(gw.port, pki, { path: '/spiffe' });
    assert.equal(r.status, 200, r.body);
  });

  it('a certificate without the expected SAN, or for another host, fails with 503 upstream_tls_failure', async () => {
    for (const path of ['/wrong-san', '/wrong-host']) {
      const r = await h1(gw.port, pki, { path });
      assert.equal(r.status, 503, `${path}: ${r.body}`);
      assert.equal(r.headers['x-meshcert-error'], 'upstream_tls_failure');
      assert.match(r.body, /upstream TLS error/);
    }
    const log = await logFor(gw, (l) => l.path === '/wrong-san');
    assert.match(log?.detail ?? '', /spiffe:\/\/cluster\.local\/ns\/other\/sa\/intruder/);
    assert.match(log?.detail ?? '', /URI:spiffe:\/\/cluster\.local\/ns\/app\/sa\/backend/);
  });

  it('MUTUAL: presents the credential client certificate; without one the upstream refuses (503)', async () => {
    const r = await h1(gw.port, pki, { path: '/mtls' });
    assert.equal(r.status, 200, r.body);
    assert.match(mtlsUp.seen.at(-1)?.peerCert ?? '', /CN=cart/);
    const no = await h1(gw.port, pki, { path: '/no-client-cert' });
    assert.ok(no.status === 503 || no.status === 502, `${no.status} ${no.body}`);
    assert.ok(String(no.headers['x-meshcert-error']).startsWith('upstream_'));
  });

  it('ISTIO_MUTUAL: the workload identity goes upstream; the peer must be in the trust domain or match subjectAltNames', async () => {
    const none = await h1(gw.port, pki, { path: '/istio' });
    assert.equal(none.status, 503, 'no workload certificate yet');
    assert.equal(none.headers['x-meshcert-error'], 'upstream_tls_credentials');
    istioReady = true;
    const r = await h1(gw.port, pki, { path: '/istio' });
    assert.equal(r.status, 200, r.body);
    assert.match(mtlsUp.seen.at(-1)?.peerCert ?? '', /CN=cart/);
    const wrong = await h1(gw.port, pki, { path: '/sans-istio' });
    assert.equal(wrong.status, 503);
    assert.equal(wrong.headers['x-meshcert-error'], 'upstream_tls_failure');
  });

  it('h2UpgradePolicy UPGRADE: an HTTP/1.1 request goes upstream over HTTP/2 (one session for many requests)', async () => {
    const conns = h2c.connections();
    for (const i of [1, 2, 3]) {
      const r = await h1(gw.port, pki, { path: `/h2c/${i}`, method: 'POST', body: `b${i}` });
      assert.equal(r.status, 200, r.body);
      const up = JSON.parse(r.body);
      assert.equal(up.httpVersion, '2.0');
      assert.equal(up.body, `b${i}`);
      assert.equal(up.headers[':authority'], 'app.example.test');
      assert.equal(up.headers['x-forwarded-proto'], 'https');
    }
    assert.equal(h2c.connections() - conns, 1);
  });

  it('a missing credentialName answers 503 upstream_tls_credentials', async () => {
    const r = await h1(gw.port, pki, { path: '/no-cred' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-meshcert-error'], 'upstream_tls_credentials');
  });

  it('connection refused → 503, reset → 502, garbage → 502, route timeout → 504', async () => {
    const cases: Array<[string, number, string]> = [
      ['/refused', 503, 'upstream_connect_failure'],
      ['/reset', 502, 'upstream_reset'],
      ['/garbage', 502, 'upstream_bad_response'],
      ['/slow', 504, 'upstream_timeout'],
    ];
    for (const [path, status, reason] of cases) {
      const r = await h1(gw.port, pki, { path });
      assert.equal(r.status, status, `${path}: ${r.body}`);
      assert.equal(r.headers['x-meshcert-error'], reason, path);
      assert.ok(r.body.length > 0 && r.body.length < 200, `${path}: short body, got ${JSON.stringify(r.body)}`);
      assert.equal((await logFor(gw, (l) => l.path === path))?.error, reason);
    }
    // The gateway still serves everyone else.
    assert.equal((await h1(gw.port, pki, { path: '/plain' })).status, 200);
  });
});
