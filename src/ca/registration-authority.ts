import { ErrorCodes, MeshError, describeError, isMeshError, silentLogger, systemClock, type Clock, type ErrorCode, type Logger } from '../core/index.js';
import { Csr, rememberCsrPublicKey } from '../pki/index.js';
import type { Ledger } from '../store/index.js';
import type { CertificateIssuer } from './certificate-issuer.js';
import { authorizeCsr, requestedNames, type DnsGrant, type RequestedNames } from './csr-authorization.js';
import { RateLimiter } from './rate-limiter.js';
import { SigningCas } from './signing-cas.js';
import type { Authenticator, CallContext, CallerIdentity, CertificateSigningRequest, CertificateSigningResponse } from './registration-types.js';

/**
 * A caller whose credential is spent only when the request is authorized (one-time bootstrap tokens): the RA calls
 * `commit()` after authorization and before issuing; it throws UNAUTHENTICATED when the credential was already used.
 */
export interface CallerWithCommit extends CallerIdentity {
  commit?: () => Promise<void>;
}

export interface RegistrationAuthorityOptions {
  /** The signing CA, or one per trust domain: each certificate is signed by the CA of the caller's trust domain. */
  issuer: CertificateIssuer | SigningCas;
  /** For audit events (the issuer records certificates in its own ledger, normally the same one). */
  ledger: Ledger;
  /** Tried in order; the first that returns a caller decides. */
  authenticators: Authenticator[];
  dnsGrants?: DnsGrant[];
  /** Per-identity token bucket; absent means no limit. */
  rateLimit?: { perIdentityPerSecond: number; burst: number; maxIdentities?: number };
  /** Largest csrPem accepted, in bytes (UTF-8). Default 16 KiB. */
  maxCsrBytes?: number;
  logger?: Logger;
  clock?: Clock;
  /** Called once per decision, after the audit write: for metrics. Must not throw. */
  onDecision?: (decision: RaDecision) => void;
}

export interface RaDecision {
  allowed: boolean;
  /** One of the codes the RA throws (below), or null when allowed. */
  code: ErrorCode | null;
  /** The specific cause (e.g. MESH_ERR_KEY_TOO_WEAK for an INVALID_ARGUMENT), or null when allowed. */
  reason: ErrorCode | null;
  method: CallerIdentity['method'] | null;
  identity: string | null;
  durationMs: number;
}

/** The only codes createCertificate throws; each maps to one gRPC status. `details.reason` holds the specific cause. */
export const RA_ERROR_CODES = [
  ErrorCodes.UNAUTHENTICATED,
  ErrorCodes.PERMISSION_DENIED,
  ErrorCodes.INVALID_ARGUMENT,
  ErrorCodes.RATE_LIMITED,
  ErrorCodes.UNAVAILABLE,
  ErrorCodes.INTERNAL,
] as const;

/** validity_duration above this is nonsense, not a request to cap: 10 years. */
const MAX_REQUESTED_SECONDS = 10 * 365 * 86_400;

/**
 * The registration authority: decides who may have which certificate, then has the CertificateIssuer make it.
 * Per request: size cap, authentication (first authenticator that recognises a credential), rate limit per identity,
 * CSR proof of possession and authorization (own SPIFFE ID only, granted DNS names, no CA powers), lifetime, then
 * issuance by the CA of the identity's trust domain (see SigningCas), which commits the ledger row before anything
 * is returned. The answer's chain is that CA's: its intermediates and its trust domain's roots, no other's.
 *
 * Every decision, allowed or denied, is an audit event in the ledger ('csr-allowed' / 'csr-denied', subject the
 * identity or 'anonymous', details: method, principal, requested names and lifetime, serial or reason). A denial
 * stands even if its audit write fails; an issuance whose audit write fails is not returned (UNAVAILABLE).
 *
 * createCertificate throws only MeshErrors with a code from RA_ERROR_CODES, messages meant for the caller. Tokens and
 * keys never reach messages, logs or audit events.
 */
export class RegistrationAuthority {
  /** The main signing CA. */
  readonly issuer: CertificateIssuer;
  /** Every signing CA, by trust domain. */
  readonly cas: SigningCas;
  readonly ledger: Ledger;
  readonly authenticators: readonly Authenticator[];
  readonly dnsGrants: readonly DnsGrant[];
  readonly maxCsrBytes: number;
  readonly rateLimiter: RateLimiter | null;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #onDecision: ((d: RaDecision) => void) | undefined;

  constructor(options: RegistrationAuthorityOptions) {
    this.cas = options.issuer instanceof SigningCas ? options.issuer : SigningCas.of(options.issuer);
    this.issuer = this.cas.main;
    this.ledger = options.ledger;
    this.authenticators = [...options.authenticators];
    this.dnsGrants = [...(options.dnsGrants ?? [])];
    this.maxCsrBytes = options.maxCsrBytes ?? 16_384;
    if (!Number.isSafeInteger(this.maxCsrBytes) || this.maxCsrBytes < 1) {
      throw new MeshError(ErrorCodes.CONFIG, `grpc.maxCsrBytes: ${String(options.maxCsrBytes)} is not a positive whole number`, { subject: 'grpc.maxCsrBytes' });
    }
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.rateLimiter = options.rateLimit
      ? new RateLimiter({
          perSecond: options.rateLimit.perIdentityPerSecond,
          burst: options.rateLimit.burst,
          clock: this.#clock,
          ...(options.rateLimit.maxIdentities === undefined ? {} : { maxKeys: options.rateLimit.maxIdentities }),
        })
      : null;
    this.#onDecision = options.onDecision;
  }

  async createCertificate(req: CertificateSigningRequest, ctx: CallContext): Promise<CertificateSigningResponse> {
    const started = performance.now();
    const audit: AuditDetails = { ...(ctx.remoteAddress ? { remoteAddress: ctx.remoteAddress } : {}) };
    let caller: CallerWithCommit | null = null;
    // Kept so that a refusal can record what was asked (read only then: authorizeCsr reads the SANs on success).
    let parsed: Csr | null = null;
    try {
      const csrPem = typeof req?.csrPem === 'string' ? req.csrPem : '';
      audit.csrBytes = Buffer.byteLength(csrPem, 'utf8');
      audit.validitySeconds = req?.validitySeconds ?? 0;
      if (audit.csrBytes > this.maxCsrBytes) {
        throw fail(ErrorCodes.INVALID_ARGUMENT, `the CSR is ${audit.csrBytes} bytes; this CA accepts at most ${this.maxCsrBytes}`);
      }
      if (audit.csrBytes === 0) throw fail(ErrorCodes.INVALID_ARGUMENT, 'the request carries no CSR (csr field is empty)');

      caller = await this.#authenticate(ctx);
      audit.method = caller.method;
      audit.principal = caller.principal;
      const identity = caller.spiffeId.toString();

      this.rateLimiter?.take(identity);

      const ttlMs = requestedTtlMs(req.validitySeconds);
      const csr = Csr.parse(csrPem, 'CSR');
      parsed = csr;
      const authorized = authorizeCsr(csr, caller, this.dnsGrants);
      audit.requested = authorized.requested;
      const issuer = this.cas.forIdentity(caller.spiffeId);

      await caller.commit?.();

      // The key, not the CSR: authorizeCsr verified the signature already, and the issuer would verify it again.
      // The builder may still reuse the SPKI bytes the CSR carries.
      rememberCsrPublicKey(csr);
      const issued = await issuer.issue({
        publicKey: csr.publicKey,
        spiffeId: authorized.spiffeId,
        ...(authorized.dnsNames.length ? { dnsNames: authorized.dnsNames } : {}),
        ...(authorized.ipAddresses.length ? { ipAddresses: authorized.ipAddresses } : {}),
        ...(ttlMs === undefined ? {} : { ttlMs }),
        profile: 'svid',
      });
      const serial = issued.serial;
      audit.granted = {
        serial,
        dnsNames: authorized.dnsNames,
        ipAddresses: authorized.ipAddresses,
        notBefore: issued.entry.notBefore.toISOString(),
        notAfter: issued.entry.notAfter.toISOString(),
        ...(issued.ttlNote ? { note: issued.ttlNote } : {}),
      };
      try {
        await this.ledger.audit({ type: 'csr-allowed', subject: identity, details: { ...audit } });
      } catch (err) {
        // The certificate is in the ledger (revocable), but unaudited: do not hand it out.
        this.#logger.error({ err: describeError(err), serial, identity }, 'audit write failed after issuance; certificate withheld');
        throw fail(ErrorCodes.UNAVAILABLE, 'ledger unavailable, retry', ErrorCodes.LEDGER);
      }
      this.#logger.debug({ identity, method: caller.method, serial, notAfter: audit.granted.notAfter }, 'certificate issued');
      this.#decided(true, null, caller, started);
      return {
        certChain: [issued.pem, ...issued.intermediatePems, issued.trustBundlePem],
        serial,
        identity,
      };
    } catch (err) {
      const error = this.#normalize(err);
      if (parsed && !audit.requested) audit.requested = safeRequestedNames(parsed);
      // After a failed 'csr-allowed' write this records the withheld certificate too (audit.granted), if it can.
      // A refused credential still says which kind it was (the authenticators put their method in details).
      if (!caller && typeof error.details?.method === 'string') audit.method = error.details.method;
      audit.reason = (error.details?.reason as string | undefined) ?? error.code;
      audit.message = error.message;
      try {
        await this.ledger.audit({ type: 'csr-denied', subject: caller ? caller.spiffeId.toString() : 'anonymous', details: { ...audit } });
      } catch (auditErr) {
        this.#logger.error({ err: describeError(auditErr) }, 'audit write failed for a denied CSR; denied anyway');
      }
      // debug: the transport logs each refusal once with its status; server-side faults were logged above as errors.
      this.#logger.debug(
        { code: error.code, reason: audit.reason, identity: caller?.spiffeId.toString() ?? null, method: caller?.method ?? null, remoteAddress: ctx.remoteAddress },
        `CSR denied: ${error.message}`,
      );
      this.#decided(false, error, caller, started);
      throw error;
    }
  }

  async #authenticate(ctx: CallContext): Promise<CallerWithCommit> {
    for (const a of this.authenticators) {
      const caller = await a.authenticate(ctx);
      if (caller) return caller;
    }
    if (ctx.authorization !== undefined && ctx.authorization.trim() !== '') {
      throw fail(
        ErrorCodes.UNAUTHENTICATED,
        'the authorization credential was not recognised: send "Bearer <token>" with a JWT from a configured issuer or a bootstrap token, or use a client certificate',
      );
    }
    throw fail(ErrorCodes.UNAUTHENTICATED, 'no credential: send a bearer token or a client certificate');
  }

  /** Maps anything thrown to one of RA_ERROR_CODES with a message for the caller; internals go to the log only. */
  #normalize(err: unknown): MeshError {
    if (!isMeshError(err)) {
      this.#logger.error({ err: describeError(err) }, 'unexpected error in the registration authority');
      return fail(ErrorCodes.INTERNAL, 'internal error in the CA (logged); retry later', ErrorCodes.INTERNAL);
    }
    if ((RA_ERROR_CODES as readonly string[]).includes(err.code)) {
      if (err.details?.reason !== undefined) return err;
      return new MeshError(err.code, err.message, { ...(err.subject ? { subject: err.subject } : {}), cause: err, details: { ...err.details, reason: err.code } });
    }
    switch (err.code) {
      case ErrorCodes.CSR_PARSE:
      case ErrorCodes.CSR_SIGNATURE:
      case ErrorCodes.PEM:
      case ErrorCodes.DER:
      case ErrorCodes.KEY_TOO_WEAK:
      case ErrorCodes.KEY_TYPE:
      case ErrorCodes.KEY_PARSE:
      case ErrorCodes.SAN:
      case ErrorCodes.SPIFFE_ID:
        return fail(ErrorCodes.INVALID_ARGUMENT, err.message, err.code, err);
      case ErrorCodes.POLICY:
        return fail(ErrorCodes.PERMISSION_DENIED, err.message, err.code, err);
      case ErrorCodes.LEDGER:
        this.#logger.error({ err: err.message }, 'ledger failure while handling a CSR');
        return fail(ErrorCodes.UNAVAILABLE, 'ledger unavailable, retry', err.code, err);
      case ErrorCodes.CONFIG:
      case ErrorCodes.FILE_READ:
        // A credential file (token list, JWKS) is missing or broken: the operator must fix it; the caller may retry.
        this.#logger.error({ err: err.message }, 'credential configuration is unusable; refusing requests until it is fixed');
        return fail(ErrorCodes.UNAVAILABLE, 'the CA cannot check credentials right now (a server configuration problem, logged); retry later', err.code, err);
      case ErrorCodes.TTL:
        this.#logger.error({ err: err.message }, 'the CA cannot issue');
        return fail(ErrorCodes.UNAVAILABLE, `the CA cannot issue: ${err.message}`, err.code, err);
      default:
        this.#logger.error({ err: err.message, code: err.code }, 'unexpected error in the registration authority');
        return fail(ErrorCodes.INTERNAL, 'internal error in the CA (logged); retry later', err.code, err);
    }
  }

  #decided(allowed: boolean, error: MeshError | null, caller: CallerIdentity | null, started: number): void {
    if (!this.#onDecision) return;
    try {
      this.#onDecision({
        allowed,
        code: error?.code ?? null,
        reason: (error?.details?.reason as ErrorCode | undefined) ?? null,
        method: caller?.method ?? null,
        identity: caller?.spiffeId.toString() ?? null,
        durationMs: performance.now() - started,
      });
    } catch (err) {
      this.#logger.warn({ err: describeError(err) }, 'onDecision hook threw');
    }
  }
}

interface AuditDetails {
  remoteAddress?: string;
  method?: string;
  principal?: string;
  csrBytes?: number;
  validitySeconds?: unknown;
  requested?: RequestedNames;
  granted?: { serial: string; dnsNames: string[]; ipAddresses: string[]; notBefore: string; notAfter: string; note?: string };
  reason?: string;
  message?: string;
  [key: string]: unknown;
}

/** validity_duration (seconds) to the issuer's ttlMs: 0 or absent → the policy default; maxTtl caps it later. */
function requestedTtlMs(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  // proto int64 may arrive as a string or a Long-like object depending on loader options.
  const n = typeof value === 'number' ? value : Number(typeof value === 'object' ? String(value) : value);
  if (!Number.isFinite(n)) throw fail(ErrorCodes.INVALID_ARGUMENT, `validity_duration ${JSON.stringify(String(value)).slice(0, 40)} is not a number of seconds`);
  if (n === 0) return undefined;
  if (n < 0) throw fail(ErrorCodes.INVALID_ARGUMENT, `validity_duration ${n} s is negative; send 0 for the default lifetime`);
  if (n > MAX_REQUESTED_SECONDS) {
    throw fail(ErrorCodes.INVALID_ARGUMENT, `validity_duration ${n} s is more than 10 years; send 0 for the default lifetime`);
  }
  // Whole seconds, as the protocol means them (certificate times have no fractions).
  return Math.max(1, Math.round(n)) * 1000;
}

function safeRequestedNames(csr: Csr): RequestedNames | undefined {
  try {
    return requestedNames(csr);
  } catch {
    return undefined; // a malformed SAN extension: authorizeCsr reports it
  }
}

function fail(code: ErrorCode, message: string, reason: ErrorCode = code, cause?: unknown): MeshError {
  return new MeshError(code, message, { ...(cause === undefined ? {} : { cause }), details: { reason } });
}
