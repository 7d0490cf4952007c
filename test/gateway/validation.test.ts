// Issue #9 end to end, through the real gateway listener: asynchronous peer validation (OCSP against a real
// `openssl ocsp`, an external HTTP validator) after the handshake, with requests held until the verdict, and
// Istio AuthorizationPolicy per request.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { Gateway } from '../../src/gateway/index.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { manifestYaml, writeAtomic } from '../sds/secret-fixtures.js';
import { OpensslResponder, indexLine } from '../secrets/openssl-responder.js';
import { h1, makePki, startHttpUpstream, type EchoUpstream, type Pki } from './http-harness.js';

const skip = skipUnlessCi(spawnSync('openssl', ['version']).status === 0 ? null : 'openssl is not installed');

/** An external validator whose answers the test releases by hand; it allows every client except sa/web. */
class LatchedValidator {
  readonly server: http.Server;
  received = 0;
  answered = 0;
  #held: Array<() => void> = [];
  #open = false;
  constructor() {
    this.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        this.received++;
        const answer = () => {
          this.answered++;
          const chain = (JSON.parse(body) as { chain: string[] }).chain;
          const web = chain[0]?.includes(WEB_MARK) ?? false;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(web ? { allow: false, reason: 'web may not call this gateway' } : { allow: true }));
        };
        if (this.#open) answer();
        else this.#held.push(answer);
      });
    });
  }
  release(): void {
    this.#open = true;
    for (const a of this.#held.splice(0)) a();
  }
  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return (this.server.address() as { port: number }).port;
  }
}
let WEB_MARK = '';

describe('asynchronous peer validation and authorization at the gateway', { skip }, () => {
  const tmp = tempDir('meshcert-gw-validation-');
  let pki: Pki;
  let up: EchoUpstream;
  let responder: OpensslResponder;
  let gw: Gateway;
  let latched: LatchedValidator;
  const hang = http.createServer(() => undefined); // accepts and never answers
  const echo = net.createServer((c) => c.pipe(c)); // the raw TCP upstream
  let good: IssuedLeaf;
  let revoked: IssuedLeaf;
  let web: IssuedLeaf;

  before(async () => {
    if (skip) return;
    pki = await makePki();
    up = await startHttpUpstream('backend');
    const index = join(tmp.dir, 'index.txt');
    writeAtomic(index, '');
    responder = await OpensslResponder.create({ dir: tmp.dir, index, caPem: tmp.file('ca.pem', pki.ca.cert.pem), caKey: tmp.file('ca.key', pki.ca.keyPem), nmin: 10 });
    const svid = (sa: string) => pki.ca.issueSvid(`spiffe://cluster.local/ns/shop/sa/${sa}`, { subject: `CN=${sa}`, ocspUrls: [responder.url] });
    good = await svid('cart');
    revoked = await svid('stolen');
    web = await svid('web');
    WEB_MARK = web.cert.pem.split('\n')[3]!;
    writeAtomic(index, indexLine(good.cert) + indexLine(web.cert) + indexLine(revoked.cert, { at: new Date(Date.now() - 60_000), reason: 'keyCompromise' }));
    await responder.start();
    latched = new LatchedValidator();
    const latchedPort = await latched.listen();
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
    const hangPort = (hang.address() as { port: number }).port;
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const echoPort = (echo.address() as { port: number }).port;

    const secrets = join(tmp.dir, 'secrets');
    mkdirSync(secrets);
    writeFileSync(join(secrets, 'cred.yaml'), manifestYaml({ name: 'app-cred', data: { 'tls.crt': pki.gateway.chainPem, 'tls.key': pki.gateway.keyPem, 'ca.crt': pki.root.cert.pem } }));
    const server = (port: number) => `
  - port: { number: ${port}, name: p${port}, protocol: HTTPS }
    hosts: [app.example.test]
    tls: { mode: MUTUAL, credentialName: app-cred }`;
    const file = tmp.file(
      'gateway.yaml',
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:${server(8443)}${server(9443)}${server(9444)}${server(9445)}
  - port: { number: 9446, name: tcp, protocol: TLS }
    hosts: [app.example.test]
    tls: { mode: MUTUAL, credentialName: app-cred }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: raw }
spec:
  hosts: [app.example.test]
  gateways: [edge]
  tcp:
  - match: [{ port: 9446 }]
    route: [{ destination: { host: echo, port: { number: ${echoPort} } } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: [app.example.test]
  gateways: [edge]
  http:
  - route: [{ destination: { host: backend } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: pay-only }
spec:
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/cart"] } }]
    to: [{ operation: { paths: ["/pay*"], methods: [GET, POST] } }]
  - to: [{ operation: { notPaths: ["/pay*"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin }
spec:
  action: DENY
  rules:
  - to: [{ operation: { paths: ["/admin*"] } }]
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams: { backend: 127.0.0.1:${up.port}, echo: 127.0.0.1 }
  accessLog: { enabled: false }
  validation:
  - port: 8443
    ocsp: { timeout: 3s, onUnknown: deny, onError: deny }
  - port: 9443
    http: { url: "http://127.0.0.1:${latchedPort}/validate", timeout: 30s }
  - port: 9444
    http: { url: "http://127.0.0.1:${hangPort}/validate", timeout: 300ms, failOpen: false }
  - port: 9445
    http: { url: "http://127.0.0.1:${hangPort}/validate", timeout: 300ms, failOpen: true }
  - port: 9446
    http: { url: "http://127.0.0.1:${latchedPort}/validate", timeout: 30s }
`,
    );
    gw = await Gateway.start({ file, credentials: { secrets: [secrets] }, defaultBind: '127.0.0.1', portOverrides: { 8443: 0, 9443: 0, 9444: 0, 9445: 0, 9446: 0 }, watch: false });
  });

  after(async () => {
    latched?.release();
    await gw?.close();
    await up?.close();
    await responder?.close();
    latched?.server.closeAllConnections();
    latched?.server.close();
    hang.closeAllConnections();
    hang.close();
    echo.close();
    tmp.cleanup();
  });

  const port = (p: number) => gw.boundPorts[p]!;

  it('OCSP: a good client certificate passes, a revoked one gets 403 with the reason, nothing reaching the upstream', async () => {
    const before = up.seen.length;
    const ok = await h1(port(8443), pki, { path: '/orders', clientCert: good });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(up.seen.length, before + 1);
    const bad = await h1(port(8443), pki, { path: '/orders', clientCert: revoked });
    assert.equal(bad.status, 403);
    assert.equal(bad.headers['x-meshcert-error'], 'admission_denied');
    assert.match(bad.body, new RegExp(`forbidden: OCSP responder .* says the client certificate \\(serial ${revoked.cert.serial}\\) is revoked`));
    assert.equal(up.seen.length, before + 1, 'the revoked client reached nothing');
    const metrics = await gw.metrics.registry.metrics();
    assert.match(metrics, /meshcert_gateway_peer_validations_total\{validator="ocsp",result="denied",reason="ocsp_revoked"\} 1/);
  });

  it('a validator that has not answered holds requests, while 200 other handshakes complete without waiting for it', async () => {
    const conns: tls.TLSSocket[] = [];
    const handshakeMs: number[] = [];
    try {
      // Requests on the first connection wait for the verdict; nothing goes upstream meanwhile.
      const before = up.seen.length;
      const held = h1(port(9443), pki, { path: '/held', clientCert: good });
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 200; i++) {
        const started = performance.now();
        conns.push(
          await new Promise<tls.TLSSocket>((resolve, reject) => {
            const s = tls.connect({ host: '127.0.0.1', port: port(9443), servername: 'app.example.test', ca: pki.root.cert.pem, key: good.keyPem, cert: good.chainPem, ALPNProtocols: ['http/1.1'] }, () => {
              handshakeMs.push(performance.now() - started);
              resolve(s);
            });
            s.on('error', reject);
          }),
        );
      }
      assert.equal(latched.answered, 0, 'all 200 handshakes completed while the validator had answered nobody');
      assert.ok(latched.received >= 1, 'the validator was asked');
      assert.equal(up.seen.length, before, 'the held request has not gone upstream');
      handshakeMs.sort((a, b) => a - b);
      const p99 = handshakeMs[Math.floor(handshakeMs.length * 0.99)]!;
      console.log(`# 200 handshakes with a validator pending: p50 ${handshakeMs[100]!.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
      latched.release();
      const r = await held;
      assert.equal(r.status, 200, r.body);
      assert.equal(up.seen.at(-1)?.url, '/held');
      const denied = await h1(port(9443), pki, { path: '/x', clientCert: web });
      assert.equal(denied.status, 403);
      assert.match(denied.body, /denied the client: web may not call this gateway/);
    } finally {
      for (const c of conns) c.destroy();
    }
  });

  it('a validator past its timeout fails closed, or open when failOpen', async () => {
    const closed = await h1(port(9444), pki, { path: '/x', clientCert: good });
    assert.equal(closed.status, 403);
    assert.match(closed.body, /no answer within 300 ms/);
    const open = await h1(port(9445), pki, { path: '/x', clientCert: good });
    assert.equal(open.status, 200, open.body);
  });

  it('AuthorizationPolicy: DENY first, then ALLOW by principal, path and method, with Envoy\'s 403 body', async () => {
    const pay = await h1(port(8443), pki, { path: '/pay/now', method: 'POST', clientCert: good, body: 'x' });
    assert.equal(pay.status, 200, pay.body);
    const otherPrincipal = await h1(port(8443), pki, { path: '/pay/now', clientCert: web });
    assert.equal(otherPrincipal.status, 403);
    assert.equal(otherPrincipal.body, 'RBAC: access denied\n');
    assert.equal(otherPrincipal.headers['x-meshcert-error'], 'rbac_access_denied');
    const wrongMethod = await h1(port(8443), pki, { path: '/pay/now', method: 'DELETE', clientCert: good });
    assert.equal(wrongMethod.status, 403);
    const elsewhere = await h1(port(8443), pki, { path: '/catalog', clientCert: web });
    assert.equal(elsewhere.status, 200, 'paths outside /pay are open to every verified caller');
    const admin = await h1(port(8443), pki, { path: '/admin/users', clientCert: good });
    assert.equal(admin.status, 403, 'DENY wins even for an allowed principal');
    const metrics = await gw.metrics.registry.metrics();
    assert.match(metrics, /reason="rbac_access_denied"/);
  });

  it('a raw TCP route waits for the validators: an allowed client is spliced, a denied one is closed unanswered', async () => {
    latched.release();
    const talk = (leaf: IssuedLeaf) =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: port(9446), servername: 'app.example.test', ca: pki.root.cert.pem, key: leaf.keyPem, cert: leaf.chainPem }, () => s.write('ping'));
        let got = '';
        s.on('data', (d) => {
          got += d;
          if (got === 'ping') s.end();
        });
        s.on('close', () => resolve(got));
        s.on('error', (e) => (got ? resolve(got) : reject(e)));
      });
    assert.equal(await talk(good), 'ping');
    assert.equal(await talk(web), '', 'the denied client got nothing back');
  });
});
