import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { performance } from 'node:perf_hooks';
import { describeError, systemClock, type Clock } from '../core/index.js';
import {
  DEFAULT_OCSP_CLOCK_SKEW_MS,
  OcspResponse,
  buildOcspRequest,
  certIdFor,
  randomNonce,
  verifyOcspResponse,
  type Certificate,
  type OcspHashAlgorithm,
  type RevocationReason,
} from '../pki/index.js';

/**
 * Why a fetch gave no usable answer, as named constants for logs, metrics and `secret check` (in the manner of
 * go-spiffe's failure reasons): the responder could not be reached, did not answer in time, answered with an HTTP
 * error, sent too much, sent something that is not an OCSP response, answered with an OCSP error status
 * (tryLater, unauthorized…), signed with a key that is not the issuer's or its delegated signer's, answered about
 * another certificate, said `unknown`, sent an answer outside its validity window, or did not echo our nonce.
 */
export const STAPLE_FETCH_FAILURES = [
  'unreachable',
  'timeout',
  'http-status',
  'too-large',
  'garbage',
  'responder-error',
  'wrong-signer',
  'wrong-certificate',
  'unknown-status',
  'stale',
  'nonce',
] as const;
export type StapleFetchFailure = (typeof STAPLE_FETCH_FAILURES)[number];

export interface FetchStapleOptions {
  cert: Certificate;
  issuer: Certificate;
  /** The responder, from the certificate's AIA (http: or https:). */
  url: string;
  clock?: Clock;
  /** Send a nonce and require it echoed. Default false: RFC 5019 responders and pre-signed answers do not echo. */
  nonce?: boolean;
  /** For the whole exchange (connect, send, answer). Default 10 s. */
  timeoutMs?: number;
  /** Default 64 KiB; an answer is a few hundred bytes to a few KiB. */
  maxResponseBytes?: number;
  /** CertID hash. Default SHA-1, which every responder understands (RFC 5019). */
  hash?: OcspHashAlgorithm;
  /** Tolerated difference between our clock and the responder's when accepting an answer. Default 5 min. */
  maxClockSkewMs?: number;
}

export type StapleFetchResult =
  | {
      ok: true;
      url: string;
      /** The DER answer, as received: the staple. */
      der: Buffer;
      status: 'good' | 'revoked';
      thisUpdate: Date;
      nextUpdate: Date | null;
      revokedAt: Date | null;
      revocationReason: RevocationReason | null;
      latencyMs: number;
    }
  | { ok: false; url: string; reason: StapleFetchFailure; message: string; latencyMs: number; httpStatus?: number };

class FetchFailed extends Error {
  constructor(
    readonly reason: StapleFetchFailure,
    message: string,
    readonly httpStatus?: number,
  ) {
    super(message);
  }
}

/** POSTs `body` and returns the 200 answer's bytes; every other outcome is a FetchFailed. */
function post(url: URL, body: Buffer, timeoutMs: number, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    let settled = false;
    const done = (err: FetchFailed | null, value?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(value!);
    };
    const req = request(
      url,
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/ocsp-request', Accept: 'application/ocsp-response', 'Content-Length': body.length, Connection: 'close' },
        agent: false,
      },
      (res: IncomingMessage) => {
        if (res.statusCode !== 200) {
          res.resume();
          done(new FetchFailed('http-status', `${url.href} answered HTTP ${res.statusCode}${res.statusMessage ? ` ${res.statusMessage}` : ''}`, res.statusCode));
          return;
        }
        const declared = Number(res.headers['content-length'] ?? NaN);
        if (declared > maxBytes) {
          done(new FetchFailed('too-large', `${url.href} sent ${declared} bytes; an OCSP answer over ${maxBytes} bytes is refused`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) done(new FetchFailed('too-large', `${url.href} sent more than ${maxBytes} bytes; refused`));
          else chunks.push(c);
        });
        res.on('end', () => done(null, Buffer.concat(chunks)));
        res.on('error', (err) => done(new FetchFailed('unreachable', `${url.href}: the answer was cut off: ${describeError(err)}`)));
      },
    );
    const timer = setTimeout(() => done(new FetchFailed('timeout', `${url.href} did not answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      // Refused, reset, unresolvable, hung up: for the schedule they are one thing, the responder is not there.
      const code = err.code ?? '';
      done(new FetchFailed('unreachable', `${url.href}: ${code && !err.message.includes(code) ? `${code} ` : ''}${describeError(err)}`));
    });
    req.end(body);
  });
}

/**
 * Asks the certificate's OCSP responder for a fresh answer, as a stapling server does: an HTTP POST of an
 * `application/ocsp-request` with a SHA-1 CertID (and a nonce when asked), then believes the answer only when
 * verifyOcspResponse does (signed by the issuer or its delegated OCSP signer, about this certificate, within its
 * validity window give or take the clock skew, nonce echoed). `good` and `revoked` are answers; everything else is
 * a failure with a named reason. Never throws.
 */
export async function fetchStaple(options: FetchStapleOptions): Promise<StapleFetchResult> {
  const clock = options.clock ?? systemClock;
  const t0 = performance.now();
  const urlText = options.url;
  const fail = (reason: StapleFetchFailure, message: string, httpStatus?: number): StapleFetchResult => ({
    ok: false,
    url: urlText,
    reason,
    message,
    latencyMs: performance.now() - t0,
    ...(httpStatus !== undefined ? { httpStatus } : {}),
  });
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    return fail('unreachable', `"${urlText}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail('unreachable', `${urlText}: only http: and https: OCSP responders are supported`);

  const nonce = options.nonce ? randomNonce() : undefined;
  let body: Buffer;
  try {
    body = buildOcspRequest({ certIds: [certIdFor(options.cert, options.issuer, options.hash ?? 'sha1')], ...(nonce ? { nonce } : {}) });
  } catch (err) {
    return fail('wrong-certificate', `cannot make an OCSP request for certificate ${options.cert.serial}: ${describeError(err)}`);
  }
  let der: Buffer;
  try {
    der = await post(url, body, options.timeoutMs ?? 10_000, options.maxResponseBytes ?? 65_536);
  } catch (err) {
    if (err instanceof FetchFailed) return fail(err.reason, err.message, err.httpStatus);
    return fail('unreachable', `${urlText}: ${describeError(err)}`);
  }
  const latencyMs = performance.now() - t0;
  const source = `OCSP answer from ${urlText}`;
  let parsed: OcspResponse;
  try {
    parsed = OcspResponse.parse(der, source);
  } catch (err) {
    return { ...fail('garbage', describeError(err)), latencyMs };
  }
  if (parsed.responseStatus === 'successful' && parsed.responses.length !== 1) {
    return { ...fail('wrong-certificate', `${source}: the answer is about ${parsed.responses.length} certificates; a staple must be about exactly one`), latencyMs };
  }
  const res = verifyOcspResponse(parsed, {
    cert: options.cert,
    issuer: options.issuer,
    at: clock.now(),
    requireGood: false,
    maxClockSkewMs: options.maxClockSkewMs ?? DEFAULT_OCSP_CLOCK_SKEW_MS,
    source,
    ...(nonce ? { nonce } : {}),
  });
  if (!res.ok) {
    const codes = new Set(res.reasons.map((r) => r.code));
    const first = (code: string) => res.reasons.find((r) => r.code === code)!.message;
    if (codes.has('parse')) return { ...fail('garbage', first('parse')), latencyMs };
    if (codes.has('responseStatus')) return { ...fail('responder-error', first('responseStatus')), latencyMs };
    if (codes.has('signature')) return { ...fail('wrong-signer', first('signature')), latencyMs };
    if (codes.has('responder')) return { ...fail('wrong-signer', first('responder')), latencyMs };
    if (codes.has('certId')) return { ...fail('wrong-certificate', first('certId')), latencyMs };
    if (codes.has('freshness')) return { ...fail('stale', first('freshness')), latencyMs };
    if (codes.has('nonce')) return { ...fail('nonce', first('nonce')), latencyMs };
    return { ...fail('garbage', res.reasons.map((r) => r.message).join('; ') || `${source}: not usable`), latencyMs };
  }
  if (res.status === 'unknown') return { ...fail('unknown-status', `${source}: the responder does not know certificate ${options.cert.serial} (status unknown)`), latencyMs };
  return {
    ok: true,
    url: urlText,
    der,
    status: res.status,
    thisUpdate: res.thisUpdate,
    nextUpdate: res.nextUpdate,
    revokedAt: res.single.revokedAt,
    revocationReason: res.single.revocationReason,
    latencyMs,
  };
}

/** The http(s) OCSP URLs of a certificate's AIA, in order. */
export function ocspUrlsOf(cert: Certificate): string[] {
  return cert.ocspUrls.filter((u) => /^https?:\/\//i.test(u));
}
