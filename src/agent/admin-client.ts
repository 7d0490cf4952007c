import { ErrorCodes, MeshError, describeError, type ErrorCode } from '../core/index.js';

export interface AdminClientOptions {
  /** Base URL of the admin API, e.g. http://127.0.0.1:15016. */
  server: string;
  /** The bearer token (the contents of the server's admin token file, trimmed). */
  token: string;
  timeoutMs?: number;
}

/** A certificate as the admin API returns it (see certificateJson on the server). */
export interface AdminCertificate {
  serial: string;
  /** The trust domain of the CA that issued it; present when the server signs for several. */
  trustDomain?: string;
  identity: string | null;
  subject: string;
  sans: string[];
  profile: string;
  status: 'valid' | 'revoked' | 'expired';
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  revokedAt: string | null;
  reason: string | null;
  invalidityDate: string | null;
  fingerprint: string;
}

export interface AdminRevokeResult extends AdminCertificate {
  alreadyRevoked: boolean;
  /** Caches (ocsp, crl) that had not confirmed the change when the server answered. */
  lagging: string[];
}

/** One page of GET /certificates: the certificates of one trust domain's CA. */
interface AdminCertificatePage {
  certificates: AdminCertificate[];
  limit: number;
  offset: number;
  /** The trust domain listed; present when the server signs for several. */
  trustDomain?: string;
}

/** MeshError code for an admin API status, so the CLI exits and reports as for the offline commands. */
function codeFor(status: number): ErrorCode {
  if (status === 401) return ErrorCodes.UNAUTHENTICATED;
  if (status === 403) return ErrorCodes.PERMISSION_DENIED;
  if (status === 404) return ErrorCodes.NOT_FOUND;
  // 409: the request is valid but names too little (a serial several CAs issued): the caller must say more.
  if (status === 400 || status === 409 || status === 413) return ErrorCodes.INVALID_ARGUMENT;
  if (status === 503) return ErrorCodes.UNAVAILABLE;
  return ErrorCodes.INTERNAL;
}

function endpoint(server: string, path: string): URL {
  let base: URL;
  try {
    base = new URL(server.endsWith('/') ? server : `${server}/`);
  } catch {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--server: "${server}" is not a URL; e.g. http://127.0.0.1:15016`, { subject: '--server' });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--server: "${server}" is not an http(s) URL`, { subject: '--server' });
  }
  return new URL(path, base);
}

async function call<T>(options: AdminClientOptions, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const url = endpoint(options.server, path);
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${options.token}`,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? describeError(err);
    throw new MeshError(ErrorCodes.UNAVAILABLE, `admin API at ${url.origin}: cannot connect: ${why}`, { subject: url.origin, cause: err });
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const e = (parsed as { error?: { message?: string; code?: string; trustDomains?: unknown } } | null)?.error;
    if (res.status === 409 && e?.code === 'ambiguous_serial') throw ambiguousSerial(url, body, e);
    throw new MeshError(codeFor(res.status), `admin API at ${url.origin}: ${e?.message ?? `HTTP ${res.status}`} (HTTP ${res.status})`, {
      subject: url.origin,
      details: { httpStatus: res.status, ...(e?.code ? { apiCode: e.code } : {}) },
    });
  }
  if (parsed === null || typeof parsed !== 'object') {
    throw new MeshError(ErrorCodes.INTERNAL, `admin API at ${url.origin}: the answer is not JSON`, { subject: url.origin });
  }
  return parsed as T;
}

/**
 * The 409 `ambiguous_serial` of POST /revoke: the serial was issued by the CAs of several trust domains of the server,
 * and the request did not say which. Nothing was revoked; the caller names the trust domain (`--trust-domain` on the
 * command line, `trustDomain` here) and asks again.
 */
function ambiguousSerial(url: URL, body: unknown, e: { message?: string; trustDomains?: unknown }): MeshError {
  const serial = (body as { serial?: unknown } | undefined)?.serial;
  const domains = Array.isArray(e.trustDomains) ? e.trustDomains.filter((d): d is string => typeof d === 'string') : [];
  const which = domains.length
    ? `the CAs of trust domains ${domains.join(', ')}; pass --trust-domain with one of them (e.g. --trust-domain ${domains[0]})`
    : `the CAs of several trust domains; pass --trust-domain NAME to say which (${e.message ?? 'the server named none'})`;
  return new MeshError(
    ErrorCodes.INVALID_ARGUMENT,
    `admin API at ${url.origin}: serial ${typeof serial === 'string' ? serial : '?'} was issued by ${which}; nothing was revoked (HTTP 409)`,
    { subject: 'trustDomain', details: { httpStatus: 409, apiCode: 'ambiguous_serial', trustDomains: domains } },
  );
}

/**
 * POST /revoke: revokes through a running `meshcert serve`, whose OCSP and CRL answers follow at once.
 * With `trustDomain`, only the CA of that trust domain revokes (needed when several CAs of the server issued the
 * serial: without it that is an INVALID_ARGUMENT MeshError whose details name the trust domains).
 */
export function adminRevoke(
  options: AdminClientOptions & { serial: string; reason?: string; invalidityDate?: Date; trustDomain?: string },
): Promise<AdminRevokeResult> {
  return call<AdminRevokeResult>(options, 'POST', 'revoke', {
    serial: options.serial,
    ...(options.reason ? { reason: options.reason } : {}),
    ...(options.invalidityDate ? { invalidityDate: options.invalidityDate.toISOString() } : {}),
    ...(options.trustDomain !== undefined ? { trustDomain: options.trustDomain } : {}),
  });
}

export interface AdminListOptions extends AdminClientOptions {
  status?: 'valid' | 'revoked';
  identity?: string;
  limit?: number;
  offset?: number;
  /** List the certificates of this trust domain's CA; the server's main trust domain by default. */
  trustDomain?: string;
}

/**
 * GET /certificates: one page of the certificates of one trust domain's CA (`trustDomain`, the server's main one by
 * default); each carries its `trustDomain` when the server signs for several.
 */
export async function adminListCertificates(options: AdminListOptions): Promise<AdminCertificate[]> {
  const q = new URLSearchParams();
  if (options.status) q.set('status', options.status);
  if (options.identity) q.set('identity', options.identity);
  if (options.limit !== undefined) q.set('limit', String(options.limit));
  if (options.offset !== undefined) q.set('offset', String(options.offset));
  if (options.trustDomain !== undefined) q.set('trustDomain', options.trustDomain);
  const path = `certificates${q.size ? `?${q}` : ''}`;
  const res = await call<AdminCertificatePage>(options, 'GET', path);
  if (!Array.isArray(res.certificates)) {
    const origin = endpoint(options.server, path).origin;
    throw new MeshError(ErrorCodes.INTERNAL, `admin API at ${origin}: the answer has no "certificates" list`, { subject: origin });
  }
  return res.certificates;
}
