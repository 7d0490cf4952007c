import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Revokers } from '../ca/index.js';
import { ErrorCodes, describeError, isMeshError, silentLogger, type Clock, type Logger } from '../core/index.js';
import { normalizeSerial, opensslSerial, parseRevocationReason, type RevocationReason } from '../pki/index.js';
import type { Ledger, LedgerEntry, ListQuery } from '../store/index.js';
import type { AdminToken } from './admin-token.js';
import type { ServerMetrics } from './metrics.js';
import { applyHttpTimeouts, closeHttp, listenHttp } from './http-listener.js';

export interface AdminEndpointOptions {
  token: AdminToken;
  /**
   * Revocation in each trust domain's CA. Only certificates of these CAs are listed or revoked (the ledger may hold
   * an old CA's during a rotation).
   */
  revokers: Revokers;
  ledger: Ledger;
  metrics: ServerMetrics;
  clock: Clock;
  logger?: Logger;
}

/** A revocation request is a few hundred bytes of JSON. */
const MAX_BODY_BYTES = 16 * 1024;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1_000;
/** Clock skew allowed for an invalidityDate "in the future". */
const FUTURE_SKEW_MS = 5 * 60_000;

/** An admin API refusal: the HTTP status and a message that says what to fix. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** A certificate as the admin API shows it: the ledger row without its PEM, with the state at this instant. */
export function certificateJson(e: LedgerEntry, now: Date, trustDomain?: string): Record<string, unknown> {
  return {
    serial: opensslSerial(e.serial),
    ...(trustDomain === undefined ? {} : { trustDomain }),
    identity: e.identity,
    subject: e.subject,
    sans: e.sans,
    profile: e.profile,
    status: e.status === 'revoked' ? 'revoked' : e.notAfter.getTime() < now.getTime() ? 'expired' : 'valid',
    notBefore: e.notBefore.toISOString(),
    notAfter: e.notAfter.toISOString(),
    issuedAt: e.issuedAt.toISOString(),
    revokedAt: e.revokedAt?.toISOString() ?? null,
    reason: e.revocationReason,
    invalidityDate: e.invalidityDate?.toISOString() ?? null,
    fingerprint: e.fingerprint,
  };
}

/**
 * The admin API, on its own listener (loopback by default) and never on the public one: POST /revoke and
 * GET /certificates, JSON in and out, every request authenticated with the bearer token first (an unauthenticated
 * caller learns nothing, not even which paths exist). A revocation is committed to the ledger before the answer,
 * and the OCSP and CRL caches are refreshed before it too (see Revoker). With several trust domains, a revocation
 * goes to the CA that issued the serial (409 when several did: the body then names `trustDomain`), and the list
 * is of one trust domain's CA at a time (`?trustDomain=`, the main one by default).
 */
export class AdminEndpoint {
  readonly server: Server;
  readonly #opts: AdminEndpointOptions;
  readonly #logger: Logger;

  constructor(options: AdminEndpointOptions) {
    this.#opts = options;
    this.#logger = options.logger ?? silentLogger;
    this.server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#logger.error({ error: describeError(err), url: req.url }, 'admin API handler failed');
        if (!res.headersSent) sendJson(res, 500, { error: { code: 'internal', message: 'internal error' } });
        else res.destroy();
      });
    });
    applyHttpTimeouts(this.server);
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listenHttp(this.server, host, port, this.#logger, 'admin API server');
  }

  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then drops what is left. */
  close(graceMs = 5_000): Promise<void> {
    return closeHttp(this.server, graceMs);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const route = url.pathname === '/revoke' || url.pathname === '/certificates' ? url.pathname : 'other';
    const reply = (status: number, body: unknown): void => {
      this.#opts.metrics.adminRequests.inc({ route, code: String(status) });
      sendJson(res, status, body);
    };
    const auth = this.#opts.token.check(req.headers.authorization);
    if (auth !== 'ok') {
      this.#opts.metrics.adminAuthFailures.inc({ reason: auth });
      const message =
        auth === 'missing'
          ? 'this API needs Authorization: Bearer TOKEN (the admin token file of the server)'
          : auth === 'wrong'
            ? 'the bearer token is not the admin token'
            : 'the server cannot read its admin token file; nobody is let in until it is fixed';
      if (auth === 'token_file') this.#logger.error({ problem: this.#opts.token.problem() }, 'admin token file unusable: refusing every admin request');
      else this.#logger.warn({ reason: auth, remote: req.socket.remoteAddress, path: url.pathname }, 'admin API request refused');
      res.setHeader('www-authenticate', 'Bearer realm="meshcert-admin"');
      req.resume();
      return reply(401, { error: { code: 'unauthenticated', message } });
    }
    try {
      if (url.pathname === '/revoke') {
        if (req.method !== 'POST') throw methodNotAllowed(res, 'POST');
        const body = await readJson(req);
        return reply(200, await this.#revoke(body));
      }
      if (url.pathname === '/certificates') {
        if (req.method !== 'GET') throw methodNotAllowed(res, 'GET');
        return reply(200, await this.#list(url.searchParams));
      }
      req.resume();
      throw new HttpError(404, `no admin endpoint ${url.pathname}; there are POST /revoke and GET /certificates`, 'not_found');
    } catch (err) {
      if (err instanceof HttpError && err.status === 413) {
        // Do not read the rest of an oversized body: answer, then close.
        res.shouldKeepAlive = false;
        res.on('finish', () => req.destroy());
      } else req.resume();
      if (err instanceof HttpError) return reply(err.status, { error: { code: err.code, message: err.message } });
      if (isMeshError(err, ErrorCodes.INVALID_ARGUMENT) && Array.isArray(err.details?.ambiguous)) {
        return reply(409, { error: { code: 'ambiguous_serial', message: err.message, trustDomains: err.details.ambiguous } });
      }
      if (isMeshError(err, ErrorCodes.NOT_FOUND)) return reply(404, { error: { code: 'not_found', message: err.message } });
      if (isMeshError(err) && (err.code === ErrorCodes.SERIAL || err.code === ErrorCodes.REVOCATION_REASON || err.code === ErrorCodes.INVALID_ARGUMENT)) {
        return reply(400, { error: { code: 'invalid_argument', message: err.message } });
      }
      throw err;
    }
  }

  async #revoke(body: unknown): Promise<Record<string, unknown>> {
    const input = parseRevokeRequest(body, this.#opts.clock.now());
    const { revokers, metrics } = this.#opts;
    const several = revokers.trustDomains.length > 1;
    let result;
    try {
      result = await revokers.revoke(input.serial, input.reason, input.invalidityDate, input.trustDomain);
    } catch (err) {
      if (isMeshError(err, ErrorCodes.NOT_FOUND)) {
        metrics.revocations.inc({ result: 'not_found' });
        // The ledger's message names its file; the caller needs the serial and the CA.
        const where = input.trustDomain !== undefined ? `the CA of trust domain "${input.trustDomain}"` : several ? `the CA of any trust domain here (${revokers.trustDomains.join(', ')})` : 'this CA';
        throw new HttpError(404, `serial ${opensslSerial(input.serial)}: no certificate with this serial was issued by ${where}`, 'not_found');
      }
      metrics.revocations.inc({ result: isMeshError(err, ErrorCodes.INVALID_ARGUMENT) ? 'invalid' : 'error' });
      throw err;
    }
    metrics.revocations.inc({ result: result.alreadyRevoked ? 'already_revoked' : 'revoked' });
    return {
      ...certificateJson(result.entry, this.#opts.clock.now(), several ? result.trustDomain : undefined),
      alreadyRevoked: result.alreadyRevoked,
      // Caches that did not confirm within a second catch up on their own (OCSP at half validity, CRL on its timer).
      lagging: result.lagging,
    };
  }

  async #list(params: URLSearchParams): Promise<Record<string, unknown>> {
    for (const k of params.keys()) {
      if (!['status', 'identity', 'limit', 'offset', 'trustDomain'].includes(k)) {
        throw new HttpError(400, `unknown query parameter "${k}"; use status, identity, limit, offset, trustDomain`, 'invalid_argument');
      }
    }
    const { revokers } = this.#opts;
    const td = params.get('trustDomain');
    const revoker = td === null ? revokers.main : revokers.forTrustDomain(td);
    if (!revoker) {
      throw new HttpError(400, `trustDomain: "${td}" is not a trust domain this CA signs for (${revokers.trustDomains.join(', ')})`, 'invalid_argument');
    }
    const several = revokers.trustDomains.length > 1;
    const status = params.get('status');
    if (status !== null && status !== 'valid' && status !== 'revoked') {
      throw new HttpError(400, `status: "${status}" is neither valid nor revoked`, 'invalid_argument');
    }
    const limit = intParam(params, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT);
    const offset = intParam(params, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
    const now = this.#opts.clock.now();
    const query: ListQuery = { issuerKeyId: revoker.ca.cert.issuerKeyId, limit, offset };
    if (status) query.status = status;
    // "valid" means valid now: expired certificates are left out of it.
    if (status === 'valid') query.includeExpiredBefore = now;
    const identity = params.get('identity');
    if (identity) query.identity = identity;
    const rows = await this.#opts.ledger.list(query);
    const trustDomain = several ? revoker.ca.trustDomain : undefined;
    return { certificates: rows.map((r) => certificateJson(r, now, trustDomain)), limit, offset, ...(trustDomain ? { trustDomain } : {}) };
  }
}

interface RevokeInput {
  serial: string;
  reason: RevocationReason;
  invalidityDate?: Date;
  /** The trust domain whose CA issued the serial; needed only when several CAs issued it. */
  trustDomain?: string;
}

/** Checks a POST /revoke body: {serial, reason?, invalidityDate?, trustDomain?} and nothing else. */
export function parseRevokeRequest(body: unknown, now: Date): RevokeInput {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'the body must be a JSON object: {"serial": "…", "reason": "…", "invalidityDate": "…", "trustDomain": "…"}', 'invalid_argument');
  }
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !['serial', 'reason', 'invalidityDate', 'trustDomain'].includes(k));
  if (unknown.length) {
    throw new HttpError(400, `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; use serial, reason, invalidityDate, trustDomain`, 'invalid_argument');
  }
  if (b.trustDomain !== undefined && (typeof b.trustDomain !== 'string' || b.trustDomain === '')) {
    throw new HttpError(400, 'trustDomain: must be the name of a trust domain, e.g. "cluster.local"', 'invalid_argument');
  }
  if (typeof b.serial !== 'string' || b.serial.trim() === '') {
    throw new HttpError(400, 'serial: required, the certificate serial in hex (as `openssl x509 -serial` prints it)', 'invalid_argument');
  }
  const serial = normalizeSerial(b.serial, 'serial');
  let reason: RevocationReason = 'unspecified';
  if (b.reason !== undefined) {
    if (typeof b.reason !== 'string') throw new HttpError(400, 'reason: must be a string such as "keyCompromise"', 'invalid_argument');
    reason = parseRevocationReason(b.reason, 'reason');
    if (reason === 'removeFromCRL') throw new HttpError(400, 'reason: removeFromCRL is not a reason to revoke (it only releases a certificateHold in delta CRLs)', 'invalid_argument');
  }
  let invalidityDate: Date | undefined;
  if (b.invalidityDate !== undefined) {
    const d = typeof b.invalidityDate === 'string' ? new Date(b.invalidityDate) : new Date(NaN);
    if (Number.isNaN(d.getTime())) throw new HttpError(400, 'invalidityDate: must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z', 'invalid_argument');
    if (d.getTime() > now.getTime() + FUTURE_SKEW_MS) throw new HttpError(400, 'invalidityDate: is in the future; it says since when the key is known or suspected to be compromised', 'invalid_argument');
    invalidityDate = d;
  }
  return { serial, reason, ...(invalidityDate ? { invalidityDate } : {}), ...(typeof b.trustDomain === 'string' ? { trustDomain: b.trustDomain } : {}) };
}

function intParam(params: URLSearchParams, name: string, dflt: number, min: number, max: number): number {
  const text = params.get(name);
  if (text === null) return dflt;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new HttpError(400, `${name}: "${text}" is not an integer from ${min} to ${max}`, 'invalid_argument');
  return n;
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) return reject(new HttpError(413, `the body is larger than ${MAX_BODY_BYTES} bytes`, 'too_large'));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) reject(new HttpError(413, `the body is larger than ${MAX_BODY_BYTES} bytes`, 'too_large'));
      else chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new HttpError(400, 'the body is not JSON', 'invalid_argument'));
      }
    });
  });
}

function methodNotAllowed(res: ServerResponse, allow: string): HttpError {
  res.setHeader('allow', allow);
  return new HttpError(405, `method not allowed; use ${allow}`, 'method_not_allowed');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`;
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.setHeader('cache-control', 'no-store');
  res.end(text);
}
