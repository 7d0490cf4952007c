import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/core/index.js';
import { certIdFor } from '../../src/pki/index.js';
import { fetchStaple, type StapleFetchResult } from '../../src/secrets/index.js';
import { TestCA } from '../helpers/test-ca.js';
import { gatewayPki, otherLeaf, type GatewayPki } from '../sds/secret-fixtures.js';
import { FakeResponder } from './fake-responder.js';

let pki: GatewayPki;
let stranger: TestCA;
let responder: FakeResponder;
const clock = new ManualClock(new Date());

before(async () => {
  pki = await gatewayPki();
  stranger = await TestCA.root({ name: 'not the issuer' });
  responder = await FakeResponder.start(pki.ca, clock);
});
after(() => responder.close());

function fetch(options: { nonce?: boolean; timeoutMs?: number; url?: string } = {}): Promise<StapleFetchResult> {
  return fetchStaple({ cert: pki.leaf.cert, issuer: pki.ca.cert, url: options.url ?? responder.url, clock, ...options });
}

function failure(r: StapleFetchResult): { reason: string; message: string } {
  assert.equal(r.ok, false, 'expected a failure');
  return r as { reason: string; message: string };
}

describe('fetchStaple against a responder', () => {
  test('POSTs an application/ocsp-request with a SHA-1 CertID for the certificate, and believes a good answer', async () => {
    responder.mode = { kind: 'answer', validityMs: 2 * 3_600_000 };
    const before = responder.requests.length;
    const r = await fetch();
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.status, 'good');
    assert.equal(r.nextUpdate!.getTime() - r.thisUpdate.getTime(), 2 * 3_600_000);
    const seen = responder.requests[before]!;
    assert.equal(seen.method, 'POST');
    assert.equal(seen.contentType, 'application/ocsp-request');
    assert.equal(seen.certIds.length, 1);
    assert.equal(seen.certIds[0]!.hashAlgorithm, 'sha1');
    assert.deepEqual(seen.certIds[0], certIdFor(pki.leaf.cert, pki.ca.cert, 'sha1'));
    assert.equal(seen.nonce, null, 'no nonce unless asked');
  });

  test('with nonce: sends one and accepts the echo', async () => {
    responder.mode = { kind: 'answer' };
    const before = responder.requests.length;
    const r = await fetch({ nonce: true });
    assert.ok(r.ok, JSON.stringify(r));
    assert.ok(responder.requests[before]!.nonce && responder.requests[before]!.nonce.length === 16);
  });

  test('a revoked answer is an answer, with its time and reason', async () => {
    const at = new Date(Math.floor(clock.now().getTime() / 1000) * 1000 - 3_600_000);
    responder.mode = { kind: 'answer', status: { revoked: { at, reason: 'keyCompromise' } } };
    const r = await fetch();
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.status, 'revoked');
    assert.equal(r.revokedAt!.getTime(), at.getTime());
    assert.equal(r.revocationReason, 'keyCompromise');
  });

  const bad: Array<[string, () => Promise<FakeResponder['mode']>, string, RegExp]> = [
    ['HTTP 503', async () => ({ kind: 'http', status: 503 }), 'http-status', /HTTP 503/],
    ['garbage', async () => ({ kind: 'garbage' }), 'garbage', /OCSP answer from http/],
    ['tryLater', async () => ({ kind: 'tryLater' }), 'responder-error', /tryLater/],
    ['a signature by another CA', async () => ({ kind: 'answer', signer: stranger }), 'wrong-signer', /responder|signature/],
    ['an answer about another certificate', async () => ({ kind: 'answer', certId: certIdFor((await otherLeaf(pki)).cert, pki.ca.cert) }), 'wrong-certificate', /not serial/],
    ['status unknown', async () => ({ kind: 'answer', status: 'unknown' }), 'unknown-status', /unknown/],
    ['an answer that expired long ago', async () => ({ kind: 'answer', thisUpdateOffsetMs: -3 * 3_600_000, validityMs: 3_600_000 }), 'stale', /expired/],
    ['an oversized body', async () => ({ kind: 'huge' }), 'too-large', /bytes/],
  ];
  for (const [what, mode, reason, message] of bad) {
    test(`${what}: failure "${reason}"`, async () => {
      responder.mode = await mode();
      const f = failure(await fetch());
      assert.equal(f.reason, reason, f.message);
      assert.match(f.message, message);
    });
  }

  test('a nonce that is not echoed: failure "nonce"', async () => {
    responder.mode = { kind: 'answer', echoNonce: false };
    const f = failure(await fetch({ nonce: true }));
    assert.equal(f.reason, 'nonce');
    assert.match(f.message, /no nonce/);
    // The same answer is fine when we sent none.
    assert.ok((await fetch()).ok);
  });

  test('a responder that never answers: failure "timeout" within the limit', async () => {
    responder.mode = { kind: 'hang' };
    const f = failure(await fetch({ timeoutMs: 300 }));
    assert.equal(f.reason, 'timeout');
    assert.match(f.message, /300 ms/);
  });

  test('nothing listening: failure "unreachable" naming the URL', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const url = `http://127.0.0.1:${port}/`;
    const f = failure(await fetch({ url }));
    assert.equal(f.reason, 'unreachable');
    assert.ok(f.message.includes(url), f.message);
    assert.match(f.message, /ECONNREFUSED/);
  });

  test('a URL that is not http(s): failure, no throw', async () => {
    const f = failure(await fetch({ url: 'ldap://ocsp.example/' }));
    assert.equal(f.reason, 'unreachable');
    assert.match(f.message, /only http: and https:/);
  });
});
