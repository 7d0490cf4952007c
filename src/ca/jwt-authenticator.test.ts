import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import { ErrorCodes, ManualClock, isMeshError } from '../core/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import { JwtAuthenticator, bearerToken, looksLikeJwt } from './jwt-authenticator.js';

const T0 = Date.parse('2025-06-01T12:00:00Z');
const ISS = 'https://kubernetes.default.svc';
const TD = 'cluster.local';

interface Pair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}
const rsa = (): Pair => generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = (curve = 'prime256v1'): Pair => generateKeyPairSync('ec', { namedCurve: curve });

function jwk(pair: Pair, kid: string, alg?: string): Record<string, unknown> {
  return { ...(pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid, use: 'sig', ...(alg ? { alg } : {}) };
}

/** A service-account token as Kubernetes makes them (projected, bound): sub and the kubernetes.io claim. */
function k8sClaims(now: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  const sec = Math.floor(now / 1000);
  return {
    iss: ISS,
    aud: ['istio-ca'],
    sub: 'system:serviceaccount:web:frontend',
    'kubernetes.io': { namespace: 'web', serviceaccount: { name: 'frontend', uid: '4b1c' }, pod: { name: 'frontend-0', uid: '9a' } },
    iat: sec - 60,
    nbf: sec - 60,
    exp: sec + 3600,
    ...over,
  };
}

async function sign(key: KeyObject | Uint8Array, alg: string, claims: Record<string, unknown>, kid?: string): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) }).sign(key);
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function rejectsWith(code: string, pattern: RegExp, token?: string) {
  return (err: unknown): boolean => {
    assert.ok(isMeshError(err), `expected a MeshError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    if (token) assert.ok(!err.message.includes(token) && !err.message.includes(token.split('.')[2] || '\u0000'), 'the token must not be echoed');
    return true;
  };
}

describe('JwtAuthenticator', () => {
  const t = tempDir('meshcert-jwt-');
  const clock = new ManualClock(T0);
  const rsaKey = rsa();
  const ecKey = ec();
  const pemKey = ec();
  let jwksFile: string;
  let pemFile: string;
  let auth: JwtAuthenticator;

  before(() => {
    jwksFile = t.file('jwks.json', `  ${JSON.stringify({ keys: [jwk(rsaKey, 'rsa-1'), jwk(ecKey, 'ec-1')] })}\n\n`);
    pemFile = t.file('sa.pub', `\n${pemKey.publicKey.export({ format: 'pem', type: 'spki' }) as string}\n`);
    auth = new JwtAuthenticator({
      trustDomain: TD,
      clock,
      clockSkewMs: 30_000,
      issuers: [
        { issuer: ISS, audiences: ['istio-ca'], jwksFile },
        { issuer: 'https://oidc.example', audiences: ['mesh', 'istio-ca'], publicKeyFiles: [pemFile] },
      ],
    });
  });
  after(() => t.cleanup());

  test('RS256 and ES256 Kubernetes tokens from a JWKS map to spiffe://td/ns/NS/sa/SA', async () => {
    for (const [key, alg, kid] of [
      [rsaKey, 'RS256', 'rsa-1'],
      [ecKey, 'ES256', 'ec-1'],
    ] as const) {
      const caller = await auth.authenticate(bearer(await sign(key.privateKey, alg, k8sClaims(T0), kid)));
      assert.equal(caller?.spiffeId.toString(), 'spiffe://cluster.local/ns/web/sa/frontend');
      assert.equal(caller?.method, 'jwt');
      assert.equal(caller?.principal, `jwt iss=${ISS} sub=system:serviceaccount:web:frontend`);
    }
  });

  test('a PEM public key file verifies tokens without a kid match; either claim form names the service account', async () => {
    const onlySub = k8sClaims(T0, { iss: 'https://oidc.example', aud: 'mesh', sub: 'system:serviceaccount:ops:runner' });
    delete onlySub['kubernetes.io'];
    const a = await auth.authenticate(bearer(await sign(pemKey.privateKey, 'ES256', onlySub, 'some-kid')));
    assert.equal(a?.spiffeId.toString(), 'spiffe://cluster.local/ns/ops/sa/runner');
    const onlyClaim = k8sClaims(T0, { iss: 'https://oidc.example', sub: '1234-uuid', 'kubernetes.io': { namespace: 'db', serviceaccount: { name: 'pg' } } });
    const b = await auth.authenticate(bearer(await sign(pemKey.privateKey, 'ES256', onlyClaim)));
    assert.equal(b?.spiffeId.toString(), 'spiffe://cluster.local/ns/db/sa/pg');
  });

  test('no bearer token, another scheme, or a non-JWT bearer: null (for the next authenticator)', async () => {
    assert.equal(await auth.authenticate({}), null);
    assert.equal(await auth.authenticate({ authorization: 'Basic dXNlcjpwYXNz' }), null);
    assert.equal(await auth.authenticate(bearer('opaque-bootstrap-token-0123456789')), null);
    assert.equal(bearerToken({ authorization: '  bearer   abc ' }), 'abc');
    assert.equal(bearerToken({ authorization: 'Bearer' }), '');
    assert.ok(looksLikeJwt('a.b.'));
    assert.ok(!looksLikeJwt('a.b'));
  });

  test('expired, not yet valid (beyond the skew), and within the skew', async () => {
    const sec = Math.floor(T0 / 1000);
    const expired = await sign(rsaKey.privateKey, 'RS256', k8sClaims(T0, { exp: sec - 31 }), 'rsa-1');
    await assert.rejects(auth.authenticate(bearer(expired)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /expired at 2025-06-01T11:59:29\.000Z.*clock skew allowed 30s/, expired));
    const withinSkew = await sign(rsaKey.privateKey, 'RS256', k8sClaims(T0, { exp: sec - 20, nbf: sec + 20 }), 'rsa-1');
    assert.ok(await auth.authenticate(bearer(withinSkew)));
    const early = await sign(rsaKey.privateKey, 'RS256', k8sClaims(T0, { nbf: sec + 120 }), 'rsa-1');
    await assert.rejects(auth.authenticate(bearer(early)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /not valid before 2025-06-01T12:02:00\.000Z/, early));
    const noExp = k8sClaims(T0);
    delete noExp.exp;
    await assert.rejects(auth.authenticate(bearer(await sign(rsaKey.privateKey, 'RS256', noExp, 'rsa-1'))), rejectsWith(ErrorCodes.UNAUTHENTICATED, /no "exp" claim/));
  });

  test('wrong audience, unconfigured issuer, missing issuer', async () => {
    const wrongAud = await sign(rsaKey.privateKey, 'RS256', k8sClaims(T0, { aud: ['kube-apiserver'] }), 'rsa-1');
    await assert.rejects(auth.authenticate(bearer(wrongAud)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /audience \["kube-apiserver"\] is not accepted for issuer .*accepted: istio-ca/, wrongAud));
    const noAud = k8sClaims(T0);
    delete noAud.aud;
    await assert.rejects(auth.authenticate(bearer(await sign(rsaKey.privateKey, 'RS256', noAud, 'rsa-1'))), rejectsWith(ErrorCodes.UNAUTHENTICATED, /no "aud" claim/));
    const otherIss = await sign(rsaKey.privateKey, 'RS256', k8sClaims(T0, { iss: 'https://evil.example' }), 'rsa-1');
    await assert.rejects(auth.authenticate(bearer(otherIss)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /issuer "https:\/\/evil\.example" is not configured/, otherIss));
    const noIss = k8sClaims(T0);
    delete noIss.iss;
    await assert.rejects(auth.authenticate(bearer(await sign(rsaKey.privateKey, 'RS256', noIss, 'rsa-1'))), rejectsWith(ErrorCodes.UNAUTHENTICATED, /no "iss"/));
  });

  test('bad signature, unknown kid, alg none, HS256, other algorithms: refused', async () => {
    const intruder = rsa();
    const forged = await sign(intruder.privateKey, 'RS256', k8sClaims(T0), 'rsa-1');
    await assert.rejects(auth.authenticate(bearer(forged)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /signature does not verify with the key of issuer/, forged));
    const unknownKid = await sign(intruder.privateKey, 'RS256', k8sClaims(T0), 'rotated-away');
    await assert.rejects(auth.authenticate(bearer(unknownKid)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /no key of JWT issuer .* matches the token \(alg RS256, kid "rotated-away"\)/));
    // A PEM issuer: every key is tried, none fits.
    const forgedPem = await sign(ec().privateKey, 'ES256', k8sClaims(T0, { iss: 'https://oidc.example' }));
    await assert.rejects(auth.authenticate(bearer(forgedPem)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /signature does not verify/));
    // Tampered payload, genuine signature.
    const good = await sign(rsaKey.privateKey, 'RS256', k8sClaims(T0), 'rsa-1');
    const [h, , s] = good.split('.');
    const tampered = `${h}.${b64(k8sClaims(T0, { sub: 'system:serviceaccount:kube-system:admin', 'kubernetes.io': undefined }))}.${s}`;
    await assert.rejects(auth.authenticate(bearer(tampered)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /signature does not verify/, tampered));

    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(k8sClaims(T0))}.`;
    await assert.rejects(auth.authenticate(bearer(none)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /algorithm "none" is not accepted.*RS256 or ES256/));
    const hs = await sign(new TextEncoder().encode('a shared secret of at least 32 bytes!!'), 'HS256', k8sClaims(T0), 'rsa-1');
    await assert.rejects(auth.authenticate(bearer(hs)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /algorithm "HS256" is not accepted/, hs));
    const ps = await sign(rsaKey.privateKey, 'PS256', k8sClaims(T0), 'rsa-1');
    await assert.rejects(auth.authenticate(bearer(ps)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /algorithm "PS256" is not accepted/));
    await assert.rejects(auth.authenticate(bearer('eyJub3QiOiJqc29u.eyJ4IjoxfQ.abc')), rejectsWith(ErrorCodes.UNAUTHENTICATED, /not a well-formed JWT/));
  });

  test('tokens that name no service account, or two different ones, or an invalid one, are refused', async () => {
    const plain = k8sClaims(T0, { sub: 'alice@example.com' });
    delete plain['kubernetes.io'];
    await assert.rejects(auth.authenticate(bearer(await sign(rsaKey.privateKey, 'RS256', plain, 'rsa-1'))), rejectsWith(ErrorCodes.UNAUTHENTICATED, /does not name a Kubernetes service account/));
    const mixed = k8sClaims(T0, { sub: 'system:serviceaccount:kube-system:admin' });
    await assert.rejects(auth.authenticate(bearer(await sign(rsaKey.privateKey, 'RS256', mixed, 'rsa-1'))), rejectsWith(ErrorCodes.UNAUTHENTICATED, /name different service accounts/));
    const bad = k8sClaims(T0, { sub: 'system:serviceaccount:we b:x' });
    delete bad['kubernetes.io'];
    await assert.rejects(auth.authenticate(bearer(await sign(rsaKey.privateKey, 'RS256', bad, 'rsa-1'))), rejectsWith(ErrorCodes.UNAUTHENTICATED, /does not make a valid SPIFFE ID/));
  });

  test('key files are re-read when they change: a rotated JWKS takes effect on the next request', async () => {
    const next = ec();
    const token = await sign(next.privateKey, 'ES256', k8sClaims(T0), 'ec-2');
    await assert.rejects(auth.authenticate(bearer(token)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /no key of JWT issuer/));
    writeFileSync(jwksFile, JSON.stringify({ keys: [jwk(rsaKey, 'rsa-1'), jwk(next, 'ec-2')] }));
    assert.equal((await auth.authenticate(bearer(token)))?.spiffeId.toString(), 'spiffe://cluster.local/ns/web/sa/frontend');
    const old = await sign(ecKey.privateKey, 'ES256', k8sClaims(T0), 'ec-1');
    await assert.rejects(auth.authenticate(bearer(old)), rejectsWith(ErrorCodes.UNAUTHENTICATED, /no key/));
    // A file broken in place is a server-side CONFIG error naming the file (fail closed), not a caller's fault.
    writeFileSync(jwksFile, '{"keys": [ {"kty": "RSA", "n": "secret-ish-content"');
    await assert.rejects(auth.authenticate(bearer(token)), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && e.message.includes(jwksFile) && !e.message.includes('secret-ish'));
    writeFileSync(jwksFile, JSON.stringify({ keys: [jwk(next, 'ec-2')] }));
    assert.ok(await auth.authenticate(bearer(token)));
  });

  test('an issuer with its own trust domain maps its service accounts there; the others keep the default', async () => {
    const partnerKey = ec();
    const partnerPem = t.file('partner.pub', partnerKey.publicKey.export({ format: 'pem', type: 'spki' }) as string);
    const mainJwks = t.file('main-jwks.json', JSON.stringify({ keys: [jwk(ecKey, 'ec-1')] }));
    const two = new JwtAuthenticator({
      trustDomain: TD,
      clock,
      issuers: [
        { issuer: ISS, audiences: ['istio-ca'], jwksFile: mainJwks },
        { issuer: 'https://partner.example', audiences: ['istio-ca'], publicKeyFiles: [partnerPem], trustDomain: 'partner.example' },
      ],
    });
    const partner = await two.authenticate(bearer(await sign(partnerKey.privateKey, 'ES256', k8sClaims(T0, { iss: 'https://partner.example' }))));
    assert.equal(partner?.spiffeId.toString(), 'spiffe://partner.example/ns/web/sa/frontend');
    const main = await two.authenticate(bearer(await sign(ecKey.privateKey, 'ES256', k8sClaims(T0), 'ec-1')));
    assert.equal(main?.spiffeId.toString(), 'spiffe://cluster.local/ns/web/sa/frontend');
    assert.throws(
      () => new JwtAuthenticator({ trustDomain: TD, issuers: [{ issuer: ISS, audiences: ['a'], jwksFile, trustDomain: 'Not A Domain' }] }),
      (e: unknown) => isMeshError(e, ErrorCodes.SPIFFE_ID) && /auth\.jwt\[0\]\.trustDomain/.test(e.message),
    );
  });

  test('configuration errors name the file and what is wrong', () => {
    const make = (o: Record<string, unknown>) => () => new JwtAuthenticator({ trustDomain: TD, issuers: [{ issuer: ISS, audiences: ['a'], ...o }] });
    assert.throws(make({ jwksFile: t.file('missing.json') }), (e: unknown) => isMeshError(e, ErrorCodes.FILE_READ) && /missing\.json: cannot read the JWKS file: no such file/.test(e.message));
    assert.throws(make({ jwksFile: t.file('bad.json', 'not json') }), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /bad\.json: not valid JSON/.test(e.message));
    const priv = rsaKey.privateKey.export({ format: 'jwk' });
    assert.throws(make({ jwksFile: t.file('priv.json', JSON.stringify({ keys: [priv] })) }), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /keys\[0\]: a private or secret key/.test(e.message));
    assert.throws(make({ jwksFile: t.file('p384.json', JSON.stringify({ keys: [jwk(ec('secp384r1'), 'x')] })) }), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /no RS256 or ES256 public key/.test(e.message));
    assert.throws(make({ publicKeyFiles: [t.file('k.pem', rsaKey.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string)] }), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /is a private key/.test(e.message) && !/MII/.test(e.message));
    assert.throws(make({ publicKeyFiles: [t.file('small.pem', generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }) as string)] }), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /1024 bits/.test(e.message));
    assert.throws(make({ publicKeyFiles: [t.file('ed.pem', generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }) as string)] }), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /ed25519 key; only RSA/.test(e.message));
    assert.throws(make({}), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && /exactly one of jwksFile or publicKeyFiles/.test(e.message));
  });
});
