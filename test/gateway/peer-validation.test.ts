// The asynchronous validators of issue #9 on their own: OCSP against a real `openssl ocsp` responder, the HTTP
// validator against a Node policy service, and the pipeline's timeout / fail-open / first-denial rules.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { OcspValidator } from '../../src/gateway/ocsp-validator.js';
import { HttpValidator } from '../../src/gateway/http-validator.js';
import { PeerValidationMetrics, PeerValidationPipeline, buildPeerValidation, type PeerValidator, type ValidationInput } from '../../src/gateway/peer-validation.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { writeAtomic } from '../sds/secret-fixtures.js';
import { OpensslResponder, indexLine } from '../secrets/openssl-responder.js';

const skip = skipUnlessCi(spawnSync('openssl', ['version']).status === 0 ? null : 'openssl is not installed');

function input(leaf: IssuedLeaf): ValidationInput {
  return { chain: leaf.chain, sni: 'pay.example.test', alpn: 'h2', remoteAddress: '127.0.0.1' };
}

describe('OCSP validator against openssl ocsp', () => {
  const tmp = tempDir('meshcert-peer-ocsp-');
  let responder: OpensslResponder;
  let good: IssuedLeaf;
  let revoked: IssuedLeaf;
  let unknown: IssuedLeaf;
  let noAia: IssuedLeaf;
  before(async () => {
    if (skip) return;
    const root = await TestCA.root({ name: 'validation root' });
    const ca = await root.child({ name: 'validation issuing CA' });
    const index = join(tmp.dir, 'index.txt');
    writeAtomic(index, '');
    responder = await OpensslResponder.create({ dir: tmp.dir, index, caPem: tmp.file('ca.pem', ca.cert.pem), caKey: tmp.file('ca.key', ca.keyPem), nmin: 5 });
    const client = (name: string) => ca.issueSvid(`spiffe://cluster.local/ns/shop/sa/${name}`, { ocspUrls: [responder.url] });
    good = await client('good');
    revoked = await client('revoked');
    unknown = await client('unknown'); // not in the index: openssl answers `unknown`
    noAia = await ca.issueSvid('spiffe://cluster.local/ns/shop/sa/plain');
    writeAtomic(index, indexLine(good.cert) + indexLine(revoked.cert, { at: new Date(Date.now() - 60_000), reason: 'keyCompromise' }));
    await responder.start();
  });
  after(async () => {
    await responder?.close();
    tmp.cleanup();
  });

  it('allows a good certificate, refuses a revoked one, and applies onUnknown / onError', { skip }, async () => {
    const v = new OcspValidator({ timeoutMs: 3000, onUnknown: 'deny', onError: 'deny' });
    assert.deepEqual(await v.validate(input(good)), { allowed: true });
    const r = await v.validate(input(revoked));
    assert.equal(r.allowed, false);
    assert.equal((r as { reason: string }).reason, 'ocsp_revoked');
    assert.match((r as { detail: string }).detail, new RegExp(`serial ${revoked.cert.serial}\\) is revoked`));
    assert.equal(((await v.validate(input(unknown))) as { reason: string }).reason, 'ocsp_unknown');
    const noUrl = await v.validate(input(noAia));
    assert.equal((noUrl as { reason: string }).reason, 'ocsp_error');
    assert.match((noUrl as { detail: string }).detail, /names no OCSP responder/);

    const lenient = new OcspValidator({ timeoutMs: 3000, onUnknown: 'allow', onError: 'allow' });
    assert.equal((await lenient.validate(input(unknown))).allowed, true);
    assert.equal((await lenient.validate(input(noAia))).allowed, true);
  });

  it('caches answers until nextUpdate and shares one query among concurrent connections', { skip }, async () => {
    const v = new OcspValidator({ timeoutMs: 3000, onUnknown: 'deny', onError: 'deny' });
    const results = await Promise.all(Array.from({ length: 20 }, () => v.validate(input(good))));
    assert.ok(results.every((r) => r.allowed));
    assert.equal(v.queries, 1, 'twenty concurrent checks of one certificate make one responder query');
    await v.validate(input(good));
    assert.equal(v.queries, 1, 'the cached answer serves the next connection');
    await v.validate(input(revoked));
    assert.equal(v.queries, 2);
  });

  it('denies (or allows when onError: allow) while the responder is down, and asks again once it is back', { skip }, async () => {
    await responder.stop();
    try {
      const v = new OcspValidator({ timeoutMs: 1000, onUnknown: 'deny', onError: 'deny' });
      const r = await v.validate(input(good));
      assert.equal((r as { reason: string }).reason, 'ocsp_error');
      assert.match((r as { detail: string }).detail, /unreachable|timeout/);
      const open = new OcspValidator({ timeoutMs: 1000, onUnknown: 'deny', onError: 'allow' });
      const o = await open.validate(input(good));
      assert.equal(o.allowed, true);
      assert.match((o as { note: string }).note, /unreachable|timeout/);
    } finally {
      await responder.start();
    }
    const v = new OcspValidator({ timeoutMs: 3000, onUnknown: 'deny', onError: 'deny' });
    assert.deepEqual(await v.validate(input(good)), { allowed: true });
  });
});

describe('HTTP validator', () => {
  let server: Server;
  let url: string;
  const seen: unknown[] = [];
  let leaf: IssuedLeaf;
  before(async () => {
    leaf = await (await TestCA.root()).issueSvid('spiffe://cluster.local/ns/shop/sa/cart');
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const parsed = JSON.parse(body) as { sni: string };
        seen.push(parsed);
        const answer = (status: number, text: string) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(text);
        };
        if (req.url === '/allow') answer(200, '{"allow":true}');
        else if (req.url === '/deny') answer(200, '{"allow":false,"reason":"cart is on the deny list"}');
        else if (req.url === '/garbage') answer(200, 'not json');
        else if (req.url === '/500') answer(500, '{}');
        else setTimeout(() => answer(200, '{"allow":true}'), 400); // /slow
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => server.close());

  it('posts the chain and the connection facts, and follows the answer', async () => {
    const allow = new HttpValidator({ url: `${url}/allow`, timeoutMs: 1000, failOpen: false });
    assert.deepEqual(await allow.validate(input(leaf)), { allowed: true });
    assert.deepEqual(seen[0], { chain: leaf.chain.map((c) => c.pem), sni: 'pay.example.test', alpn: 'h2', remoteAddress: '127.0.0.1' });
    const deny = new HttpValidator({ url: `${url}/deny`, timeoutMs: 1000, failOpen: false });
    const d = await deny.validate(input(leaf));
    assert.equal((d as { reason: string }).reason, 'http_denied');
    assert.match((d as { detail: string }).detail, /denied the client: cart is on the deny list/);
    allow.close();
    deny.close();
  });

  it('fails closed on garbage, HTTP errors, timeouts and an unreachable validator; open when failOpen', async () => {
    for (const [path, why] of [['/garbage', /not JSON/], ['/500', /HTTP 500/], ['/slow', /no answer within 100 ms/]] as const) {
      const v = new HttpValidator({ url: `${url}${path}`, timeoutMs: 100, failOpen: false });
      const r = await v.validate(input(leaf));
      assert.equal((r as { reason: string }).reason, 'http_error', path);
      assert.match((r as { detail: string }).detail, why);
      v.close();
    }
    const down = new HttpValidator({ url: 'http://127.0.0.1:1/validate', timeoutMs: 500, failOpen: true });
    const r = await down.validate(input(leaf));
    assert.equal(r.allowed, true);
    assert.match((r as { note: string }).note, /unreachable/);
    down.close();
  });
});

describe('validation pipeline', () => {
  let leaf: IssuedLeaf;
  before(async () => {
    leaf = await (await TestCA.root()).issueSvid('spiffe://cluster.local/ns/shop/sa/cart');
  });
  const fixed = (name: string, ms: number, allowed: boolean): PeerValidator => ({
    name,
    validate: () => new Promise((r) => setTimeout(() => r(allowed ? { allowed: true } : { allowed: false, reason: `${name}_no`, detail: `${name} says no` }), ms)),
  });

  it('admits when every validator allows; the first denial decides without waiting for slower ones', async () => {
    const registry = new Registry();
    const metrics = new PeerValidationMetrics(registry);
    assert.deepEqual(await new PeerValidationPipeline([fixed('a', 5, true), fixed('b', 10, true)], { metrics }).admit(input(leaf)), { allowed: true });
    const started = Date.now();
    const slowAllow = fixed('slow', 2000, true);
    const p = new PeerValidationPipeline([slowAllow, fixed('quick', 5, false)], { metrics });
    assert.deepEqual(await p.admit(input(leaf)), { allowed: false, reason: 'quick says no' });
    assert.ok(Date.now() - started < 1900, 'the denial did not wait for the slow validator');
    const text = await registry.metrics();
    assert.match(text, /meshcert_gateway_peer_validations_total\{validator="quick",result="denied",reason="quick_no"\} 1/);
    assert.match(text, /meshcert_gateway_peer_validations_total\{validator="a",result="allowed",reason="ok"\} 1/);
  });

  it('a validator past its timeout is Failed, unless failOpen; a throwing validator is Failed', async () => {
    const hang: PeerValidator = { name: 'hang', validate: () => new Promise(() => {}) };
    const closed = new PeerValidationPipeline([hang], { timeoutMs: { hang: 50 } });
    assert.deepEqual(await closed.admit(input(leaf)), { allowed: false, reason: 'validator hang did not answer within 50 ms' });
    const open = new PeerValidationPipeline([hang], { timeoutMs: { hang: 50 }, failOpen: { hang: true } });
    assert.deepEqual(await open.admit(input(leaf)), { allowed: true });
    const boom: PeerValidator = { name: 'boom', validate: () => Promise.reject(new Error('bad state')) };
    assert.deepEqual(await new PeerValidationPipeline([boom]).admit(input(leaf)), { allowed: false, reason: 'validator boom failed: bad state' });
  });

  it('is built from GatewayOptions.validation entries, per port', () => {
    assert.equal(buildPeerValidation([]), undefined);
    const p = buildPeerValidation([
      { port: 8443, ocsp: { timeout: 2000, onUnknown: 'deny', onError: 'allow' } },
      { http: { url: 'http://127.0.0.1:9/validate', timeout: 1000, failOpen: false } },
    ]);
    assert.deepEqual(p?.validators.map((v) => v.name), ['ocsp', 'http']);
    p?.close();
  });
});
