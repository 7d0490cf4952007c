import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { closeServer, connectH2, makePki, startStandIn, type Pki, type StandIn, edgeGateway, edgeVirtualService } from './http-harness.js';

// Streaming bodies through HttpProxy: large uploads and downloads arrive intact (HTTP/1.1 and HTTP/2), a client that
// stops reading stalls the upstream's writes (backpressure end to end, nothing buffered without bound), and a client
// that goes away cancels the upstream request.

describe('HttpProxy streaming', () => {
  let pki: Pki;
  let up: http.Server;
  let gw: StandIn;
  const BIG = randomBytes(8 * 1024 * 1024);
  const state = { written: 0, stalled: false, aborted: 0, uploadHash: '', uploadBytes: 0 };

  before(async () => {
    pki = await makePki();
    up = http.createServer((req, res) => {
      if (req.url === '/upload') {
        const h = createHash('sha256');
        let n = 0;
        req.on('data', (c: Buffer) => {
          h.update(c);
          n += c.length;
        });
        req.on('end', () => res.end(JSON.stringify({ bytes: n, sha256: h.digest('hex') })));
        return;
      }
      if (req.url === '/download') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG.length });
        res.end(BIG);
        return;
      }
      if (req.url === '/endless') {
        // Writes 64 KiB chunks as long as the proxy accepts them.
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const chunk = Buffer.alloc(64 * 1024, 1);
        const pump = () => {
          while (!res.destroyed) {
            state.written += chunk.length;
            if (!res.write(chunk)) {
              state.stalled = true;
              res.once('drain', pump);
              return;
            }
            if (state.written > 256 * 1024 * 1024) return;
          }
        };
        pump();
        res.on('close', () => undefined);
        return;
      }
      if (req.url === '/hang') {
        req.socket.once('close', () => state.aborted++);
        res.on('close', () => undefined);
        return; // never answers
      }
      res.end('?');
    });
    up.listen(0, '127.0.0.1');
    await once(up, 'listening');
    const yaml = `${edgeGateway()}${edgeVirtualService()}
  - route: [{ destination: { host: up } }]
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams: { up: 127.0.0.1:${(up.address() as AddressInfo).port} }
`;
    gw = await startStandIn(pki, yaml);
  });

  after(async () => {
    await gw?.close();
    if (up) await closeServer(up);
  });

  const request = (path: string, method = 'GET') =>
    https.request({ host: '127.0.0.1', port: gw.port, path, method, servername: 'app.example.test', ca: pki.root.cert.pem, headers: { host: 'app.example.test' }, agent: false });

  it('streams an 8 MiB upload (chunked) and download intact over HTTP/1.1', async () => {
    const req = request('/upload', 'POST');
    for (let i = 0; i < BIG.length; i += 1 << 20) req.write(BIG.subarray(i, i + (1 << 20)));
    req.end();
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    let body = '';
    for await (const c of res) body += c;
    const got = JSON.parse(body);
    assert.equal(got.bytes, BIG.length);
    assert.equal(got.sha256, createHash('sha256').update(BIG).digest('hex'));

    const dl = request('/download');
    dl.end();
    const [dres] = (await once(dl, 'response')) as [http.IncomingMessage];
    const h = createHash('sha256');
    let n = 0;
    for await (const c of dres) {
      h.update(c as Buffer);
      n += (c as Buffer).length;
    }
    assert.equal(n, BIG.length);
    assert.equal(h.digest('hex'), createHash('sha256').update(BIG).digest('hex'));
  });

  it('streams an 8 MiB upload and download intact over HTTP/2', async () => {
    const session = connectH2(gw.port, pki);
    try {
      const s = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'app.example.test' });
      s.end(BIG);
      let body = '';
      for await (const c of s) body += c;
      assert.equal(JSON.parse(body).bytes, BIG.length);
      const d = session.request({ ':path': '/download', ':authority': 'app.example.test' });
      let n = 0;
      for await (const c of d) n += (c as Buffer).length;
      assert.equal(n, BIG.length);
    } finally {
      session.close();
    }
  });

  it('a client that stops reading stalls the upstream (backpressure), without unbounded buffering', async () => {
    state.written = 0;
    state.stalled = false;
    const req = request('/endless');
    req.end();
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    res.pause();
    // Give the pipeline time to fill every buffer on the way (socket buffers, TLS, streams).
    for (let i = 0; i < 50 && !state.stalled; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    const atStall = state.written;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(state.stalled, true, 'the upstream saw write() return false');
    assert.equal(state.written, atStall, 'nothing more was written while the client did not read');
    assert.ok(state.written < 64 * 1024 * 1024, `at most a bounded amount in flight, got ${state.written} bytes`);
    res.destroy();
  });

  it('a client that goes away cancels the upstream request (HTTP/1.1 and HTTP/2)', async () => {
    state.aborted = 0;
    const req = request('/hang');
    req.on('error', () => undefined);
    req.end();
    await new Promise((r) => setTimeout(r, 150));
    req.destroy();
    for (let i = 0; i < 100 && state.aborted < 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(state.aborted, 1);

    const session = connectH2(gw.port, pki);
    const s = session.request({ ':path': '/hang', ':authority': 'app.example.test' });
    s.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 150));
    s.close(8); // RST_STREAM CANCEL
    for (let i = 0; i < 100 && state.aborted < 2; i++) await new Promise((r) => setTimeout(r, 10));
    session.close();
    assert.equal(state.aborted, 2);
  });
});
