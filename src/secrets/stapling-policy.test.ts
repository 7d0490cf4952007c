import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { buildOcspErrorResponse, buildOcspResponse, certIdFor, toSigningKey } from '../pki/index.js';
import { TestCA } from '../../test/helpers/test-ca.js';
import { HOUR, MIN, gatewayPki, makeStaple, otherLeaf, type GatewayPki } from '../../test/sds/secret-fixtures.js';
import {
  ENVOY_STAPLE_POLICY,
  STAPLING_TABLE,
  assessStaple,
  decideStapling,
  effectivePolicy,
  parseOcspPolicy,
  type GatewayAction,
  type OcspPolicy,
  type SdsAction,
  type StapleState,
} from './index.js';

let pki: GatewayPki;
let mustStaplePki: GatewayPki;

before(async () => {
  pki = await gatewayPki();
  mustStaplePki = await gatewayPki({ mustStaple: true });
});

describe('the stapling table of DESIGN.md', () => {
  // Written out again from DESIGN.md, cell by cell, so that a change to the table in code is a visible test change.
  const expected: Record<OcspPolicy, Record<StapleState, [GatewayAction, SdsAction]>> = {
    OPTIONAL: {
      none: ['serve-without-staple', 'send-without-staple'],
      expired: ['serve-without-staple', 'send-without-staple'],
      broken: ['serve-without-staple', 'send-without-staple'],
      valid: ['staple', 'send-with-staple'],
    },
    PREFERRED: {
      none: ['serve-without-staple', 'send-without-staple'],
      expired: ['fail-handshake', 'send-with-staple'],
      broken: ['fail-handshake', 'withhold'],
      valid: ['staple', 'send-with-staple'],
    },
    MANDATORY: {
      none: ['reject', 'withhold'],
      expired: ['fail-handshake', 'send-with-staple'],
      broken: ['reject', 'withhold'],
      valid: ['staple', 'send-with-staple'],
    },
  };
  for (const policy of ['OPTIONAL', 'PREFERRED', 'MANDATORY'] as const) {
    for (const state of ['none', 'expired', 'broken', 'valid'] as const) {
      test(`${policy} × ${state}`, () => {
        const d = decideStapling(policy, state);
        assert.deepEqual([d.gateway.action, d.sds.action], expected[policy][state]);
        assert.ok(d.gateway.reason.length > 0 && d.sds.reason.length > 0);
        assert.equal(STAPLING_TABLE[policy][state], d);
      });
    }
  }

  test('Envoy policies per annotation value', () => {
    assert.deepEqual(ENVOY_STAPLE_POLICY, { OPTIONAL: 'LENIENT_STAPLING', PREFERRED: 'STRICT_STAPLING', MANDATORY: 'MUST_STAPLE' });
  });

  test('the reason for MANDATORY without a staple is said in words', () => {
    assert.equal(decideStapling('MANDATORY', 'none').gateway.reason, 'MANDATORY policy but no OCSP staple');
  });
});

describe('effective policy', () => {
  test('no annotation means OPTIONAL', () => {
    const p = effectivePolicy(null, pki.leaf.cert);
    assert.equal(p.policy, 'OPTIONAL');
    assert.equal(p.envoy, 'LENIENT_STAPLING');
    assert.equal(p.mustStaple, false);
  });

  test('the annotation is followed', () => {
    assert.equal(effectivePolicy('PREFERRED', pki.leaf.cert).policy, 'PREFERRED');
  });

  test('a must-staple certificate is MANDATORY whatever the annotation says', () => {
    for (const declared of [null, 'OPTIONAL', 'PREFERRED'] as const) {
      const p = effectivePolicy(declared, mustStaplePki.leaf.cert);
      assert.equal(p.policy, 'MANDATORY');
      assert.equal(p.envoy, 'MUST_STAPLE');
      assert.equal(p.mustStaple, true);
      assert.match(p.why, /must-staple/);
    }
  });

  test('annotation values: case is forgiven, others are a configuration error naming the value', () => {
    assert.equal(parseOcspPolicy('mandatory'), 'MANDATORY');
    assert.equal(parseOcspPolicy(' Preferred '), 'PREFERRED');
    assert.throws(
      () => parseOcspPolicy('REQUIRED', 'secret gw annotation'),
      (err: unknown) => isMeshError(err, ErrorCodes.CONFIG) && /"REQUIRED" is not a stapling policy; use one of OPTIONAL, PREFERRED, MANDATORY/.test(err.message),
    );
  });
});

describe('staple validity (DESIGN.md rules, no clock skew, Envoy on nextUpdate)', () => {
  const now = () => new Date();
  const assess = (staple: Uint8Array | null, issuer = pki.ca.cert, cert = pki.leaf.cert, at = now()) => assessStaple({ cert, issuer, staple, at });

  test('none', () => {
    assert.equal(assess(null).state, 'none');
    assert.equal(assess(Buffer.alloc(0)).state, 'none');
  });

  test('valid: signed by the issuer, right CertID (SHA-1 and SHA-256), good, current', async () => {
    for (const hash of ['sha1', 'sha256'] as const) {
      const a = assess(await makeStaple(pki.ca, pki.leaf.cert, { hash }));
      assert.equal(a.state, 'valid', a.reasons.join('; '));
      assert.equal(a.status, 'good');
      assert.ok(a.changesAt && a.nextUpdate && a.changesAt.getTime() === a.nextUpdate.getTime() + 1);
    }
  });

  test('valid when signed by a delegated OCSP signer of the issuer', async () => {
    const responder = await pki.ca.issue({ subject: 'CN=gw ocsp signer', extKeyUsage: ['ocspSigning'] });
    const staple = await buildOcspResponse({
      responder: { cert: responder.cert, signer: await toSigningKey(responder.privateKey) },
      responses: [{ certId: certIdFor(pki.leaf.cert, pki.ca.cert), status: 'good', thisUpdate: new Date(Date.now() - MIN), nextUpdate: new Date(Date.now() + HOUR) }],
      producedAt: new Date(Date.now() - MIN),
    });
    assert.equal(assess(staple).state, 'valid');
  });

  test('expired: nextUpdate passed, or no nextUpdate at all (as Envoy treats it)', async () => {
    const past = assess(await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(Date.now() - 2 * HOUR), nextUpdate: new Date(Date.now() - HOUR) }));
    assert.equal(past.state, 'expired');
    assert.match(past.reasons[0]!, /expired: nextUpdate/);
    const noNext = assess(await makeStaple(pki.ca, pki.leaf.cert, { nextUpdate: null }));
    assert.equal(noNext.state, 'expired');
    assert.match(noNext.reasons[0]!, /no nextUpdate; Envoy treats such a staple as expired/);
  });

  test('no clock skew: one second past nextUpdate is expired', async () => {
    const next = new Date(Math.floor(Date.now() / 1000) * 1000 + 60_000);
    const staple = await makeStaple(pki.ca, pki.leaf.cert, { nextUpdate: next });
    assert.equal(assess(staple, pki.ca.cert, pki.leaf.cert, next).state, 'valid');
    assert.equal(assess(staple, pki.ca.cert, pki.leaf.cert, new Date(next.getTime() + 1000)).state, 'expired');
  });

  test('not yet valid (thisUpdate ahead) counts as expired and turns valid at thisUpdate', async () => {
    const start = new Date(Math.floor(Date.now() / 1000) * 1000 + 120_000);
    const a = assess(await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: start, nextUpdate: new Date(start.getTime() + HOUR) }));
    assert.equal(a.state, 'expired');
    assert.equal(a.notYetValid, true);
    assert.equal(a.changesAt?.getTime(), start.getTime());
  });

  test('broken: unparsable, unsuccessful, wrong certificate, bad signature, revoked, unknown, several certificates, no issuer', async () => {
    const other = await otherLeaf(pki);
    const stranger = await TestCA.root({ name: 'stranger' });
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['garbage', Buffer.from('not an OCSP response'), /./],
      ['unsuccessful', buildOcspErrorResponse('tryLater'), /tryLater/],
      ['wrong certificate', await makeStaple(pki.ca, other.cert), /not serial/],
      ['bad signature', await makeStaple(pki.ca, pki.leaf.cert, { signer: stranger }), /responder|signature/],
      ['revoked', await makeStaple(pki.ca, pki.leaf.cert, { status: { revoked: { at: new Date(Date.now() - HOUR), reason: 'keyCompromise' } } }), /revoked/],
      ['unknown', await makeStaple(pki.ca, pki.leaf.cert, { status: 'unknown' }), /unknown/],
    ];
    for (const [what, staple, re] of cases) {
      const a = assess(staple);
      assert.equal(a.state, 'broken', what);
      assert.match(a.reasons.join('\n'), re, what);
    }
    const two = await buildOcspResponse({
      responder: { cert: pki.ca.cert, signer: pki.ca.signer },
      responses: [pki.leaf.cert, other.cert].map((c) => ({ certId: certIdFor(c, pki.ca.cert), status: 'good' as const, thisUpdate: new Date(Date.now() - MIN), nextUpdate: new Date(Date.now() + HOUR) })),
      producedAt: new Date(Date.now() - MIN),
    });
    const multi = assess(two);
    assert.equal(multi.state, 'broken');
    assert.match(multi.reasons[0]!, /about 2 certificates; Envoy accepts a staple about exactly one/);
    const noIssuer = assessStaple({ cert: pki.leaf.cert, issuer: null, staple: await makeStaple(pki.ca, pki.leaf.cert), at: now() });
    assert.equal(noIssuer.state, 'broken');
    assert.match(noIssuer.reasons[0]!, /add the intermediate to the chain/);
  });

  test('broken wins over expired: an expired staple for the wrong certificate is broken', async () => {
    const other = await otherLeaf(pki);
    const a = assess(await makeStaple(pki.ca, other.cert, { thisUpdate: new Date(Date.now() - 2 * HOUR), nextUpdate: new Date(Date.now() - HOUR) }));
    assert.equal(a.state, 'broken');
  });
});
