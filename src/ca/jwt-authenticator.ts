import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { ErrorCodes, MeshError, describeError, formatDuration, systemClock, type Clock } from '../core/index.js';
import { SpiffeId, TrustDomain, decodePem } from '../pki/index.js';
import type { Authenticator, CallContext, CallerIdentity } from './registration-types.js';
import { WatchedFile } from './watched-file.js';

/** The only JWS algorithms accepted: what Kubernetes and common OIDC issuers sign with. No HMAC, never "none". */
export const JWT_ALGORITHMS = ['RS256', 'ES256'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export interface JwtIssuerOptions {
  /** Exact `iss` value, e.g. https://kubernetes.default.svc. */
  issuer: string;
  /** The token's `aud` must contain at least one of these. */
  audiences: string[];
  /** A JWKS document ({"keys": [...]}), e.g. from the cluster's /openid/v1/jwks. Exactly one of jwksFile, publicKeyFiles. */
  jwksFile?: string;
  /** PEM files of PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE blocks (e.g. the cluster's sa.pub). */
  publicKeyFiles?: string[];
  /** The trust domain this issuer's service accounts map into; default: the authenticator's trustDomain. */
  trustDomain?: string;
}

export interface JwtAuthenticatorOptions {
  issuers: JwtIssuerOptions[];
  /** Service accounts map into this trust domain (spiffe://<trustDomain>/ns/<ns>/sa/<sa>) unless their issuer names another. */
  trustDomain: string;
  /** Allowed skew for exp and nbf, in ms. Default 60 s. */
  clockSkewMs?: number;
  clock?: Clock;
}

/** The token of an `authorization: Bearer …` value; null when there is no authorization or another scheme. */
export function bearerToken(ctx: CallContext): string | null {
  const m = /^\s*bearer(?:\s+([\s\S]*))?$/i.exec(ctx.authorization ?? '');
  return m ? (m[1] ?? '').trim() : null;
}

/** JWS compact serialization: three base64url parts (the last may be empty, as with alg "none"). */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

interface PemKey {
  alg: JwtAlgorithm;
  key: KeyObject;
}

/** A key jose verifies with: a Node KeyObject (PEM files) or the CryptoKey a local JWKS resolves to. */
type VerifyKey = KeyObject | Awaited<ReturnType<ReturnType<typeof createLocalJWKSet>>>;

interface Issuer {
  options: JwtIssuerOptions;
  /** Where this issuer's service accounts live. */
  trustDomain: string;
  /** Reads every key file (throws CONFIG / FILE_READ naming the file); also done on each use, re-reading changes. */
  load(): void;
  /** The keys that may have signed a token with this alg and kid; resolved per request so rotated files are seen. */
  candidates(alg: JwtAlgorithm, kid: string | undefined): Promise<VerifyKey[]>;
}

/**
 * Authenticates Kubernetes service-account tokens (and any JWT whose subject names one): `authorization: Bearer
 * <JWT>` verified against the configured issuers' keys, RS256 or ES256 only, with `iss`, `aud`, `exp` (required)
 * and `nbf` checked within the clock skew. The identity is spiffe://<trustDomain>/ns/<namespace>/sa/<name>, from
 * the `kubernetes.io` claim or `sub: system:serviceaccount:NS:NAME` (both must agree when both are present), where
 * the trust domain is the issuer's own (a second cluster's issuer may map into a second trust domain) or the
 * authenticator's default.
 *
 * Returns null when there is no bearer token or it is not shaped like a JWT (a bootstrap token, for the next
 * authenticator); a JWT that fails any check is UNAUTHENTICATED with the reason, never the token.
 */
export class JwtAuthenticator implements Authenticator {
  readonly method = 'jwt' as const;
  readonly trustDomain: string;
  readonly #issuers = new Map<string, Issuer>();
  readonly #skewMs: number;
  readonly #clock: Clock;

  constructor(options: JwtAuthenticatorOptions) {
    this.trustDomain = TrustDomain.parse(options.trustDomain, 'trustDomain').name;
    this.#skewMs = options.clockSkewMs ?? 60_000;
    if (!(this.#skewMs >= 0) || !Number.isFinite(this.#skewMs)) {
      throw new MeshError(ErrorCodes.CONFIG, `auth.clockSkew: ${String(options.clockSkewMs)} ms is not a duration ≥ 0`, { subject: 'auth.clockSkew' });
    }
    this.#clock = options.clock ?? systemClock;
    options.issuers.forEach((o, i) => {
      const field = `auth.jwt[${i}]`;
      if (this.#issuers.has(o.issuer)) {
        throw new MeshError(ErrorCodes.CONFIG, `${field}.issuer: "${o.issuer}" is configured twice`, { subject: `${field}.issuer` });
      }
      if (!o.audiences?.length) throw new MeshError(ErrorCodes.CONFIG, `${field}.audiences: give at least one audience`, { subject: `${field}.audiences` });
      if ((o.jwksFile === undefined) === (o.publicKeyFiles === undefined || o.publicKeyFiles.length === 0)) {
        throw new MeshError(ErrorCodes.CONFIG, `${field}: give exactly one of jwksFile or publicKeyFiles`, { subject: field });
      }
      const trustDomain = o.trustDomain === undefined ? this.trustDomain : TrustDomain.parse(o.trustDomain, `${field}.trustDomain`).name;
      const issuer = o.jwksFile !== undefined ? jwksIssuer(o, o.jwksFile, trustDomain) : pemIssuer(o, o.publicKeyFiles!, trustDomain);
      // Read now: a missing or bad key file stops the server at start rather than failing the first workload.
      issuer.load();
      this.#issuers.set(o.issuer, issuer);
    });
  }

  async authenticate(ctx: CallContext): Promise<CallerIdentity | null> {
    const token = bearerToken(ctx);
    if (token === null || !looksLikeJwt(token)) return null;

    let alg: unknown;
    let kid: unknown;
    let claims: JWTPayload;
    try {
      ({ alg, kid } = decodeProtectedHeader(token));
      claims = decodeJwt(token);
    } catch (err) {
      throw denied(`the bearer token is not a well-formed JWT: ${describeError(err)}`);
    }
    if (!JWT_ALGORITHMS.includes(alg as JwtAlgorithm)) {
      throw denied(`JWT algorithm ${shown(alg)} is not accepted: tokens must be signed with ${JWT_ALGORITHMS.join(' or ')}`);
    }
    if (typeof claims.iss !== 'string' || claims.iss === '') throw denied('the JWT has no "iss" (issuer) claim');
    const issuer = this.#issuers.get(claims.iss);
    if (!issuer) throw denied(`JWT issuer ${shown(claims.iss)} is not configured on this CA (auth.jwt[].issuer)`);

    const keys = await issuer.candidates(alg as JwtAlgorithm, typeof kid === 'string' ? kid : undefined).catch((err: unknown) => {
      if (isJose(err, 'ERR_JWKS_NO_MATCHING_KEY')) {
        throw denied(
          `no key of JWT issuer ${shown(claims.iss)} matches the token (alg ${String(alg)}${typeof kid === 'string' ? `, kid ${shown(kid)}` : ''}); ` +
            'the issuer may have rotated its keys: update the key file',
        );
      }
      throw err; // the key file itself is bad: CONFIG / FILE_READ, a server-side problem
    });

    const now = this.#clock.now();
    let payload: JWTPayload | undefined;
    for (const key of keys) {
      try {
        ({ payload } = await jwtVerify(token, key, {
          algorithms: [alg as JwtAlgorithm],
          issuer: issuer.options.issuer,
          audience: issuer.options.audiences,
          requiredClaims: ['exp'],
          clockTolerance: this.#skewMs / 1000,
          currentDate: now,
        }));
        break;
      } catch (err) {
        if (isJose(err, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED')) continue; // another key of the issuer may fit
        throw this.#explain(err, issuer.options, now);
      }
    }
    if (!payload) {
      throw denied(
        `the JWT signature does not verify with ${keys.length === 1 ? 'the key' : `any of the ${keys.length} keys`} of issuer ${shown(claims.iss)}`,
      );
    }
    const spiffeId = this.#identityOf(payload, issuer.trustDomain);
    return { spiffeId, method: 'jwt', principal: `jwt iss=${clip(payload.iss ?? '')} sub=${clip(payload.sub ?? '')}` };
  }

  #identityOf(payload: JWTPayload, trustDomain: string): SpiffeId {
    const fromSub = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(typeof payload.sub === 'string' ? payload.sub : '');
    const k8s = payload['kubernetes.io'] as { namespace?: unknown; serviceaccount?: { name?: unknown } } | undefined;
    const fromClaim =
      k8s && typeof k8s === 'object' && typeof k8s.namespace === 'string' && typeof k8s.serviceaccount?.name === 'string'
        ? { ns: k8s.namespace, sa: k8s.serviceaccount.name }
        : null;
    const sa = fromClaim ?? (fromSub ? { ns: fromSub[1]!, sa: fromSub[2]! } : null);
    if (!sa) {
      throw denied(
        `the JWT from issuer ${shown(payload.iss)} (sub ${shown(payload.sub)}) does not name a Kubernetes service account: ` +
          'expected sub "system:serviceaccount:NAMESPACE:NAME" or a "kubernetes.io" claim with namespace and serviceaccount.name',
      );
    }
    if (fromClaim && fromSub && (fromSub[1] !== fromClaim.ns || fromSub[2] !== fromClaim.sa)) {
      throw denied(
        `the JWT's sub (${shown(payload.sub)}) and its kubernetes.io claim (${shown(`${fromClaim.ns}/${fromClaim.sa}`)}) name different service accounts`,
      );
    }
    try {
      return SpiffeId.forWorkload(trustDomain, sa.ns, sa.sa);
    } catch (err) {
      throw denied(`service account ${shown(`${sa.ns}/${sa.sa}`)} does not make a valid SPIFFE ID: ${describeError(err)}`);
    }
  }

  #explain(err: unknown, issuer: JwtIssuerOptions, now: Date): MeshError {
    const skew = `server time ${now.toISOString()}, clock skew allowed ${formatDuration(this.#skewMs)}`;
    const e = err as { code?: string; claim?: string; reason?: string; payload?: JWTPayload; message?: string };
    if (e.code === 'ERR_JWT_EXPIRED') {
      return denied(`the JWT expired at ${when(e.payload?.exp)} (${skew}); get a fresh token`);
    }
    if (e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
      const p = e.payload ?? {};
      switch (e.claim) {
        case 'nbf':
          return denied(`the JWT is not valid before ${when(p.nbf)} (${skew})`);
        case 'exp':
          return denied(e.reason === 'missing' ? 'the JWT has no "exp" claim: only tokens that expire are accepted' : `the JWT's "exp" claim is invalid`);
        case 'aud':
          return denied(
            p.aud === undefined
              ? `the JWT has no "aud" claim; issuer ${shown(issuer.issuer)} requires one of: ${issuer.audiences.join(', ')}`
              : `JWT audience ${shown(p.aud)} is not accepted for issuer ${shown(issuer.issuer)}; accepted: ${issuer.audiences.join(', ')}`,
          );
        default:
          return denied(`the JWT's "${e.claim ?? '?'}" claim is invalid (${e.reason ?? 'check failed'})`);
      }
    }
    if (e.code === 'ERR_JOSE_ALG_NOT_ALLOWED') return denied(`JWT algorithm not accepted: tokens must be signed with ${JWT_ALGORITHMS.join(' or ')}`);
    if (e.code === 'ERR_JWS_INVALID' || e.code === 'ERR_JWT_INVALID') return denied(`the bearer token is not a well-formed JWT: ${e.message ?? ''}`);
    if (err instanceof TypeError && /modulusLength/.test(err.message)) {
      return denied(`a key of JWT issuer ${shown(issuer.issuer)} is an RSA key under 2048 bits, which RS256 does not allow`);
    }
    return denied(`the JWT from issuer ${shown(issuer.issuer)} could not be verified: ${describeError(err)}`);
  }
}

function jwksIssuer(options: JwtIssuerOptions, file: string, trustDomain: string): Issuer {
  const watched = new WatchedFile(file, 'JWKS file', parseJwks);
  return {
    options,
    trustDomain,
    load: () => void watched.get(),
    async candidates(alg, kid) {
      const { jwks } = watched.get();
      try {
        return [await jwks({ alg, ...(kid === undefined ? {} : { kid }) }, undefined as never)];
      } catch (err) {
        // Several keys fit (no kid, or a repeated kid): jose hands them over as an async iterator to try in turn.
        if (isJose(err, 'ERR_JWKS_MULTIPLE_MATCHING_KEYS')) {
          const keys: VerifyKey[] = [];
          for await (const k of err as unknown as AsyncIterable<VerifyKey>) keys.push(k);
          return keys;
        }
        throw err;
      }
    },
  };
}

function pemIssuer(options: JwtIssuerOptions, files: string[], trustDomain: string): Issuer {
  const watched = files.map((f) => new WatchedFile(f, 'JWT public key file', parsePemKeys));
  return {
    options,
    trustDomain,
    load: () => watched.forEach((w) => w.get()),
    async candidates(alg) {
      // PEM keys carry no kid (Kubernetes' sa.pub does not), so every key of the algorithm is a candidate.
      const keys = watched.flatMap((w) => w.get()).filter((k) => k.alg === alg).map((k) => k.key);
      if (keys.length === 0) throw Object.assign(new Error('no matching key'), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
      return keys;
    },
  };
}

function parseJwks(text: string, file: string): { jwks: ReturnType<typeof createLocalJWKSet> } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // JSON.parse quotes the text in its message: say only where it broke.
    throw configError(file, 'not valid JSON');
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!doc || typeof doc !== 'object' || !Array.isArray(keys)) throw configError(file, 'expected a JWKS document: {"keys": [ ... ]}');
  let usable = 0;
  keys.forEach((k: unknown, i) => {
    const jwk = k as JWK;
    if (!jwk || typeof jwk !== 'object' || typeof jwk.kty !== 'string') throw configError(file, `keys[${i}]: not a JSON Web Key (no "kty")`);
    if (jwk.d !== undefined || jwk.k !== undefined) throw configError(file, `keys[${i}]: a private or secret key; a JWKS for verification holds public keys only`);
    if ((jwk.kty === 'RSA' || (jwk.kty === 'EC' && jwk.crv === 'P-256')) && (jwk.alg === undefined || JWT_ALGORITHMS.includes(jwk.alg as JwtAlgorithm))) usable++;
  });
  if (usable === 0) throw configError(file, `no ${JWT_ALGORITHMS.join(' or ')} public key in it (RSA, or EC P-256)`);
  try {
    return { jwks: createLocalJWKSet(doc as { keys: JWK[] }) };
  } catch (err) {
    throw configError(file, `not a usable JWKS: ${describeError(err)}`);
  }
}

function parsePemKeys(text: string, file: string): PemKey[] {
  let blocks;
  try {
    blocks = decodePem(text, file);
  } catch (err) {
    throw configError(file, describeError(err).replace(`${file}: `, ''));
  }
  if (blocks.length === 0) throw configError(file, 'no PEM block (expected PUBLIC KEY or CERTIFICATE)');
  return blocks.map((b, i) => {
    const where = blocks.length > 1 ? `PEM block ${i + 1}` : 'the PEM block';
    let key: KeyObject;
    try {
      if (b.label === 'PUBLIC KEY') key = createPublicKey({ key: b.der, format: 'der', type: 'spki' });
      else if (b.label === 'RSA PUBLIC KEY') key = createPublicKey({ key: b.der, format: 'der', type: 'pkcs1' });
      else if (b.label === 'CERTIFICATE') key = new X509Certificate(b.der).publicKey;
      else if (b.label.includes('PRIVATE')) throw configError(file, `${where} is a private key; give the issuer's public key only`);
      else throw configError(file, `${where} is "${b.label}"; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE`);
    } catch (err) {
      if (err instanceof MeshError) throw err;
      throw configError(file, `${where} is not a readable public key: ${describeError(err)}`);
    }
    const type = key.asymmetricKeyType;
    const details = key.asymmetricKeyDetails;
    if (type === 'rsa') {
      if ((details?.modulusLength ?? 0) < 2048) throw configError(file, `${where} is an RSA key of ${details?.modulusLength} bits; RS256 needs at least 2048`);
      return { alg: 'RS256' as const, key };
    }
    if (type === 'ec' && details?.namedCurve === 'prime256v1') return { alg: 'ES256' as const, key };
    const kind = type === 'ec' ? `an EC ${details?.namedCurve} key` : `a ${type} key`;
    throw configError(file, `${where} is ${kind}; only RSA (RS256) and EC P-256 (ES256) keys are accepted`);
  });
}

function configError(file: string, why: string): MeshError {
  return new MeshError(ErrorCodes.CONFIG, `${file}: ${why}`, { subject: file });
}

function isJose(err: unknown, code: string): boolean {
  return (err as { code?: unknown } | null)?.code === code;
}

function denied(message: string): MeshError {
  return new MeshError(ErrorCodes.UNAUTHENTICATED, message, { details: { method: 'jwt' } });
}

function when(seconds: unknown): string {
  return typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : String(seconds);
}

/** A claim value for a message: JSON, without control characters, cut short. Claims are not secrets; the token is. */
function shown(value: unknown): string {
  return clip(JSON.stringify(value) ?? String(value));
}

function clip(text: string, max = 120): string {
  const t = String(text).replace(/[\u0000-\u001f\u007f]/g, '?');
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}
