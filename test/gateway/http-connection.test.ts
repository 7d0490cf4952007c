import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { openssl } from '../helpers/tools.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { tempDir } from '../helpers/test-ca.js';
import type { Admission } from '../../src/gateway/connection-context.js';
import { closeServer, connectH2, h1, h2, logFor, makePki, startHttpUpstream, startStandIn, type EchoUpstream, type Pki, edgeGateway, edgeVirtualService } from './http-harness.js';

// Per-connection behaviour of HttpProxy: XFCC in Envoy's format replacing a client-sent one, the admission verdict
// (requests held until it settles; a denial is 403 on HTTP/1.1 and HTTP/2 and nothing reaches the upstream), the idle
// timeout from GatewayOptions, and WebSocket (HTTP/1.1 Upgrade) through the proxy.

const yamlFor = (port: number, extra = '') => `${edgeGateway('MUTUAL')}${edgeVirtualService()}
  - route: [{ destination: { host: backend } }]
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams: { backend: 127.0.0.1:${port} }
${extra}`;

describe('HttpProxy connections', () => {
  let pki: Pki;
  let up: EchoUpstream;
  let ws: http.Server;
  let wsPort: number;

  before(async () => {
    pki = await makePki();
    up = await startHttpUpstream('backend');
    // A WebSocket-ish upstream: answers the Upgrade with 101 and echoes bytes upper-cased.
    ws = http.createServer((_req, res) => res.writeHead(426).end('upgrade required\n'));
    ws.on('upgrade', (req, socket, head) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-seen-xff: ${req.headers['x-forwarded-for']}\r\n\r\n`);
      if (head.length) socket.write(head.toString().toUpperCase());
      socket.on('data', (d: Buffer) => socket.write(d.toString().toUpperCase()));
      socket.on('end', () => socket.end());
      socket.on('error', () => undefined);
    });
    ws.listen(0, '127.0.0.1');
    await once(ws, 'listening');
    wsPort = (ws.address() as AddressInfo).port;
  });

  after(async () => {
    await up?.close();
    if (ws) await closeServer(ws);
  });

  it('sends the verified client identity upstream in x-forwarded-client-cert, replacing a client-sent one', async (t) => {
    const gw = await startStandIn(pki, yamlFor(up.port), { mutual: true });
    try {
      const r = await h1(gw.port, pki, { path: '/x', clientCert: pki.client, headers: { 'x-forwarded-client-cert': 'Hash=forged;URI=spiffe://evil/x' } });
      assert.equal(r.status, 200);
      const xfcc = JSON.parse(r.body).headers['x-forwarded-client-cert'] as string;
      const hash = createHash('sha256').update(pki.client.cert.der).digest('hex');
      const reason = skipUnlessCi(openssl(['version']).status !== 0 && 'openssl is not installed');
      let subject = 'CN=cart,OU=shop,O=meshcert tests';
      if (!reason) {
        const dir = tempDir();
        try {
          const out = openssl(['x509', '-in', dir.file('c.pem', pki.client.cert.pem), '-noout', '-subject', '-nameopt', 'RFC2253']);
          subject = out.stdout.trim().replace(/^subject=\s*/, '');
        } finally {
          dir.cleanup();
        }
      } else {
        t.diagnostic(reason);
      }
      assert.equal(xfcc, `Hash=${hash};Subject="${subject}";URI=spiffe://cluster.local/ns/shop/sa/cart`);
      assert.doesNotMatch(xfcc, /forged/);
      assert.equal((await logFor(gw, (l) => l.path === '/x'))?.peer, 'spiffe://cluster.local/ns/shop/sa/cart');
    } finally {
      await gw.close();
    }
  });

  it('removes a client-sent x-forwarded-client-cert when there is no verified peer', async () => {
    const gw = await startStandIn(pki, yamlFor(up.port));
    try {
      const r = await h1(gw.port, pki, { headers: { 'x-forwarded-client-cert': 'Hash=forged' } });
      assert.equal(JSON.parse(r.body).headers['x-forwarded-client-cert'], undefined);
    } finally {
      await gw.close();
    }
  });

  it('holds requests until admission settles; a denial is 403 with the reason (HTTP/1.1 and HTTP/2), nothing goes upstream', async () => {
    let release: ((a: Admission) => void) | undefined;
    const gw = await startStandIn(pki, yamlFor(up.port), { admission: () => new Promise<Admission>((r) => (release = r)) });
    const handedOver = async () => {
      for (let i = 0; i < 500 && !release; i++) await new Promise((r) => setTimeout(r, 10));
      const f = release!;
      release = undefined;
      return f;
    };
    try {
      const before = up.seen.length;
      const pending = h1(gw.port, pki, { path: '/held', method: 'POST', body: 'secret payload' });
      const release1 = await handedOver();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(up.seen.length, before, 'the request waits for the verdict');
      release1({ allowed: false, reason: 'client certificate revoked (OCSP)' });
      const r = await pending;
      assert.equal(r.status, 403);
      assert.equal(r.headers['x-meshcert-error'], 'admission_denied');
      assert.match(r.body, /client certificate revoked \(OCSP\)/);

      const session = connectH2(gw.port, pki);
      const p2 = h2(session, { ':path': '/held2', ':authority': 'app.example.test' });
      (await handedOver())({ allowed: false, reason: 'validator says no' });
      const r2 = await p2;
      session.close();
      assert.equal(r2.status, 403);
      assert.match(r2.body, /validator says no/);
      assert.equal(up.seen.length, before, 'a denied request never reaches the upstream');
    } finally {
      await gw.close();
    }
  });

  it('an allowed admission lets the held request through', async () => {
    const gw = await startStandIn(pki, yamlFor(up.port), { admission: () => new Promise<Admission>((r) => setTimeout(() => r({ allowed: true }), 50)) });
    try {
      const r = await h1(gw.port, pki, { path: '/ok' });
      assert.equal(r.status, 200);
    } finally {
      await gw.close();
    }
  });

  it('closes idle connections after timeouts.idle (HTTP/1.1 and HTTP/2)', async () => {
    const gw = await startStandIn(pki, yamlFor(up.port, '  timeouts: { idle: 300ms }'));
    try {
      const sock = tls.connect({ host: '127.0.0.1', port: gw.port, servername: 'app.example.test', ca: pki.root.cert.pem, ALPNProtocols: ['http/1.1'] });
      await once(sock, 'secureConnect');
      sock.write('GET /idle HTTP/1.1\r\nHost: app.example.test\r\n\r\n');
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString()));
      await once(sock, 'close');
      assert.match(got, /^HTTP\/1\.1 200/, 'the request was answered, then the idle connection closed by the gateway');

      const session = connectH2(gw.port, pki);
      const r = await h2(session, { ':path': '/idle2', ':authority': 'app.example.test' });
      assert.equal(r.status, 200);
      await once(session, 'close');
      assert.equal(session.closed, true);
    } finally {
      await gw.close();
    }
  });

  it('proxies a WebSocket upgrade (raw HTTP/1.1 Upgrade) and then bytes both ways', async () => {
    const gw = await startStandIn(pki, yamlFor(wsPort));
    try {
      const sock = tls.connect({ host: '127.0.0.1', port: gw.port, servername: 'app.example.test', ca: pki.root.cert.pem, ALPNProtocols: ['http/1.1'] });
      await once(sock, 'secureConnect');
      sock.write(
        'GET /chat HTTP/1.1\r\nHost: app.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString()));
      while (!got.includes('\r\n\r\n')) await once(sock, 'data');
      assert.match(got, /^HTTP\/1\.1 101 /);
      assert.match(got, /x-seen-xff: 127\.0\.0\.1/i);
      sock.write('hello tunnel');
      while (!got.includes('HELLO TUNNEL')) await once(sock, 'data');
      sock.end();
      await once(sock, 'close');
      const log = gw.logs.find((l) => l.path === '/chat');
      assert.equal(log?.status, 101);
    } finally {
      await gw.close();
    }
  });

  it('closes connections beyond limits.maxConnections at once', async () => {
    const gw = await startStandIn(pki, yamlFor(up.port, '  limits: { maxConnections: 1 }'));
    try {
      const first = connectH2(gw.port, pki);
      assert.equal((await h2(first, { ':path': '/one', ':authority': 'app.example.test' })).status, 200);
      await assert.rejects(h1(gw.port, pki, { path: '/two' }), 'the second connection is closed');
      first.close();
      await once(first, 'close');
      for (let i = 0; i < 50 && gw.proxy.connections > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal((await h1(gw.port, pki, { path: '/three' })).status, 200, 'a slot is free again');
      assert.match(await gw.registry.metrics(), /meshcert_gateway_http_downstream_connections_rejected_total 1/);
    } finally {
      await gw.close();
    }
  });

  it('rejects CONNECT from HTTP/2 clients with a clear 405', async () => {
    const gw = await startStandIn(pki, yamlFor(up.port));
    try {
      const session = connectH2(gw.port, pki);
      const r = await h2(session, { ':method': 'CONNECT', ':authority': 'example.test:443' });
      session.close();
      assert.equal(r.status, 405);
      assert.match(r.body, /not supported/);
    } finally {
      await gw.close();
    }
  });
});
