import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { parseGatewayFile } from '../../src/config/index.js';
import { connectH2, h1, h2, logFor, makePki, startHttpUpstream, startStandIn, type EchoUpstream, type Pki, type StandIn, edgeGateway, edgeVirtualService } from './http-harness.js';

// HTTP/1.1 and HTTP/2 clients through HttpProxy (fed by a stand-in TLS listener) to real HTTP/1.1 upstreams:
// VirtualService routing by host (port ignored, exact before wildcard), path, method and headers; rewrite; header
// operations; x-forwarded-for/proto; 404 for no route; access log and metrics.

describe('HttpProxy routing', () => {
  let pki: Pki;
  let a: EchoUpstream;
  let b: EchoUpstream;
  let w: EchoUpstream;
  let gw: StandIn;
  let gwYaml: string;

  before(async () => {
    pki = await makePki();
    [a, b, w] = await Promise.all([startHttpUpstream('a'), startHttpUpstream('b'), startHttpUpstream('wild')]);
    const yaml = `${edgeGateway('SIMPLE', ['"*.example.test"'])}${edgeVirtualService()}
  - name: by-header
    match: [{ headers: { x-canary: { exact: "1" } } }]
    route: [{ destination: { host: svc-b } }]
  - name: delete-only
    match: [{ uri: { prefix: /api }, method: { exact: DELETE } }]
    route: [{ destination: { host: svc-b } }]
  - name: rewrite
    match: [{ uri: { prefix: /old/ } }]
    rewrite: { uri: /new/, authority: internal.svc }
    headers:
      request: { set: { x-route: rewrite }, add: { x-added: two }, remove: [x-secret] }
      response: { set: { x-resp: set }, remove: [x-remove-me] }
    route: [{ destination: { host: svc-a } }]
  - name: regex
    match: [{ uri: { regex: "/items/[0-9]+" } }]
    route: [{ destination: { host: svc-b } }]
  - name: api
    match: [{ uri: { prefix: /api } }]
    route: [{ destination: { host: svc-a } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: wildcard }
spec:
  hosts: ["*.example.test"]
  gateways: [edge]
  http:
  - route: [{ destination: { host: svc-wild } }]
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams:
    svc-a: 127.0.0.1:${a.port}
    svc-b: 127.0.0.1:${b.port}
    svc-wild: 127.0.0.1:${w.port}
`;
    gwYaml = yaml;
    gw = await startStandIn(pki, yaml);
  });

  after(async () => {
    await gw?.close();
    await Promise.all([a?.close(), b?.close(), w?.close()]);
  });

  it('routes by host (ignoring :port), exact before wildcard, and by path prefix, method, header and regex', async () => {
    const api = await h1(gw.port, pki, { path: '/api/x', host: 'app.example.test:8443' });
    assert.equal(api.status, 200);
    assert.equal(JSON.parse(api.body).upstream, 'a');

    const del = await h1(gw.port, pki, { path: '/api/x', method: 'DELETE' });
    assert.equal(JSON.parse(del.body).upstream, 'b');

    const canary = await h1(gw.port, pki, { path: '/api/x', headers: { 'x-canary': '1' } });
    assert.equal(JSON.parse(canary.body).upstream, 'b');

    const rx = await h1(gw.port, pki, { path: '/items/42' });
    assert.equal(JSON.parse(rx.body).upstream, 'b');
    const rxNo = await h1(gw.port, pki, { path: '/items/42x' });
    assert.equal(rxNo.status, 404);

    const wild = await h1(gw.port, pki, { path: '/', host: 'other.example.test' });
    assert.equal(JSON.parse(wild.body).upstream, 'wild');
  });

  it('answers 404 with a reason when no route matches', async () => {
    const r = await h1(gw.port, pki, { path: '/nothing-here' });
    assert.equal(r.status, 404);
    assert.equal(r.headers['x-meshcert-error'], 'no_route');
    assert.match(r.body, /no route/);
    const log = await logFor(gw, (l) => l.path === '/nothing-here');
    assert.equal(log?.status, 404);
    assert.equal(log?.error, 'no_route');
  });

  it('rewrites uri and authority and applies header operations both ways; sets x-forwarded-for/proto', async () => {
    const r = await h1(gw.port, pki, {
      path: '/old/thing?q=1',
      headers: { 'x-secret': 's', 'x-added': 'one', 'x-forwarded-for': '203.0.113.9', connection: 'keep-alive, x-hop', 'x-hop': 'drop' },
    });
    assert.equal(r.status, 200);
    const up = JSON.parse(r.body);
    assert.equal(up.url, '/new/thing?q=1');
    assert.equal(up.headers.host, 'internal.svc');
    assert.equal(up.headers['x-route'], 'rewrite');
    assert.equal(up.headers['x-added'], 'one,two');
    assert.equal(up.headers['x-secret'], undefined);
    assert.equal(up.headers['x-hop'], undefined, 'a header named in Connection is hop-by-hop');
    assert.equal(up.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(up.headers['x-forwarded-proto'], 'https');
    assert.equal(r.headers['x-resp'], 'set');
    assert.equal(r.headers['x-remove-me'], undefined);
    assert.equal(r.headers['x-upstream'], 'a');
  });

  it('serves HTTP/2 clients (ALPN h2) to HTTP/1.1 upstreams, with request bodies', async () => {
    const session = connectH2(gw.port, pki);
    try {
      const r = await h2(session, { ':method': 'POST', ':path': '/api/post', ':authority': 'app.example.test:8443', 'content-type': 'text/plain' }, 'hello body');
      assert.equal(r.status, 200);
      const up = JSON.parse(r.body);
      assert.equal(up.upstream, 'a');
      assert.equal(up.method, 'POST');
      assert.equal(up.body, 'hello body');
      assert.equal(up.headers.host, 'app.example.test:8443');
      assert.equal(up.headers['x-forwarded-proto'], 'https');
      const nf = await h2(session, { ':path': '/none', ':authority': 'app.example.test' });
      assert.equal(nf.status, 404);
      assert.equal(nf.headers['x-meshcert-error'], 'no_route');
    } finally {
      session.close();
    }
    const log = await logFor(gw, (l) => l.path === '/api/post');
    assert.equal(log?.protocol, 'HTTP/2');
    assert.equal(log?.bytesReceived, 'hello body'.length);
    assert.equal(log?.upstreamHost, 'svc-a');
    assert.equal(log?.route, 'app/http[4]');
  });

  it('serves plain HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on a plain socket', async () => {
    const plain = await startStandIn(pki, gwYaml, { plain: true });
    try {
      const r = await new Promise<string>((resolve, reject) =>
        http.get({ host: '127.0.0.1', port: plain.port, path: '/api/plain', headers: { host: 'app.example.test' } }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve(b));
        }).on('error', reject),
      );
      assert.equal(JSON.parse(r).headers['x-forwarded-proto'], 'http');
      const session = http2.connect(`http://127.0.0.1:${plain.port}`);
      session.on('error', () => undefined);
      try {
        const r2 = await h2(session, { ':path': '/api/h2c', ':authority': 'app.example.test' });
        assert.equal(r2.status, 200);
        assert.equal(JSON.parse(r2.body).upstream, 'a');
      } finally {
        session.close();
      }
    } finally {
      await plain.close();
    }
  });

  it('reuses kept-alive upstream connections and counts requests in the registry', async () => {
    const before = a.seen.length;
    const conns = a.connections();
    for (let i = 0; i < 5; i++) assert.equal((await h1(gw.port, pki, { path: `/api/k${i}` })).status, 200);
    assert.equal(a.seen.length, before + 5);
    assert.ok(a.connections() - conns <= 1, `5 sequential requests took ${a.connections() - conns} new upstream connections`);
    const text = await gw.registry.metrics();
    assert.match(text, /meshcert_gateway_http_requests_total\{code="200",protocol="HTTP\/1.1"\} \d+/);
    assert.match(text, /meshcert_gateway_http_local_replies_total\{reason="no_route"\} \d+/);
  });

  it('applies a new config on update() to new requests, on the same connection', async () => {
    const session = connectH2(gw.port, pki);
    try {
      assert.equal(JSON.parse((await h2(session, { ':path': '/api/u', ':authority': 'app.example.test' })).body).upstream, 'a');
      gw.proxy.update(
        parseGatewayFile(
          `${edgeGateway()}${edgeVirtualService()}
  - route: [{ destination: { host: svc-b } }]
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams: { svc-b: 127.0.0.1:${b.port} }
`,
          'reloaded',
        ),
      );
      assert.equal(JSON.parse((await h2(session, { ':path': '/api/u', ':authority': 'app.example.test' })).body).upstream, 'b');
    } finally {
      session.close();
    }
  });
});
