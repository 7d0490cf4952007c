import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCodes, isMeshError, type ErrorCode } from '../core/index.js';
import { generateKeyPair } from '../pki/index.js';
import { TestCA } from '../../test/helpers/test-ca.js';
import { checkIssuedChain, mergeBundles } from './issued-certificate.js';

const ID = 'spiffe://cluster.local/ns/shop/sa/cart';
const src = 'CA at 127.0.0.1:15012';

async function setup() {
  const root = await TestCA.root({ name: 'mesh root' });
  const ca = await root.child({ name: 'mesh ca' });
  const svid = await ca.issueSvid(ID);
  const answer = (leaf = svid, bundle = root.cert.pem) => [leaf.cert.pem, ...leaf.chain.slice(1).map((c) => c.pem), bundle];
  return { root, ca, svid, answer };
}

function rejectsWith(fn: () => unknown, code: ErrorCode, re: RegExp): void {
  assert.throws(fn, (e) => {
    assert.ok(isMeshError(e), String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    assert.match(e.message, /^CA at 127\.0\.0\.1:15012: certificate rejected, not served: /);
    return true;
  });
}

test('a good answer: leaf for our key, the SVID expected, chain valid to the bundle; the bundle is kept apart', async () => {
  const { root, svid, answer } = await setup();
  const got = checkIssuedChain({ certChain: answer(), privateKey: svid.privateKey, anchors: [root.cert], expectedId: ID, source: src, at: new Date() });
  assert.equal(got.spiffeId, ID);
  assert.equal(got.chain.length, 2, 'leaf and intermediate, no root');
  assert.equal(got.leaf.serial, svid.cert.serial);
  assert.deepEqual(got.bundle.map((c) => c.fingerprint256), [root.cert.fingerprint256]);
  assert.equal(got.chainPem, svid.chainPem);
});

test('rejected: another key, another identity, another service account, not an SVID', async () => {
  const { root, ca, svid, answer } = await setup();
  const base = { anchors: [root.cert], source: src, at: new Date() };
  rejectsWith(() => checkIssuedChain({ ...base, certChain: answer(), privateKey: generateKeyPair().privateKey }), ErrorCodes.KEY_MISMATCH, /not for the key of this request/);
  rejectsWith(
    () => checkIssuedChain({ ...base, certChain: answer(), privateKey: svid.privateKey, expectedId: 'spiffe://cluster.local/ns/shop/sa/web' }),
    ErrorCodes.IDENTITY_MISMATCH,
    /it is for spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart, but this agent is spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/,
  );
  rejectsWith(
    () => checkIssuedChain({ ...base, certChain: answer(), privateKey: svid.privateKey, expectedPathSuffix: '/ns/shop/sa/web' }),
    ErrorCodes.IDENTITY_MISMATCH,
    /service account \/ns\/shop\/sa\/web/,
  );
  const server = await ca.issueServer(['cart.shop.svc']);
  rejectsWith(() => checkIssuedChain({ ...base, certChain: answer(server), privateKey: server.privateKey }), ErrorCodes.SVID, /no URI SAN/);
});

test('rejected: a chain that does not verify (bad signature, expired), too short, or a bundle that replaces our trust', async () => {
  const { root, svid, answer } = await setup();
  const base = { anchors: [root.cert], source: src, at: new Date(), privateKey: svid.privateKey };
  // An impostor CA with the same names, whose leaf is presented with the real intermediate: the signature fails.
  const fakeRoot = await TestCA.root({ name: 'mesh root' });
  const fakeCa = await fakeRoot.child({ name: 'mesh ca' });
  const forged = await fakeCa.issueSvid(ID);
  const realIntermediate = svid.chain[1]!.pem;
  rejectsWith(
    () => checkIssuedChain({ ...base, privateKey: forged.privateKey, certChain: [forged.cert.pem, realIntermediate, root.cert.pem] }),
    ErrorCodes.CHAIN,
    /does not verify to the trust bundle: \[signature at depth 0\]/,
  );
  // The impostor's own bundle verifies its chain, but shares no root with what the agent trusts.
  rejectsWith(
    () => checkIssuedChain({ ...base, privateKey: forged.privateKey, certChain: answer(forged, fakeRoot.cert.pem) }),
    ErrorCodes.CHAIN,
    /shares no root with --ca-root/,
  );
  rejectsWith(() => checkIssuedChain({ ...base, certChain: answer(), at: new Date(Date.now() + 2 * 86_400_000) }), ErrorCodes.CHAIN, /\[expired at depth 0\]/);
  rejectsWith(() => checkIssuedChain({ ...base, certChain: [svid.cert.pem] }), ErrorCodes.CHAIN, /the answer has 1 element/);
  assert.throws(
    () => checkIssuedChain({ ...base, certChain: ['garbage', root.cert.pem] }),
    (e) => isMeshError(e) && /certificate rejected, not served: cert_chain\[0\]/.test(e.message),
  );
});

test('during a root rotation the bundle holds two roots: one known root is enough, and both are served', async () => {
  const { root, svid, answer } = await setup();
  const next = await TestCA.root({ name: 'next root' });
  const got = checkIssuedChain({ certChain: answer(svid, root.cert.pem + next.cert.pem), privateKey: svid.privateKey, anchors: [root.cert], source: src, at: new Date() });
  assert.equal(got.bundle.length, 2);
  const merged = mergeBundles(got.bundle, [root.cert]);
  assert.deepEqual(merged.map((c) => c.fingerprint256), [root.cert.fingerprint256, next.cert.fingerprint256]);
});
